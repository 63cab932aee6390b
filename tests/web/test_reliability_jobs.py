"""Issue 6, cases 22-27: races, deletes, a full disk, divergence, bad requests and GPU memory.

Cases 19-21 (kill -9, SIGTERM, disconnecting clients) need a real server process and real
signals; they are in test_server.py. Failures that cannot be produced honestly here (a full disk,
a GPU out of memory, a loss that turns non-finite) are injected at the one edge where they would
arise, and everything around that edge is the real app.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

import app.engine.training
from tests.web.api_helpers import (
    BLUE,
    RED,
    SLOW_JOB,
    create_class,
    create_project,
    files_under,
    image_bytes,
    make_trainable,
    post_at_once,
    read_events,
    upload,
    wait_for_job,
)

QUICK_JOB = {"mode": "transfer", "epochs": 2}


def train(client: TestClient, pid: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Post a job and wait for its end; returns the job."""
    response = client.post(f"/api/projects/{pid}/jobs", json=params or QUICK_JOB)
    assert response.status_code == 202, response.text
    return wait_for_job(
        client, response.json()["id"], {"succeeded", "failed", "cancelled", "interrupted"}
    )


def events_of(client: TestClient, jid: str) -> list[dict[str, Any]]:
    return [
        {"event": e["event"], **json.loads(e["data"])}
        for e in read_events(client, jid)
        if "event" in e
    ]


def model_state(client: TestClient, pid: str) -> dict[str, Any]:
    """What says which model a project has: its model job, the zip's hash, and predict's answer."""
    store = client.app.state.store
    model_job_id = client.get(f"/api/projects/{pid}").json()["model_job_id"]
    path = store.model_path(store.get_job(model_job_id))
    predicted = client.post(
        f"/api/projects/{pid}/predict", files={"file": ("x.jpg", image_bytes(RED, seed=900))}
    ).json()
    return {
        "model_job_id": model_job_id,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "predict": predicted,
    }


def leftovers(client: TestClient, pid: str) -> list[str]:
    models = client.app.state.store.project_dir(pid) / "models"
    return sorted(p.name for p in models.iterdir() if not p.name.endswith(".zip"))


# 22. Two job requests at once for one project -> exactly one 202 and one 409.


def test_case_22_two_job_requests_at_once_give_one_202_and_one_409(
    client: TestClient, trainable: tuple[str, dict[str, str]]
) -> None:
    pid, _ = trainable
    responses = post_at_once(client, f"/api/projects/{pid}/jobs", 2, json=SLOW_JOB)
    accepted, refused = sorted(responses, key=lambda r: r.status_code)
    assert (accepted.status_code, refused.status_code) == (202, 409)
    jid = accepted.json()["id"]
    assert refused.json()["detail"].startswith(f"Job {jid} is already ")
    assert refused.json()["detail"].endswith(
        "for this project. Wait for it to finish or cancel it, then start another."
    )
    assert [job["id"] for job in client.get(f"/api/projects/{pid}/jobs").json()] == [jid]
    assert client.post(f"/api/jobs/{jid}/cancel").status_code == 202
    wait_for_job(client, jid, {"cancelled"})


# 23. Deleting a class or images while a job trains -> the job works on a snapshot of the data it
#     started with; the delete answers 409 and says which job to wait for.


def _started_event(client: TestClient, jid: str) -> dict[str, Any]:
    """The job's `started` event, once the worker has written it."""
    store = client.app.state.store
    wait_for_job(client, jid, {"running"})
    while not (started := [e for e in store.events_after(jid, 0) if e.type == "started"]):
        threading.Event().wait(0.05)
    return json.loads(started[0].data)


