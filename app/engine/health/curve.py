"""Would more images help? Transfer-mode accuracy as the training set grows, overall and per class."""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field

from app.engine.context import StopCheck, never_stop
from app.engine.events import EventSink, Progress, ignore_event
from app.engine.head import Embedded, single_thread
from app.engine.health.batched_heads import train_heads
from app.engine.health.findings import Finding, FindingKind, SplitImage
from app.engine.health.wording import quoted, signed_points
from app.engine.params import DEFAULT_EPOCHS, Mode, TrainParams

CURVE_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
CURVE_REPEATS = 2
# "Still rising": at least this gain in accuracy per doubling of the training images (50 -> 100 %).
RISING_GAIN_PER_DOUBLING = 0.03

Trend = Literal["rising", "flat", "falling"]


class LearningCurve(BaseModel):
    """Transfer-mode accuracy on the same validation images as the training set grows."""

    fractions: list[float]
    n_train: list[int]
    accuracy: list[float]
    per_class: dict[str, list[float | None]]
    gain_per_doubling: float = Field(
        description="Accuracy gained per doubling of the training images, from 50 to 100 %."
    )
    class_gain_per_doubling: dict[str, float | None]
    trend: dict[str, Trend] = Field(description="Per class, from its gain per doubling.")
    needs_more: list[str] = Field(
        description="Classes still rising at 100 %: more images of them would help."
    )
    summary: str
    epochs: int
    repeats: int
    seconds: float


def curve_possible(images: list[SplitImage]) -> bool:
    return any(image.split == "train" for image in images) and any(
        image.split == "val" for image in images
    )


