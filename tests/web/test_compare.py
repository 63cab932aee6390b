"""Comparing transfer learning with fine-tuning through the API: the job, its stream, its report, keeping a model."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.web.factory import create_app
from tests.web.api_helpers import LOCAL, RED, image_bytes, make_trainable, read_events, wait_for_job

FAST = {"epochs": 2, "batch_size": 8}
SLOW = {"epochs": 20, "batch_size": 2}


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[dict[str, Any]]:
    """One project compared once (two epochs per mode), shared by the tests below."""
    data_dir = tmp_path_factory.mktemp("compared")
    settings = Settings(data_dir=data_dir, cache_dir=cache_dir, embed_on_upload=False)
    with TestClient(create_app(settings), base_url=LOCAL) as client:
        pid, _ = make_trainable(client, per_class=5)
        created = client.post(f"/api/projects/{pid}/compare", json=FAST)
        events = [e for e in read_events(client, created.json()["id"], timeout=300) if "event" in e]
        yield {
            "client": client,
            "pid": pid,
            "created": created,
            "jid": created.json()["id"],
            "events": events,
            "data_dir": data_dir,
        }


def test_compare_answers_202_with_a_compare_job(compared: dict[str, Any]) -> None:
    client, jid = compared["client"], compared["jid"]
    assert compared["created"].status_code == 202
    assert compared["created"].json() == {"id": jid, "status": "queued"}
    job = client.get(f"/api/jobs/{jid}").json()
    assert job["kind"] == "compare" and job["status"] == "succeeded" and job["kept_mode"] is None
    assert (
        "mode" not in job["params"]
        and job["params"]["epochs"] == 2
        and job["params"]["batch_size"] == 8
    )
    assert [j["kind"] for j in client.get(f"/api/projects/{compared['pid']}/jobs").json()] == [
        "compare"
    ]


def test_the_stream_covers_both_runs_and_ends_with_the_report(compared: dict[str, Any]) -> None:
    events = compared["events"]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    data = [json.loads(e["data"]) for e in events]
    assert [d["type"] for d in data].count("done") == 1 and data[-1]["type"] == "done"
    started = [d for d in data if d["type"] == "started"]
    assert [(d["run"], d["mode"]) for d in started] == [
        ("transfer", "transfer"),
        ("finetune", "finetune"),
    ]
    epochs = {
        run: [d for d in data if d["type"] == "epoch" and d.get("run") == run]
        for run in ("transfer", "finetune")
    }
    assert epochs["transfer"] and epochs["finetune"]
    assert {d["stage"] for d in epochs["finetune"]} == {"head", "finetune"}
    report = data[-1]["metrics"]
    assert (
        set(report["modes"]) == {"transfer", "finetune"}
        and report["recommendation"] in report["modes"]
    )


def test_the_job_result_holds_the_report(compared: dict[str, Any]) -> None:
    client, jid = compared["client"], compared["jid"]
    metrics = client.get(f"/api/jobs/{jid}").json()["metrics"]
    assert metrics["format"] == "teachbox-compare/1" and metrics["labels"] == ["red", "blue"]
    assert isinstance(metrics["reason"], str) and metrics["reason"].endswith(".")
    for mode in ("transfer", "finetune"):
        run = metrics["modes"][mode]
        assert run["mode"] == mode and run["zip"] == f"{mode}.zip"
        assert 0 <= run["val_accuracy"] <= 1 and set(run["per_class"]) == {"red", "blue"}
        assert run["train_seconds"] > 0 and run["model_bytes"] > 0 and run["predict_ms_p50"] > 0
        assert {"last", "best", "stage"} <= set(run["train_val_gap"])
    assert metrics["health"]["format"] == "teachbox-health/1"
    assert metrics["val_accuracy"] == metrics["modes"][metrics["recommendation"]]["val_accuracy"]


def test_no_server_path_in_the_job_or_its_events(compared: dict[str, Any]) -> None:
    client, jid, data_dir = compared["client"], compared["jid"], str(compared["data_dir"])
    assert data_dir not in client.get(f"/api/jobs/{jid}").text
    assert data_dir not in client.get(f"/api/projects/{compared['pid']}/jobs").text
    assert all(data_dir not in e["data"] for e in compared["events"])


def test_both_models_download_before_one_is_kept(compared: dict[str, Any]) -> None:
    client, jid = compared["client"], compared["jid"]
    recommended = client.get(f"/api/jobs/{jid}").json()["metrics"]["recommendation"]
    for mode in ("transfer", "finetune"):
        response = client.get(f"/api/jobs/{jid}/model", params={"mode": mode})
        assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
        assert f"-{mode}.zip" in response.headers["content-disposition"]
        metadata = json.loads(zipfile.ZipFile(io.BytesIO(response.content)).read("metadata.json"))
        assert metadata["params"]["mode"] == mode
    default = client.get(f"/api/jobs/{jid}/model")
    assert f"-{recommended}.zip" in default.headers["content-disposition"]
    bad = client.get(f"/api/jobs/{jid}/model", params={"mode": "both"})
    assert bad.status_code == 422


def test_keeping_a_model_makes_it_the_projects_model(compared: dict[str, Any]) -> None:
    client, pid, jid = compared["client"], compared["pid"], compared["jid"]
    assert client.get(f"/api/projects/{pid}").json()["model_job_id"] is None
    photo = {"file": ("x.jpg", image_bytes(RED, seed=999), "image/jpeg")}
    assert client.post(f"/api/projects/{pid}/predict", files=photo).status_code == 409
    for mode in ("finetune", "transfer"):
        kept = client.post(f"/api/jobs/{jid}/keep", json={"mode": mode})
        assert kept.status_code == 200, kept.text
        assert kept.json()["kept_mode"] == mode and kept.json()["id"] == jid
        assert client.get(f"/api/projects/{pid}").json()["model_job_id"] == jid
        predicted = client.post(f"/api/projects/{pid}/predict", files=photo)
        assert predicted.status_code == 200 and predicted.json()["job_id"] == jid
        assert f"-{mode}.zip" in client.get(f"/api/jobs/{jid}/model").headers["content-disposition"]


def test_keep_refuses_what_it_cannot_keep(compared: dict[str, Any]) -> None:
    client, jid = compared["client"], compared["jid"]
    assert client.post(f"/api/jobs/{jid}/keep", json={"mode": "both"}).status_code == 422
    assert client.post(f"/api/jobs/{jid}/keep", json={}).status_code == 422
    assert client.post(f"/api/jobs/{'0' * 32}/keep", json={"mode": "transfer"}).status_code == 404
    path = client.app.state.store.model_path(client.app.state.store.get_job(jid), "finetune")
    path.rename(path.with_suffix(".away"))
    try:
        missing = client.post(f"/api/jobs/{jid}/keep", json={"mode": "finetune"})
    finally:
        path.with_suffix(".away").rename(path)
    assert missing.status_code == 404
    assert missing.json() == {
        "detail": f"The finetune model of job {jid} is missing from the data folder. Compare again."
    }


def test_a_later_training_then_a_later_keep_each_become_the_model(compared: dict[str, Any]) -> None:
    client, pid, jid = compared["client"], compared["pid"], compared["jid"]
    train = client.post(f"/api/projects/{pid}/jobs", json={"mode": "transfer", "epochs": 2}).json()[
        "id"
    ]
    job = wait_for_job(client, train, {"succeeded"})
    assert client.get(f"/api/projects/{pid}").json()["model_job_id"] == train
    data_dir = str(compared["data_dir"])
    assert data_dir not in json.dumps(job) and all(
        data_dir not in e.get("data", "") for e in read_events(client, train)
    )
    for entry in job["metrics"]["misclassified"] + job["metrics"]["skipped"]:
        assert (
            "path" not in entry
            and entry["thumbnail_url"]
            == f"/api/projects/{pid}/images/{entry['image_id']}/thumbnail"
        )
    refused = client.post(f"/api/jobs/{train}/keep", json={"mode": "transfer"})
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith(f"Job {train} is a training, not a comparison")
    wrong = client.get(f"/api/jobs/{train}/model", params={"mode": "finetune"})
    assert wrong.status_code == 422
    assert wrong.json() == {
        "detail": f"Job {train} trained one transfer model; leave mode out to download it."
    }
    assert client.get(f"/api/jobs/{train}/model", params={"mode": "transfer"}).status_code == 200
    assert client.post(f"/api/jobs/{jid}/keep", json={"mode": "finetune"}).status_code == 200
    assert client.get(f"/api/projects/{pid}").json()["model_job_id"] == jid


def test_compare_checks_like_train(client: TestClient) -> None:
    pid = client.post("/api/projects", json={"name": "empty"}).json()["id"]
    none = client.post(f"/api/projects/{pid}/compare")
    assert none.status_code == 422
    assert none.json() == {
        "detail": "Training needs at least 2 classes; there is 0. Add another class with images."
    }
    assert client.post(f"/api/projects/{'0' * 32}/compare").status_code == 404
    pid, _ = make_trainable(client, per_class=4)
    with_mode = client.post(f"/api/projects/{pid}/compare", json={"mode": "finetune"})
    assert with_mode.status_code == 422
    assert "leave mode out: a comparison trains both modes" in with_mode.json()["detail"]
    assert client.post(f"/api/projects/{pid}/compare", json={"epochs": 0}).status_code == 422
    backbone = client.post(f"/api/projects/{pid}/compare", json={"backbone": "resnet50"})
    assert (
        backbone.status_code == 422 and "Unknown backbone 'resnet50'" in backbone.json()["detail"]
    )
    assert client.get(f"/api/projects/{pid}/jobs").json() == []


def test_one_active_job_per_project_then_cancel(
    client: TestClient, trainable: tuple[str, dict[str, str]]
) -> None:
    pid, _ = trainable
    jid = client.post(f"/api/projects/{pid}/compare", json=SLOW).json()["id"]
    for path, body in (("compare", {}), ("jobs", {"mode": "transfer"})):
        conflict = client.post(f"/api/projects/{pid}/{path}", json=body)
        assert conflict.status_code == 409 and jid in conflict.json()["detail"]
    early = client.post(f"/api/jobs/{jid}/keep", json={"mode": "transfer"})
    assert early.status_code == 409 and early.json()["detail"].endswith(
        "a model can be kept once the comparison has succeeded."
    )
    wait_for_job(client, jid, {"running"})
    assert client.post(f"/api/jobs/{jid}/cancel").status_code == 202
    events = [e for e in read_events(client, jid) if "event" in e]
    assert events[-1]["event"] == "cancelled"
    assert client.get(f"/api/jobs/{jid}").json()["status"] == "cancelled"
    assert client.get(f"/api/jobs/{jid}/model").status_code == 409
