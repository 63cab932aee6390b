"""The honest headline: cross-validation, the refit on every image, the estimate, calibration."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from app.engine.calibration import (
    MAX_UNSURE_SHARE,
    calibrate,
    choose_unsure_below,
    fit_temperature,
    fold_temperature,
)
from app.engine.context import RunContext
from app.engine.crossval import assign_folds, fold_count
from app.engine.dataset import from_folder
from app.engine.embeddings import Embedder
from app.engine.estimate import estimate, wilson_interval
from app.engine.images import model_input
from app.engine.model_zip import OnnxClassifier
from app.engine.network import make_head
from app.engine.params import Mode, TrainParams
from app.engine.pipeline import train_to_zip
from app.engine.training import fit
from tests.conftest import make_colour_dataset


def test_folds_are_stratified_cover_every_image_once_and_shrink_for_small_classes() -> None:
    labels = [0] * 12 + [1] * 7 + [2] * 5
    folds = assign_folds(labels, 5, torch.Generator().manual_seed(3))
    assert len(folds) == len(labels) and set(folds) == set(range(5))
    for label in (0, 1, 2):
        per_fold = np.bincount(
            [f for f, y in zip(folds, labels, strict=True) if y == label], minlength=5
        )
        assert per_fold.max() - per_fold.min() <= 1
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 1
    assert fold_count(labels) == 5
    assert fold_count([0] * 10 + [1] * 3) == 3
    assert fold_count([0, 0, 1, 1]) == 2


def test_wilson_interval_holds_the_accuracy_and_narrows_with_more_images() -> None:
    small, large = estimate(40, 50, "m"), estimate(400, 500, "m")
    assert small.low < small.accuracy == 0.8 < small.high
    assert large.high - large.low < small.high - small.low
    assert wilson_interval(50, 50)[1] == 1.0 and wilson_interval(0, 50)[0] == 0.0


def test_temperature_softens_an_overconfident_model_and_keeps_every_answer() -> None:
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 4, (400,), generator=generator)
    logits = torch.randn(400, 4, generator=generator)
    logits[torch.arange(400), targets] += 1.5  # right 70 % of the time or so...
    logits *= 6  # ...but far too sure of itself
    temperature = fit_temperature(logits, targets)
    assert temperature > 2
    nll = [torch.nn.functional.cross_entropy(logits / t, targets).item() for t in (1, temperature)]
    assert nll[1] < nll[0]
    calibration, probs = calibrate(logits, targets, "test")
    assert torch.equal(probs.argmax(1), logits.argmax(1))
    assert not torch.allclose(probs, torch.softmax(logits, 1))
    assert calibration.nll_after < calibration.nll_before


def test_folding_the_temperature_into_the_head_divides_its_logits() -> None:
    head = make_head(16, 3, torch.Generator().manual_seed(1))
    x = torch.randn(5, 16)
    before = head(x).detach()
    fold_temperature(head, 2.5)
    assert torch.allclose(head(x), before / 2.5, atol=1e-6)


def test_unsure_threshold_follows_its_rule() -> None:
    # 20 answers: the 10 most confident all right, then a mix with 6 wrong among the rest.
    confidence = torch.linspace(0.99, 0.40, 20)
    correct = torch.tensor(
        [True] * 10 + [True, False, True, False, True, False, False, True, False, False]
    )
    threshold = choose_unsure_below(confidence, correct)
    sure = confidence >= threshold
    error_all = 1 - correct.float().mean().item()
    assert 1 - correct[sure].float().mean().item() <= error_all / 2
    assert sure.float().mean().item() >= 1 - MAX_UNSURE_SHARE
    assert choose_unsure_below(confidence, torch.ones(20, dtype=torch.bool)) == 0.0


@pytest.mark.weights
def test_transfer_refits_on_every_image_with_an_out_of_fold_estimate(
    session_colours: Path, embedder: Embedder
) -> None:
    data = from_folder(session_colours, seed=2)
    result = fit(data, TrainParams(epochs=8, seed=2), RunContext(embedder))
    every = sorted(str(s.path) for s in data.train + data.val)
    assert result.metrics.n_train == len(every) == 20
    assert sorted(map(str, result.train_paths)) == every
    # Each image predicted exactly once, out of fold.
    assert sorted(map(str, result.val_paths)) == every
    assert sum(map(sum, result.metrics.confusion_matrix)) == result.metrics.n_val == 20
    found = result.metrics.estimate
    assert found is not None and found.n_images == 20
    assert found.low <= found.accuracy <= found.high and found.low >= 0 and found.high <= 1
    assert found.accuracy == result.metrics.val_accuracy
    assert found.method.startswith("5-fold cross-validation, out-of-fold")
    cv = result.metrics.cross_validation
    assert cv is not None and 1 <= cv.epochs_chosen <= 8 and cv.folds == 5


@pytest.mark.weights
def test_a_validation_folder_stays_out_of_training_and_gives_the_estimate(
    tmp_path: Path, embedder: Embedder
) -> None:
    train = make_colour_dataset(tmp_path / "train", per_class=6)
    val = make_colour_dataset(tmp_path / "val", per_class=3)
    result = fit(from_folder(train, val), TrainParams(epochs=5), RunContext(embedder))
    assert result.metrics.n_train == 12
    assert sorted(map(str, result.train_paths)) == sorted(map(str, train.rglob("*.jpg")))
    assert sorted(map(str, result.val_paths)) == sorted(map(str, val.rglob("*.jpg")))
    found = result.metrics.estimate
    assert (
        found is not None
        and found.n_images == 6
        and found.method.startswith("held-out validation folder")
    )
    assert result.metrics.calibration is not None
    assert result.metrics.calibration.measured_on == "the held-out validation images"


@pytest.mark.weights
def test_the_onnx_output_is_the_calibrated_probability(
    session_colours: Path, embedder: Embedder, tmp_path: Path
) -> None:
    data = from_folder(session_colours, seed=3)
    params = TrainParams(epochs=6, seed=3)
    metadata = train_to_zip(data, params, tmp_path / "m.zip", RunContext(embedder))
    result = fit(data, params, RunContext(embedder))  # the same seed trains the same model
    temperature = metadata["temperature"]
    assert temperature == result.metrics.calibration.temperature
    assert metadata["unsure_below"] == result.metrics.calibration.unsure_below
    assert set(metadata["estimate"]) >= {"accuracy", "low", "high", "method"}
    with zipfile.ZipFile(tmp_path / "m.zip") as archive:
        shipped = json.loads(archive.read("metadata.json"))
        readme = archive.read("README.md").decode()
    assert shipped["unsure_below"] == metadata["unsure_below"]
    found = metadata["estimate"]
    assert (
        f"Expected accuracy on new images: {found['accuracy'] * 100:.0f} % "
        f"({found['low'] * 100:.0f}–{found['high'] * 100:.0f} %) ({found['method']})."
    ) in readme
    assert f"below {metadata['unsure_below']:.4f} (`unsure_below`" in readme
    classifier = OnnxClassifier.from_zip(tmp_path / "m.zip")
    path = data.val[0].path
    onnx_probs = classifier.predict_arrays(model_input(path, classifier.preprocessing)[None])[0]
    with torch.no_grad():
        features = result.model.extractor(
            torch.from_numpy(model_input(path, classifier.preprocessing)[None])
        )
        calibrated = torch.softmax(result.model.head(features), 1)[0].numpy()
    assert np.allclose(onnx_probs, calibrated, atol=1e-4)
    assert math.isclose(float(onnx_probs.sum()), 1.0, abs_tol=1e-5)


@pytest.mark.weights
def test_finetuning_says_it_kept_a_held_out_split(
    session_colours: Path, embedder: Embedder
) -> None:
    params = TrainParams(mode=Mode.FINETUNE, epochs=1, unfreeze_blocks=1, batch_size=8, seed=2)
    result = fit(from_folder(session_colours, seed=2), params, RunContext(embedder))
    found = result.metrics.estimate
    assert found is not None and found.method.startswith("held-out 15% split")
    assert found.n_images == result.metrics.n_val == 4
    assert result.metrics.n_train == 16
