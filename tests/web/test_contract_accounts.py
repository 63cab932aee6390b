"""Issue 14, items 4 and 5: the schema is the contract with accounts on, too. A bounded
Schemathesis run against an app with TEACHBOX_AUTH=accounts, each case sent with an admin's
bearer token, so that the routes answer as a signed-in user sees them (and the account routes,
signing in and joining included, are exercised with made-up bodies)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from starlette.types import Receive, Scope, Send

from app.config import Settings
from app.web.factory import create_app
from tests.web.contract_rules import excluded_checks

DATA_DIR = Path(tempfile.mkdtemp(prefix="teachbox-contract-accounts-"))
atexit.register(shutil.rmtree, DATA_DIR, ignore_errors=True)
APP = create_app(
    Settings(data_dir=DATA_DIR, embed_on_upload=False, allowed_hosts="testserver", auth="accounts")
)
ADMIN = APP.state.accounts.add_user("teacher", "a long password", admin=True)
_, TOKEN = APP.state.accounts.create_token(ADMIN, "contract")
AUTHORIZED = {"Authorization": f"Bearer {TOKEN}"}


async def without_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    """As in test_contract: the worker is not started per request; no case here reaches it."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await APP(scope, receive, send)


schema = schemathesis.openapi.from_asgi("/openapi.json", without_lifespan)


@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_api_with_accounts_answers_as_its_schema_says(case: Case) -> None:
    case.call_and_validate(headers=AUTHORIZED, excluded_checks=excluded_checks(case))
