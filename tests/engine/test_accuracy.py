"""Accuracy on real photos, measured on images the model never saw."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.context import RunContext
from app.engine.dataset import from_folder
from app.engine.model_zip import evaluate_zip
from app.engine.params import TrainParams
from app.engine.pipeline import train_to_zip

pytestmark = [pytest.mark.weights, pytest.mark.datasets, pytest.mark.slow]


def test_transfer_on_flowers_scores_at_least_085_on_unseen_val(
    flowers: Path, embedder, tmp_path: Path
) -> None:
    params = TrainParams(seed=0)
    data = from_folder(flowers / "train", None, params.val_split, params.seed)
    train_to_zip(data, params, tmp_path / "flowers.zip", RunContext(embedder))
    scores = evaluate_zip(tmp_path / "flowers.zip", flowers / "val")
    assert scores["n_images"] == 150
    assert scores["accuracy"] >= 0.85, scores["per_class"]
