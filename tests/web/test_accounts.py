"""Issue 14, item 5: accounts on a shared server (TEACHBOX_AUTH=accounts), against the real app.

Users are made through the service (as `teachbox users add` does); everything else goes through
the API: signing in, cookies, tokens, join codes, the throttle, and who sees which project.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.cli.main import main
from app.config import Settings
from app.service.accounts import Accounts, User
from app.service.throttle import FAILURES_PER_ADDRESS, FAILURES_PER_NAME
from app.web.factory import create_app
from tests.web.api_helpers import (
    LOCAL,
    ROOT,
    ServerProcess,
    create_project,
    image_bytes,
    make_trainable,
    make_zip,
    read_events,
)

PASSWORD = "a long password"
ANY_ID = "0123456789abcdef0123456789abcdef"
# Reachable without credentials on a server with accounts: the health check, signing in, joining.
PUBLIC = {("GET", "/api/health"), ("POST", "/api/session"), ("POST", "/api/join")}


@dataclass
class Shared:
    """A server with accounts: the app, a client with no credentials, and its accounts."""

    app: Any
    anonymous: TestClient
    accounts: Accounts

    def add(self, name: str, admin: bool = False) -> User:
        return self.accounts.add_user(name, PASSWORD, admin=admin)

    def client_of(self, name: str, admin: bool = False) -> TestClient:
        """A client that sends a new user's bearer token with every request."""
        _, secret = self.accounts.create_token(self.add(name, admin), "tests")
        return TestClient(self.app, base_url=LOCAL, headers={"Authorization": f"Bearer {secret}"})


@pytest.fixture
def shared(make_settings: Callable[..., Settings]) -> Iterator[Shared]:
    app = create_app(make_settings(auth="accounts"))
    with TestClient(app, base_url=LOCAL) as anonymous:
        yield Shared(app, anonymous, app.state.accounts)


def sign_in(client: TestClient, name: str, password: str = PASSWORD) -> Any:
    return client.post("/api/session", json={"username": name, "password": password})


def api_operations(app: Any) -> list[tuple[str, str]]:
    """Every (method, path) of the app's API, path parameters filled with a valid-looking id.

    Read from the app's own schema, which lists every route under /api/ (only the page routes are
    left out of it), as FastAPI no longer exposes included routes as a flat list."""
    found = []
    for template, item in app.openapi()["paths"].items():
        path = re.sub(r"\{[^}]+\}", ANY_ID, template)
        found += [(method.upper(), path) for method in item if template.startswith("/api/")]
    return found


# Without credentials


def test_every_api_route_but_health_sign_in_and_join_answers_401_without_credentials(
    shared: Shared,
) -> None:
    operations = api_operations(shared.app)
    assert len(operations) > 30
    for method, path in operations:
        response = shared.anonymous.request(method, path)
        if (method, path) in PUBLIC:
            assert response.status_code != 401, (method, path)
            continue
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["detail"].startswith("Sign in first")
        assert response.headers["www-authenticate"] == 'Bearer realm="Teachbox"'


def test_a_made_up_token_or_cookie_is_no_credential(shared: Shared) -> None:
    shared.add("ann")
    for headers in (
        {"Authorization": "Bearer tbt_made-up"},
        {"Authorization": "Basic YW5uOmEgbG9uZyBwYXNzd29yZA=="},
        {"Cookie": "teachbox_session=made-up"},
    ):
        assert shared.anonymous.get("/api/projects", headers=headers).status_code == 401


def test_the_page_static_files_docs_and_share_links_need_no_sign_in(shared: Shared) -> None:
    page = shared.anonymous.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 200 and 'id="signin-form"' in page.text
    assert shared.anonymous.get("/static/js/accounts.js").status_code == 200
    assert shared.anonymous.get("/docs").status_code == 200
    assert shared.anonymous.get("/openapi.json").status_code == 200
    assert shared.anonymous.get(f"/s/{ANY_ID}").status_code != 401


# Signing in and out


