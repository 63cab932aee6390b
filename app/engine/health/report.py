"""Data health: what in a project's images will mislead training or its numbers, and whether more would help.

Everything here runs on what training computes anyway (file hashes, image headers and the cached
embeddings), so it can be shown before training and added to every report. The thresholds were
measured on the shared photo sets; each is documented where it is defined.
"""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from itertools import combinations
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field
from torch import nn

from app.engine.backbones import file_sha256, get_spec
from app.engine.dataset import Dataset
from app.engine.embeddings import Embedder, EmbeddingCache, EmbedResult
from app.engine.errors import ImageRejected, TrainingCancelled
from app.engine.events import EventSink, Progress, ignore_event
from app.engine.images import decode_image
from app.engine.params import DEFAULT_EPOCHS, Mode, TrainParams
from app.engine.training import WEIGHT_DECAY, Embedded, StopCheck, never_stop, single_thread

# Below this many images a class is unreliable; from 30 on, its per-class numbers settle.
RECOMMENDED_IMAGES_PER_CLASS = 10
STABLE_IMAGES_PER_CLASS = 30
IMBALANCE_INFO_RATIO = 2.0
IMBALANCE_WARNING_RATIO = 3.0
# Cosine similarity of MobileNetV2 embeddings. On flowers-dev all 9 pairs at or above 0.935 are one
# photo twice (recoloured, re-cropped, framed; the lowest is 0.944); of the 16 pairs between 0.90 and
# 0.935 only 6 are, and the most similar different photos score 0.931. clothing-dev peaks at 0.913.
NEAR_DUPLICATE_SIMILARITY = 0.935
# On sets whose images are all alike (greyscale textures) the absolute threshold would flag everything:
# a near-duplicate must also be closer than this fraction of the median pairwise distance (0.44 on
# both photo sets, which puts this bound at the same 0.935 there).
NEAR_DUPLICATE_RELATIVE_DISTANCE = 0.15
# Look-alike textures (noise, gratings, weaves) reach 0.99 without being one picture, so a candidate pair
# must also agree pixel for pixel: 16x16 greyscale thumbnails correlated at least this much. Measured on
# candidates: flowers-dev keeps 7 of 9 (it loses two zoomed re-crops); synthetic gratings 0 of 15,
# weaves 1 of 12, uniform noise finishes 19 of 717.
THUMBNAIL_SIZE = 16
THUMBNAIL_CORRELATION = 0.5
MEDIAN_SAMPLE_ROWS = 256
PAIRS_LISTED = 50
# The network sees a 224-pixel crop; below half of that an image is blown up more than twice.
SMALL_IMAGE_FRACTION_OF_INPUT = 0.5
SMALL_IMAGES_WARNING_SHARE = 0.25
# A class is "all alike" when its images are this much closer to each other (mean cosine distance)
# than the median class. Photo classes on flowers-dev and clothing-dev range 0.32-0.42, ratio >= 0.8.
UNIFORM_CLASS_DISTANCE_RATIO = 0.5
CURVE_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
CURVE_REPEATS = 2
# "Still rising": at least this gain in accuracy per doubling of the training images (50 -> 100 %).
RISING_GAIN_PER_DOUBLING = 0.03


class FindingKind(StrEnum):
    TOO_FEW_IMAGES = "too_few_images"
    CLASS_IMBALANCE = "class_imbalance"
    DUPLICATE_ACROSS_CLASSES = "duplicate_across_classes"
    DUPLICATE_ACROSS_SPLIT = "duplicate_across_split"
    DUPLICATE_WITHIN_CLASS = "duplicate_within_class"
    NEAR_DUPLICATE_ACROSS_CLASSES = "near_duplicate_across_classes"
    NEAR_DUPLICATE_ACROSS_SPLIT = "near_duplicate_across_split"
    NEAR_DUPLICATE_WITHIN_CLASS = "near_duplicate_within_class"
    SMALL_IMAGES = "small_images"
    UNIFORM_CLASS = "uniform_class"
    UNREADABLE_IMAGES = "unreadable_images"
    NEEDS_MORE_IMAGES = "needs_more_images"


Severity = Literal["warning", "info"]


class ImagePair(BaseModel):
    a: str
    b: str
    classes: list[str]
    splits: list[str]
    similarity: float = Field(
        description="Cosine similarity of the two images' embeddings (1.0 for exact copies)."
    )