def test_case_23_a_job_trains_on_its_snapshot_and_deletes_meanwhile_are_409(
    client: TestClient,
) -> None:
    pid, classes = make_trainable(client, per_class=4)
    jid = client.post(f"/api/projects/{pid}/jobs", json=SLOW_JOB).json()["id"]
    started = _started_event(client, jid)
    assert started["n_train"] + started["n_val"] == 8

    late = upload(client, pid, classes["red"], [("late.jpg", image_bytes(RED, seed=77))])
    assert late.status_code == 200
    assert client.get(f"/api/jobs/{jid}").json()["image_count"] == 8
    snapshot = client.app.state.store.job_items(client.app.state.store.get_job(jid))
    assert len(snapshot) == 8 and all(path.is_file() for path, _ in snapshot)
    image = client.get(f"/api/projects/{pid}/images").json()[0]
    refusal = (
        f"Job {jid} is running on this project's images. Wait for it to finish or cancel it, then"
    )
    for path, action in (
        (f"/api/projects/{pid}/images/{image['id']}", "delete the image again."),
        (
            f"/api/projects/{pid}/classes/{classes['red']}/images/{image['id']}",
            "delete the image again.",
        ),
        (f"/api/projects/{pid}/classes/{classes['blue']}", "delete the class again."),
        (f"/api/projects/{pid}", "delete the project again."),
    ):
        response = client.delete(path)
        assert response.status_code == 409
        assert response.json() == {"detail": f"{refusal} {action}"}
    # A corrected label is fine meanwhile: the job keeps the labels it was submitted with.
    moved = client.patch(
        f"/api/projects/{pid}/images/{image['id']}", json={"class_id": classes["blue"]}
    )
    assert moved.status_code == 200
    assert client.app.state.store.job_items(client.app.state.store.get_job(jid)) == snapshot
    assert all(path.is_file() for path, _ in snapshot)
    assert client.get(image["url"]).status_code == 200

    assert client.post(f"/api/jobs/{jid}/cancel").status_code == 202
    wait_for_job(client, jid, {"cancelled"})
    assert client.delete(f"/api/projects/{pid}/images/{image['id']}").status_code == 204
    assert client.delete(f"/api/projects/{pid}/classes/{classes['blue']}").status_code == 204


# 24. A full disk during an upload -> 507 and no partial file; during a model write -> the previous
#     model intact and the job failed with a reason.


def _full_disk_under(folder: Path) -> Callable[[int], None]:
    """os.fsync that fails with ENOSPC for files under `folder`: where a full disk shows itself."""
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if str(folder) in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    return fsync