def test_sign_in_sets_an_httponly_samesite_cookie_and_me_names_the_user(shared: Shared) -> None:
    shared.add("ann")
    response = sign_in(shared.anonymous, "ann")
    assert response.status_code == 204
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("teachbox_session=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= flags
    assert "secure" not in flags  # plain http: a Secure cookie would never come back
    assert shared.anonymous.get("/api/me").json() == {"username": "ann", "admin": False}


def test_the_cookie_is_secure_over_https(shared: Shared) -> None:
    shared.add("ann")
    response = sign_in(TestClient(shared.app, base_url="https://127.0.0.1"), "ann")
    assert response.status_code == 204
    assert "secure" in response.headers["set-cookie"].lower()


def test_sign_out_ends_the_session_on_the_server(shared: Shared) -> None:
    shared.add("ann")
    sign_in(shared.anonymous, "ann")
    secret = shared.anonymous.cookies["teachbox_session"]
    signed_out = shared.anonymous.delete("/api/session")
    assert signed_out.status_code == 204
    assert 'teachbox_session=""' in signed_out.headers["set-cookie"]
    replayed = shared.anonymous.get("/api/me", headers={"Cookie": f"teachbox_session={secret}"})
    assert replayed.status_code == 401


def test_a_wrong_password_is_401_then_the_name_is_throttled(shared: Shared) -> None:
    shared.add("ann")
    shared.add("bob")
    wrong = sign_in(shared.anonymous, "ann", "not the password")
    assert wrong.status_code == 401
    assert wrong.json()["detail"].startswith("The user name or the password is wrong.")
    assert wrong.headers["www-authenticate"] == 'Bearer realm="Teachbox"'
    assert sign_in(shared.anonymous, "nobody").json() == wrong.json()  # names are not revealed
    for _ in range(FAILURES_PER_NAME - 1):
        assert sign_in(shared.anonymous, "ANN", "not the password").status_code == 401
    throttled = sign_in(shared.anonymous, "ann")  # even the right password waits now
    assert throttled.status_code == 429
    assert throttled.json()["detail"].startswith("Too many failed attempts lately")
    assert "Wait 15 minutes" in throttled.json()["detail"]
    assert sign_in(shared.anonymous, "bob").status_code == 204  # other names are not held up


def test_one_address_trying_many_names_is_throttled(shared: Shared) -> None:
    shared.add("ann")
    for index in range(FAILURES_PER_ADDRESS):
        assert sign_in(shared.anonymous, f"guess{index}", "wrong password").status_code == 401
    assert sign_in(shared.anonymous, "ann").status_code == 429


def test_a_new_password_ends_the_sessions(shared: Shared) -> None:
    shared.add("ann")
    sign_in(shared.anonymous, "ann")
    shared.accounts.set_password("ann", "another long password")
    assert shared.anonymous.get("/api/me").status_code == 401
    assert sign_in(shared.anonymous, "ann").status_code == 401
    assert sign_in(shared.anonymous, "ann", "another long password").status_code == 204


# Tokens


def test_tokens_are_shown_once_listed_without_secret_and_revoked(shared: Shared) -> None:
    shared.add("ann")
    sign_in(shared.anonymous, "ann")
    created = shared.anonymous.post("/api/tokens", json={"name": "my script"})
    assert created.status_code == 201
    token = created.json()
    assert token["token"].startswith("tbt_") and token["name"] == "my script"
    listed = shared.anonymous.get("/api/tokens").json()
    assert [(t["id"], t["name"]) for t in listed] == [(token["id"], "my script")]
    assert "token" not in listed[0]
    bearer = {"Authorization": f"Bearer {token['token']}"}
    shared.anonymous.cookies.clear()
    script = TestClient(shared.app, base_url=LOCAL, headers=bearer)  # the app is already started
    assert script.get("/api/me").json()["username"] == "ann"
    assert script.delete(f"/api/tokens/{token['id']}").status_code == 204
    assert script.get("/api/me").status_code == 401


def test_nobody_revokes_another_users_token(shared: Shared) -> None:
    ann, bob = shared.client_of("ann"), shared.client_of("bob")
    ann_token = ann.get("/api/tokens").json()[0]["id"]
    assert bob.delete(f"/api/tokens/{ann_token}").status_code == 404
    assert ann.get("/api/me").status_code == 200


# Who sees what


@pytest.fixture
def two_users(shared: Shared) -> dict[str, Any]:
    """Ann's trained project, and what Bob and an admin get to see of it."""
    ann, bob, admin = (
        shared.client_of("ann"),
        shared.client_of("bob"),
        shared.client_of("teacher", admin=True),
    )
    pid, classes = make_trainable(ann, per_class=4)
    jid = ann.post(f"/api/projects/{pid}/jobs", json={"epochs": 3}).json()["id"]
    assert read_events(ann, jid)[-1]["event"] == "done"
    image = ann.get(f"/api/projects/{pid}/classes/{classes['red']}/images").json()[0]
    return {"ann": ann, "bob": bob, "admin": admin, "pid": pid, "cid": classes["red"],
            "jid": jid, "image": image}  # fmt: skip


def _reads(pid: str, cid: str, iid: str, jid: str) -> list[tuple[str, str]]:
    project = f"/api/projects/{pid}"
    return [
        ("GET", project),
        ("GET", f"{project}/classes/{cid}/images"),
        ("GET", f"{project}/images/{iid}"),
        ("GET", f"{project}/images/{iid}/thumbnail"),
        ("GET", f"{project}/jobs"),
        ("GET", f"{project}/health?curve=false"),
        ("GET", f"/api/jobs/{jid}"),
        ("GET", f"/api/jobs/{jid}/events"),
        ("GET", f"/api/jobs/{jid}/model"),
    ]


def test_another_user_gets_404_on_everything_of_a_project(two_users: dict[str, Any]) -> None:
    ann, bob = two_users["ann"], two_users["bob"]
    pid, cid, jid = two_users["pid"], two_users["cid"], two_users["jid"]
    iid = two_users["image"]["id"]
    for method, url in _reads(pid, cid, iid, jid):
        assert ann.request(method, url).status_code == 200, url
        assert bob.request(method, url).status_code == 404, url
    photo = {"file": ("a.jpg", image_bytes(), "image/jpeg")}
    assert ann.post(f"/api/projects/{pid}/predict", files=photo).status_code == 200
    refused = [
        bob.post(f"/api/projects/{pid}/predict", files=photo),
        bob.post(f"/api/projects/{pid}/classes/{cid}/images", files=[("files", photo["file"])]),
        bob.post(f"/api/projects/{pid}/import", files={"file": ("c.zip", make_zip({"red/a.jpg": image_bytes()}), "application/zip")}),
        bob.post(f"/api/projects/{pid}/jobs", json={"epochs": 1}),
        bob.post(f"/api/projects/{pid}/compare", json={}),
        bob.post(f"/api/projects/{pid}/classes", json={"name": "mine now"}),
        bob.patch(f"/api/projects/{pid}", json={"name": "mine now"}),
        bob.post(f"/api/jobs/{jid}/keep", json={"mode": "transfer"}),
        bob.post(f"/api/jobs/{jid}/cancel"),
        bob.delete(f"/api/projects/{pid}/classes/{cid}/images/{iid}"),
        bob.delete(f"/api/projects/{pid}"),
    ]  # fmt: skip
    assert [response.status_code for response in refused] == [404] * len(refused)
    assert ann.get(f"/api/projects/{pid}").json()["name"] == "demo"
    assert [p["id"] for p in ann.get("/api/projects").json()] == [pid]
    assert bob.get("/api/projects").json() == []


def test_a_share_link_works_signed_out_but_only_its_owner_makes_it(
    two_users: dict[str, Any], shared: Shared
) -> None:
    ann, bob, pid = two_users["ann"], two_users["bob"], two_users["pid"]
    assert bob.post(f"/api/projects/{pid}/share").status_code == 404
    assert bob.get(f"/api/projects/{pid}/share").status_code == 404
    link = ann.post(f"/api/projects/{pid}/share")
    assert link.status_code == 201
    token = link.json()["token"]
    assert shared.anonymous.get(f"/s/{token}/").status_code == 200
    assert shared.anonymous.get(f"/s/{token}/metadata.json").status_code == 200
    assert bob.delete(f"/api/projects/{pid}/share").status_code == 404
    assert shared.anonymous.get(f"/s/{token}/").status_code == 200


def test_a_bundle_is_saved_by_its_owner_only_and_opens_as_the_openers_project(
    two_users: dict[str, Any],
) -> None:
    ann, bob, pid = two_users["ann"], two_users["bob"], two_users["pid"]
    assert bob.get(f"/api/projects/{pid}/bundle").status_code == 404
    bundle = ann.get(f"/api/projects/{pid}/bundle")
    assert bundle.status_code == 200
    opened = bob.post(
        "/api/projects/bundle",
        files={"file": ("demo.teachbox.zip", bundle.content, "application/zip")},
    )
    assert opened.status_code == 201
    copy = opened.json()["id"]
    assert [p["id"] for p in bob.get("/api/projects").json()] == [copy]
    assert ann.get(f"/api/projects/{copy}").status_code == 404
    assert [p["id"] for p in ann.get("/api/projects").json()] == [pid]


def test_an_admin_sees_and_manages_everyones_projects(two_users: dict[str, Any]) -> None:
    admin, bob, pid = two_users["admin"], two_users["bob"], two_users["pid"]
    own = create_project(bob, "bob's")
    assert {p["id"] for p in admin.get("/api/projects").json()} == {pid, own}
    assert admin.get(f"/api/jobs/{two_users['jid']}/model").status_code == 200
    assert admin.patch(f"/api/projects/{pid}", json={"name": "renamed"}).status_code == 200
    assert two_users["ann"].get(f"/api/projects/{pid}").json()["name"] == "renamed"
    assert admin.delete(f"/api/projects/{own}").status_code == 204


def test_a_removed_users_projects_stay_for_admins(shared: Shared) -> None:
    ann, admin = shared.client_of("ann"), shared.client_of("teacher", admin=True)
    pid = create_project(ann, "kept")
    shared.accounts.remove_user("ann")
    assert ann.get("/api/me").status_code == 401
    assert [p["id"] for p in admin.get("/api/projects").json()] == [pid]


# Join codes


def test_a_student_joins_with_a_code_until_the_teacher_ends_it(shared: Shared) -> None:
    teacher, ann = shared.client_of("teacher", admin=True), shared.client_of("ann")
    assert ann.post("/api/join-codes", json={}).status_code == 403
    created = teacher.post("/api/join-codes", json={"hours": 2})
    assert created.status_code == 201
    code = created.json()["code"]
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}", code)
    typed = code.lower().replace("-", " ")  # as a student might type it off the board
    joined = shared.anonymous.post(
        "/api/join", json={"code": typed, "username": "sam", "password": PASSWORD}
    )
    assert joined.status_code == 201 and joined.json() == {"username": "sam", "admin": False}
    assert "httponly" in joined.headers["set-cookie"].lower()
    assert shared.anonymous.get("/api/me").json()["username"] == "sam"  # signed in at once
    taken = shared.anonymous.post(
        "/api/join", json={"code": code, "username": "SAM", "password": PASSWORD}
    )
    assert taken.status_code == 409 and "taken" in taken.json()["detail"]
    listed = teacher.get("/api/join-codes").json()
    assert [(c["id"], c["uses"], c["created_by"]) for c in listed] == [
        (created.json()["id"], 1, "teacher")
    ]
    assert "code" not in listed[0]
    assert teacher.delete(f"/api/join-codes/{created.json()['id']}").status_code == 204
    shared.anonymous.cookies.clear()
    ended = shared.anonymous.post(
        "/api/join", json={"code": code, "username": "tim", "password": PASSWORD}
    )
    assert ended.status_code == 401 and "Ask your teacher" in ended.json()["detail"]
    assert sign_in(shared.anonymous, "sam").status_code == 204  # accounts made stay
    assert teacher.get("/api/join-codes").json() == []  # fmt: skip


