"""Calibrated probabilities and the decisions made on them, all set on photos of train/ (never on valid/).

- Temperature scaling (Guo et al., 2017): one scalar T dividing the logits, chosen to minimise the negative
  log-likelihood on held-out photos; it changes confidence, never the ranking of the breeds.
- Expected calibration error: the mean gap between confidence and accuracy over confidence bins.
- Not a dog: the backbone's own ImageNet classifier knows a thousand things besides dogs; the probability mass it
  puts on its dog classes is the score, and the threshold is the score that only `max_rejected` (0.5%) of the
  training photos (all dogs) fall under, never above 0.3: a photo the backbone gives a 30% chance of showing a dog
  gets the benefit of the doubt.
- Uncertain: a calibrated top-1 probability under the level at which held-out photos are right at most half of
  the time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from dogbreed.models.inference import average_softmax

# The dog threshold never leaves this range: below, nothing would be rejected; above, a photo the backbone calls
# a dog as likely as not would be refused.
DOG_THRESHOLD_RANGE = (0.02, 0.3)
UNCERTAIN_RANGE = (0.25, 0.75)
# Temperatures outside this range only fit noise: a small held-out part that the head gets all right would
# otherwise drive T towards 0 (every answer certain).
TEMPERATURE_RANGE = (0.05, 20.0)  # wide: a head shrunk by heavy weight decay needs T far below 0.3


def view_probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """N x V x C logits (V views of each photo) -> N x C probabilities, views averaged."""
    return average_softmax([logits[:, v] for v in range(logits.shape[1])], temperature)


def nll(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float(torch.nn.functional.nll_loss(probs.clamp_min(1e-12).log(), labels))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """T minimising the held-out NLL: a coarse grid over log T, then a finer one around the best."""
    if len(labels) == 0:
        return 1.0
    logits, labels = logits.float(), labels.long()
    grid = np.exp(np.linspace(np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1]), 41))
    best = min(grid, key=lambda t: nll(view_probabilities(logits, t), labels))
    fine = np.clip(best * np.exp(np.linspace(-0.08, 0.08, 17)), *TEMPERATURE_RANGE)  # the coarse step is 16%
    return float(min(fine, key=lambda t: nll(view_probabilities(logits, t), labels)))


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    if len(labels) == 0:
        return float("nan")
    conf, pred = probs.float().max(1)
    correct = (pred == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += float(inside.float().mean()) * abs(float(conf[inside].mean()) - float(correct[inside].mean()))
    return ece


def dog_threshold(dog_scores: np.ndarray, max_rejected: float = 0.005) -> float:
    """The score under which `max_rejected` of these (dog) photos fall, kept within DOG_THRESHOLD_RANGE."""
    if len(dog_scores) == 0:
        return DOG_THRESHOLD_RANGE[0]
    q = float(np.quantile(np.asarray(dog_scores, dtype=np.float64), max_rejected))
    return float(np.clip(q, *DOG_THRESHOLD_RANGE))


def uncertain_threshold(probs: torch.Tensor, labels: torch.Tensor, min_count: int = 10) -> float:
    """The highest top-1 probability c such that held-out photos predicted with confidence below c are right at
    most half of the time (at least `min_count` of them); 0.5 when the held-out photos are too few to say."""
    conf, pred = probs.float().max(1)
    order = torch.argsort(conf)
    conf, correct = conf[order].numpy(), (pred == labels)[order].float().numpy()
    if len(conf) < min_count:
        return 0.5
    running = np.cumsum(correct) / np.arange(1, len(conf) + 1)
    ok = [k for k in range(min_count - 1, len(conf)) if running[k] <= 0.5]
    if not ok:
        return float(np.clip(conf[min_count - 1], *UNCERTAIN_RANGE)) if running[min_count - 1] <= 0.5 else 0.5
    k = max(ok)
    level = conf[k] if k + 1 >= len(conf) else (conf[k] + conf[k + 1]) / 2
    return float(np.clip(level, *UNCERTAIN_RANGE))


@dataclass(frozen=True)
class Calibration:
    temperature: float
    uncertain_below: float
    dog_threshold: float
    holdout_photos: int
    holdout_accuracy: float
    holdout_ece_before: float
    holdout_ece_after: float
    train_dog_rejected: float  # share of train/ photos under the dog threshold

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate(holdout_logits: torch.Tensor, holdout_labels: torch.Tensor, train_dog_scores: np.ndarray
              ) -> Calibration:
    """Everything the model card needs, from held-out logits (N x V x C) and the dog scores of train/."""
    temperature = fit_temperature(holdout_logits, holdout_labels)
    before = view_probabilities(holdout_logits.float(), 1.0)
    after = view_probabilities(holdout_logits.float(), temperature)
    threshold = dog_threshold(train_dog_scores)
    n = len(holdout_labels)
    return Calibration(
        temperature=round(temperature, 4),
        uncertain_below=round(uncertain_threshold(after, holdout_labels), 4),
        dog_threshold=round(threshold, 4),
        holdout_photos=int(n),
        holdout_accuracy=float((after.argmax(1) == holdout_labels).float().mean()) if n else float("nan"),
        holdout_ece_before=expected_calibration_error(before, holdout_labels),
        holdout_ece_after=expected_calibration_error(after, holdout_labels),
        train_dog_rejected=float((np.asarray(train_dog_scores) < threshold).mean()) if len(train_dog_scores)
        else 0.0,
    )
