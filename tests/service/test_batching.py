"""The predict batcher: requests sent together share batches of one model, and get what they would alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.engine.errors import Unavailable
from app.engine.images import model_input
from app.engine.model_zip import OnnxClassifier
from app.service.batching import BatchTiming, PredictBatcher
from tests.concurrently import all_return_at_once

pytestmark = pytest.mark.weights


def inputs(classifier: OnnxClassifier, folder: Path) -> list[np.ndarray]:
    return [model_input(path, classifier.preprocessing) for path in sorted(folder.glob("*/*"))]


def predict_at_once(
    batcher: PredictBatcher, jobs: list[tuple[OnnxClassifier, np.ndarray]]
) -> list[tuple[np.ndarray, BatchTiming]]:
    return all_return_at_once([lambda job=job: batcher.predict(*job) for job in jobs])


def test_two_models_sent_together_each_get_their_own_answers(
    trained_zip: tuple[Path, dict], session_colours: Path
) -> None:
    path, _ = trained_zip
    first, second = OnnxClassifier.from_zip(path), OnnxClassifier.from_zip(path)
    arrays = inputs(first, session_colours)[:12]
    jobs = [(first if i % 2 else second, array) for i, array in enumerate(arrays)]
    batcher = PredictBatcher(max_batch=4)
    try:
        results = predict_at_once(batcher, jobs)
    finally:
        batcher.stop()
    assert len(results) == len(jobs)
    for (classifier, array), (probabilities, timing) in zip(jobs, results, strict=True):
        np.testing.assert_allclose(
            probabilities, classifier.predict_arrays(array[None])[0], atol=1e-5
        )
        assert 1 <= timing.batch_size <= 4 and timing.model_s > 0 and timing.queued_s >= 0
    assert max(timing.batch_size for _, timing in results) > 1


def test_a_failing_batch_reports_its_error_and_the_next_request_still_runs(
    trained_zip: tuple[Path, dict], session_colours: Path
) -> None:
    classifier = OnnxClassifier.from_zip(trained_zip[0])
    good = inputs(classifier, session_colours)[0]
    batcher = PredictBatcher(max_batch=8)
    try:
        with pytest.raises(Exception, match="(?i)dimension|shape|invalid"):
            batcher.predict(classifier, good[:1])  # one channel where the model wants three
        probabilities, _ = batcher.predict(classifier, good)
    finally:
        batcher.stop()
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-4)


def test_after_stop_requests_are_refused_with_503(
    trained_zip: tuple[Path, dict], session_colours: Path
) -> None:
    classifier = OnnxClassifier.from_zip(trained_zip[0])
    batcher = PredictBatcher(max_batch=8)
    batcher.predict(classifier, inputs(classifier, session_colours)[0])
    batcher.stop()
    with pytest.raises(Unavailable) as refused:
        batcher.predict(classifier, inputs(classifier, session_colours)[0])
    assert "shutting down" in refused.value.message
