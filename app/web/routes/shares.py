"""Share links: publish the project's current model at `/s/<token>/`, a page that needs no
sign-in and runs the model in the visitor's browser (the zip's web/ page); revoke it.

Everything a link serves lives under `/s/<token>/`: the page under `web/` (the same files as a
zip's web/ folder) and `metadata.json`, `model.onnx`, `model.int8.onnx` beside it, read from the
latest model at each request. The server computes nothing for a visitor.
"""

from __future__ import annotations

import html

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from app.engine.errors import Conflict, NotFound
from app.engine.web_page import page_files
from app.service.shared_models import shared_file, shared_project_id
from app.web.api_models import ShareOut
from app.web.deps import ProjectDep, StoreDep
from app.web.openapi import documented

router = APIRouter(tags=["share"])
pages = APIRouter(include_in_schema=False)

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".onnx": "application/octet-stream",
    "": "text/plain; charset=utf-8",  # LICENSE
}
# A visitor revalidates, so a new training or a revoked link shows at the next load.
NO_STALE = {"Cache-Control": "no-cache"}


def share_out(request: Request, token: str) -> ShareOut:
    url = f"{str(request.base_url).rstrip('/')}/s/{token}/"
    embed = (
        f'<iframe src="{html.escape(url)}" title="Teachbox model" width="720" height="560" '
        'allow="camera" style="border:0"></iframe>'
    )
    return ShareOut(shared=True, url=url, token=token, embed=embed)


@router.post("/api/projects/{pid}/share", status_code=201, responses=documented(NotFound, Conflict))
def share_project(project: ProjectDep, store: StoreDep, request: Request) -> ShareOut:
    """Publish the project's current model at an unguessable URL (the same one while it stays shared)."""
    if store.latest_model_job(project.id) is None:
        raise Conflict("This project has no trained model yet. Train it first, then share it.")
    return share_out(request, store.share_project(project.id))


@router.get("/api/projects/{pid}/share", responses=documented(NotFound))
def get_share(project: ProjectDep, store: StoreDep, request: Request) -> ShareOut:
    """The project's share link, or `{"shared": false}` when it is not shared."""
    token = store.share_token(project.id)
    return share_out(request, token) if token else ShareOut(shared=False)


@router.delete("/api/projects/{pid}/share", status_code=204, responses=documented(NotFound))
def unshare_project(project: ProjectDep, store: StoreDep) -> Response:
    """Revoke the link: its page and files answer 404 from now on (sharing again makes a new one)."""
    store.unshare_project(project.id)
    return Response(status_code=204)


@pages.get("/s/{token}")
@pages.get("/s/{token}/")
def shared_page(token: str, store: StoreDep) -> RedirectResponse:
    shared_project_id(store, token)
    return RedirectResponse(f"/s/{token}/web/", status_code=307, headers=NO_STALE)


@pages.get("/s/{token}/web/{name:path}")
def shared_page_file(token: str, name: str, store: StoreDep) -> FileResponse:
    shared_project_id(store, token)
    source = page_files().get(name or "index.html")
    if source is None:
        raise NotFound("The model page has no such file.")
    return FileResponse(source, media_type=MEDIA_TYPES[source.suffix], headers=NO_STALE)


@pages.get("/s/{token}/{name}")
def shared_model_file(token: str, name: str, store: StoreDep) -> Response:
    data = shared_file(store, token, name)
    media_type = MEDIA_TYPES[".json" if name.endswith(".json") else ".onnx"]
    return Response(data, media_type=media_type, headers=NO_STALE)
