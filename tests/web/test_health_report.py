"""Data health through the API: findings on the project's current images, the learning curve, no server paths."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.web.api_helpers import BLUE, RED, create_class, create_project, image_bytes, upload

IMAGE_ID = re.compile(r"[0-9a-f]{32}")


def unhealthy_project(client: TestClient) -> str:
    """'red' with 8 photos, 'blue' with 3, and one red photo uploaded to 'blue' as well."""
    pid = create_project(client, "unhealthy")
    red, blue = create_class(client, pid, "red"), create_class(client, pid, "blue")
    reds = [(f"red_{i}.jpg", image_bytes(RED, seed=i)) for i in range(8)]
    assert upload(client, pid, red, reds).status_code == 200
    blues = [(f"blue_{i}.jpg", image_bytes(BLUE, seed=100 + i)) for i in range(3)]
    assert upload(client, pid, blue, [*blues, ("copy.jpg", reds[0][1])]).status_code == 200
    return pid


def test_findings_say_what_is_wrong_and_name_images_by_id(client: TestClient) -> None:
    pid = unhealthy_project(client)
    response = client.get(f"/api/projects/{pid}/health")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["format"] == "teachbox-health/1" and report["labels"] == ["red", "blue"]
    kinds = {finding["kind"]: finding for finding in report["findings"]}
    assert kinds["duplicate_across_classes"]["severity"] == "warning"
    assert kinds["duplicate_across_classes"]["classes"] == ["blue", "red"]
    assert kinds["duplicate_across_classes"]["message"].endswith(
        "Keep each image in its right class only."
    )
    message = kinds["duplicate_across_classes"]["message"]
    assert "'red_0.jpg' in 'red'" in message and "'copy.jpg' in 'blue'" in message
    few = [
        f
        for f in report["findings"]
        if f["kind"] == "too_few_images" and f["severity"] == "warning"
    ]
    assert [f["classes"] for f in few] == [["red"], ["blue"]] and few[1]["message"].startswith(
        "'blue' has 4 images"
    )
    images = kinds["duplicate_across_classes"]["images"]
    pair = kinds["duplicate_across_classes"]["pairs"][0]
    assert len(images) == 2 and all(IMAGE_ID.fullmatch(i) for i in [*images, pair["a"], pair["b"]])
    assert str(client.app.state.settings.data_dir) not in response.text
    curve = report["learning_curve"]
    assert curve["fractions"] == [0.25, 0.5, 0.75, 1.0] and len(curve["accuracy"]) == 4
    assert set(curve["trend"]) == {"red", "blue"} and isinstance(curve["needs_more"], list)


def test_health_follows_uploads_and_the_curve_is_optional(client: TestClient) -> None:
    pid = create_project(client)
    red, blue = create_class(client, pid, "red"), create_class(client, pid, "blue")
    upload(client, pid, red, [(f"r{i}.jpg", image_bytes(RED, seed=i)) for i in range(3)])
    upload(client, pid, blue, [(f"b{i}.jpg", image_bytes(BLUE, seed=50 + i)) for i in range(3)])
    before = client.get(f"/api/projects/{pid}/health", params={"curve": "false"}).json()
    assert before["learning_curve"] is None
    assert sum(before["counts"]["train"].values()) + sum(before["counts"]["val"].values()) == 6
    assert not any(f["kind"] == "duplicate_within_class" for f in before["findings"])
    upload(client, pid, red, [("again.jpg", image_bytes(RED, seed=0))])
    after = client.get(f"/api/projects/{pid}/health", params={"curve": "false"}).json()
    assert sum(after["counts"]["train"].values()) + sum(after["counts"]["val"].values()) == 7
    assert any(
        f["kind"] == "duplicate_within_class" or f["kind"] == "duplicate_across_split"
        for f in after["findings"]
    )


def test_health_errors(client: TestClient) -> None:
    pid = create_project(client)
    empty = client.get(f"/api/projects/{pid}/health")
    assert empty.status_code == 422
    assert empty.json() == {
        "detail": "This project has no images yet. Add images to its classes, then check its data health."
    }
    assert client.get(f"/api/projects/{'0' * 32}/health").status_code == 404
    assert client.get(f"/api/projects/{pid}/health", params={"curve": "maybe"}).status_code == 422


def test_a_suspected_mislabel_is_named_by_id_and_fixed_in_one_move(client: TestClient) -> None:
    pid = create_project(client, "mislabelled")
    red, blue = create_class(client, pid, "red"), create_class(client, pid, "blue")
    reds = [(f"red_{i}.jpg", image_bytes(RED, seed=i)) for i in range(8)]
    assert upload(client, pid, red, reds).status_code == 200
    blues = [(f"blue_{i}.jpg", image_bytes(BLUE, seed=100 + i)) for i in range(8)]
    wrong = ("copy.jpg", image_bytes(RED, seed=50))  # a red picture, filed under 'blue'
    assert upload(client, pid, blue, [*blues, wrong]).status_code == 200
    images = {i["filename"]: i for i in client.get(f"/api/projects/{pid}/images").json()}
    copy = images["copy.jpg"]
    report = client.get(f"/api/projects/{pid}/health", params={"curve": False}).json()
    found = [f for f in report["findings"] if f["kind"] == "suspected_mislabels"]
    assert len(found) == 1 and found[0]["severity"] == "warning"
    suspects = {s["image_id"]: s for s in found[0]["suspects"]}
    assert copy["id"] in suspects
    suspect = suspects[copy["id"]]
    assert suspect["labelled"] == "blue" and suspect["predicted"] == "red"
    assert suspect["thumbnail_url"] == f"/api/projects/{pid}/images/{copy['id']}/thumbnail"
    assert suspect["path"] is None and str(client.app.state.settings.data_dir) not in str(found)
    moved = client.patch(f"/api/projects/{pid}/images/{copy['id']}", json={"class_id": red})
    assert moved.status_code == 200, moved.text
    again = client.get(f"/api/projects/{pid}/health", params={"curve": False}).json()
    still = [s for f in again["findings"] for s in f["suspects"] if s["image_id"] == copy["id"]]
    assert still == []
