"""What a model's predictions on labelled images come to: accuracy, per class, confusion, mistakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field

from app.engine.calibration import Calibration
from app.engine.estimate import Estimate

MISCLASSIFIED_LIMIT = 100


class Mistake(BaseModel):
    path: str
    true: str
    predicted: str
    probability: float


class SkippedImage(BaseModel):
    path: str
    reason: str


class Evaluation(BaseModel):
    """A model scored on labelled images."""

    val_accuracy: float
    per_class: dict[str, float | None]
    confusion_matrix: list[list[int]] = Field(description="Rows: true class; columns: predicted.")
    labels: list[str]
    misclassified: list[Mistake] = Field(description=f"At most {MISCLASSIFIED_LIMIT}.")
    n_val: int


class CrossValidationSummary(BaseModel):
    """What transfer learning's cross-validation chose."""

    folds: int
    epochs_chosen: int = Field(description="Epochs the final head trained for, chosen out of fold.")
    max_epochs: int


class TrainMetrics(Evaluation):
    """A training run's numbers, as metadata.json and the job record keep them.

    The evaluation's figures (accuracy, per class, confusion matrix, mistakes) all count the
    predictions `estimate` counts: out-of-fold for transfer learning, held-out for fine-tuning.
    """

    estimate: Estimate | None = None
    calibration: Calibration | None = None
    cross_validation: CrossValidationSummary | None = None
    n_train: int = Field(description="Images the shipped model trained on.")
    epochs_run: int
    train_seconds: float
    device: str
    history: list[dict[str, Any]]
    skipped: list[SkippedImage]
    export_seconds: float | None = None
    parity: dict[str, Any] | None = None
    int8: dict[str, Any] | None = None


def classification_metrics(
    probs: torch.Tensor, targets: torch.Tensor, labels: list[str], paths: list[Path]
) -> Evaluation:
    """Accuracy, per-class accuracy, confusion matrix and the mistakes."""
    predicted = probs.argmax(1)
    n = len(labels)
    confusion = torch.zeros(n, n, dtype=torch.long)
    for t, p in zip(targets.tolist(), predicted.tolist(), strict=True):
        confusion[t, p] += 1
    per_class = {
        label: (
            confusion[i, i].item() / row_total if (row_total := int(confusion[i].sum())) else None
        )
        for i, label in enumerate(labels)
    }
    mistakes = [
        Mistake(
            path=str(path),
            true=labels[t],
            predicted=labels[p],
            probability=round(float(probs[i, p]), 4),
        )
        for i, (path, t, p) in enumerate(
            zip(paths, targets.tolist(), predicted.tolist(), strict=True)
        )
        if t != p
    ]
    return Evaluation(
        val_accuracy=(predicted == targets).float().mean().item() if len(targets) else 0.0,
        per_class=per_class,
        confusion_matrix=confusion.tolist(),
        labels=labels,
        misclassified=mistakes[:MISCLASSIFIED_LIMIT],
        n_val=len(targets),
    )
