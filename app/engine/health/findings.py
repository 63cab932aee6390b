"""What a health check reports: a finding (kind, severity, where, what to do) and the image records
that the checks share."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

# A duplicate finding lists at most this many pairs; its `images` still name every file involved.
PAIRS_LISTED = 50


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
    SUSPECTED_MISLABELS = "suspected_mislabels"


Severity = Literal["warning", "info"]


class ImagePair(BaseModel):
    a: str
    b: str
    classes: list[str]
    splits: list[str]
    similarity: float = Field(
        description="Cosine similarity of the two images' embeddings (1.0 for exact copies)."
    )


class Suspect(BaseModel):
    """One image whose label the out-of-fold prediction contradicts."""

    path: str | None = Field(None, description="The image file (engine and CLI).")
    image_id: str | None = Field(None, description="The image (the API names images by id).")
    thumbnail_url: str | None = None
    labelled: str = Field(description="The class it is filed under.")
    predicted: str = Field(description="The class a head that never saw it predicts.")
    probability: float = Field(description="Calibrated probability of the predicted class.")


class Finding(BaseModel):
    """One problem in the data: what it is, how much it matters, where, and what to do."""

    kind: FindingKind
    severity: Severity
    classes: list[str] = Field(description="The classes involved.")
    images: list[str] = Field(default_factory=list, description="The image files involved (paths).")
    pairs: list[ImagePair] = Field(
        default_factory=list, description=f"Duplicate findings: the pairs (at most {PAIRS_LISTED})."
    )
    suspects: list[Suspect] = Field(
        default_factory=list,
        description="Suspected mislabels: each image with its class and the class predicted for it.",
    )
    message: str = Field(description="A plain sentence that says what is wrong and what to do.")


@dataclass(frozen=True)
class SplitImage:
    """One image of the dataset as the checks see it: its file, its class index and its split."""

    path: Path
    label: int
    split: str
