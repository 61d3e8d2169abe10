"""Exceptions with the SageMaker SDK's names, raised where its calls raise them."""

from __future__ import annotations


class UnexpectedStatusException(ValueError):
    """A job ended in a status other than the one waited for (SageMaker: Failed, Stopped)."""

    def __init__(self, message: str, allowed_statuses: list[str] | None = None, actual_status: str | None = None):
        super().__init__(message)
        self.allowed_statuses, self.actual_status = allowed_statuses or [], actual_status
