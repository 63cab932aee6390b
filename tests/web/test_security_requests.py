"""Issue 14, items 1 and 2: only allowed host names are answered (DNS rebinding), and no other
site's page can change anything (cross-site requests), while scripts and the page keep working."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.web.middleware import CONTENT_SECURITY_POLICY
from tests.web.api_helpers import ServerProcess, create_class, create_project, image_bytes

FOREIGN = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}


def assert_refused(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["detail"].endswith(".")
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize(
    "host",
    ["evil.example:8000", "evil.example", "127.0.0.1.evil.example", "[::1]evil", "localhost:80:80"],
)
def test_an_unknown_host_name_gets_400_and_reaches_nothing(client: TestClient, host: str) -> None:
    create_project(client, "secret")
    for method, path in (("GET", "/api/projects"), ("POST", "/api/projects"), ("GET", "/")):
        response = client.request(method, path, headers={"Host": host}, json={"name": "x"})
        assert_refused(response, 400)
        assert "TEACHBOX_ALLOWED_HOSTS" in response.json()["detail"]
        assert "secret" not in response.text
    assert [p["name"] for p in client.get("/api/projects").json()] == ["secret"]


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.1:8000", "localhost:5000", "LOCALHOST", "[::1]:8000", "[::1]"]
)
def test_loopback_names_with_any_port_are_answered(client: TestClient, host: str) -> None:
    assert client.get("/api/projects", headers={"Host": host}).status_code == 200


def test_allowed_hosts_adds_the_names_a_proxy_forwards(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(allowed_hosts="teachbox.example.school, Other.Example")
    for host in ("teachbox.example.school", "other.example:443", "localhost"):
        assert client.get("/api/projects", headers={"Host": host}).status_code == 200
    assert_refused(client.get("/api/projects", headers={"Host": "evil.example"}), 400)


def test_the_setting_reads_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEACHBOX_ALLOWED_HOSTS", "a.example, B.example,")
    assert Settings().allowed_hosts == ["a.example", "b.example"]
    monkeypatch.delenv("TEACHBOX_ALLOWED_HOSTS")
    assert Settings().allowed_hosts == []


def test_a_specific_bind_address_is_an_allowed_name(make_client: Callable[..., TestClient]) -> None:
    client = make_client(host="192.168.1.20")
    assert client.get("/api/health", headers={"Host": "192.168.1.20:8000"}).status_code == 200
    wildcard = make_client(host="0.0.0.0")
    assert_refused(wildcard.get("/api/health", headers={"Host": "0.0.0.0:8000"}), 400)


@pytest.mark.parametrize(
    "headers",
    [
        FOREIGN,
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:9999"},  # another port is another origin
        {"Origin": "https://127.0.0.1"},  # another scheme too
    ],
)
def test_unsafe_requests_from_another_site_get_403_and_change_nothing(
    client: TestClient, headers: dict[str, str]
) -> None:
    pid = create_project(client, "mine")
    cid = create_class(client, pid, "cat")
    files = [("files", ("a.jpg", image_bytes(), "image/jpeg"))]
    attempts = [
        client.post("/api/projects", json={"name": "theirs"}, headers=headers),
        client.post(f"/api/projects/{pid}/classes/{cid}/images", files=files, headers=headers),
        client.post(f"/api/projects/{pid}/jobs", headers=headers),
        client.post(f"/api/projects/{pid}/compare", headers=headers),
        client.patch(f"/api/projects/{pid}", json={"name": "renamed"}, headers=headers),
        client.delete(f"/api/projects/{pid}/classes/{cid}", headers=headers),
        client.delete(f"/api/projects/{pid}", headers=headers),
    ]
    for response in attempts:
        assert_refused(response, 403)
        assert "another site" in response.json()["detail"]
    projects = client.get("/api/projects").json()
    assert [(p["name"], p["class_count"], p["image_count"]) for p in projects] == [("mine", 1, 0)]
    assert client.get(f"/api/projects/{pid}/jobs").json() == []


def test_reading_is_allowed_from_anywhere_the_host_is_allowed(client: TestClient) -> None:
    create_project(client, "mine")
    assert client.get("/api/projects", headers=FOREIGN).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},  # a script: no Origin, no Fetch Metadata
        {"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"},  # the page itself
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
    ],
)
def test_scripts_and_the_page_itself_may_change_things(
    client: TestClient, headers: dict[str, str]
) -> None:
    response = client.post("/api/projects", json={"name": "ok"}, headers=headers)
    assert response.status_code == 201, response.text


def test_the_page_behind_a_proxy_keeps_working(start_server: Callable[..., ServerProcess]) -> None:
    """What nginx sends (README): the browser's Host, and X-Forwarded-Proto, which uvicorn trusts
    from 127.0.0.1, so the page's https origin is the server's own origin."""
    server = start_server(allowed_hosts="teachbox.example.school")
    page = {
        "Host": "teachbox.example.school",
        "Origin": "https://teachbox.example.school",
        "Sec-Fetch-Site": "same-origin",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "192.0.2.7",
    }
    created = server.client.post("/api/projects", json={"name": "class 7"}, headers=page)
    assert created.status_code == 201, created.text
    for foreign in (
        page | {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        page | {"Origin": "http://teachbox.example.school"},  # the same name without TLS
    ):
        assert_refused(
            server.client.post("/api/projects", json={"name": "x"}, headers=foreign), 403
        )
    assert_refused(server.client.get("/", headers=page | {"Host": "evil.example"}), 400)


def test_a_real_server_refuses_a_rebound_name_and_a_foreign_page(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server()
    rebound = server.client.get("/api/projects", headers={"Host": f"evil.example:{server.port}"})
    assert_refused(rebound, 400)
    foreign = server.client.post("/api/projects", json={"name": "x"}, headers=FOREIGN)
    assert_refused(foreign, 403)
    own = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    assert server.client.post("/api/projects", json={"name": "y"}, headers=own).status_code == 201
    assert [p["name"] for p in server.client.get("/api/projects").json()] == ["y"]
