"""Classes: names (1-64 characters, no control or formatting characters, no slashes, unique per
project), rename, delete."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.web.api_helpers import create_class, create_project, image_bytes, upload


def test_create_list_get_rename_delete(client: TestClient) -> None:
    pid = create_project(client)
    created = client.post(f"/api/projects/{pid}/classes", json={"name": "cat"})
    assert created.status_code == 201
    cid = created.json()["id"]
    assert created.json() == {"id": cid, "name": "cat", "image_count": 0}
    assert client.get(f"/api/projects/{pid}/classes").json() == [created.json()]
    assert client.get(f"/api/projects/{pid}/classes/{cid}").json()["name"] == "cat"

    renamed = client.patch(f"/api/projects/{pid}/classes/{cid}", json={"name": "kitten"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "kitten"
    assert client.delete(f"/api/projects/{pid}/classes/{cid}").status_code == 204
    assert client.get(f"/api/projects/{pid}/classes/{cid}").status_code == 404
    assert client.get(f"/api/projects/{pid}").json()["classes"] == []


@pytest.mark.parametrize("name", ["a", "x" * 64, "Golden retriever", "猫", "über-ok (2)", "..."])
def test_valid_names(client: TestClient, name: str) -> None:
    pid = create_project(client)
    response = client.post(f"/api/projects/{pid}/classes", json={"name": name})
    assert response.status_code == 201 and response.json()["name"] == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "  ",
        "x" * 65,
        "a/b",
        "a\\b",
        "tab\there",
        "new\nline",
        "nul\x00",
        "bell\x07",
        "rtl\u202emark",
        "zero\u200bwidth",
        "line\u2028separator",
        "\u00a0\u3000",
        None,
        7,
    ],
)
def test_invalid_names_are_422(client: TestClient, name: object) -> None:
    pid = create_project(client)
    response = client.post(f"/api/projects/{pid}/classes", json={"name": name})
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)
    assert client.get(f"/api/projects/{pid}/classes").json() == []


def test_slash_is_refused_with_its_reason(client: TestClient) -> None:
    pid = create_project(client)
    response = client.post(f"/api/projects/{pid}/classes", json={"name": "../etc"})
    assert (
        response.json()["detail"]
        == "The request is not valid (name: A class name may not contain slashes). Correct it and send it again."
    )


def test_duplicate_names_are_422_on_create_and_rename(client: TestClient) -> None:
    pid = create_project(client)
    create_class(client, pid, "cat")
    dog = create_class(client, pid, "dog")
    duplicate = client.post(f"/api/projects/{pid}/classes", json={"name": "cat"})
    assert duplicate.status_code == 422
    assert duplicate.json() == {
        "detail": "This project already has a class named 'cat'. Choose another name."
    }
    assert (
        client.patch(f"/api/projects/{pid}/classes/{dog}", json={"name": " cat "}).status_code
        == 422
    )
    assert (
        client.patch(f"/api/projects/{pid}/classes/{dog}", json={"name": "dog"}).status_code == 200
    )
    other = create_project(client, "other")
    assert client.post(f"/api/projects/{other}/classes", json={"name": "cat"}).status_code == 201


def test_a_class_of_another_project_is_404(client: TestClient) -> None:
    first, second = create_project(client), create_project(client, "second")
    cid = create_class(client, first, "cat")
    assert client.get(f"/api/projects/{second}/classes/{cid}").status_code == 404
    assert client.delete(f"/api/projects/{second}/classes/{cid}").status_code == 404
    assert client.get(f"/api/projects/{first}/classes/{cid}").status_code == 200


@pytest.mark.parametrize("cid", ["0" * 32, "x", "%2e%2e", "%2E%2E%2F%2E%2E"])
def test_unknown_class_ids_are_404(client: TestClient, cid: str) -> None:
    pid = create_project(client)
    assert client.get(f"/api/projects/{pid}/classes/{cid}").status_code == 404
    assert client.patch(f"/api/projects/{pid}/classes/{cid}", json={"name": "a"}).status_code == 404
    assert upload(client, pid, cid, [("a.jpg", image_bytes())]).status_code == 404


def test_delete_removes_its_images_and_files(client: TestClient) -> None:
    pid = create_project(client)
    cid = create_class(client, pid, "cat")
    added = upload(client, pid, cid, [(f"{i}.jpg", image_bytes(seed=i)) for i in range(3)]).json()[
        "added"
    ]
    store = client.app.state.store
    paths = [store.image_path(store.get_image(pid, item["id"])) for item in added]
    assert all(path.is_file() for path in paths)
    assert client.delete(f"/api/projects/{pid}/classes/{cid}").status_code == 204
    assert not any(path.exists() for path in paths)
    assert client.get(f"/api/projects/{pid}/images").json() == []
    assert client.get(f"/api/projects/{pid}/images/{added[0]['id']}").status_code == 404
