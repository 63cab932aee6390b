"""Issue 14, item 5 in real Chromium: a server with accounts shows a sign-in form, lets a user in
and out, and lets a teacher open a join code with which a student makes their own account."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import DESKTOP, ConsoleLog, LiveServer, serve_in_thread
from tests.browser.test_foreign_pages import foreign_site  # noqa: F401 (a fixture)

pytestmark = pytest.mark.browser

PASSWORD = "a long password"


@pytest.fixture(scope="module")
def accounts_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A second real server, with TEACHBOX_AUTH=accounts, a teacher (admin) and a student."""
    from app.config import Settings
    from app.web.factory import create_app

    data_dir = tmp_path_factory.mktemp("teachbox-accounts")
    app = create_app(Settings(data_dir=data_dir, auth="accounts"))
    app.state.accounts.add_user("teacher", PASSWORD, admin=True)
    app.state.accounts.add_user("ann", PASSWORD)
    with serve_in_thread(app, data_dir) as server:
        yield server


class Visitor:
    """One browser context (its own cookies) on the accounts server; errors other than the
    expected 401s (asking /api/me before signing in, a wrong password) fail the test."""

    def __init__(self, browser: Browser, server: LiveServer) -> None:
        self.context: BrowserContext = browser.new_context(base_url=server.url, viewport=DESKTOP)
        self.context.set_default_timeout(20_000)
        self.page: Page = self.context.new_page()
        self.console = ConsoleLog()
        self.console.watch(self.page)

    def unexpected_errors(self) -> list[str]:
        return [error for error in self.console.errors if "status of 401" not in error]

    def sign_in(self, name: str, password: str = PASSWORD) -> None:
        self.page.fill("#signin-name", name)
        self.page.fill("#signin-password", password)
        self.page.click("#signin-submit")


@pytest.fixture
def visitors(browser: Browser, accounts_server: LiveServer) -> Iterator[Callable[[], Visitor]]:
    made: list[Visitor] = []

    def visitor() -> Visitor:
        made.append(Visitor(browser, accounts_server))
        return made[-1]

    yield visitor
    for each in made:
        each.context.close()
    errors = [error for each in made for error in each.unexpected_errors()]
    assert errors == [], "the browser reported errors:\n" + "\n".join(errors)


def test_sign_in_form_then_the_page_then_sign_out(
    visitors: Callable[[], Visitor], screenshots: Path
) -> None:
    ann = visitors()
    page = ann.page
    page.goto("/")
    expect(page.locator("#signin-form")).to_be_visible()
    expect(page.locator("#join-form")).to_be_visible()
    expect(page.locator("main")).to_be_hidden()
    expect(page.locator("#project-bar")).to_be_hidden()
    page.screenshot(path=str(screenshots / "accounts-sign-in.png"), full_page=True)
    ann.sign_in("ann", "not the password")
    expect(page.locator("#signin-error")).to_have_text(
        "The user name or the password is wrong. Check both and try again; a teacher or admin can set a new password."
    )
    ann.sign_in("ann")
    expect(page.locator("#account-name")).to_have_text("ann")
    expect(page.locator("main")).to_be_visible()
    expect(page.locator("#project-select option")).to_have_count(1)  # the starter project
    expect(page.locator("#join-codes-toggle")).to_be_hidden()  # not an admin
    page.screenshot(path=str(screenshots / "accounts-signed-in.png"), full_page=True)
    page.click("#sign-out")
    expect(page.locator("#signin-form")).to_be_visible()
    expect(page.locator("main")).to_be_hidden()


def test_a_student_joins_with_the_teachers_code(
    visitors: Callable[[], Visitor], screenshots: Path
) -> None:
    teacher = visitors()
    teacher.page.goto("/")
    teacher.sign_in("teacher")
    expect(teacher.page.locator("#account-name")).to_have_text("teacher (admin)")
    teacher.page.click("#join-codes-toggle")
    teacher.page.click("#join-code-create")
    code_shown = teacher.page.locator("#join-code-value")
    expect(code_shown).to_have_text(re.compile(r"^[A-Z2-9]{4}-[A-Z2-9]{4}$"))
    code = code_shown.inner_text()
    expect(teacher.page.locator("#join-code-list li")).to_have_count(1)
    teacher.page.screenshot(path=str(screenshots / "accounts-join-code.png"), full_page=True)

    student = visitors()
    student.page.goto("/")
    student.page.fill("#join-code", code.lower())
    student.page.fill("#join-name", "sam")
    student.page.fill("#join-password", PASSWORD)
    student.page.click("#join-submit")
    expect(student.page.locator("#account-name")).to_have_text("sam")
    expect(student.page.locator("#project-select option")).to_have_count(1)  # only their own
    student.page.screenshot(path=str(screenshots / "accounts-student.png"), full_page=True)

    teacher.page.locator("#join-code-list li button").click()
    expect(teacher.page.locator("#join-code-list li")).to_have_text("No join code is open.")
    late = visitors()
    late.page.goto("/")
    late.page.fill("#join-code", code)
    late.page.fill("#join-name", "tim")
    late.page.fill("#join-password", PASSWORD)
    late.page.click("#join-submit")
    expect(late.page.locator("#join-error")).to_contain_text(
        "Ask your teacher for the current one."
    )


def test_another_sites_page_sends_no_session_cookie(
    visitors: Callable[[], Visitor],
    accounts_server: LiveServer,
    foreign_site: str,  # noqa: F811
) -> None:
    """Issue 14, item 2: SameSite keeps the cookie off another site's requests, whatever the
    browser says in Fetch Metadata; seen in the headers Chromium itself sent."""
    ann = visitors()
    ann.page.goto("/")
    ann.sign_in("ann")
    expect(ann.page.locator("#account-name")).to_have_text("ann")
    asked: list = []
    ann.context.on("request", lambda request: "/api/me" in request.url and asked.append(request))
    me = f"{accounts_server.url}/api/me"
    assert ann.page.evaluate("(url) => fetch(url).then((r) => r.status)", me) == 200
    foreign = ann.context.new_page()  # the same browser profile, so the same cookie jar
    foreign.goto(foreign_site)
    # The answer is hidden from that page either way (Cross-Origin-Resource-Policy); the request is sent.
    foreign.evaluate(
        "(url) => fetch(url, {credentials: 'include', mode: 'no-cors'}).catch(() => 'hidden')", me
    )
    own, theirs = asked[-2], asked[-1]
    assert "teachbox_session=" in own.all_headers().get("cookie", "")
    assert theirs.frame.page is foreign
    assert "cookie" not in theirs.all_headers()
