"""The web app: `create_app(settings)` wires routers, static files, templates and the worker's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import uvicorn
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from app.config import Settings, get_settings
from app.service.runners import build_runner
from app.service.store import Store
from app.service.warm_models import WarmModels
from app.web.errors import install_error_handlers
from app.web.guard import RequestGuard, allowed_host_names
from app.web.middleware import BodyLimit, SecurityHeaders
from app.web.openapi import install_openapi
from app.web.routes import (
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


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Teachbox",
        summary="Train image classifiers in the browser: projects, classes, images, training jobs, predictions.",
        lifespan=lifespan,
        docs_url=None,  # /docs is served from static/vendor by app.web.routes.pages
        redoc_url=None,
    )
    store = Store(settings.data_dir)
    # Workers of a queue may be exporting right now: their scratch folders are theirs to clean.
    store.sweep(exports=not settings.broker_url)
    app.state.settings = settings
    app.state.store = store
    app.state.models = WarmModels(store, settings.warm_models, settings.predict_max_batch)
    app.state.event_log, app.state.runner = build_runner(store, app.state.models, settings)
    app.state.templates = Jinja2Templates(directory=TEMPLATES_DIR)
    app.state.is_stopping = lambda: False
    install_error_handlers(app)
    body_limit = int(settings.max_request_mb * 1e6)
    app.add_middleware(
        BodyLimit,
        max_bytes=body_limit,
        window_s=settings.upload_timeout_s,
        min_bytes_per_s=settings.upload_min_kb_s * 1e3,
    )
    app.add_middleware(
        RequestGuard, allowed_hosts=allowed_host_names(settings.host, settings.allowed_hosts)
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
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    install_openapi(app)
    return app


def serve(settings: Settings) -> None:
    """Run the app with uvicorn; event streams end when a shutdown begins, so it never hangs on them."""
    app = create_app(settings)
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
