"""Save and open a whole project: one file with its classes, images, training settings and model."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from typing import IO

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from app.engine.errors import (
    InternalFailure,
    InvalidInput,
    InvalidRequest,
    NotFound,
    StorageFull,
    TooLarge,
    UnsupportedMediaType,
)
from app.service.bundles import open_bundle, write_bundle
from app.web.api_models import ProjectOut, check_class_name, check_project_name
from app.web.deps import ProjectDep, RunnerDep, SettingsDep, StoreDep
from app.web.multipart import FormDep, form_files, multipart_body
from app.web.openapi import documented

router = APIRouter(prefix="/api/projects", tags=["bundles"])

CHUNK = 1 << 20


def _chunks(file: IO[bytes]) -> Iterator[bytes]:
    with file:
        file.seek(0)
        while chunk := file.read(CHUNK):
            yield chunk


def bundle_filename(name: str) -> str:
    """A download name made of the project's name, safe in any file system and header."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "project"
    return f"{stem[:60]}.teachbox.zip"


@router.get(
    "/{pid}/bundle",
    response_class=StreamingResponse,
    responses=documented(
        NotFound, ok={"content": {"application/zip": {}}, "description": "The project bundle."}
    ),
)
def save_bundle(project: ProjectDep, store: StoreDep) -> StreamingResponse:
    """The whole project as one zip: manifest.json, the images and the current model zip."""
    # Unnamed, so nothing is left behind; closed by _chunks once the response is sent.
    scratch = tempfile.TemporaryFile()  # noqa: SIM115
    try:
        write_bundle(store, project, scratch)
    except BaseException:
        scratch.close()
        raise
    return StreamingResponse(
        _chunks(scratch),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{bundle_filename(project.name)}"',
            "Content-Length": str(scratch.tell()),
        },
    )


@router.post(
    "/bundle",
    status_code=201,
    openapi_extra=multipart_body("file", many=False),
    responses=documented(
        InvalidRequest, TooLarge, UnsupportedMediaType, InvalidInput, StorageFull, InternalFailure
    ),
)
def open_project_bundle(
    form: FormDep, store: StoreDep, runner: RunnerDep, settings: SettingsDep
) -> ProjectOut:
    """Open a saved project (multipart field `file`) as a new project, model included."""
    uploads = form_files(form, "file")
    if len(uploads) != 1:
        raise InvalidInput("Attach one project bundle in the multipart field 'file'.")
    project = open_bundle(
        uploads[0].file,
        uploads[0].size or 0,
        store,
        settings,
        project_name=check_project_name,
        class_name=check_class_name,
    )
    runner.embed_soon(project.id, store.list_images(project.id))
    return ProjectOut.of(project)