class Finding(BaseModel):
    """One problem in the data: what it is, how much it matters, where, and what to do."""

    kind: FindingKind
    severity: Severity
    classes: list[str] = Field(description="The classes involved.")
    images: list[str] = Field(default_factory=list, description="The image files involved (paths).")
    pairs: list[ImagePair] = Field(
        default_factory=list, description=f"Duplicate findings: the pairs (at most {PAIRS_LISTED})."
    )
    message: str = Field(description="A plain sentence that says what is wrong and what to do.")


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
    trend: dict[str, Literal["rising", "flat", "falling"]] = Field(
        description="Per class, from its gain per doubling."
    )
    needs_more: list[str] = Field(
        description="Classes still rising at 100 %: more images of them would help."
    )
    summary: str
    epochs: int
    repeats: int
    seconds: float


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


@dataclass(frozen=True)
class Entry:
    path: Path
    label: int
    split: str


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else many or word + 's'}"


def join_and(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def quoted(names: Sequence[str]) -> str:
    return join_and([f"'{n}'" for n in names])


# ---------------------------------------------------------------- counts


def count_findings(labels: list[str], totals: dict[str, int]) -> list[Finding]:
    """Too few images per class, and imbalance between the largest and the smallest class."""
    findings = []
    for label in labels:
        n = totals[label]
        if n < RECOMMENDED_IMAGES_PER_CLASS:
            findings.append(
                Finding(
                    kind=FindingKind.TOO_FEW_IMAGES,
                    severity="warning",
                    classes=[label],
                    message=f"'{label}' has {plural(n, 'image')}; a class needs at least {RECOMMENDED_IMAGES_PER_CLASS} to be "
                    f"recognised reliably and {STABLE_IMAGES_PER_CLASS} for stable numbers. Add {RECOMMENDED_IMAGES_PER_CLASS - n} or more.",
                )
            )
    few = [
        label
        for label in labels
        if RECOMMENDED_IMAGES_PER_CLASS <= totals[label] < STABLE_IMAGES_PER_CLASS
    ]
    if few:
        counts = join_and([f"'{label}' ({totals[label]})" for label in few])
        findings.append(
            Finding(
                kind=FindingKind.TOO_FEW_IMAGES,
                severity="info",
                classes=few,
                message=f"Fewer than {STABLE_IMAGES_PER_CLASS} images in {counts}: the model works, but its accuracy figures "
                f"for {'this class' if len(few) == 1 else 'these classes'} are rough. Add images toward {STABLE_IMAGES_PER_CLASS} each.",
            )
        )
    return findings + imbalance_findings(totals)


def imbalance_findings(totals: dict[str, int]) -> list[Finding]:
    largest, smallest = max(totals, key=totals.__getitem__), min(totals, key=totals.__getitem__)
    if totals[smallest] == 0:
        return []
    ratio = totals[largest] / totals[smallest]
    if ratio < IMBALANCE_INFO_RATIO:
        return []
    small = [
        label for label, n in totals.items() if totals[largest] / max(n, 1) >= IMBALANCE_INFO_RATIO
    ]
    return [
        Finding(
            kind=FindingKind.CLASS_IMBALANCE,
            severity="warning" if ratio >= IMBALANCE_WARNING_RATIO else "info",
            classes=[largest, *[s for s in small if s != largest]],
            message=f"'{largest}' has {totals[largest]} images and '{smallest}' only {totals[smallest]} ({ratio:.1f}×), so the "
            f"model will lean towards '{largest}'. Add images to {quoted(small)} or remove some from '{largest}'.",
        )
    ]


# ---------------------------------------------------------------- duplicates


def scope_of(a: Entry, b: Entry) -> str:
    if a.label != b.label:
        return "across_classes"
    return "across_split" if a.split != b.split else "within_class"


def exact_duplicate_pairs(hashes: list[str]) -> list[tuple[int, int, float]]:
    """Every pair of files with the same content, with similarity 1.0."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, digest in enumerate(hashes):
        groups[digest].append(index)
    return [(i, j, 1.0) for group in groups.values() for i, j in combinations(group, 2)]


def median_distance(unit: np.ndarray, seed: int) -> float:
    """Median cosine distance between two different images, from up to MEDIAN_SAMPLE_ROWS images against all."""
    n = len(unit)
    if n < 2:
        return 1.0
    rows = np.random.default_rng(seed).choice(n, size=min(n, MEDIAN_SAMPLE_ROWS), replace=False)
    distances = 1.0 - unit[rows] @ unit.T
    distances[np.arange(len(rows)), rows] = np.nan  # an image and itself
    return float(np.nanmedian(distances))


def near_duplicate_threshold(unit: np.ndarray, seed: int = 0) -> float:
    return max(
        NEAR_DUPLICATE_SIMILARITY,
        1.0 - NEAR_DUPLICATE_RELATIVE_DISTANCE * median_distance(unit, seed),
    )


def similar_pairs(
    unit: np.ndarray, threshold: float, block: int = 1024
) -> list[tuple[int, int, float]]:
    """Every pair (i < j) whose cosine similarity reaches `threshold`, in blocks so memory stays bounded."""
    pairs = []
    for start in range(0, len(unit), block):
        sims = unit[start : start + block] @ unit.T
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if c > start + r:
                pairs.append((start + r, c, float(sims[r, c])))
    return pairs


def thumbnail(path: Path) -> np.ndarray | None:
    """A tiny greyscale version of the image, zero-mean and unit-length, for comparing pixels."""
    try:
        image = decode_image(path, draft_shorter_side=4 * THUMBNAIL_SIZE)
    except (ImageRejected, OSError):
        return None
    pixels = np.asarray(
        image.convert("L").resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BOX),
        dtype=np.float32,
    ).ravel()
    pixels -= pixels.mean()
    return pixels / max(float(np.linalg.norm(pixels)), 1e-6)


def same_picture(
    pairs: list[tuple[int, int, float]], paths: list[Path]
) -> list[tuple[int, int, float]]:
    """The candidate pairs whose thumbnails also agree: one photo, perhaps edited, not two look-alikes."""
    involved = sorted({k for i, j, _ in pairs for k in (i, j)})
    with ThreadPoolExecutor(max(1, min(4, len(involved)))) as pool:
        thumbs = dict(zip(involved, pool.map(lambda k: thumbnail(paths[k]), involved), strict=True))
    return [
        (i, j, s)
        for i, j, s in pairs
        if thumbs[i] is not None
        and thumbs[j] is not None
        and float(thumbs[i] @ thumbs[j]) >= THUMBNAIL_CORRELATION
    ]


def duplicate_findings(
    entries: list[Entry], labels: list[str], pairs: list[tuple[int, int, float]], exact: bool
) -> list[Finding]:
    by_scope: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    for i, j, similarity in pairs:
        by_scope[scope_of(entries[i], entries[j])].append((i, j, similarity))
    findings = []
    for scope, found in by_scope.items():
        found.sort(key=lambda pair: -pair[2])
        kind = FindingKind(("duplicate_" if exact else "near_duplicate_") + scope)
        listed = [
            ImagePair(
                a=str(entries[i].path),
                b=str(entries[j].path),
                classes=[labels[entries[i].label], labels[entries[j].label]],
                splits=[entries[i].split, entries[j].split],
                similarity=round(s, 4),
            )
            for i, j, s in found[:PAIRS_LISTED]
        ]
        involved = sorted({str(entries[k].path) for i, j, _ in found for k in (i, j)})
        classes = sorted({labels[entries[k].label] for i, j, _ in found for k in (i, j)})
        findings.append(
            Finding(
                kind=kind,
                severity="info" if scope == "within_class" else "warning",
                classes=classes,
                images=involved,
                pairs=listed,
                message=duplicate_message(kind, found, entries, labels),
            )
        )
    return findings


def duplicate_message(
    kind: FindingKind, found: list[tuple[int, int, float]], entries: list[Entry], labels: list[str]
) -> str:
    i, j, similarity = found[0]
    a, b = entries[i], entries[j]
    example = f"'{a.path.name}' in '{labels[a.label]}' and '{b.path.name}' in '{labels[b.label]}'"
    n = len(found)
    val_images = len({k for i, j, _ in found for k in (i, j) if entries[k].split == "val"})
    messages = {
        FindingKind.DUPLICATE_ACROSS_CLASSES: f"{plural(n, 'picture')} {'appears' if n == 1 else 'appear'} in two classes (for example {example}): the model is "
        "taught two answers for one picture. Keep each image in its right class only.",
        FindingKind.DUPLICATE_ACROSS_SPLIT: f"{plural(val_images, 'validation image')} {'has' if val_images == 1 else 'have'} an exact "
        "copy among the training images, so validation accuracy looks better than it is. Delete one copy of each.",
        FindingKind.DUPLICATE_WITHIN_CLASS: f"{plural(n, 'image')} {'is an exact copy' if n == 1 else 'are exact copies'} of another "
        f"in the same class (for example {example}) and count twice. Delete the copies.",
        FindingKind.NEAR_DUPLICATE_ACROSS_CLASSES: f"{plural(n, 'pair')} of near-identical images sit in different classes (for example "
        f"{example}, similarity {similarity:.3f}). Check their labels and keep each picture in one class.",
        FindingKind.NEAR_DUPLICATE_ACROSS_SPLIT: f"{plural(val_images, 'validation image')} {'has' if val_images == 1 else 'have'} a "
        f"near-copy among the training images (the same photo, perhaps edited or resized; for example {example}), so validation "
        "accuracy looks better than it is. Delete one image of each pair.",
        FindingKind.NEAR_DUPLICATE_WITHIN_CLASS: f"{plural(n, 'pair')} of near-identical images in the same class (for example {example}) "
        "add little. Replace one of each with a more varied photo.",
    }
    return messages[kind]


# ---------------------------------------------------------------- sizes and sameness


def shorter_side(path: Path) -> int | None:
    """The shorter side from the image header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return min(image.size)
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def small_image_findings(
    entries: list[Entry], labels: list[str], sides: list[int | None], input_size: int
) -> list[Finding]:
    limit = round(input_size * SMALL_IMAGE_FRACTION_OF_INPUT)
    findings = []
    for label_index, label in enumerate(labels):
        members = [k for k, e in enumerate(entries) if e.label == label_index]
        small = [k for k in members if sides[k] is not None and sides[k] < limit]
        if not small:
            continue
        share = len(small) / len(members)
        findings.append(
            Finding(
                kind=FindingKind.SMALL_IMAGES,
                severity="warning" if share >= SMALL_IMAGES_WARNING_SHARE else "info",
                classes=[label],
                images=[str(entries[k].path) for k in small],
                message=f"{len(small)} of {len(members)} images in '{label}' are under {limit} pixels on their shorter side (the model "
                f"looks at {input_size}×{input_size}), so they are blown up and blurry"
                + (
                    " and the model may learn blur as a sign of this class"
                    if share >= SMALL_IMAGES_WARNING_SHARE
                    else ""
                )
                + ". Use larger photos.",
            )
        )
    return findings


def class_similarity(
    unit: np.ndarray, entries: list[Entry], labels: list[str]
) -> dict[str, float | None]:
    """Mean pairwise cosine similarity within each class (None below two images)."""
    means: dict[str, float | None] = {}
    for label_index, label in enumerate(labels):
        members = unit[[k for k, e in enumerate(entries) if e.label == label_index]]
        n = len(members)
        if n < 2:
            means[label] = None
            continue
        total = members.sum(0)
        means[label] = round(float((total @ total - n) / (n * (n - 1))), 4)
    return means


def uniform_class_findings(similarity: dict[str, float | None]) -> list[Finding]:
    known = {label: s for label, s in similarity.items() if s is not None}
    findings = []
    for label, s in known.items():
        others = [1.0 - o for other, o in known.items() if other != label]
        if not others:
            continue
        typical = float(np.median(others))
        if 1.0 - s < UNIFORM_CLASS_DISTANCE_RATIO * typical:
            findings.append(
                Finding(
                    kind=FindingKind.UNIFORM_CLASS,
                    severity="warning",
                    classes=[label],
                    message=f"The images of '{label}' are nearly all alike (mean similarity {s:.2f}, against {1 - typical:.2f} in the other "
                    "classes): probably one background, lighting or object. Add photos of it in other settings, or the model may learn "
                    "the setting instead of the class.",
                )
            )
    return findings


# ---------------------------------------------------------------- would more data help?


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


def trend_of(
    gain: float | None, final: float | None, n_val: int
) -> Literal["rising", "flat", "falling"]:
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


def train_heads(
    emb: Embedded,
    subsets: Sequence[Sequence[int]],
    n_classes: int,
    params: TrainParams,
    epochs: int,
    should_stop: StopCheck = never_stop,
) -> torch.Tensor:
    """Train one linear head per subset of the training embeddings, all at once; their validation predictions.

    The recipe of `train_head` (Adam with L2 weight decay, minibatches, the best validation
    epoch kept), batched over heads: eight heads on flowers-dev take about 0.5 s together on one
    thread, about what one `train_head` call takes alone.
    """
    by_size = sorted(
        range(len(subsets)), key=lambda h: -len(subsets[h])
    )  # heads still batching form a prefix
    subsets = [subsets[h] for h in by_size]
    generator = torch.Generator().manual_seed(params.seed)
    n_heads, dim = len(subsets), emb.x_train.shape[1]
    bound = 1 / math.sqrt(dim)
    weight = (
        (torch.rand(n_heads, dim, n_classes, generator=generator) * 2 - 1) * bound
    ).requires_grad_()
    bias = (
        (torch.rand(n_heads, 1, n_classes, generator=generator) * 2 - 1) * bound
    ).requires_grad_()
    adam = [(p, torch.zeros_like(p), torch.zeros_like(p)) for p in (weight, bias)]
    steps = torch.zeros(n_heads, 1, 1)
    n_batches = [math.ceil(len(s) / params.batch_size) for s in subsets]
    best = (torch.full((n_heads,), -1.0), torch.full((n_heads,), math.inf))
    best_params = (weight.detach().clone(), bias.detach().clone())
    for _ in range(epochs):
        orders = [torch.tensor(s)[torch.randperm(len(s), generator=generator)] for s in subsets]
        for step in range(n_batches[0]):
            if should_stop():
                raise TrainingCancelled
            k = sum(n > step for n in n_batches)
            index, mask = batch_indices(orders[:k], step, params.batch_size)
            logits = torch.baddbmm(bias[:k], emb.x_train[index], weight[:k])
            losses = nn.functional.cross_entropy(
                logits.flatten(0, 1), emb.y_train[index].flatten(), reduction="none"
            ).view_as(mask)
            ((losses * mask).sum(1) / mask.sum(1)).sum().backward()
            active = (torch.arange(n_heads) < k).float().view(-1, 1, 1)
            adam_step(adam, steps.add_(active), active, params.learning_rate)
        best, best_params = keep_best(emb, weight, bias, best, best_params)
    with torch.no_grad():
        predicted = torch.baddbmm(
            best_params[1], emb.x_val.expand(n_heads, -1, -1), best_params[0]
        ).argmax(2)
    return predicted[torch.tensor(by_size).argsort()]


def batch_indices(
    orders: list[torch.Tensor], step: int, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each head's `step`-th minibatch, padded to one shape; the mask marks the real rows."""
    index = torch.zeros(len(orders), batch_size, dtype=torch.long)
    mask = torch.zeros(len(orders), batch_size)
    for h, order in enumerate(orders):
        rows = order[step * batch_size : (step + 1) * batch_size]
        index[h, : len(rows)], mask[h, : len(rows)] = rows, 1.0
    return index, mask


@torch.no_grad()
def adam_step(
    adam: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    steps: torch.Tensor,
    active: torch.Tensor,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> None:
    """torch.optim.Adam's update with L2 weight decay, applied only to the heads that had a batch."""
    t = steps.clamp(min=1)
    for param, mean, square in adam:
        grad = param.grad + WEIGHT_DECAY * param
        mean.copy_(torch.where(active > 0, betas[0] * mean + (1 - betas[0]) * grad, mean))
        square.copy_(
            torch.where(active > 0, betas[1] * square + (1 - betas[1]) * grad * grad, square)
        )
        update = lr * (mean / (1 - betas[0] ** t)) / ((square / (1 - betas[1] ** t)).sqrt() + eps)
        param.sub_(update * active)
        param.grad = None


@torch.no_grad()
def keep_best(
    emb: Embedded,
    weight: torch.Tensor,
    bias: torch.Tensor,
    best: tuple[torch.Tensor, torch.Tensor],
    best_params: tuple[torch.Tensor, torch.Tensor],
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Keep each head's weights from its best epoch so far, by validation accuracy, then loss (as `train_head` does)."""
    logits = torch.baddbmm(bias, emb.x_val.expand(len(weight), -1, -1), weight)
    accuracy = (logits.argmax(2) == emb.y_val).float().mean(1)
    loss = torch.stack(
        [nn.functional.cross_entropy(head_logits, emb.y_val) for head_logits in logits]
    )
    better = (accuracy > best[0]) | ((accuracy == best[0]) & (loss < best[1]))
    pick = better.view(-1, 1, 1)
    return (
        (torch.where(better, accuracy, best[0]), torch.where(better, loss, best[1])),
        (torch.where(pick, weight, best_params[0]), torch.where(pick, bias, best_params[1])),
    )


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


def signed_points(gain: float) -> str:
    """A gain as signed percentage points with one decimal, never '-0.0'."""
    return f"{round(gain * 100, 1) + 0.0:+.1f}"


def curve_summary(
    overall: float, rising: bool, needs_more: list[str], gains: dict[str, float | None]
) -> str:
    most = f", most for {quoted(needs_more)}" if needs_more else ""
    if rising:
        return f"Accuracy still rises by {overall * 100:.0f} points per doubling of the training images: more images would help{most}."
    if needs_more:
        rising = ", ".join(f"'{label}' +{(gains[label] or 0) * 100:.0f}" for label in needs_more)
        return (
            f"Overall accuracy has levelled off ({signed_points(overall)} points per doubling of the training images), but "
            f"{quoted(needs_more)} still improve ({rising} points per doubling): add images of {'it' if len(needs_more) == 1 else 'them'}."
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


# ---------------------------------------------------------------- the report


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
    entries = [Entry(s.path, s.label, "train") for s in dataset.train] + [
        Entry(s.path, s.label, "val") for s in dataset.val
    ]
    with ThreadPoolExecutor(max(1, min(4, len(entries)))) as pool:
        hashes = list(pool.map(file_sha256, [e.path for e in entries]))
        sides = list(pool.map(shorter_side, [e.path for e in entries]))

    embedded = embed_hashed(embedder, [e.path for e in entries], hashes, on_event, should_stop)
    good = [e for e in entries if e.path in embedded.vectors]
    vectors = embedded.matrix([e.path for e in good]).astype(np.float32)
    unit = (
        vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        if len(good)
        else vectors
    )
    exact_pairs = exact_duplicate_pairs(hashes)
    near, threshold = near_duplicate_pairs(
        good, unit, {(entries[i].path, entries[j].path) for i, j, _ in exact_pairs}, params.seed
    )
    similarity = class_similarity(unit, good, labels)
    findings = [
        *unreadable_findings(embedded.rejected, entries, labels),
        *count_findings(
            labels, {label: sum(labels[e.label] == label for e in entries) for label in labels}
        ),
        *duplicate_findings(entries, labels, exact_pairs, exact=True),
        *duplicate_findings(good, labels, near, exact=False),
        *small_image_findings(
            entries, labels, sides, get_spec(params.backbone).preprocessing.crop_size
        ),
        *uniform_class_findings(similarity),
    ]
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


def near_duplicate_pairs(
    entries: list[Entry], unit: np.ndarray, exact: set[tuple[Path, Path]], seed: int
) -> tuple[list[tuple[int, int, float]], float]:
    """Pairs that are one picture (not exact copies, which are reported apart), and the similarity threshold used."""
    threshold = (
        near_duplicate_threshold(unit, seed) if len(entries) > 1 else NEAR_DUPLICATE_SIMILARITY
    )
    candidates = [
        (i, j, s)
        for i, j, s in similar_pairs(unit, threshold)
        if (entries[i].path, entries[j].path) not in exact
    ]
    return same_picture(candidates, [e.path for e in entries]), threshold


def unreadable_findings(
    rejected: dict[Path, str], entries: list[Entry], labels: list[str]
) -> list[Finding]:
    if not rejected:
        return []
    first, reason = next(iter(rejected.items()))
    classes = sorted({labels[e.label] for e in entries if e.path in rejected})
    return [
        Finding(
            kind=FindingKind.UNREADABLE_IMAGES,
            severity="warning",
            classes=classes,
            images=[str(p) for p in rejected],
            message=f"{plural(len(rejected), 'file')} cannot be read and will be skipped. '{first.name}': {reason}",
        )
    ]


def curve_possible(entries: list[Entry]) -> bool:
    return any(e.split == "train" for e in entries) and any(e.split == "val" for e in entries)


def curve_data(entries: list[Entry], vectors: np.ndarray) -> Embedded:
    def split(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        index = [k for k, e in enumerate(entries) if e.split == name]
        return torch.from_numpy(vectors[index]), torch.tensor(
            [entries[k].label for k in index], dtype=torch.long
        )

    return Embedded(*split("train"), *split("val"))
