"""On images far from ImageNet (greyscale scanned digits), fine-tuning must earn its cost, and the
comparison must recommend a model that is not worse on images neither run has seen."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.compare.run import compare_modes
from app.engine.context import RunContext
from app.engine.dataset import from_folder
from app.engine.embeddings import Embedder
from app.engine.model_zip import evaluate_zip
from app.engine.params import Mode, TrainParams
from tests.conftest import make_digits_dataset

pytestmark = [pytest.mark.weights, pytest.mark.slow]


def test_on_digits_finetuning_beats_transfer_and_compare_recommends_the_better(
    tmp_path: Path, embedder: Embedder
) -> None:
    # 40 validation images a class, so that a real difference is not dismissed as noise.
    train, val, unseen = make_digits_dataset(
        tmp_path / "digits", train_per_class=40, val_per_class=40
    )
    params = TrainParams(seed=0)
    report = compare_modes(from_folder(train, val), params, tmp_path / "out", RunContext(embedder))

    scores = {mode: evaluate_zip(tmp_path / "out" / f"{mode.value}.zip", unseen) for mode in Mode}
    assert all(score["n_images"] > 900 for score in scores.values())
    accuracy = {mode: score["accuracy"] for mode, score in scores.items()}
    assert accuracy[Mode.FINETUNE] >= accuracy[Mode.TRANSFER] + 0.05, (accuracy, report["reason"])
    recommended = Mode(report["recommendation"])
    other = Mode.TRANSFER if recommended is Mode.FINETUNE else Mode.FINETUNE
    assert accuracy[recommended] >= accuracy[other], (accuracy, report["reason"])
