"""From settings to how a run is carried out: the embedder (features and their cache) and the RunContext.

The CLI and the web worker both build their runs here, so a setting means the same in each.
"""

from __future__ import annotations

from pathlib import Path

from app.config import Settings
from app.engine.context import RunContext, StopCheck, never_stop
from app.engine.embeddings import Embedder, make_embedder
from app.engine.events import EventSink, ignore_event


def embedder_for(settings: Settings, backbone: str, cache_dir: Path) -> Embedder:
    """The frozen-backbone feature extractor the settings ask for, caching under `cache_dir`."""
    return make_embedder(
        backbone,
        cache_dir,
        settings.device,
        settings.feature_engine,
        settings.weights,
        settings.max_pixels,
    )


def run_context(
    settings: Settings,
    embedder: Embedder,
    on_event: EventSink = ignore_event,
    should_stop: StopCheck = never_stop,
) -> RunContext:
    """A run on the settings' device, weights and pixel cap, reporting to `on_event`."""
    return RunContext(
        embedder,
        on_event=on_event,
        should_stop=should_stop,
        device=settings.device,
        weights_path=settings.weights,
        max_pixels=settings.max_pixels,
        tflite=settings.tflite,
    )
