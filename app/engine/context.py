"""How a run is carried out, apart from what it learns and from what: features, events, stopping, device."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from app.engine.embeddings import Embedder
from app.engine.events import EventSink, ignore_event
from app.engine.images import (
    DEFAULT_MAX_PIXELS,
)

StopCheck = Callable[[], bool]


def never_stop() -> bool:
    return False


@dataclass(frozen=True)
class RunContext:
    """How a run is carried out, apart from what it learns (TrainParams) and from what (Dataset):
    where features come from, where events go, when to stop, on what device, with which weights."""

    embedder: Embedder
    on_event: EventSink = ignore_event
    should_stop: StopCheck = never_stop
    device: str = "auto"
    weights_path: Path | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    tflite: bool = False

    def reporting_to(self, on_event: EventSink) -> RunContext:
        return replace(self, on_event=on_event)
