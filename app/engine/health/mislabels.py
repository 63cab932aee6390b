"""Suspected mislabels: images whose out-of-fold prediction confidently names another class.

Each image is predicted by a transfer head that never saw it (5-fold cross-validation on the
cached embeddings, the training recipe itself), with calibrated probabilities, so a confident
disagreement is evidence about the label rather than about memorisation.
"""

from __future__ import annotations

import numpy as np
import torch

from app.engine.calibration import calibrate
from app.engine.context import StopCheck, never_stop
from app.engine.crossval import cross_validate
from app.engine.events import ignore_event
from app.engine.health.findings import Finding, FindingKind, SplitImage, Suspect
from app.engine.health.wording import plural
from app.engine.params import DEFAULT_EPOCHS, Mode, TrainParams

# A label is suspected when the calibrated out-of-fold prediction names another class with at
# least MISLABEL_CONFIDENCE (calibrated: such answers are right about that often), and the other
# predictions at least as confident are right at least MISLABEL_PRECISION of the time: only then
# is a disagreement evidence against the label rather than a weak model's error.
MISLABEL_CONFIDENCE = 0.8
MISLABEL_PRECISION = 0.9
SUSPECTS_LISTED = 30


def mislabel_possible(images: list[SplitImage], n_classes: int) -> bool:
    """Cross-validation needs two classes with at least two images each."""
    counts = np.bincount([image.label for image in images], minlength=n_classes)
    return int((counts >= 2).sum()) >= 2 and bool((counts[counts > 0] >= 2).all())


def suspected_mislabels(
    images: list[SplitImage],
    vectors: np.ndarray,
    labels: list[str],
    params: TrainParams,
    should_stop: StopCheck = never_stop,
) -> list[Suspect]:
    """The images whose calibrated out-of-fold prediction names another class with at least
    MISLABEL_CONFIDENCE, where the other predictions as confident are right at least
    MISLABEL_PRECISION of the time; most confident first."""
    x = torch.from_numpy(vectors).float()
    y = torch.tensor([image.label for image in images], dtype=torch.long)
    epochs = params.epochs or DEFAULT_EPOCHS[Mode.TRANSFER]
    generator = torch.Generator().manual_seed(params.seed)
    cv = cross_validate(x, y, len(labels), params, epochs, ignore_event, should_stop, generator)
    _, probs = calibrate(cv.logits, y, "out-of-fold predictions")
    confidence, predicted = probs.max(1)
    trusted = precision_at(confidence, predicted == y) >= MISLABEL_PRECISION
    found = [
        Suspect(
            path=str(image.path),
            labelled=labels[image.label],
            predicted=labels[int(p)],
            probability=round(float(c), 4),
        )
        for image, p, c, t in zip(
            images, predicted.tolist(), confidence.tolist(), trusted.tolist(), strict=True
        )
        if p != image.label and c >= MISLABEL_CONFIDENCE and t
    ]
    return sorted(found, key=lambda s: -s.probability)


def precision_at(confidence: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """For each prediction, the accuracy of the other predictions at least as confident as it
    (of all the others when none is): an image never vouches for itself."""
    n = len(confidence)
    order = torch.argsort(confidence, descending=True, stable=True)
    ranked, hits = confidence[order], correct[order].float()
    # Ties count together: each position takes the totals up to the last of its tied group.
    last = torch.searchsorted(-ranked, -ranked, right=True) - 1
    seen = (torch.arange(1, n + 1).float())[last] - 1
    right = hits.cumsum(0)[last] - hits
    overall = (hits.sum() - hits) / max(n - 1, 1)
    precision = torch.empty(n)
    precision[order] = torch.where(seen > 0, right / seen.clamp(min=1), overall)
    return precision


def mislabel_findings(suspects: list[Suspect]) -> list[Finding]:
    if not suspects:
        return []
    shown = suspects[:SUSPECTS_LISTED]
    classes = sorted({s.labelled for s in shown} | {s.predicted for s in shown})
    return [
        Finding(
            kind=FindingKind.SUSPECTED_MISLABELS,
            severity="warning",
            classes=classes,
            images=[s.path for s in shown if s.path],
            suspects=shown,
            message=(
                f"{plural(len(suspects), 'image')} may be filed under the wrong class: a model that "
                f"never saw {'it' if len(suspects) == 1 else 'them'} is sure "
                f"{'it shows' if len(suspects) == 1 else 'each shows'} another class. Look at each; "
                "move the mislabelled ones, delete those that show neither class."
            ),
        )
    ]
