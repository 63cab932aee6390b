"""Issue 6 in the browser: /docs works offline under the strict policy, and a job the server
interrupted says so on the page."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from app.engine.events import Interrupted
from app.engine.params import TrainParams
from app.service.records import JobStatus
from app.service.runners.in_process import INTERRUPTED_BY_RESTART
from app.service.uploads import prepare_image
from tests.browser.conftest import LiveServer
from tests.web.api_helpers import BLUE, RED, image_bytes

pytestmark = pytest.mark.browser

INTERRUPTED_TEXT = "The server restarted while this model was training, so the training stopped. Press Train model to train again."  # fmt: skip


def test_docs_render_from_the_vendored_copy_under_the_strict_policy(page: Page) -> None:
    """No CDN is reachable from here, and any policy violation would be a console error."""
    response = page.goto("/docs")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible()
    assert operations.count() >= 15
    health = page.locator(".opblock-get", has_text="/api/health")
    health.locator(".opblock-summary").click()
    health.get_by_role("button", name="Try it out").click()
    health.get_by_role("button", name="Execute").click()
    expect(health.locator(".live-responses-table tbody .response-col_status").first).to_have_text(
        "200"
    )


def test_an_interrupted_job_tells_the_user_to_train_again(
    page: Page, live_server: LiveServer
) -> None:
    """A job queued on a page's project ends with an `interrupted` event, as a restart leaves it."""
    state = live_server.server.config.app.state
    store = state.store
    project = store.create_project("Interrupted demo")
    for name, colour in (("Red", RED), ("Blue", BLUE)):
        image_class = store.create_class(project.id, name)
        for i in range(3):
            prepared = prepare_image(image_bytes(colour, seed=i), 10_000_000)
            store.add_image(image_class, f"{i}.jpg", prepared)
    job = store.create_job(project.id, TrainParams(epochs=2))  # queued; no worker will take it

    page.goto("/")
    expect(page.locator("#project-name")).to_have_value("Interrupted demo")
    status = page.get_by_test_id("train-status")
    expect(status).to_have_text("Waiting for the trainer…")
    store.finish_job(job.id, JobStatus.INTERRUPTED, error=INTERRUPTED_BY_RESTART)
    state.event_log.append(job.id, Interrupted(message=INTERRUPTED_BY_RESTART))
    expect(status).to_have_text(INTERRUPTED_TEXT)
    expect(page.get_by_test_id("train")).to_be_enabled()
    expect(page.locator("#cancel")).to_be_hidden()

    page.reload()
    expect(status).to_have_text(INTERRUPTED_TEXT)
