"""The `teachbox` command end to end, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from app.cli.main import main

pytestmark = pytest.mark.weights


def teachbox(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def test_train_evaluate_predict(session_colours: Path, tmp_path: Path, cache_dir: Path) -> None:
    out, metrics_path = tmp_path / "model.zip", tmp_path / "metrics.json"
    trained = teachbox(
        "train",
        str(session_colours),
        "--mode",
        "transfer",
        "--out",
        str(out),
        "--metrics-out",
        str(metrics_path),
        "--epochs",
        "8",
        "--seed",
        "5",
        "--cache-dir",
        str(cache_dir),
    )
    assert trained.returncode == 0, trained.stderr
    assert f"Model written to {out}" in trained.stdout
    metrics = json.loads(metrics_path.read_text())
    assert {
        "mode",
        "backbone",
        "seed",
        "epochs_run",
        "train_seconds",
        "history",
        "val_accuracy",
        "per_class",
        "confusion_matrix",
        "labels",
    } <= set(metrics)
    assert (metrics["mode"], metrics["backbone"], metrics["seed"], metrics["epochs_run"]) == (
        "transfer",
        "mobilenet_v2",
        5,
        8,
    )
    assert set(metrics["history"][0]) >= {"train_loss", "train_acc", "val_loss", "val_acc"}
    found = metrics["estimate"]
    assert set(found) >= {"accuracy", "low", "high", "method"}
    assert found["low"] <= found["accuracy"] <= found["high"] and found["n_images"] == 20
    assert 0.0 <= metrics["calibration"]["unsure_below"] <= 1.0
    assert (
        f"expected accuracy on new images {found['accuracy']:.3f}, 95 % interval "
        f"{found['low']:.3f}-{found['high']:.3f}" in trained.stdout
    )

    evaluated = teachbox(
        "evaluate", str(out), str(session_colours), "--metrics-out", str(tmp_path / "eval.json")
    )
    assert evaluated.returncode == 0, evaluated.stderr
    scores = json.loads((tmp_path / "eval.json").read_text())
    assert scores["accuracy"] == 1.0 and scores["n_images"] == 20
    assert set(scores) >= {"per_class", "confusion_matrix", "labels"}

    image = sorted((session_colours / "blue").glob("*.jpg"))[0]
    predicted = teachbox("predict", str(out), str(image))
    assert predicted.returncode == 0 and predicted.stdout.split()[1] == "blue"


def test_errors_are_sentences_not_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "m.zip")]) == 2
    assert "error: The data folder" in capsys.readouterr().err
    assert (
        main(["train", str(tmp_path), "--out", str(tmp_path / "m.zip"), "--learning-rate", "5"])
        == 2
    )
    assert (
        "Invalid training options: --learning-rate: Input should be less than or equal to 1"
        in capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path), "--out", "m.zip", "--backbone", "resnet"])
    out = str(tmp_path / "m.zip")
    assert main(["train", str(tmp_path), "--out", out, "--unfreeze-blocks", "20"]) == 2
    assert (
        "unfreeze_blocks is 20, but mobilenet_v2 has 19 blocks. Choose 1 to 19."
        in capsys.readouterr().err
    )
    both = ["--val-split", "0.2", "--val-dir", str(tmp_path)]
    assert main(["train", str(tmp_path), "--out", out, *both]) == 2
    assert "--val-split and --val-dir exclude each other" in capsys.readouterr().err


def test_predict_reports_a_bad_image(
    trained_zip: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("hello")
    assert main(["predict", str(trained_zip[0]), str(bad)]) == 1
    assert "not an image Teachbox can read" in capsys.readouterr().err


def test_same_seed_same_metrics_from_a_cold_or_a_warm_cache(
    session_colours: Path, tmp_path: Path
) -> None:
    """`teachbox train` twice on the same folder and seed: the first run fills a new cache."""
    cache, runs = tmp_path / "cache", []
    for run in range(2):
        metrics = tmp_path / f"metrics-{run}.json"
        trained = teachbox(
            *("train", str(session_colours), "--out", str(tmp_path / f"model-{run}.zip")),
            *("--metrics-out", str(metrics), "--epochs", "5", "--seed", "3"),
            *("--cache-dir", str(cache)),
        )
        assert trained.returncode == 0, trained.stderr
        runs.append(json.loads(metrics.read_text()))
    cold, warm = ([{**h, "seconds": 0} for h in run["history"]] for run in runs)
    assert cold == warm
    assert runs[0]["val_accuracy"] == runs[1]["val_accuracy"]


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has Apple's MPS")
def test_a_missing_mps_device_is_a_sentence(
    session_colours: Path, tmp_path: Path, cache_dir: Path
) -> None:
    run = teachbox(
        "train",
        str(session_colours),
        "--out",
        str(tmp_path / "m.zip"),
        "--device",
        "mps",
        "--cache-dir",
        str(cache_dir),
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "device is set to mps but Apple's MPS is not available on this machine." in run.stderr
    assert not (tmp_path / "m.zip").exists()


@pytest.mark.slow
def test_bundle_save_and_open_carry_a_project_and_its_model(
    tmp_path: Path, cache_dir: Path
) -> None:
    from fastapi.testclient import TestClient

    from app.config import Settings
    from app.web.factory import create_app
    from tests.web.api_helpers import BLUE, LOCAL, image_bytes, make_trainable, read_events

    source, target = tmp_path / "source", tmp_path / "target"
    settings = Settings(data_dir=source, cache_dir=cache_dir, embed_on_upload=False)
    with TestClient(create_app(settings), base_url=LOCAL) as client:
        pid, _ = make_trainable(client, per_class=4)
        client.patch(f"/api/projects/{pid}", json={"name": "colours"})
        job = client.post(f"/api/projects/{pid}/jobs", json={"mode": "transfer", "epochs": 3})
        assert read_events(client, job.json()["id"])[-1]["event"] == "done"
        photo = image_bytes(BLUE, seed=77)
        before = client.post(f"/api/projects/{pid}/predict", files={"file": ("b.jpg", photo)})

    bundle = tmp_path / "out" / "colours.teachbox.zip"
    saved = teachbox("bundle", "save", "colours", str(bundle), "--data-dir", str(source))
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout.strip() == f"Saved project 'colours' (8 images) to {bundle}"
    opened = teachbox("bundle", "open", str(bundle), "--data-dir", str(target))
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.startswith("Opened 'colours' as project ")
    assert opened.stdout.strip().endswith(": 2 classes, 8 images, with its model.")
    new_pid = opened.stdout.split("as project ")[1].split(":")[0]

    target_settings = Settings(data_dir=target, cache_dir=cache_dir, embed_on_upload=False)
    with TestClient(create_app(target_settings), base_url=LOCAL) as client:
        after = client.post(f"/api/projects/{new_pid}/predict", files={"file": ("b.jpg", photo)})
    assert after.status_code == 200, after.text
    assert after.json()["predictions"][0] == pytest.approx(before.json()["predictions"][0])

    missing = teachbox("bundle", "save", "nope", str(bundle), "--data-dir", str(source))
    assert missing.returncode == 2
    assert missing.stderr.startswith(
        f"error: No project is called 'nope' in {source}. Give one of these ids: "
    )
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    refused = teachbox("bundle", "open", str(broken), "--data-dir", str(target))
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "error: The file is not a zip archive. Give the bundle that Save project (or `teachbox bundle save`) wrote."
    )
