"""Findings from the image counts alone: classes with too few images, and imbalance between classes."""

from __future__ import annotations

from app.engine.health.findings import Finding, FindingKind
from app.engine.health.wording import join_and, plural, quoted

# Below this many images a class is unreliable; from 30 on, its per-class numbers settle.
RECOMMENDED_IMAGES_PER_CLASS = 10
STABLE_IMAGES_PER_CLASS = 30
IMBALANCE_INFO_RATIO = 2.0
IMBALANCE_WARNING_RATIO = 3.0


def count_findings(labels: list[str], totals: dict[str, int]) -> list[Finding]:
    """Too few images per class, and imbalance between the largest and the smallest class."""
    findings: list[Finding] = []
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
