"""The one headline figure: expected accuracy on new images, with a 95 % interval and how it was measured."""

from __future__ import annotations

import math

from pydantic import BaseModel, Field


class Estimate(BaseModel):
    """Accuracy on images the model being measured did not train on, with its 95 % Wilson interval."""

    accuracy: float
    low: float = Field(description="Lower end of the 95 % interval.")
    high: float = Field(description="Upper end of the 95 % interval.")
    method: str = Field(description="How the images were kept apart from training, in words.")
    n_images: int = Field(description="How many predictions the figure counts.")


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of `correct` out of `n` (sound near 0 and 1, unlike p ± 2 SE)."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


def estimate(correct: int, n: int, method: str) -> Estimate:
    low, high = wilson_interval(correct, n)
    return Estimate(
        accuracy=round(correct / n, 4) if n else 0.0, low=low, high=high, method=method, n_images=n
    )


def cross_validation_method(n_folds: int, reduced: bool) -> str:
    why = " (fewer than 5 because a class has only that many images)" if reduced else ""
    return (
        f"{n_folds}-fold cross-validation, out-of-fold{why}: each image predicted by a head that "
        "did not train on it; the shipped model then trained on every image"
    )


HELD_OUT_FOLDER = "held-out validation folder, untouched by training and by every choice made"


def held_out_split(fraction: float) -> str:
    return (
        f"held-out {fraction:.0%} split; the shipped model did not train on it, and its epoch "
        "was chosen on it (slightly optimistic)"
    )
