"""Training jobs through the API: checks before queueing, live events, replay, cancel, 409s, model, predict."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.engine.params import TrainParams
from app.web.factory import create_app
from tests.web.api_helpers import (
    BLUE,
    LOCAL,
    RED,
    SLOW_JOB,
    create_class,
    create_project,
    image_bytes,
    make_trainable,
    post_at_once,
    read_events,
    upload,
    wait_for_job,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[dict[str, Any]]:
    """One project trained once (transfer, 5 epochs) through the API, shared by the tests below."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("trained"), cache_dir=cache_dir, embed_on_upload=False
    )
    with TestClient(create_app(settings), base_url=LOCAL) as client:
        pid, class_ids = make_trainable(client, per_class=5)
        created = client.post(f"/api/projects/{pid}/jobs", json={"mode": "transfer", "epochs": 5})
        events = read_events(client, created.json()["id"])
        yield {
            "client": client,
            "pid": pid,
            "classes": class_ids,
            "created": created,
            "jid": created.json()["id"],
            "events": events,
        }


def test_post_answers_202_with_id_and_status(trained: dict[str, Any]) -> None:
    assert trained["created"].status_code == 202
    assert trained["created"].json() == {"id": trained["jid"], "status": "queued"}


def test_stream_has_increasing_ids_typed_events_and_ends_after_done(
    trained: dict[str, Any],
) -> None:
    events = [e for e in trained["events"] if "event" in e]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["event"] == "started" and events[-1]["event"] == "done"
    assert {e["event"] for e in events} <= {"started", "progress", "epoch", "log", "done"}
    for event in events:
        assert json.loads(event["data"])["type"] == event["event"]
    epochs = [json.loads(e["data"]) for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs if e["stage"] == "head"] == [1, 2, 3, 4, 5]
    assert {"train_loss", "train_acc", "val_loss", "val_acc"} <= set(epochs[0])
    progress = [json.loads(e["data"]) for e in events if e["event"] == "progress"]
    assert all({"done", "total", "eta_s"} <= set(p) for p in progress)
    started = json.loads(events[0]["data"])
    assert started["labels"] == ["red", "blue"]
    # Transfer learning validates every image out of fold and trains the final model on all ten.
    assert started["validation"] == "cross-validation"
    assert started["n_train"] == started["n_val"] == 10
    assert started["stages"] == ["embed", "head", "refit", "export"]


def test_job_carries_params_metrics_and_model(trained: dict[str, Any]) -> None:
    client, jid = trained["client"], trained["jid"]
    job = client.get(f"/api/jobs/{jid}").json()
    assert (
        job["status"] == "succeeded"
        and job["error"] is None
        and job["project_id"] == trained["pid"]
    )
    assert (
        job["params"]["mode"] == "transfer"
        and job["params"]["epochs"] == 5
        and job["params"]["batch_size"] == 32
    )
    done = json.loads(trained["events"][-1]["data"])
    assert job["metrics"]["val_accuracy"] == done["val_accuracy"]
    assert {key: job["metrics"][key] for key in done["metrics"]} == done["metrics"]
    assert job["metrics"]["confusion_matrix"] and set(job["metrics"]["per_class"]) == {
        "red",
        "blue",
    }
    estimate = job["metrics"]["estimate"]
    assert estimate == done["metrics"]["estimate"]
    assert estimate["low"] <= estimate["accuracy"] <= estimate["high"]
    assert estimate["accuracy"] == job["metrics"]["val_accuracy"] and estimate["n_images"] == 10
    assert "cross-validation" in estimate["method"]
    assert job["metrics"]["n_train"] == 10
    assert job["model_url"] == f"/api/jobs/{jid}/model"
    assert client.get(f"/api/projects/{trained['pid']}").json()["model_job_id"] == jid
    assert [j["id"] for j in client.get(f"/api/projects/{trained['pid']}/jobs").json()] == [jid]

    model = client.get(f"/api/jobs/{jid}/model")
    assert model.status_code == 200 and model.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(model.content))
    names = set(archive.namelist())
    assert {"model.onnx", "model.safetensors", "labels.txt", "metadata.json", "predict.py"} <= names
    metadata = json.loads(archive.read("metadata.json"))
    assert metadata["estimate"] == estimate
    assert metadata["unsure_below"] == job["metrics"]["calibration"]["unsure_below"]


def test_last_event_id_replays_what_was_missed(trained: dict[str, Any]) -> None:
    client, jid = trained["client"], trained["jid"]
    everything = [e for e in trained["events"] if "event" in e]
    assert read_events(client, jid, last_event_id=3) == everything[3:]
    assert read_events(client, jid, last_event_id=everything[-1]["id"]) == []
    assert read_events(client, jid, last_event_id="junk") == everything  # type: ignore[arg-type]


