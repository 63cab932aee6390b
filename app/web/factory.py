"""The web app: `create_app(settings)` wires routers, static files, templates and the worker's lifespan."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import uvicorn
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from app.config import Settings, get_settings
from app.engine.errors import InvalidInput
from app.service.accounts import Accounts
from app.service.runners import build_runner
from app.service.store import Store
from app.service.throttle import SignInThrottle
from app.service.warm_models import WarmModels
from app.web.errors import install_error_handlers
from app.web.guard import RequestGuard, allowed_host_names
from app.web.middleware import BodyLimit, SecurityHeaders
from app.web.openapi import install_openapi
from app.web.routes import (
    accounts,
    bundles,
    classes,
    compare,
    data_health,
    images,
    imports,
    jobs,
    liveness,
    pages,
    predict,
    projects,
    shares,
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the worker (marking jobs a previous run left unfinished as interrupted); stop it on exit."""
    app.state.runner.start()
    try:
        yield
    finally:
        await anyio.to_thread.run_sync(app.state.runner.stop, app.state.settings.shutdown_timeout_s)
        await anyio.to_thread.run_sync(app.state.models.batcher.stop)
        # The database's pooled connections (a PostgreSQL server counts them against its limit).
        app.state.store.close()
        if app.state.accounts is not None:
            app.state.accounts.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Teachbox",
        summary="Train image classifiers in the browser: projects, classes, images, training jobs, predictions.",
        lifespan=lifespan,
        docs_url=None,  # /docs is served from static/vendor by app.web.routes.pages
        redoc_url=None,
    )
    store = Store(settings.data_dir, settings.database_url)
    # Workers of a queue may be exporting right now: their scratch folders are theirs to clean.
    store.sweep(exports=not settings.broker_url)
    app.state.settings = settings
    app.state.store = store
    app.state.models = WarmModels(store, settings.warm_models, settings.predict_max_batch)
    app.state.event_log, app.state.runner = build_runner(store, app.state.models, settings)
    app.state.templates = Jinja2Templates(directory=TEMPLATES_DIR)
    app.state.is_stopping = lambda: False
    app.state.accounts = Accounts(store.url) if settings.auth == "accounts" else None
    app.state.throttle = SignInThrottle()
    install_error_handlers(app)
    body_limit = int(settings.max_request_mb * 1e6)
    app.add_middleware(
        BodyLimit,
        max_bytes=body_limit,
        window_s=settings.upload_timeout_s,
        min_bytes_per_s=settings.upload_min_kb_s * 1e3,
    )
    app.add_middleware(
        RequestGuard,
        allowed_hosts=allowed_host_names(settings.host, settings.allowed_hosts),
        accounts=app.state.accounts,
    )
    # Added last, so outermost: an early 400, 403 or 413, and even a crash, carry the headers.
    app.add_middleware(SecurityHeaders)
    for module in (
        liveness,
        bundles,
        projects,
        classes,
        images,
        imports,
        jobs,
        compare,
        data_health,
        predict,
        shares,
        pages,
    ):
        app.include_router(module.router)
    app.include_router(shares.pages)
    if app.state.accounts is not None:
        app.include_router(accounts.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    install_openapi(app)
    return app


def is_loopback(host: str) -> bool:
    name = host.strip().lower().strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def refuse_unsafe_start(settings: Settings, user_count: int | None) -> None:
    """A server others can reach must have accounts (or be told that something else guards it);
    a server with accounts needs a user who can sign in."""
    if settings.auth == "none" and not is_loopback(settings.host) and not settings.open_host:
        raise InvalidInput(
            f"Teachbox would listen on {settings.host} without accounts, so anyone who reaches it could see, change and delete every project. "
            "Turn accounts on with TEACHBOX_AUTH=accounts (or --auth accounts) after adding a user with `teachbox users add NAME --admin`; "
            "or, if a proxy in front already decides who may come in, insist with TEACHBOX_OPEN_HOST=true (or --open-host)."
        )
    if settings.auth == "accounts" and user_count == 0:
        raise InvalidInput(
            "Accounts are on but there is no user yet, so nobody could sign in. "
            f"Add one first: teachbox users add NAME --admin --data-dir {settings.data_dir}"
        )


def serve(settings: Settings) -> None:
    """Run the app with uvicorn; event streams end when a shutdown begins, so it never hangs on them."""
    app = create_app(settings)
    accounts_ = app.state.accounts
    refuse_unsafe_start(settings, accounts_.user_count() if accounts_ is not None else None)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout_s)),
    )
    server = uvicorn.Server(config)
    app.state.is_stopping = lambda: server.should_exit
    server.run()


if __name__ == "__main__":
    serve(Settings())
