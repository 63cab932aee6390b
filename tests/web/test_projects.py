"""Projects: create, list, read, rename, delete; unknown and malformed ids; invalid names."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.web.errors import ROUTING_SENTENCES
from tests.web.api_helpers import create_class, create_project

NO_PROJECT = "There is no project with this id. List the projects with GET /api/projects and use one of their ids."


def test_create_list_get_rename_delete(client: TestClient) -> None:
    created = client.post("/api/projects", json={"name": "  Fruit  "})
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "Fruit" and len(body["id"]) == 32
    pid = body["id"]
    assert [p["id"] for p in client.get("/api/projects").json()] == [pid]

    create_class(client, pid, "apple")
    detail = client.get(f"/api/projects/{pid}").json()
    assert detail["id"] == pid and detail["name"] == "Fruit"
    assert [(c["name"], c["image_count"]) for c in detail["classes"]] == [("apple", 0)]
    assert detail["active_job"] is None and detail["model_job_id"] is None

    renamed = client.patch(f"/api/projects/{pid}", json={"name": "Fruit bowl"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Fruit bowl"
    assert client.get(f"/api/projects/{pid}").json()["name"] == "Fruit bowl"

    assert client.delete(f"/api/projects/{pid}").status_code == 204
    assert client.get(f"/api/projects/{pid}").status_code == 404
    assert client.get("/api/projects").json() == []


def test_delete_removes_the_project_folder(client: TestClient) -> None:
    pid = create_project(client)
    folder = client.app.state.store.project_dir(pid)
    folder.mkdir(parents=True, exist_ok=True)
    assert client.delete(f"/api/projects/{pid}").status_code == 204
    assert not folder.exists()


@pytest.mark.parametrize(
    "pid", ["0" * 32, "nope", "..", "%2e%2e", "%2E%2E%2Fetc", "ABCDEF" + "0" * 26, "0" * 33]
)
def test_unknown_or_malformed_ids_are_404(client: TestClient, pid: str) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = client.request(method, f"/api/projects/{pid}", json={"name": "x"})
        assert response.status_code == 404
        assert response.json()["detail"] in (NO_PROJECT, ROUTING_SENTENCES[404])
    assert client.get(f"/api/projects/{pid}/jobs").status_code == 404


def test_path_traversal_in_ids_touches_nothing(client: TestClient) -> None:
    pid = create_project(client)
    data_dir = client.app.state.settings.data_dir
    before = sorted(p.relative_to(data_dir) for p in data_dir.rglob("*"))
    for path in (
        f"/api/projects/{pid}/classes/..%2F..%2Fteachbox.sqlite",
        f"/api/projects/..%2F{pid}",
        "/api/jobs/%2e%2e%2f%2e%2e",
    ):
        assert client.delete(path).status_code in (404, 405)
        assert client.get(path).status_code == 404
    if client.app.state.settings.database_url is None:
        assert (data_dir / "teachbox.sqlite").is_file()
    assert client.get(f"/api/projects/{pid}").status_code == 200
    assert sorted(
        p.relative_to(data_dir)
        for p in data_dir.rglob("*")
        if not p.name.startswith("teachbox.sqlite")
    ) == [p for p in before if not p.name.startswith("teachbox.sqlite")]


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 101},
        {"name": "a\x00b"},
        {},
        {"name": "ok", "extra": 1},
    ],
)
def test_invalid_project_bodies_are_422_with_a_sentence(client: TestClient, body: dict) -> None:
    response = client.post("/api/projects", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert (
        isinstance(detail, str)
        and detail.startswith("The request is not valid (")
        and detail.endswith("Correct it and send it again.")
    )
    assert response.json()["errors"]


def test_invalid_name_says_why(client: TestClient) -> None:
    response = client.post("/api/projects", json={"name": ""})
    assert (
        response.json()["detail"]
        == "The request is not valid (name: A project name must be 1 to 100 characters long). Correct it and send it again."
    )


def test_a_body_that_is_not_json_is_422_with_a_sentence(client: TestClient) -> None:
    response = client.post(
        "/api/projects", content=b"{bad", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert (
        response.json()["detail"]
        == "The request is not valid (the body is not valid JSON). Correct it and send it again."
    )
