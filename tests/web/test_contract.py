"""Issue 14, item 4: the OpenAPI schema is the contract. A bounded Schemathesis run against the
real app, with its default checks, and the parts of the contract it cannot see for itself."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis import Case
from starlette.types import Receive, Scope, Send

from app.config import Settings
from app.web.factory import create_app
from tests.web.api_helpers import LOCAL, create_project
from tests.web.contract_rules import excluded_checks

# Schemathesis collects its tests from the schema at import, so the app is made here, on a data
# dir of its own; "testserver" is the name its in-process transport sends as Host.
DATA_DIR = Path(tempfile.mkdtemp(prefix="teachbox-contract-"))
atexit.register(shutil.rmtree, DATA_DIR, ignore_errors=True)
APP = create_app(Settings(data_dir=DATA_DIR, embed_on_upload=False, allowed_hosts="testserver"))


async def app_without_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    """The real app, but its lifespan (the worker) is not started per request, as Schemathesis's
    transport would: every operation here answers before anything reaches the worker."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await APP(scope, receive, send)


schema = schemathesis.openapi.from_asgi("/openapi.json", app_without_lifespan)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,  # the same cases every run: a failure here is a change, not luck
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_api_answers_as_its_schema_says(case: Case) -> None:
    case.call_and_validate(excluded_checks=excluded_checks(case))


def test_every_error_status_is_documented_with_the_error_model() -> None:
    spec = APP.openapi()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            errors = {code: r for code, r in operation["responses"].items() if code >= "400"}
            assert "400" in errors, f"{method} {path}: a refused host"
            if method in ("post", "put", "patch", "delete"):
                assert "403" in errors, f"{method} {path}: another site's request"
            for code, response in errors.items():
                ref = response["content"]["application/json"]["schema"]["$ref"]
                wanted = "ValidationErrorOut" if code == "422" else "ErrorOut"
                assert ref == f"#/components/schemas/{wanted}", (method, path, code)
    failure = spec["components"]["schemas"]["ValidationErrorOut"]
    assert failure["required"] == ["detail"] and failure["properties"]["errors"]["type"] == "array"
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_limits_are_in_the_schema() -> None:
    schemas = APP.openapi()["components"]["schemas"]
    class_name, project_name = (schemas[m]["properties"]["name"] for m in ("ClassIn", "ProjectIn"))
    assert (class_name["minLength"], class_name["maxLength"]) == (1, 64)
    assert (project_name["minLength"], project_name["maxLength"]) == (1, 100)
    assert "/" in class_name["pattern"] and "/" not in project_name["pattern"]
    params = schemas["TrainParams"]["properties"]
    assert params["backbone"]["enum"] == [
        "mobilenet_v2",
        "mobilenet_v3_large",
        "mobilenet_v3_small",
    ]
    assert params["batch_size"]["maximum"] == 512 and params["val_split"]["minimum"] == 0.05


def test_a_405_lists_every_method_the_path_accepts(client: TestClient) -> None:
    pid = create_project(client)
    for method, path, allowed in (
        ("PUT", f"/api/projects/{pid}", "DELETE, GET, HEAD, PATCH"),
        ("DELETE", "/api/projects", "GET, HEAD, POST"),
        ("GET", f"/api/projects/{pid}/predict", "POST"),
    ):
        response = client.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.headers["Allow"] == allowed
        assert response.json()["detail"].startswith("This address does not accept this method.")


def test_the_page_gets_the_schema_it_shows(client: TestClient) -> None:
    spec = TestClient(APP, base_url=LOCAL).get("/openapi.json").json()
    assert spec == client.get("/openapi.json").json()