def test_predict_uses_the_latest_model(trained: dict[str, Any]) -> None:
    client, pid, jid = trained["client"], trained["pid"], trained["jid"]
    response = client.post(
        f"/api/projects/{pid}/predict",
        files={"file": ("x.jpg", image_bytes(RED, seed=999), "image/jpeg")},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["job_id"] == jid
    probabilities = [p["probability"] for p in body["predictions"]]
    assert body["predictions"][0]["label"] == "red"
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
    blue = client.post(
        f"/api/projects/{pid}/predict",
        files={"file": ("y.png", image_bytes(BLUE, seed=998, fmt="PNG"), "image/png")},
    )
    assert blue.json()["predictions"][0]["label"] == "blue"
    threshold = client.get(f"/api/jobs/{jid}").json()["metrics"]["calibration"]["unsure_below"]
    for answer in (body, blue.json()):
        assert answer["unsure_below"] == threshold
        assert answer["unsure"] is (answer["predictions"][0]["probability"] < threshold)


def test_predictions_sent_together_run_as_batches_and_match_one_at_a_time(
    trained: dict[str, Any],
) -> None:
    client, pid = trained["client"], trained["pid"]
    url = f"/api/projects/{pid}/predict"
    photo = {"file": ("x.jpg", image_bytes(RED, seed=997), "image/jpeg")}
    alone = client.post(url, files=photo)
    assert (
        "model;dur=" in alone.headers["server-timing"]
        and "batch of 1" in alone.headers["server-timing"]
    )
    together = post_at_once(client, url, 16, files=photo)
    assert [r.status_code for r in together] == [200] * 16
    for response in together:
        for mine, single in zip(
            response.json()["predictions"], alone.json()["predictions"], strict=True
        ):
            assert mine["label"] == single["label"]
            assert mine["probability"] == pytest.approx(single["probability"], abs=1e-5)
    batch_sizes = [
        int(r.headers["server-timing"].rsplit("batch of ", 1)[1].rstrip('"')) for r in together
    ]
    assert max(batch_sizes) > 1, f"16 requests sent at once never shared a batch: {batch_sizes}"


def test_model_file_missing_is_404(trained: dict[str, Any]) -> None:
    client, jid = trained["client"], trained["jid"]
    store = client.app.state.store
    path = store.model_path(store.get_job(jid))
    path.rename(path.with_suffix(".away"))
    try:
        response = client.get(f"/api/jobs/{jid}/model")
    finally:
        path.with_suffix(".away").rename(path)
    assert response.status_code == 404
    assert response.json() == {
        "detail": f"The model file of job {jid} is missing from the data folder. Train the project again."
    }


def test_predict_refuses_a_file_over_the_limit(trained: dict[str, Any]) -> None:
    client, pid = trained["client"], trained["pid"]
    settings = client.app.state.settings
    limit, settings.max_file_mb = settings.max_file_mb, 0.001
    try:
        response = client.post(
            f"/api/projects/{pid}/predict",
            files={"file": ("x.jpg", image_bytes(size=(200, 200)), "image/jpeg")},
        )
    finally:
        settings.max_file_mb = limit
    assert response.status_code == 413
    assert "over the limit of 0.001 MB per file" in response.json()["detail"]


def test_predict_refuses_bad_input(trained: dict[str, Any]) -> None:
    client, pid = trained["client"], trained["pid"]
    url = f"/api/projects/{pid}/predict"
    not_image = client.post(url, files={"file": ("x.jpg", b"<html></html>", "image/jpeg")})
    assert not_image.status_code == 422
    assert not_image.json() == {
        "detail": "HTML files are not accepted. Convert it to JPEG, PNG, WebP, BMP or GIF and upload it again."
    }
    assert client.post(url, files={"image": ("x.jpg", image_bytes(), "image/jpeg")}).json() == {
        "detail": "Attach one image in the multipart field 'file'."
    }
    assert client.post(url, json={}).status_code == 415


def test_model_and_predict_are_409_before_training(
    client: TestClient, trainable: tuple[str, dict[str, str]]
) -> None:
    pid, _ = trainable
    response = client.post(
        f"/api/projects/{pid}/predict", files={"file": ("x.jpg", image_bytes(), "image/jpeg")}
    )
    assert response.status_code == 409
    assert response.json() == {
        "detail": "This project has no trained model yet. Train it first, then predict."
    }


def test_minimums_are_checked_before_queueing(client: TestClient) -> None:
    pid = create_project(client)
    url = f"/api/projects/{pid}/jobs"
    none = client.post(url, json={"mode": "transfer"})
    assert none.status_code == 422
    assert none.json() == {
        "detail": "Training needs at least 2 classes; there is 0. Add another class with images."
    }
    red = create_class(client, pid, "red")
    upload(client, pid, red, [(f"{i}.jpg", image_bytes(RED, seed=i)) for i in range(3)])
    assert (
        client.post(url, json={"mode": "transfer"})
        .json()["detail"]
        .startswith("Training needs at least 2 classes; there is 1.")
    )
    create_class(client, pid, "blue")
    empty = client.post(url, json={"mode": "transfer"})
    assert empty.status_code == 422
    assert empty.json() == {
        "detail": "Each class needs at least 3 images: 'blue' has 0. Add images to it."
    }
    assert client.get(url).json() == []


@pytest.mark.parametrize(
    "body",
    [
        {"mode": "bogus"},
        {"mode": "transfer", "epochs": 0},
        {"mode": "transfer", "epochs": 501},
        {"mode": "transfer", "batch_size": 0},
        {"mode": "transfer", "learning_rate": 0},
        {"mode": "transfer", "learning_rate": 2},
        {"mode": "finetune", "unfreeze_blocks": 99},
        {"mode": "transfer", "seed": -1},
        {"mode": "transfer", "backbone": "resnet50"},
        {"mode": "transfer", "surprise": True},
        [1, 2],
    ],
)
def test_out_of_range_parameters_are_422(
    client: TestClient, trainable: tuple[str, dict[str, str]], body: Any
) -> None:
    pid, _ = trainable
    response = client.post(f"/api/projects/{pid}/jobs", json=body)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("The request is not valid (")
    assert client.get(f"/api/projects/{pid}/jobs").json() == []


def test_unknown_backbone_says_which_exist(
    client: TestClient, trainable: tuple[str, dict[str, str]]
) -> None:
    pid, _ = trainable
    detail = client.post(f"/api/projects/{pid}/jobs", json={"backbone": "resnet50"}).json()[
        "detail"
    ]
    assert "Unknown backbone 'resnet50'. Choose one of: mobilenet_v2" in detail


@pytest.mark.parametrize("jid", ["0" * 32, "nope", "%2e%2e"])
def test_unknown_job_ids_are_404(client: TestClient, jid: str) -> None:
    for method, path in (("GET", ""), ("GET", "/events"), ("GET", "/model"), ("POST", "/cancel")):
        assert client.request(method, f"/api/jobs/{jid}{path}").status_code == 404


def test_concurrent_posts_give_exactly_one_202_then_cancel(
    client: TestClient, trainable: tuple[str, dict[str, str]]
) -> None:
    pid, _ = trainable
    responses = post_at_once(client, f"/api/projects/{pid}/jobs", 5, json=SLOW_JOB)
    codes = sorted(r.status_code for r in responses)
    assert codes == [202, 409, 409, 409, 409]
    jid = next(r.json()["id"] for r in responses if r.status_code == 202)
    for conflict in (r for r in responses if r.status_code == 409):
        assert jid in conflict.json()["detail"]
        assert conflict.json()["detail"].endswith(
            "Wait for it to finish or cancel it, then start another."
        )

    wait_for_job(client, jid, {"running"})
    cancel = client.post(f"/api/jobs/{jid}/cancel")
    assert cancel.status_code == 202 and cancel.json()["id"] == jid
    events = [e for e in read_events(client, jid) if "event" in e]
    assert events[-1]["event"] == "cancelled"
    job = client.get(f"/api/jobs/{jid}").json()
    assert job["status"] == "cancelled" and job["model_url"] is None
    assert client.get(f"/api/jobs/{jid}/model").status_code == 409
    again = client.post(f"/api/jobs/{jid}/cancel")
    assert again.status_code == 409
    assert again.json() == {
        "detail": f"Job {jid} has already ended (cancelled); there is nothing to cancel."
    }


def test_a_job_trains_on_a_snapshot_and_deletes_wait_for_it(client: TestClient) -> None:
    pid, classes = make_trainable(client, per_class=4)
    other, _ = make_trainable(client, per_class=3)
    running = client.post(f"/api/projects/{pid}/jobs", json=SLOW_JOB).json()["id"]
    queued = client.post(
        f"/api/projects/{other}/jobs", json={"mode": "transfer", "epochs": 2}
    ).json()["id"]
    wait_for_job(client, running, {"running"})
    assert client.get(f"/api/jobs/{queued}").json()["status"] == "queued"
    assert client.get(f"/api/projects/{other}").json()["active_job"]["id"] == queued

    later = upload(client, pid, classes["red"], [("late.jpg", image_bytes(RED, seed=77))])
    assert later.status_code == 200
    assert client.get(f"/api/jobs/{running}").json()["image_count"] == 8
    image_id = later.json()["added"][0]["id"]
    refusal = f"Job {running} is running on this project's images. Wait for it to finish or cancel it, then"
    for path, action in (
        (f"/api/projects/{pid}/images/{image_id}", "delete the image again."),
        (f"/api/projects/{pid}/classes/{classes['blue']}", "delete the class again."),
        (f"/api/projects/{pid}", "delete the project again."),
    ):
        response = client.delete(path)
        assert response.status_code == 409
        assert response.json() == {"detail": f"{refusal} {action}"}
    assert (
        client.patch(
            f"/api/projects/{pid}/classes/{classes['blue']}", json={"name": "navy"}
        ).status_code
        == 200
    )

    assert client.post(f"/api/jobs/{queued}/cancel").json() == {"id": queued, "status": "cancelled"}
    assert [e["event"] for e in read_events(client, queued) if "event" in e] == ["cancelled"]
    assert client.post(f"/api/jobs/{running}/cancel").status_code == 202
    wait_for_job(client, running, {"cancelled"})
    assert client.delete(f"/api/projects/{pid}/images/{image_id}").status_code == 204
    assert client.delete(f"/api/projects/{pid}").status_code == 204


def test_jobs_left_unfinished_are_interrupted_at_start_up(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    with TestClient(create_app(settings), base_url=LOCAL) as client:
        pid, _ = make_trainable(client, per_class=3)
        orphan = client.app.state.store.create_job(pid, TrainParams(epochs=2))
    with TestClient(create_app(settings), base_url=LOCAL) as client:
        job = client.get(f"/api/jobs/{orphan.id}").json()
        assert job["status"] == "interrupted"
        assert (
            job["error"]
            == "Teachbox stopped while this job was queued or running, so it was interrupted. Start training again."
        )
        events = [e for e in read_events(client, orphan.id) if "event" in e]
        assert [e["event"] for e in events] == ["interrupted"]
        assert json.loads(events[0]["data"])["message"] == job["error"]
        fresh = client.post(f"/api/projects/{pid}/jobs")  # no body: the default parameters
        assert fresh.status_code == 202
        assert client.get(f"/api/jobs/{fresh.json()['id']}").json()["params"]["epochs"] == 40
        assert client.post(f"/api/jobs/{fresh.json()['id']}/cancel").status_code in (202, 409)


def test_same_images_and_seed_give_the_same_model_with_a_cold_or_a_warm_cache(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    """The first job embeds every image (building the backbone), the second finds them cached."""
    client = make_client(cache_dir=tmp_path / "fresh-cache")
    pid, _ = make_trainable(client)
    runs = []
    for _ in range(2):
        jid = client.post(f"/api/projects/{pid}/jobs", json={"epochs": 5, "seed": 9}).json()["id"]
        runs.append(wait_for_job(client, jid, {"succeeded"})["metrics"])
    cold, warm = runs
    assert [{**h, "seconds": 0} for h in cold["history"]] == [
        {**h, "seconds": 0} for h in warm["history"]
    ]
    assert (cold["val_accuracy"], cold["confusion_matrix"]) == (
        warm["val_accuracy"],
        warm["confusion_matrix"],
    )


def test_the_same_photos_in_two_projects_train_the_same_model(client: TestClient) -> None:
    """Uploaded in another order under other names, the same photos split and train alike: the
    split follows their content, not the names the server makes up for them."""
    photos = {
        name: [image_bytes(colour, seed=index * 10 + i) for i in range(6)]
        for index, (name, colour) in enumerate((("red", RED), ("blue", BLUE)))
    }
    runs = []
    for order in (1, -1):
        pid = create_project(client)
        for name, images in photos.items():
            cid = create_class(client, pid, name)
            files = [(f"{name}-{order}-{i}.jpg", data) for i, data in enumerate(images[::order])]
            assert upload(client, pid, cid, files).status_code == 200
        jid = client.post(f"/api/projects/{pid}/jobs", json={"epochs": 5, "seed": 2}).json()["id"]
        runs.append(wait_for_job(client, jid, {"succeeded"})["metrics"])
    first, second = ([{**h, "seconds": 0} for h in run["history"]] for run in runs)
    assert first == second


def test_more_blocks_than_the_backbone_has_are_refused(
    client: TestClient, trainable: tuple[str, dict[str, str]]
) -> None:
    pid, _ = trainable
    body = {"mode": "finetune", "backbone": "mobilenet_v3_small", "unfreeze_blocks": 14}
    response = client.post(f"/api/projects/{pid}/jobs", json=body)
    assert response.status_code == 422
    assert (
        "unfreeze_blocks is 14, but mobilenet_v3_small has 13 blocks. Choose 1 to 13"
        in (response.json()["detail"])
    )
    assert client.get(f"/api/projects/{pid}/jobs").json() == []