def curve_data(images: list[SplitImage], vectors: np.ndarray) -> Embedded:
    """The embeddings (rows of `vectors`, in the order of `images`) as training and validation tensors."""

    def split(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        index = [k for k, image in enumerate(images) if image.split == name]
        return torch.from_numpy(vectors[index]), torch.tensor(
            [images[k].label for k in index], dtype=torch.long
        )

    return Embedded(*split("train"), *split("val"))


def nested_subsets(labels: Sequence[int], fractions: Sequence[float], seed: int) -> list[list[int]]:
    """For each fraction, that share of each class (at least one image), each subset inside the next."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_class[label].append(index)
    rng = random.Random(seed)
    for members in by_class.values():
        rng.shuffle(members)
    return [
        sorted(
            i for members in by_class.values() for i in members[: max(1, round(len(members) * f))]
        )
        for f in fractions
    ]


def gain_per_doubling(n_train: Sequence[int], accuracy: Sequence[float | None]) -> float | None:
    """Least-squares slope of accuracy against log2(images) over the upper half of the curve."""
    points = [
        (math.log2(n), a) for n, a in zip(n_train, accuracy, strict=True) if a is not None and n > 0
    ][-3:]
    if len(points) < 2 or points[0][0] == points[-1][0]:
        return None
    x, y = np.array(points).T
    return float(np.polyfit(x, y, 1)[0])


def trend_of(gain: float | None, final: float | None, n_val: int) -> Trend:
    """Rising or falling only when the change per doubling beats both the floor and one standard error of the accuracy."""
    if gain is None or final is None or n_val == 0:
        return "flat"
    noise = math.sqrt(max(final * (1 - final), 0.25 / n_val) / n_val)
    if abs(gain) < max(RISING_GAIN_PER_DOUBLING, noise):
        return "flat"
    return "rising" if gain > 0 else "falling"


def per_class_accuracy(
    predicted: torch.Tensor, targets: torch.Tensor, n_classes: int
) -> list[float | None]:
    out: list[float | None] = []
    for c in range(n_classes):
        mask = targets == c
        out.append(float((predicted[mask] == c).float().mean()) if mask.any() else None)
    return out


def learning_curve(
    emb: Embedded,
    labels: list[str],
    params: TrainParams,
    on_event: EventSink = ignore_event,
    should_stop: StopCheck = never_stop,
    repeats: int = CURVE_REPEATS,
) -> LearningCurve:
    """Train the transfer head on 25/50/75/100 % of the training embeddings; score on the same validation set."""
    started = time.perf_counter()
    epochs = params.epochs or DEFAULT_EPOCHS[Mode.TRANSFER]
    draws = [
        nested_subsets(emb.y_train.tolist(), CURVE_FRACTIONS, params.seed + r)
        for r in range(repeats)
    ]
    on_event(Progress(stage="health", done=0, total=1))
    with single_thread():  # tiny tensors: thread hand-offs cost more than they save
        predicted = train_heads(
            emb,
            [subset for draw in draws for subset in draw],
            len(labels),
            params,
            epochs,
            should_stop,
        )
    on_event(Progress(stage="health", done=1, total=1))
    scores = np.array(
        [
            [
                float((p == emb.y_val).float().mean()),
                *[
                    np.nan if a is None else a
                    for a in per_class_accuracy(p, emb.y_val, len(labels))
                ],
            ]
            for p in predicted
        ]
    ).reshape(repeats, len(CURVE_FRACTIONS), -1)
    return curve_report(
        labels,
        [len(s) for s in draws[0]],
        scores.mean(0),
        [int((emb.y_val == c).sum()) for c in range(len(labels))],
        epochs,
        repeats,
        time.perf_counter() - started,
    )


def curve_report(
    labels: list[str],
    sizes: list[int],
    means: np.ndarray,
    val_counts: list[int],
    epochs: int,
    repeats: int,
    seconds: float,
) -> LearningCurve:
    """The curve from the mean scores (a row per fraction; overall accuracy, then one column per class)."""

    def column(k: int) -> list[float | None]:
        return [None if math.isnan(v) else round(float(v), 4) for v in means[:, k]]

    per_class = {label: column(c + 1) for c, label in enumerate(labels)}
    gains = {label: gain_per_doubling(sizes, acc) for label, acc in per_class.items()}
    trend = {
        label: trend_of(gains[label], per_class[label][-1], val_counts[c])
        for c, label in enumerate(labels)
    }
    needs_more = [
        label
        for label in labels
        if trend[label] == "rising" and (per_class[label][-1] or 0.0) < 1.0
    ]
    overall_curve = [v or 0.0 for v in column(0)]
    overall = gain_per_doubling(sizes, overall_curve) or 0.0
    rising = trend_of(overall, overall_curve[-1], sum(val_counts)) == "rising"
    return LearningCurve(
        fractions=list(CURVE_FRACTIONS),
        n_train=sizes,
        accuracy=overall_curve,
        per_class=per_class,
        gain_per_doubling=round(overall, 4),
        class_gain_per_doubling={k: None if g is None else round(g, 4) for k, g in gains.items()},
        trend=trend,
        needs_more=needs_more,
        summary=curve_summary(overall, rising, needs_more, gains),
        epochs=epochs,
        repeats=repeats,
        seconds=round(seconds, 3),
    )


def curve_summary(
    overall: float, rising: bool, needs_more: list[str], gains: dict[str, float | None]
) -> str:
    most = f", most for {quoted(needs_more)}" if needs_more else ""
    if rising:
        return f"Accuracy still rises by {overall * 100:.0f} points per doubling of the training images: more images would help{most}."
    if needs_more:
        still = ", ".join(f"'{label}' +{(gains[label] or 0) * 100:.0f}" for label in needs_more)
        return (
            f"Overall accuracy has levelled off ({signed_points(overall)} points per doubling of the training images), but "
            f"{quoted(needs_more)} still improve ({still} points per doubling): add images of {'it' if len(needs_more) == 1 else 'them'}."
        )
    return (
        f"Accuracy has levelled off ({signed_points(overall)} points per doubling of the training images): more images of the same "
        "kind would help little; more varied images, or fine-tuning, might."
    )


def needs_more_finding(curve: LearningCurve) -> list[Finding]:
    if not curve.needs_more:
        return []
    gains = ", ".join(
        ("" if len(curve.needs_more) == 1 else f"'{label}' ")
        + f"+{(curve.class_gain_per_doubling[label] or 0) * 100:.0f}"
        for label in curve.needs_more
    )
    return [
        Finding(
            kind=FindingKind.NEEDS_MORE_IMAGES,
            severity="info",
            classes=curve.needs_more,
            message=f"{quoted(curve.needs_more)} still {'improves' if len(curve.needs_more) == 1 else 'improve'} as images are added "
            f"({gains} points per doubling of the training images): more images of {'it' if len(curve.needs_more) == 1 else 'them'} would help.",
        )
    ]
