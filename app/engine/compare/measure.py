"""Measuring an exported model: its size, its predict latency, right or wrong per validation image."""

from __future__ import annotations

import statistics
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.engine.errors import ImageRejected
from app.engine.images import DEFAULT_MAX_PIXELS, model_input
from app.engine.model_zip import OnnxClassifier

LATENCY_RUNS = 10


def model_sizes(zip_path: Path) -> tuple[int, int]:
    """Bytes of model.onnx and of the whole zip."""
    with zipfile.ZipFile(zip_path) as archive:
        return archive.getinfo("model.onnx").file_size, zip_path.stat().st_size


def predict_latency_ms(
    zip_paths: Sequence[Path], image: Path, runs: int = LATENCY_RUNS
) -> list[float]:
    """Median milliseconds for one image through each exported model, decoding included, as a deployment runs it.

    The models take turns, so that a busy machine slows them alike and the comparison stays fair.
    """
    classifiers = [OnnxClassifier.from_zip(path) for path in zip_paths]
    data = image.read_bytes()
    timings: list[list[float]] = [[] for _ in classifiers]
    for run in range(runs + 1):
        for classifier, spent in zip(classifiers, timings, strict=True):
            tick = time.perf_counter()
            classifier.predict_bytes(data)
            if run:  # the first call warms the session up
                spent.append(time.perf_counter() - tick)
    return [round(statistics.median(spent) * 1000, 3) for spent in timings]


def score_zip(
    zip_path: Path,
    paths: Sequence[Path],
    labels: Sequence[int],
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[bool]:
    """Whether the exported model gets each image right (unreadable images count as wrong)."""
    classifier = OnnxClassifier.from_zip(zip_path)
    prep = classifier.preprocessing
    correct = []
    for start in range(0, len(paths), 32):
        arrays, rows = [], []
        for offset, path in enumerate(paths[start : start + 32]):
            try:
                arrays.append(model_input(path, prep, max_pixels=max_pixels))
                rows.append(offset)
            except ImageRejected:
                continue
        predicted = classifier.predict_arrays(np.stack(arrays)).argmax(1) if arrays else []
        hits = {row: int(p) for row, p in zip(rows, predicted, strict=True)}
        correct += [hits.get(k) == labels[start + k] for k in range(len(paths[start : start + 32]))]
    return correct


def validation_outcomes(
    metrics: Mapping[str, Any],
    paths: Sequence[Path],
    labels: Sequence[int],
    zip_path: Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[bool]:
    """Right or wrong per validation image: from the run's list of mistakes, or by re-scoring when that list was cut short."""
    wrong = {m["path"] for m in metrics["misclassified"]}
    n_wrong = metrics["n_val"] - round(metrics["val_accuracy"] * metrics["n_val"])
    if len(paths) == metrics["n_val"] and len(wrong) >= n_wrong:
        return [str(path) not in wrong for path in paths]
    return score_zip(zip_path, paths, labels, max_pixels)