def test_case_24_a_full_disk_keeps_what_is_stored(
    client: TestClient, trainable: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    pid, classes = trainable
    first = train(client, pid)
    assert first["status"] == "succeeded"
    before, stored = model_state(client, pid), files_under(client.app.state.settings.data_dir)
    project_dir = client.app.state.store.project_dir(pid)

    monkeypatch.setattr(os, "fsync", _full_disk_under(project_dir / "images"))
    full = upload(client, pid, classes["red"], [("new.jpg", image_bytes(RED, seed=55))])
    assert full.status_code == 507
    assert full.json() == {
        "detail": "The server's disk is full. Free some space or delete old projects, then try again."
    }
    assert files_under(client.app.state.settings.data_dir) == stored

    monkeypatch.setattr(os, "fsync", _full_disk_under(project_dir / "models"))
    failed = train(client, pid)
    assert failed["status"] == "failed"
    assert failed["error"] == (
        "The disk is full, so the model could not be saved. Free some space, then train again."
    )
    assert events_of(client, failed["id"])[-1] == {
        "event": "failed",
        "type": "failed",
        "error": failed["error"],
    }
    monkeypatch.undo()
    assert model_state(client, pid) == before
    assert leftovers(client, pid) == []
    assert not client.app.state.store.model_path(
        client.app.state.store.get_job(failed["id"])
    ).exists()


# 25. A learning rate that makes the loss non-finite -> the job fails with "diverged", the previous
#     model stays the project's model.
#
# Adam moves each weight by at most about the learning rate per step, and MobileNet's features end
# in ReLU6, so no rate the API allows (<= 1) can overflow a float32 loss in a few epochs. A rate too
# high for the data shows itself as weights that turn non-finite after a step; that one step is
# made to do so here, and the training core's own check, the job and the store do the rest.


def test_case_25_a_diverging_loss_fails_the_job_and_keeps_the_previous_model(
    client: TestClient, trainable: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    pid, _ = trainable
    assert train(client, pid)["status"] == "succeeded"
    before = model_state(client, pid)
    real_step = torch.optim.Adam.step

    def overshooting_step(optimiser: torch.optim.Adam, *args: Any, **kwargs: Any) -> Any:
        loss = real_step(optimiser, *args, **kwargs)
        with torch.no_grad():
            for group in optimiser.param_groups:
                for weight in group["params"]:
                    weight.mul_(float("inf"))
        return loss

    monkeypatch.setattr(torch.optim.Adam, "step", overshooting_step)
    failed = train(
        client, pid, {"mode": "transfer", "epochs": 3, "batch_size": 2, "learning_rate": 1.0}
    )
    monkeypatch.undo()
    assert failed["status"] == "failed"
    assert failed["error"].startswith("Training diverged: the loss became nan in epoch 1.")
    assert failed["error"].endswith("Lower the learning rate (for example to 0.1) and train again.")
    assert events_of(client, failed["id"])[-1]["error"] == failed["error"]
    assert model_state(client, pid) == before
    assert leftovers(client, pid) == []


# 26. Out-of-range parameters, a single class, empty classes, duplicate or very long class names
#     -> 422 before anything is queued.

BAD_PARAMS = {
    "epochs 0": {"epochs": 0},
    "epochs 501": {"epochs": 501},
    "epochs as text": {"epochs": "many"},
    "batch size 0": {"batch_size": 0},
    "batch size 513": {"batch_size": 513},
    "learning rate 0": {"learning_rate": 0},
    "learning rate negative": {"learning_rate": -0.1},
    "learning rate 1.5": {"learning_rate": 1.5},
    "unfreeze 0": {"mode": "finetune", "unfreeze_blocks": 0},
    "unfreeze 21": {"mode": "finetune", "unfreeze_blocks": 21},
    "seed negative": {"seed": -1},
    "validation split 0.9": {"val_split": 0.9},
    "unknown mode": {"mode": "magic"},
    "unknown backbone": {"backbone": "resnet50"},
    "unknown field": {"surprise": 1},
    "not an object": [1, 2],
}


@pytest.mark.parametrize("case", [*BAD_PARAMS, "NaN", "Infinity"])
def test_case_26_out_of_range_parameters_are_422_before_queueing(
    client: TestClient, trainable: tuple[str, dict[str, str]], case: str
) -> None:
    pid, _ = trainable
    url = f"/api/projects/{pid}/jobs"
    if case in BAD_PARAMS:
        response = client.post(url, json=BAD_PARAMS[case])
    else:  # Python's JSON reader takes these; the ranges must still hold
        body = f'{{"learning_rate": {case}}}'.encode()
        response = client.post(url, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("The request is not valid (")
    assert response.json()["detail"].endswith("Correct it and send it again.")
    assert client.get(url).json() == []


def test_case_26_missing_classes_and_images_are_422_before_queueing(client: TestClient) -> None:
    pid = create_project(client)
    url = f"/api/projects/{pid}/jobs"
    red = create_class(client, pid, "red")
    upload(client, pid, red, [(f"{i}.jpg", image_bytes(RED, seed=i)) for i in range(5)])
    single = client.post(url, json=QUICK_JOB)
    assert single.status_code == 422
    assert single.json() == {
        "detail": "Training needs at least 2 classes; there is 1. Add another class with images."
    }
    blue = create_class(client, pid, "blue")
    empty = client.post(url, json=QUICK_JOB)
    assert empty.json() == {
        "detail": "Each class needs at least 3 images: 'blue' has 0. Add images to it."
    }
    upload(client, pid, blue, [("0.jpg", image_bytes(BLUE))])
    create_class(client, pid, "green")
    short = client.post(url, json=QUICK_JOB)
    assert short.json() == {
        "detail": "Each class needs at least 3 images: 'blue' has 1, 'green' has 0. Add images to them."
    }
    assert client.get(url).json() == []
    assert client.get(f"/api/projects/{pid}").json()["active_job"] is None


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("red", "This project already has a class named 'red'. Choose another name."),
        ("  red  ", "This project already has a class named 'red'. Choose another name."),
        (
            "x" * 65,
            "The request is not valid (name: A class name must be 1 to 64 characters long). Correct it and send it again.",
        ),
        (
            "x" * 10_000,
            "The request is not valid (name: A class name must be 1 to 64 characters long). Correct it and send it again.",
        ),
    ],
    ids=["duplicate", "duplicate with spaces", "65 characters", "10000 characters"],
)
def test_case_26_duplicate_or_very_long_class_names_are_422(
    client: TestClient, trainable: tuple[str, dict[str, str]], name: str, detail: str
) -> None:
    pid, classes = trainable
    response = client.post(f"/api/projects/{pid}/classes", json={"name": name})
    assert response.status_code == 422
    assert response.json()["detail"] == detail
    assert len(response.content) < 2000  # the name is not echoed back in full
    renamed = client.patch(f"/api/projects/{pid}/classes/{classes['blue']}", json={"name": name})
    assert renamed.status_code == 422
    assert [c["name"] for c in client.get(f"/api/projects/{pid}/classes").json()] == ["red", "blue"]
    assert client.get(f"/api/projects/{pid}/jobs").json() == []


# 27. CUDA out of memory -> a smaller batch is tried or the job fails clearly; the worker survives.
#
# There is no GPU here. The error PyTorch raises when CUDA runs out of memory is raised from the
# training step (inside `fit`, as the real one would be) whenever the batch is larger than `fits`.


def _gpu_with_room_for(monkeypatch: pytest.MonkeyPatch, fits: int) -> list[int]:
    """A GPU with room for batches of at most `fits`: transfer training's first step (the
    cross-validated heads) runs out of memory above it, as CUDA would."""
    real_cross_validate = app.engine.training.cross_validate
    tried: list[int] = []

    def cross_validate(
        x: Any, y: Any, n_classes: int, params: Any, *args: Any, **kwargs: Any
    ) -> Any:
        tried.append(params.batch_size)
        if params.batch_size > fits:
            raise torch.cuda.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)"
            )
        return real_cross_validate(x, y, n_classes, params, *args, **kwargs)

    monkeypatch.setattr(app.engine.training, "cross_validate", cross_validate)
    return tried


