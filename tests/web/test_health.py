"""Health, security headers, interactive docs and the error shape shared by every route."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.web.errors import ROUTING_SENTENCES
from app.web.middleware import CONTENT_SECURITY_POLICY

CONTRACT_PATHS = {
    "/api/health",
    "/api/projects",
    "/api/projects/{pid}",
    "/api/projects/{pid}/classes",
    "/api/projects/{pid}/classes/{cid}",
    "/api/projects/{pid}/classes/{cid}/images",
    "/api/projects/{pid}/images/{iid}",
    "/api/projects/{pid}/images/{iid}/thumbnail",
    "/api/projects/{pid}/import",
    "/api/projects/{pid}/jobs",
    "/api/projects/{pid}/predict",
    "/api/jobs/{jid}",
    "/api/jobs/{jid}/events",
    "/api/jobs/{jid}/cancel",
    "/api/jobs/{jid}/model",
}


def test_health_answers_ok(client: TestClient) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_every_response_carries_the_security_headers(client: TestClient) -> None:
    for path in ("/api/health", "/", "/api/projects/nope"):
        headers = client.get(path).headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "'unsafe-inline'" not in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


def test_docs_are_served_offline_under_the_same_policy(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert '<script src="/static/vendor/swagger-ui/swagger-ui-bundle.js"' in docs.text
    assert '<script src="/static/js/docs.js"' in docs.text
    assert "http://" not in docs.text and "https://" not in docs.text
    for asset in (
        "vendor/swagger-ui/swagger-ui-bundle.js",
        "vendor/swagger-ui/swagger-ui.css",
        "js/docs.js",
    ):
        assert client.get(f"/static/{asset}").status_code == 200
    assert client.get("/redoc").status_code == 404


def test_openapi_lists_every_contract_path(client: TestClient) -> None:
    paths = set(client.get("/openapi.json").json()["paths"])
    assert paths >= CONTRACT_PATHS


def test_the_page_is_served(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


def test_unknown_routes_answer_json_404(client: TestClient) -> None:
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"detail": ROUTING_SENTENCES[404]}
    wrong_method = client.put("/api/health")
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"detail": ROUTING_SENTENCES[405]}


def test_browsers_get_an_error_page_outside_the_api(client: TestClient) -> None:
    page = client.get("/no-such-page", headers={"accept": "text/html"})
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert ROUTING_SENTENCES[404] in page.text
    api = client.get("/api/no-such-thing", headers={"accept": "text/html"})
    assert api.headers["content-type"] == "application/json"
