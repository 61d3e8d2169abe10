"""Final evaluation of a model on a split: accuracy, top-k, per-class accuracy, confusion matrix, confused pairs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dogbreed.spreadsheet import write_rows


@dataclass(frozen=True)
class Evaluation:
    split: str
    accuracy: float
    top_k_accuracy: float
    top_k: int
    loss: float
    per_class_accuracy: dict[str, float]
    confusion: np.ndarray  # true x predicted counts
    most_confused: list[tuple[str, str, int]]  # (true, predicted, count)
    predictions: np.ndarray  # predicted class index per example
    calibration_error: float = float("nan")  # expected calibration error of the (calibrated) probabilities
    calibration_error_uncalibrated: float = float("nan")  # the same before temperature scaling

    def metrics(self) -> dict[str, float]:
        p = self.split if self.split != "valid" else "validation"
        out = {f"{p}:accuracy": self.accuracy, f"{p}:top_k_accuracy": self.top_k_accuracy, f"{p}:loss": self.loss}
        if self.calibration_error == self.calibration_error:  # not NaN
            out[f"{p}:ece"] = self.calibration_error
            out[f"{p}:ece_uncalibrated"] = self.calibration_error_uncalibrated
        return out


def evaluate_logits(log_probs: torch.Tensor, labels: torch.Tensor, class_labels: list[str], split: str,
                    top_k: int, calibration_error: float = float("nan"),
                    calibration_error_uncalibrated: float = float("nan")) -> Evaluation:
    n_classes = len(class_labels)
    k = min(top_k, n_classes)
    pred = log_probs.argmax(1)
    top = log_probs.topk(k, dim=1).indices
    n = max(len(labels), 1)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels.numpy(), pred.numpy()), 1)
    totals = confusion.sum(1)
    per_class = {class_labels[i]: float(confusion[i, i] / totals[i]) for i in range(n_classes) if totals[i]}
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    pairs = [(class_labels[i], class_labels[j], int(off[i, j])) for i, j in zip(*np.nonzero(off))]
    pairs.sort(key=lambda t: -t[2])
    return Evaluation(
        split=split,
        accuracy=float((pred == labels).sum()) / n,
        top_k_accuracy=float((top == labels[:, None]).any(1).sum()) / n,
        top_k=k,
        loss=float(torch.nn.functional.nll_loss(log_probs.float(), labels)) if len(labels) else float("nan"),
        per_class_accuracy=per_class,
        confusion=confusion,
        most_confused=pairs[:20],
        predictions=pred.numpy(),
        calibration_error=calibration_error,
        calibration_error_uncalibrated=calibration_error_uncalibrated,
    )


def write_evaluation(ev: Evaluation, class_labels: list[str], out_dir: Path) -> list[Path]:
    """Writes confusion matrix (CSV, PNG), per-class accuracy and most-confused pairs; returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    s = ev.split
    cm_csv, cm_png = out_dir / f"{s}_confusion_matrix.csv", out_dir / f"{s}_confusion_matrix.png"
    per_class_csv, pairs_csv = out_dir / f"{s}_per_class_accuracy.csv", out_dir / f"{s}_most_confused.csv"
    with cm_csv.open("w", newline="") as f:
        write_rows(f, [["true\\predicted", *class_labels],
                       *([label, *row.tolist()] for label, row in zip(class_labels, ev.confusion))])
    with per_class_csv.open("w", newline="") as f:
        write_rows(f, [["class", "accuracy"], *([label, f"{acc:.4f}"] for label, acc in
                                                sorted(ev.per_class_accuracy.items(), key=lambda t: t[1]))])
    with pairs_csv.open("w", newline="") as f:
        write_rows(f, [["true", "predicted", "count"], *ev.most_confused])
    _plot_confusion(ev.confusion, class_labels, cm_png, f"{s}: accuracy {ev.accuracy:.1%}")
    return [cm_csv, cm_png, per_class_csv, pairs_csv]


def _plot_confusion(confusion: np.ndarray, labels: list[str], path: Path, title: str) -> None:
    from dogbreed.plots import new_figure, save

    n = len(labels)
    size = min(4 + n * 0.18, 28)
    fig, ax = new_figure((size, size))
    rows = confusion.sum(1, keepdims=True).clip(min=1)
    ax.imshow(confusion / rows, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(n)
    fontsize = max(4, min(10, 400 / max(n, 1)))
    ax.set_xticks(ticks, labels, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, labels, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    save(fig, path)
