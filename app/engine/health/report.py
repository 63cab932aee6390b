"""The health report of a dataset and its split: every finding, and the learning curve."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from app.engine.backbones import file_sha256, get_spec
from app.engine.context import StopCheck, never_stop
from app.engine.dataset import Dataset
from app.engine.embeddings import Embedder, EmbeddingCache, EmbedResult
from app.engine.events import EventSink, Progress, ignore_event
from app.engine.health.appearance import (
    class_similarity,
    shorter_side,
    small_image_findings,
    uniform_class_findings,
    unreadable_findings,
)
from app.engine.health.counts import count_findings
from app.engine.health.curve import (
    LearningCurve,
    curve_data,
    curve_possible,
    learning_curve,
    needs_more_finding,
)
from app.engine.health.duplicates import (
    duplicate_findings,
    exact_duplicate_pairs,
    near_duplicate_pairs,
)
from app.engine.health.findings import Finding, SplitImage
from app.engine.health.mislabels import (
    mislabel_findings,
    mislabel_possible,
    suspected_mislabels,
)
from app.engine.params import TrainParams


class HealthReport(BaseModel):
    format: Literal["teachbox-health/1"] = "teachbox-health/1"
    labels: list[str]
    counts: dict[str, dict[str, int]] = Field(description="Images per class in train and val.")
    findings: list[Finding] = Field(description="Warnings first.")
    class_similarity: dict[str, float | None] = Field(
        description="Mean pairwise cosine similarity of each class's embeddings."
    )
    near_duplicate_threshold: float
    learning_curve: LearningCurve | None
    seconds: float


def analyse_health(
    dataset: Dataset,
    *,
    embedder: Embedder,
    params: TrainParams | None = None,
    curve: bool = True,
    on_event: EventSink = ignore_event,
    should_stop: StopCheck = never_stop,
) -> HealthReport:
    """Every finding for this dataset and its split, and (unless `curve` is off) the learning curve."""
    started = time.perf_counter()
    params = params or TrainParams()
    labels = dataset.labels
    images = [SplitImage(s.path, s.label, "train") for s in dataset.train] + [
        SplitImage(s.path, s.label, "val") for s in dataset.val
    ]
    paths = [image.path for image in images]
    with ThreadPoolExecutor(max(1, min(4, len(images)))) as pool:
        hashes = list(pool.map(file_sha256, paths))
        sides = list(pool.map(shorter_side, paths))

    embedded = embed_hashed(embedder, paths, hashes, on_event, should_stop)
    good = [image for image in images if image.path in embedded.vectors]
    vectors = embedded.matrix([image.path for image in good]).astype(np.float32)
    unit = (
        vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        if len(good)
        else vectors
    )
    exact_pairs = exact_duplicate_pairs(hashes)
    near, threshold = near_duplicate_pairs(
        good, unit, {(images[i].path, images[j].path) for i, j, _ in exact_pairs}, params.seed
    )
    similarity = class_similarity(unit, good, labels)
    findings = [
        *unreadable_findings(embedded.rejected, images, labels),
        *count_findings(
            labels,
            {label: sum(labels[image.label] == label for image in images) for label in labels},
        ),
        *duplicate_findings(images, labels, exact_pairs, exact=True),
        *duplicate_findings(good, labels, near, exact=False),
        *small_image_findings(
            images, labels, sides, get_spec(params.backbone).preprocessing.crop_size
        ),
        *uniform_class_findings(similarity),
    ]
    if mislabel_possible(good, len(labels)):
        findings += mislabel_findings(
            suspected_mislabels(good, vectors, labels, params, should_stop)
        )
    learning = (
        learning_curve(curve_data(good, vectors), labels, params, on_event, should_stop)
        if curve and curve_possible(good)
        else None
    )
    findings += needs_more_finding(learning) if learning else []
    findings.sort(key=lambda f: f.severity != "warning")
    return HealthReport(
        labels=labels,
        counts={"train": dataset.counts("train"), "val": dataset.counts("val")},
        findings=findings,
        class_similarity=similarity,
        near_duplicate_threshold=round(threshold, 4),
        learning_curve=learning,
        seconds=round(time.perf_counter() - started, 3),
    )


def embed_hashed(
    embedder: Embedder,
    paths: list[Path],
    hashes: list[str],
    on_event: EventSink,
    should_stop: StopCheck,
) -> EmbedResult:
    """Embeddings for `paths`, whose hashes are known: cached vectors straight from the cache, the rest embedded."""
    keys = [EmbeddingCache.key(embedder.backbone, digest) for digest in hashes]
    cached = embedder.cache.get_many(sorted(set(keys)))
    missing = [path for path, key in zip(paths, keys, strict=True) if key not in cached]

    def progress(done: int, total: int) -> None:
        on_event(Progress(stage="embed", done=done, total=total))

    result = (
        embedder.embed(missing, on_progress=progress, should_stop=should_stop)
        if missing
        else EmbedResult(vectors={})
    )
    result.vectors.update(
        {path: cached[key] for path, key in zip(paths, keys, strict=True) if key in cached}
    )
    return result