def test_case_27_out_of_gpu_memory_retries_with_smaller_batches(
    client: TestClient, trainable: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    pid, _ = trainable
    tried = _gpu_with_room_for(monkeypatch, fits=8)
    job = train(client, pid, {"mode": "transfer", "epochs": 2, "batch_size": 32})
    assert job["status"] == "succeeded", job["error"]
    assert tried == [32, 16, 8]
    assert job["metrics"]["batch_size"] == 8 and job["params"]["batch_size"] == 32
    warnings = [e["message"] for e in events_of(client, job["id"]) if e["event"] == "log"]
    assert warnings[:2] == [
        "The GPU ran out of memory with a batch size of 32; training again with 16.",
        "The GPU ran out of memory with a batch size of 16; training again with 8.",
    ]
    model = client.get(f"/api/jobs/{job['id']}/model")
    assert model.status_code == 200


def test_case_27_out_of_gpu_memory_at_every_size_fails_clearly_and_the_worker_goes_on(
    client: TestClient, trainable: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    pid, _ = trainable
    tried = _gpu_with_room_for(monkeypatch, fits=0)
    failed = train(client, pid, {"mode": "transfer", "epochs": 2, "batch_size": 32})
    assert failed["status"] == "failed"
    assert tried == [32, 16, 8, 4]
    assert failed["error"] == (
        "The GPU ran out of memory even with a batch size of 4. Choose a smaller batch size or "
        "backbone, or stop other work on the GPU, then train again."
    )
    last = events_of(client, failed["id"])[-1]
    assert last["event"] == "failed" and last["error"] == failed["error"]
    monkeypatch.undo()
    assert train(client, pid)["status"] == "succeeded"


def test_a_job_that_outlives_the_shutdown_timeout_is_recorded_as_interrupted(
    client: TestClient,
) -> None:
    """The process ends with the job's thread: the record must not stay "running" until the next start."""
    pid, _ = make_trainable(client, per_class=4)
    jid = client.post(f"/api/projects/{pid}/jobs", json=SLOW_JOB).json()["id"]
    wait_for_job(client, jid, {"running"})
    runner = client.app.state.runner  # type: ignore[attr-defined]
    runner.stop(timeout_s=0)  # the job's next stop check is still ahead
    try:
        job = client.get(f"/api/jobs/{jid}").json()
        assert job["status"] == "interrupted"
        assert job["error"].startswith("Teachbox was shut down while this job was running")
        assert events_of(client, jid)[-1]["event"] == "interrupted"
    finally:
        runner.stop(timeout_s=60)  # now wait for the thread, as a shutdown with time to spare would
    assert client.get(f"/api/jobs/{jid}").json()["status"] == "interrupted"  # not ended twice
