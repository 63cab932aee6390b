"""Typed training events: one vocabulary for the training core, the job history, the SSE stream and the UI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer


class RunEvent(BaseModel):
    """An event that a comparison tags with the run it belongs to, so one stream can carry two runs."""

    run: str | None = Field(
        None,
        description="In a comparison, the run this event belongs to: transfer or finetune. Absent in a single training.",
    )

    @model_serializer(mode="wrap")
    def _omit_absent_run(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A single training's events (and the epoch history built from them) stay exactly as they were.
        data = handler(self)
        if data.get("run") is None:
            data.pop("run", None)
        return data


class Started(RunEvent):
    type: Literal["started"] = "started"
    mode: str
    backbone: str
    device: str
    n_train: int
    n_val: int
    labels: list[str]
    epochs: int
    stages: list[str] = Field(
        description="The stages this run goes through, in order: embed, head, then refit "
        "(transfer) or finetune, then export."
    )
    validation: Literal["cross-validation", "held-out"] = Field(
        "held-out",
        description="cross-validation: every image is validated out of fold (n_val counts them all) "
        "and the shipped model trains on every one (n_train). held-out: n_val images are kept apart.",
    )


class Progress(RunEvent):
    """Progress within a stage: `done` of `total` units (images or batches), with an ETA in seconds."""

    type: Literal["progress"] = "progress"
    stage: str
    epoch: int | None = None
    done: int
    total: int
    eta_s: float | None = None


class Epoch(RunEvent):
    type: Literal["epoch"] = "epoch"
    stage: str
    epoch: int
    epochs: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float


class Log(RunEvent):
    type: Literal["log"] = "log"
    level: Literal["info", "warning"] = "info"
    message: str


class Done(BaseModel):
    type: Literal["done"] = "done"
    val_accuracy: float
    train_seconds: float
    metrics: dict[str, Any] = Field(default_factory=dict)


class Failed(BaseModel):
    type: Literal["failed"] = "failed"
    error: str


class Cancelled(BaseModel):
    type: Literal["cancelled"] = "cancelled"
    message: str = "Training was cancelled."


class Interrupted(BaseModel):
    """The server stopped (a restart, a crash, a shutdown) while the job was queued or running."""

    type: Literal["interrupted"] = "interrupted"
    message: str


TrainingEvent = Annotated[
    Started | Progress | Epoch | Log | Done | Failed | Cancelled | Interrupted,
    Field(discriminator="type"),
]
TERMINAL_TYPES = frozenset({"done", "failed", "cancelled", "interrupted"})
EventSink = Callable[[BaseModel], None]


def ignore_event(_event: BaseModel) -> None:
    """An event sink that drops everything (the default when nobody listens)."""
