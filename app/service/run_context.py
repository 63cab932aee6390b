"""From settings to how a run is carried out: the embedder (features and their cache) and the RunContext.

The CLI and the web worker both build their runs here, so a setting means the same in each.
"""

from __future__ import annotations

import threading
from pathlib import Path

from app.config import Settings
from app.engine.context import RunContext, StopCheck, never_stop
from app.engine.embeddings import Embedder, make_embedder
from app.engine.events import EventSink, ignore_event
from app.engine.params import TrainParams
from app.service.store import Store


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


class Embedders:
    """One embedder per backbone, built on first use on the settings' shared cache: a backbone's
    weights load once per process, whichever thread asks first."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._built: dict[str, Embedder] = {}
        self._lock = threading.Lock()

    def __call__(self, backbone: str) -> Embedder:
        with self._lock:
            if backbone not in self._built:
                self._built[backbone] = embedder_for(
                    self._settings, backbone, self._settings.resolved_cache_dir()
                )
            return self._built[backbone]


def project_backbone(store: Store, project_id: str) -> str:
    """The backbone a project's uploads are embedded for: its latest job's, else the default."""
    jobs = store.list_jobs(project_id)
    return jobs[0].params.backbone if jobs else TrainParams().backbone


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
