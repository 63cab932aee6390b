"""What the images themselves are like: too small, all alike within a class, or unreadable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from app.engine.health.findings import Finding, FindingKind, SplitImage
from app.engine.health.wording import plural

# The network sees a 224-pixel crop; below half of that an image is blown up more than twice.
SMALL_IMAGE_FRACTION_OF_INPUT = 0.5
SMALL_IMAGES_WARNING_SHARE = 0.25
# A class is "all alike" when its images are this much closer to each other (mean cosine distance)
# than the median class. Photo classes on flowers-dev and clothing-dev range 0.32-0.42, ratio >= 0.8.
UNIFORM_CLASS_DISTANCE_RATIO = 0.5


def shorter_side(path: Path) -> int | None:
    """The shorter side from the image header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return min(image.size)
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def small_image_findings(
    images: list[SplitImage], labels: list[str], sides: list[int | None], input_size: int
) -> list[Finding]:
    limit = round(input_size * SMALL_IMAGE_FRACTION_OF_INPUT)
    findings: list[Finding] = []
    for label_index, label in enumerate(labels):
        members = [k for k, image in enumerate(images) if image.label == label_index]
        small = [k for k in members if (side := sides[k]) is not None and side < limit]
        if not small:
            continue
        share = len(small) / len(members)
        findings.append(
            Finding(
                kind=FindingKind.SMALL_IMAGES,
                severity="warning" if share >= SMALL_IMAGES_WARNING_SHARE else "info",
                classes=[label],
                images=[str(images[k].path) for k in small],
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
    unit: np.ndarray, images: list[SplitImage], labels: list[str]
) -> dict[str, float | None]:
    """Mean pairwise cosine similarity within each class (None below two images)."""
    means: dict[str, float | None] = {}
    for label_index, label in enumerate(labels):
        members = unit[[k for k, image in enumerate(images) if image.label == label_index]]
        n = len(members)
        if n < 2:
            means[label] = None
            continue
        total = members.sum(0)
        means[label] = round(float((total @ total - n) / (n * (n - 1))), 4)
    return means


def uniform_class_findings(similarity: dict[str, float | None]) -> list[Finding]:
    known = {label: s for label, s in similarity.items() if s is not None}
    findings: list[Finding] = []
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


def unreadable_findings(
    rejected: dict[Path, str], images: list[SplitImage], labels: list[str]
) -> list[Finding]:
    if not rejected:
        return []
    first, reason = next(iter(rejected.items()))
    classes = sorted({labels[image.label] for image in images if image.path in rejected})
    return [
        Finding(
            kind=FindingKind.UNREADABLE_IMAGES,
            severity="warning",
            classes=classes,
            images=[str(p) for p in rejected],
            message=f"{plural(len(rejected), 'file')} cannot be read and will be skipped. '{first.name}': {reason}",
        )
    ]