def test_joining_refuses_short_passwords_and_odd_names(shared: Shared) -> None:
    code = shared.client_of("teacher", admin=True).post("/api/join-codes").json()["code"]
    short = shared.anonymous.post(
        "/api/join", json={"code": code, "username": "sam", "password": "short"}
    )
    assert short.status_code == 422
    assert "password: String should have at least 8 characters" in short.json()["detail"]
    odd = shared.anonymous.post(
        "/api/join", json={"code": code, "username": "a b", "password": PASSWORD}
    )
    assert odd.status_code == 422
    assert "username: a user name has 1 to 64 letters" in odd.json()["detail"]


# Secrets at rest and in logs


def test_passwords_are_argon2id_and_only_hashes_of_secrets_are_stored(shared: Shared) -> None:
    shared.add("ann")
    sign_in(shared.anonymous, "ann")
    session = shared.anonymous.cookies["teachbox_session"]
    token = shared.anonymous.post("/api/tokens").json()["token"]
    database = shared.accounts.db_path
    with sqlite3.connect(database) as db:
        (password_hash,) = db.execute("SELECT password_hash FROM users").fetchone()
        digests = {row[0] for row in db.execute("SELECT digest FROM credentials")}
    assert password_hash.startswith("$argon2id$") and PASSWORD not in password_hash
    assert digests == {hashlib.sha256(s.encode()).hexdigest() for s in (session, token)}
    stored = b"".join(path.read_bytes() for path in database.parent.glob("teachbox.sqlite*"))
    for secret in (PASSWORD, session, token):
        assert secret.encode() not in stored


