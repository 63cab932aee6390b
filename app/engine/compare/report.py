"""The comparison's report: each mode's numbers side by side, the recommendation and the data health."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.engine.compare.measure import (
    model_sizes,
)
from app.engine.compare.rule import Paired
from app.engine.estimate import wilson_interval
from app.engine.health.report import HealthReport
from app.engine.params import Mode


class Gap(BaseModel):
    """Training minus validation accuracy: large gaps mean the model memorises rather than generalises."""

    stage: str = Field(
        description="The last training stage, whose epochs these are: head or finetune."
    )
    last: float = Field(description="In the last epoch.")
    best: float = Field(
        description="In the epoch with the best validation accuracy (the one kept)."
    )
    best_epoch: int


class ModeReport(BaseModel):
    mode: Mode
    zip: str
    val_accuracy: float
    val_interval: tuple[float, float] = Field(
        description="95 % Wilson interval of the validation accuracy."
    )
    per_class: dict[str, float | None]
    confusion_matrix: list[list[int]]
    train_seconds: float = Field(
        description="As measured; the first run includes computing the embeddings the second reuses."
    )
    embed_seconds: float = Field(
        description="Seconds this run spent computing embeddings (0 when all were cached)."
    )
    cost_seconds: float = Field(
        description="Training seconds with the embedding counted for both runs alike: what the rule compares."
    )
    export_seconds: float | None
    model_bytes: int = Field(description="Size of model.onnx.")
    zip_bytes: int
    predict_ms_p50: float = Field(
        description="Median milliseconds to classify one image with the exported model, decoding included."
    )
    train_val_gap: Gap
    params: dict[str, Any]
    history: list[dict[str, Any]]


class CompareReport(BaseModel):
    format: Literal["teachbox-compare/1"] = "teachbox-compare/1"
    labels: list[str]
    n_train: int
    n_val: int
    seed: int
    modes: dict[str, ModeReport] = Field(description="Keyed by mode: transfer, finetune.")
    recommendation: Mode
    reason: str
    paired: Paired
    health: HealthReport
    seconds: float


def train_val_gap(history: list[dict[str, Any]]) -> Gap:
    """The gap in the last stage's last epoch and in its best validation epoch."""
    stage = history[-1]["stage"]
    epochs = [h for h in history if h["stage"] == stage]
    best = max(epochs, key=lambda h: h["val_acc"])
    last = epochs[-1]
    return Gap(
        stage=stage,
        last=round(last["train_acc"] - last["val_acc"], 4),
        best=round(best["train_acc"] - best["val_acc"], 4),
        best_epoch=best["epoch"],
    )


def mode_report(
    mode: Mode,
    metadata: dict[str, Any],
    zip_path: Path,
    latency_ms: float,
    embed_seconds: float,
    first_embed_seconds: float,
) -> ModeReport:
    metrics = metadata["metrics"]
    model_bytes, zip_bytes = model_sizes(zip_path)
    n = metrics["n_val"]
    return ModeReport(
        mode=mode,
        zip=str(zip_path),
        val_accuracy=metrics["val_accuracy"],
        val_interval=wilson_interval(round(metrics["val_accuracy"] * n), n),
        per_class=metrics["per_class"],
        confusion_matrix=metrics["confusion_matrix"],
        train_seconds=metrics["train_seconds"],
        embed_seconds=round(embed_seconds, 3),
        cost_seconds=round(metrics["train_seconds"] - embed_seconds + first_embed_seconds, 3),
        export_seconds=metrics.get("export_seconds"),
        model_bytes=model_bytes,
        zip_bytes=zip_bytes,
        predict_ms_p50=latency_ms,
        train_val_gap=train_val_gap(metrics["history"]),
        params=metadata["params"],
        history=metrics["history"],
    )
