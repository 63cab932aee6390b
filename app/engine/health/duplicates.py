"""Exact copies (same file content) and near-copies (one photo, perhaps edited) and their findings."""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image

from app.engine.errors import ImageRejected
from app.engine.health.findings import PAIRS_LISTED, Finding, FindingKind, ImagePair, SplitImage
from app.engine.health.wording import plural
from app.engine.images import decode_image

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

# (index of one image, index of the other, cosine similarity), the first index the smaller.
Pair = tuple[int, int, float]


def scope_of(a: SplitImage, b: SplitImage) -> str:
    if a.label != b.label:
        return "across_classes"
    return "across_split" if a.split != b.split else "within_class"


def exact_duplicate_pairs(hashes: list[str]) -> list[Pair]:
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


def similar_pairs(unit: np.ndarray, threshold: float, block: int = 1024) -> list[Pair]:
    """Every pair (i < j) whose cosine similarity reaches `threshold`, in blocks so memory stays bounded."""
    pairs: list[Pair] = []
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


def same_picture(pairs: list[Pair], paths: list[Path]) -> list[Pair]:
    """The candidate pairs whose thumbnails also agree: one photo, perhaps edited, not two look-alikes."""
    involved = sorted({k for i, j, _ in pairs for k in (i, j)})
    with ThreadPoolExecutor(max(1, min(4, len(involved)))) as pool:
        thumbs = dict(zip(involved, pool.map(lambda k: thumbnail(paths[k]), involved), strict=True))
    return [
        (i, j, s)
        for i, j, s in pairs
        if (a := thumbs[i]) is not None
        and (b := thumbs[j]) is not None
        and float(a @ b) >= THUMBNAIL_CORRELATION
    ]


def near_duplicate_pairs(
    images: list[SplitImage], unit: np.ndarray, exact: set[tuple[Path, Path]], seed: int
) -> tuple[list[Pair], float]:
    """Pairs that are one picture (not exact copies, which are reported apart), and the similarity threshold used."""
    threshold = (
        near_duplicate_threshold(unit, seed) if len(images) > 1 else NEAR_DUPLICATE_SIMILARITY
    )
    candidates = [
        (i, j, s)
        for i, j, s in similar_pairs(unit, threshold)
        if (images[i].path, images[j].path) not in exact
    ]
    return same_picture(candidates, [image.path for image in images]), threshold


def duplicate_findings(
    images: list[SplitImage], labels: list[str], pairs: list[Pair], exact: bool
) -> list[Finding]:
    by_scope: dict[str, list[Pair]] = defaultdict(list)
    for i, j, similarity in pairs:
        by_scope[scope_of(images[i], images[j])].append((i, j, similarity))
    findings: list[Finding] = []
    for scope, found in by_scope.items():
        found.sort(key=lambda pair: -pair[2])
        kind = FindingKind(("duplicate_" if exact else "near_duplicate_") + scope)
        listed = [
            ImagePair(
                a=str(images[i].path),
                b=str(images[j].path),
                classes=[labels[images[i].label], labels[images[j].label]],
                splits=[images[i].split, images[j].split],
                similarity=round(s, 4),
            )
            for i, j, s in found[:PAIRS_LISTED]
        ]
        involved = sorted({str(images[k].path) for i, j, _ in found for k in (i, j)})
        classes = sorted({labels[images[k].label] for i, j, _ in found for k in (i, j)})
        findings.append(
            Finding(
                kind=kind,
                severity="info" if scope == "within_class" else "warning",
                classes=classes,
                images=involved,
                pairs=listed,
                message=duplicate_message(kind, found, images, labels),
            )
        )
    return findings


def duplicate_message(
    kind: FindingKind, found: list[Pair], images: list[SplitImage], labels: list[str]
) -> str:
    i, j, similarity = found[0]
    a, b = images[i], images[j]
    example = f"'{a.path.name}' in '{labels[a.label]}' and '{b.path.name}' in '{labels[b.label]}'"
    n = len(found)
    val_images = len({k for i, j, _ in found for k in (i, j) if images[k].split == "val"})
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