def test_no_secret_reaches_the_log(shared: Shared, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    shared.add("ann")
    sign_in(shared.anonymous, "ann", "a wrong password")
    sign_in(shared.anonymous, "ann")
    token = shared.anonymous.post("/api/tokens").json()["token"]
    session = shared.anonymous.cookies["teachbox_session"]
    shared.anonymous.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert caplog.records  # the log was captured
    for secret in (PASSWORD, "a wrong password", token, session):
        assert secret not in caplog.text


def test_a_real_server_logs_no_secret(tmp_path: Path, cache_dir: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    data_dir.mkdir()
    Accounts(data_dir / "teachbox.sqlite").add_user("ann", PASSWORD)
    server = ServerProcess(data_dir, cache_dir, log, auth="accounts")
    try:
        assert (
            server.client.post(
                "/api/session", json={"username": "ann", "password": PASSWORD}
            ).status_code
            == 204
        )
        token = server.client.post("/api/tokens").json()["token"]
        session = server.client.cookies["teachbox_session"]
        server.client.get("/api/projects", headers={"Authorization": f"Bearer {token}"})
    finally:
        server.close()
    text = log.read_text()
    assert "POST /api/session" in text  # the access log is on
    for secret in (PASSWORD, token, session):
        assert secret not in text


# The schema and the default mode


def test_the_schema_documents_401_and_429_with_accounts(shared: Shared) -> None:
    spec = shared.app.openapi()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            public = (method.upper(), path) in PUBLIC
            assert ("security" in operation) != public, (method, path)
            assert ("401" in operation["responses"]) != (path == "/api/health"), (method, path)
    for public in ("/api/session", "/api/join"):
        assert "429" in spec["paths"][public]["post"]["responses"]
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "session"}


def test_without_accounts_nothing_changes(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.get("/api/projects").status_code == 200
    assert client.post("/api/session", json={"username": "a", "password": "b"}).status_code == 404
    assert client.get("/api/me").status_code == 404
    assert "401" not in str(client.app.openapi()["paths"]["/api/projects"])  # type: ignore[attr-defined]


def test_an_old_database_gets_owners_and_keeps_its_projects(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with sqlite3.connect(data_dir / "teachbox.sqlite") as db:
        db.execute(
            "CREATE TABLE projects (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at REAL NOT NULL)"
        )
        db.execute("INSERT INTO projects VALUES (?, 'from before', 1.0)", (ANY_ID,))
    app = create_app(make_settings(auth="accounts"))
    shared = Shared(app, TestClient(app, base_url=LOCAL), app.state.accounts)
    admin, ann = shared.client_of("teacher", admin=True), shared.client_of("ann")
    assert [p["name"] for p in admin.get("/api/projects").json()] == ["from before"]
    assert ann.get("/api/projects").json() == []


# The command line


def teachbox(*args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        input=password,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
    )


def test_users_add_reads_the_password_from_standard_input(tmp_path: Path) -> None:
    where = ("--data-dir", str(tmp_path))
    added = teachbox("users", "add", "teacher", "--admin", *where, password=PASSWORD + "\n")
    assert added.returncode == 0 and added.stdout.strip() == "Added admin teacher."
    assert teachbox("users", "list", *where).stdout.splitlines() == ["teacher  (admin)"]
    assert Accounts(tmp_path / "teachbox.sqlite").authenticate("teacher", PASSWORD) is not None


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str, stdin: str = ""
) -> tuple[int, str, str]:
    """The command in this process (it imports torch, so a subprocess each costs seconds), with
    `stdin` as its standard input: not a terminal, as when a script pipes a password in."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_users_list_passwd_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ("--data-dir", str(tmp_path))
    for name in ("teacher", "ann"):
        assert run_cli(monkeypatch, capsys, "users", "add", name, *where, stdin=PASSWORD)[0] == 0
    assert run_cli(monkeypatch, capsys, "users", "list", *where)[1].splitlines() == [
        "teacher",
        "ann",
    ]
    accounts = Accounts(tmp_path / "teachbox.sqlite")
    new = "a new long password"
    assert run_cli(monkeypatch, capsys, "users", "passwd", "ann", *where, stdin=new + "\n")[0] == 0
    assert accounts.authenticate("ann", PASSWORD) is None
    assert accounts.authenticate("ann", new) is not None
    status, out, _ = run_cli(monkeypatch, capsys, "users", "remove", "ann", *where)
    assert status == 0 and out.startswith("Removed ann; their projects stay")
    assert run_cli(monkeypatch, capsys, "users", "list", *where)[1].splitlines() == ["teacher"]


def test_users_commands_say_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ("--data-dir", str(tmp_path))
    status, _, err = run_cli(monkeypatch, capsys, "users", "add", "ann", *where, stdin="short\n")
    assert status == 2 and "A password needs 8 to 1024 characters" in err
    run_cli(monkeypatch, capsys, "users", "add", "ann", *where, stdin=PASSWORD)
    status, _, err = run_cli(monkeypatch, capsys, "users", "add", "ANN", *where, stdin=PASSWORD)
    assert status == 2 and "The name 'ANN' is taken" in err
    status, _, err = run_cli(
        monkeypatch, capsys, "users", "passwd", "nobody", *where, stdin=PASSWORD
    )
    assert status == 2 and "There is no user named 'nobody'" in err


def test_serve_refuses_an_open_host_without_accounts(tmp_path: Path) -> None:
    refused = teachbox("serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path))
    assert refused.returncode == 2
    assert "without accounts" in refused.stderr and "TEACHBOX_AUTH=accounts" in refused.stderr
    assert "TEACHBOX_OPEN_HOST=true" in refused.stderr


def test_serve_refuses_accounts_without_a_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("serve", "--host", "0.0.0.0", "--auth", "accounts", "--data-dir", str(tmp_path))
    status, _, err = run_cli(monkeypatch, capsys, *args)
    assert status == 2 and "teachbox users add NAME --admin" in err


def test_serve_on_an_open_host_when_insisted(tmp_path: Path, cache_dir: Path) -> None:
    server = ServerProcess(
        tmp_path / "data", cache_dir, tmp_path / "log", host="0.0.0.0", open_host="true"
    )
    try:
        assert server.client.get("/api/projects").status_code == 200
    finally:
        server.close()
