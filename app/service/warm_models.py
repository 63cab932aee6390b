"""Exported models kept loaded for predict, a few at a time, and the batcher they share."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from PIL import Image

from app.engine.errors import Conflict
from app.engine.images import model_input
from app.engine.model_zip import OnnxClassifier
from app.service.batching import BatchTiming, PredictBatcher
from app.service.records import Job
from app.service.store import Store


class WarmModels:
    """Exported models kept loaded for predict, a few at a time, least recently used dropped first."""

    def __init__(self, store: Store, size: int, max_batch: int = 16) -> None:
        self._store = store
        self._size = size
        self._lock = threading.Lock()
        self._models: OrderedDict[str, OnnxClassifier] = OrderedDict()
        self.batcher = PredictBatcher(max_batch)

    def predict(self, job: Job, image: Image.Image) -> tuple[list[str], np.ndarray, BatchTiming]:
        """The labels and one image's probabilities, run together with any predictions queued beside it."""
        classifier = self.get(job)
        probabilities, timing = self.batcher.predict(
            classifier, model_input(image, classifier.preprocessing)
        )
        return classifier.labels, probabilities, timing

    def get(self, job: Job) -> OnnxClassifier:
        with self._lock:
            if job.id in self._models:
                self._models.move_to_end(job.id)
                return self._models[job.id]
        path = self._store.model_path(job)
        if not path.is_file():
            raise Conflict(
                f"The model file of job {job.id} is missing from the data folder. Train the project again."
            )
        model = OnnxClassifier.from_zip(path)
        with self._lock:
            self._models[job.id] = model
            while len(self._models) > self._size:
                self._models.popitem(last=False)
        return model

    def forget(self, job_ids: Sequence[str]) -> None:
        with self._lock:
            for job_id in job_ids:
                self._models.pop(job_id, None)
