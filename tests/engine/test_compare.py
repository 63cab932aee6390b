"""Transfer against fine-tuning: the recommendation rule on constructed numbers, then real comparisons."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from app.cli.main import main
from app.engine.compare.measure import validation_outcomes
from app.engine.compare.report import CompareReport, train_val_gap
from app.engine.compare.rule import mcnemar_p, recommend
from app.engine.compare.run import RunEvents, compare_modes
from app.engine.context import RunContext
from app.engine.dataset import from_folder, from_items, scan_folder
from app.engine.embeddings import Embedder, EmbeddingCache
from app.engine.errors import TrainingCancelled
from app.engine.estimate import wilson_interval
from app.engine.events import Cancelled, Done, Epoch, Failed, Log, Progress, Started
from app.engine.model_zip import OnnxClassifier
from app.engine.params import Mode, TrainParams


def outcomes(
    both_right: int, only_transfer: int, only_finetune: int, both_wrong: int, seed: int = 0
) -> tuple[list[bool], list[bool]]:
    """Per-image right/wrong for both models on the same validation images, in a shuffled order."""
    pairs = (
        [(True, True)] * both_right
        + [(True, False)] * only_transfer
        + [(False, True)] * only_finetune
        + [(False, False)] * both_wrong
    )
    random.Random(seed).shuffle(pairs)
    return [t for t, _ in pairs], [f for _, f in pairs]


# ---------------------------------------------------------------- the statistics


def test_mcnemar_exact_p_values() -> None:
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(1, 1) == 1.0
    assert mcnemar_p(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_p(8, 2) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert mcnemar_p(3, 9) == mcnemar_p(9, 3)


def test_wilson_interval_matches_the_textbook_value() -> None:
    assert wilson_interval(8, 10) == (0.4902, 0.9433)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(45, 45)
    assert high == 1.0 and 0.9 < low < 1.0


# ---------------------------------------------------------------- the rule


def test_a_large_gain_recommends_finetuning_and_says_why() -> None:
    choice = recommend(*outcomes(34, 0, 7, 4), transfer_seconds=10.0, finetune_seconds=60.0)
    assert choice.mode is Mode.FINETUNE and choice.significant
    assert choice.reason == (
        "Fine-tuning gains 16 points on this data (0.91 vs 0.76 on 45 validation images, McNemar p = 0.016), "
        "worth its 6× training time."
    )
    assert (
        choice.paired.only_finetune_right,
        choice.paired.only_transfer_right,
        choice.paired.n_val,
    ) == (7, 0, 45)


def test_a_gain_within_noise_recommends_the_cheaper_transfer_model() -> None:
    choice = recommend(*outcomes(38, 1, 3, 3), transfer_seconds=10.0, finetune_seconds=60.0)
    assert choice.mode is Mode.TRANSFER and not choice.significant
    assert choice.reason == (
        "Fine-tuning's 4-point lead (0.91 vs 0.87 on 45 validation images) is within noise (the models "
        "disagree on only 4 images, McNemar p = 0.62), so the transfer model is recommended: it is 6× faster to train."
    )


def test_the_same_gain_counts_on_many_images_but_not_on_few() -> None:
    few = recommend(*outcomes(88, 2, 5, 5), transfer_seconds=5.0, finetune_seconds=40.0)
    many = recommend(*outcomes(1700, 40, 100, 160), transfer_seconds=5.0, finetune_seconds=40.0)
    assert few.mode is Mode.TRANSFER and "within noise" in few.reason
    assert many.mode is Mode.FINETUNE and many.reason.startswith(
        "Fine-tuning gains 3 points on this data (0.90 vs 0.87 on 2000 validation images"
    )


def test_transfer_winning_clearly_and_ties() -> None:
    better = recommend(*outcomes(30, 9, 1, 5), transfer_seconds=10.0, finetune_seconds=60.0)
    assert better.mode is Mode.TRANSFER and better.significant
    assert better.reason == (
        "Transfer learning beats fine-tuning by 18 points (0.87 vs 0.69 on 45 validation images, McNemar p = 0.021) "
        "and is 6× faster to train."
    )
    tie = recommend(*outcomes(40, 2, 2, 1), transfer_seconds=10.0, finetune_seconds=25.0)
    assert tie.mode is Mode.TRANSFER and tie.reason == (
        "Both models score 0.93 on 45 validation images, so the transfer model is "
        "recommended: it is 2.5× faster to train."
    )


def test_models_scored_on_different_images_are_refused() -> None:
    with pytest.raises(ValueError, match="same validation images"):
        recommend([True, False], [True], 1.0, 2.0)


def test_gap_is_read_from_the_last_stage() -> None:
    def epoch(stage: str, n: int, train: float, val: float) -> dict:
        return {"stage": stage, "epoch": n, "train_acc": train, "val_acc": val}

    history = [
        epoch("head", 1, 0.5, 0.9),
        epoch("finetune", 1, 0.8, 0.70),
        epoch("finetune", 2, 0.9, 0.75),
        epoch("finetune", 3, 1.0, 0.72),
    ]
    gap = train_val_gap(history)
    assert (gap.stage, gap.best_epoch, gap.last, gap.best) == ("finetune", 2, 0.28, 0.15)


def test_run_events_are_tagged_and_terminal_events_held_back() -> None:
    seen: list[BaseModel] = []
    forward = RunEvents(seen.append, Mode.FINETUNE)
    forward(Progress(stage="embed", done=0, total=3))
    forward(Progress(stage="embed", done=3, total=3))
    forward(Log(message="hello"))
    forward(Done(val_accuracy=1.0, train_seconds=1.0))
    assert [e.run for e in seen] == ["finetune", "finetune", "finetune"]
    assert [e.type for e in forward.terminal] == ["done"]
    assert forward.embed_seconds > 0
    assert json.loads(seen[0].model_dump_json())["run"] == "finetune"
    assert "run" not in Progress(stage="embed", done=0, total=3).model_dump()


def test_a_failure_is_one_failed_event(tmp_path: Path, colour_dataset: Path) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should go")
    events: list[BaseModel] = []
    embedder = Embedder(
        "mobilenet_v2",
        EmbeddingCache(tmp_path / "e.sqlite"),
        lambda: pytest.fail("nothing should be embedded"),
    )
    with pytest.raises(FileExistsError):
        compare_modes(
            from_folder(colour_dataset),
            TrainParams(),
            blocker,
            RunContext(embedder, on_event=events.append),
        )
    assert [e.type for e in events] == ["failed"]
    assert events[0].error.startswith("The comparison failed unexpectedly: FileExistsError")


# ---------------------------------------------------------------- real comparisons


@pytest.mark.weights
@pytest.mark.datasets
@pytest.mark.slow
def test_compare_on_real_photos_end_to_end(
    flowers: Path, embedder: Embedder, tmp_path: Path
) -> None:
    labels, items = scan_folder(flowers / "train")
    chosen = [item for label in labels[:3] for item in [i for i in items if i[1] == label][:15]]
    data = from_items(chosen, labels[:3], val_fraction=0.3, seed=4)
    fresh = Embedder(
        "mobilenet_v2", EmbeddingCache(tmp_path / "fresh.sqlite"), embedder.engine_factory
    )
    events: list[BaseModel] = []
    report = compare_modes(
        data,
        TrainParams(seed=4),
        tmp_path / "out",
        RunContext(fresh, on_event=events.append),
        epochs={Mode.FINETUNE: 1},
    )

    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "finetune.zip",
        "report.json",
        "transfer.zip",
    ]
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == report
    CompareReport.model_validate(report)
    assert [e.type for e in events].count("done") == 1 and events[-1].type == "done"
    assert not any(isinstance(e, Failed | Cancelled) for e in events)
    assert events[-1].metrics == report

    started = [e for e in events if isinstance(e, Started)]
    assert [(e.run, e.mode) for e in started] == [
        ("transfer", "transfer"),
        ("finetune", "finetune"),
    ]
    for event in events:
        if isinstance(event, Epoch):
            assert event.run in ("transfer", "finetune")
    embeds = {
        run: [
            e.total
            for e in events
            if isinstance(e, Progress) and e.stage == "embed" and e.run == run
        ]
        for run in ("transfer", "finetune")
    }
    assert embeds["transfer"][0] == len(data.train) + len(data.val)
    assert embeds["finetune"] == [0], "the second run must find every embedding in the cache"
    assert {e.stage for e in events if isinstance(e, Epoch) and e.run == "finetune"} == {
        "head",
        "finetune",
    }

    t, f = report["modes"]["transfer"], report["modes"]["finetune"]
    paired = report["paired"]
    n = paired["n_val"]
    assert n == len(data.val) == report["n_val"]
    assert (paired["both_right"] + paired["only_transfer_right"]) / n == pytest.approx(
        t["val_accuracy"]
    )
    assert (paired["both_right"] + paired["only_finetune_right"]) / n == pytest.approx(
        f["val_accuracy"]
    )
    for mode in (t, f):
        assert mode["model_bytes"] > 1_000_000 and mode["zip_bytes"] > mode["model_bytes"]
        assert mode["predict_ms_p50"] > 0 and mode["train_seconds"] > 0
        assert set(mode["per_class"]) == set(labels[:3])
        assert mode["val_interval"][0] <= mode["val_accuracy"] <= mode["val_interval"][1]
    assert t["params"]["mode"] == "transfer" and f["params"]["epochs"] == 1
    assert report["recommendation"] in ("transfer", "finetune")
    assert f"on {n} validation images" in report["reason"]
    assert report["health"]["learning_curve"]["n_train"][-1] == len(data.train)
    assert (
        OnnxClassifier.from_zip(tmp_path / "out" / f"{report['recommendation']}.zip").labels
        == labels[:3]
    )


@pytest.mark.weights
@pytest.mark.slow
def test_cancelling_during_finetuning_ends_with_one_cancelled(
    session_colours: Path, embedder: Embedder, tmp_path: Path
) -> None:
    events: list[BaseModel] = []

    def stop_once_finetuning_starts() -> bool:
        return any(isinstance(e, Started) and e.run == "finetune" for e in events)

    with pytest.raises(TrainingCancelled):
        compare_modes(
            from_folder(session_colours),
            TrainParams(epochs=5),
            tmp_path,
            RunContext(embedder, on_event=events.append, should_stop=stop_once_finetuning_starts),
        )
    assert [e.type for e in events if e.type in ("done", "failed", "cancelled")] == ["cancelled"]
    assert events[-1] == Cancelled(message="The comparison was cancelled.")
    assert (tmp_path / "transfer.zip").exists()
    assert not (tmp_path / "finetune.zip").exists() and not (tmp_path / "report.json").exists()


@pytest.mark.weights
def test_outcomes_are_rescored_when_the_list_of_mistakes_was_cut_short(
    trained_zip: tuple[Path, dict], session_colours: Path
) -> None:
    zip_path, _ = trained_zip
    labels, items = scan_folder(session_colours)
    paths, targets = [p for p, _ in items], [labels.index(n) for _, n in items]
    complete = {
        "misclassified": [{"path": str(paths[0])}],
        "n_val": len(paths),
        "val_accuracy": 1 - 1 / len(paths),
    }
    assert validation_outcomes(complete, paths, targets, zip_path) == [False] + [True] * (
        len(paths) - 1
    )
    cut_short = {"misclassified": [], "n_val": len(paths), "val_accuracy": 0.5}
    assert validation_outcomes(cut_short, paths, targets, zip_path) == [True] * len(paths)


@pytest.mark.weights
@pytest.mark.slow
def test_cli_compare_prints_the_table_and_the_recommendation(
    session_colours: Path, cache_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "app.cli",
        "compare",
        str(session_colours),
        "--out-dir",
        str(out),
        "--cache-dir",
        str(cache_dir),
        "--seed",
        "2",
        "--transfer-epochs",
        "10",
        "--finetune-epochs",
        "1",
        "--batch-size",
        "8",
    ]
    printed = subprocess.run(command, capture_output=True, text=True, check=False)
    assert printed.returncode == 0, printed.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["seed"] == 2 and report["modes"]["transfer"]["params"]["epochs"] == 10
    lines = printed.stdout.splitlines()
    assert lines[0].split() == ["transfer", "finetune"]
    assert lines[1].split()[:2] == ["validation", "accuracy"]
    assert any(line.split()[0] == "blue" for line in lines)
    assert f"Recommendation: {report['recommendation']}. {report['reason']}" in printed.stdout
    assert (
        "Run 1 of 2: transfer learning" in printed.stderr
        and "Run 2 of 2: fine-tuning" in printed.stderr
    )


def test_cli_compare_refuses_bad_epochs(
    tmp_path: Path, colour_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "compare",
                str(colour_dataset),
                "--out-dir",
                str(tmp_path / "o"),
                "--finetune-epochs",
                "0",
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
        )
        == 2
    )
    assert (
        "error: Invalid finetune parameters: epochs: Input should be greater than or equal to 1."
        in capsys.readouterr().err
    )
