"""Suspected mislabels, found on real photos: a sunflower filed as a daisy is named, with the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.engine.dataset import from_folder
from app.engine.embeddings import Embedder
from app.engine.health.findings import FindingKind
from app.engine.health.report import analyse_health
from app.engine.params import TrainParams

pytestmark = [pytest.mark.weights, pytest.mark.datasets]

PER_CLASS = 40


def test_a_deliberately_mislabelled_photo_is_listed_with_its_true_class(
    flowers: Path, embedder: Embedder, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    for name in ("daisy", "sunflowers", "roses"):
        (root / name).mkdir(parents=True)
        for photo in sorted((flowers / "train" / name).glob("*.jpg"))[:PER_CLASS]:
            shutil.copy(photo, root / name / photo.name)
    wrong = sorted((flowers / "val" / "sunflowers").glob("*.jpg"))[0]
    shutil.copy(wrong, root / "daisy" / wrong.name)  # a sunflower, filed as a daisy
    report = analyse_health(from_folder(root), embedder=embedder, params=TrainParams(), curve=False)
    findings = [f for f in report.findings if f.kind is FindingKind.SUSPECTED_MISLABELS]
    assert len(findings) == 1 and findings[0].severity == "warning"
    suspects = {Path(s.path).name: s for s in findings[0].suspects if s.path}
    assert wrong.name in suspects
    assert suspects[wrong.name].labelled == "daisy"
    assert suspects[wrong.name].predicted == "sunflowers"
    assert suspects[wrong.name].probability >= 0.8
    # Only a few of the 121 photos are suspected: the list is worth reading.
    assert len(findings[0].suspects) <= 8


def test_consistent_labels_raise_no_suspicion(session_colours: Path, embedder: Embedder) -> None:
    report = analyse_health(from_folder(session_colours), embedder=embedder, curve=False)
    assert FindingKind.SUSPECTED_MISLABELS not in {f.kind for f in report.findings}
