"""The headline holds on real photos: measured on each set's untouched `val` folder, the accuracy
falls inside the estimate's 95 % interval in most runs, and the answers at or above
`unsure_below` are more accurate than all answers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.engine.context import RunContext
from app.engine.dataset import from_folder
from app.engine.embeddings import Embedder
from app.engine.params import TrainParams
from app.engine.training import fit

pytestmark = [pytest.mark.weights, pytest.mark.datasets, pytest.mark.slow]

SEEDS = (0, 1, 2)


def unseen_outcome(folder: Path, seed: int, embedder: Embedder) -> dict[str, float | bool]:
    params = TrainParams(seed=seed)
    result = fit(
        from_folder(folder / "train", None, params.val_split, seed), params, RunContext(embedder)
    )
    estimate, calibration = result.metrics.estimate, result.metrics.calibration
    assert estimate is not None and calibration is not None
    assert (
        result.metrics.n_train == estimate.n_images
    )  # every image trained on, each validated once
    val = from_folder(folder / "train", folder / "val").val
    paths = [s.path for s in val]
    x = torch.from_numpy(embedder.embed(paths).matrix(paths)).float()
    y = torch.tensor([s.label for s in val])
    with torch.no_grad():  # what model.onnx computes: the temperature is folded into the head
        confidence, predicted = torch.softmax(result.model.head(x), 1).max(1)
    correct = (predicted == y).float()
    sure = confidence >= calibration.unsure_below
    accuracy = correct.mean().item()
    return {
        "inside": estimate.low <= accuracy <= estimate.high,
        "accuracy": accuracy,
        "sure_accuracy": correct[sure].mean().item(),
        "share_sure": sure.float().mean().item(),
    }


def test_the_estimate_covers_unseen_accuracy_and_sure_answers_are_better(
    flowers: Path, clothing: Path, embedder: Embedder
) -> None:
    runs = [
        unseen_outcome(folder, seed, embedder) for folder in (flowers, clothing) for seed in SEEDS
    ]
    assert sum(bool(run["inside"]) for run in runs) >= 4, runs
    for run in runs:
        assert run["sure_accuracy"] > run["accuracy"], run
        assert run["share_sure"] >= 0.4, run
