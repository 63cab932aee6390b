"""Typed dependencies in one place: routes say `project: ProjectDep`; an unknown or malformed id is a 404 here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from app.config import Settings
from app.engine.errors import TeachboxError
from app.service.runners.in_process import EventLog, JobRunner, WarmModels
from app.service.store import ImageClass, Job, Project, Store, StoredImage

MAX_FORM_FIELDS = 100
MAX_FIELD_BYTES = 64 * 1024
# Browsers send none; a client that sends more before the first part is not uploading files.
MAX_PREAMBLE_BYTES = 16 * 1024


# The accessors below are async only so that FastAPI calls them on the event loop: a plain `def`
# dependency costs a round trip through the thread pool on every request.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_runner(request: Request) -> JobRunner:
    return request.app.state.runner


async def get_event_log(request: Request) -> EventLog:
    return request.app.state.event_log


async def get_models(request: Request) -> WarmModels:
    return request.app.state.models


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]
EventLogDep = Annotated[EventLog, Depends(get_event_log)]
ModelsDep = Annotated[WarmModels, Depends(get_models)]


def get_project(pid: str, store: StoreDep) -> Project:
    project = store.get_project(pid)
    if project is None:
        raise TeachboxError(
            "There is no project with this id. List the projects with GET /api/projects and use one of their ids.",
            404,
        )
    return project


ProjectDep = Annotated[Project, Depends(get_project)]


def get_class(cid: str, project: ProjectDep, store: StoreDep) -> ImageClass:
    image_class = store.get_class(project.id, cid)
    if image_class is None:
        raise TeachboxError(
            "This project has no class with this id. Get the project to see its classes and their ids.",
            404,
        )
    return image_class


ClassDep = Annotated[ImageClass, Depends(get_class)]


def _missing_image() -> TeachboxError:
    return TeachboxError(
        "This project has no image with this id. List the class's images to see their ids.", 404
    )


def get_image(iid: str, project: ProjectDep, store: StoreDep) -> StoredImage:
    image = store.get_image(project.id, iid)
    if image is None:
        raise _missing_image()
    return image


ImageDep = Annotated[StoredImage, Depends(get_image)]


def get_class_image(iid: str, image_class: ClassDep, store: StoreDep) -> StoredImage:
    image = store.get_image(image_class.project_id, iid)
    if image is None or image.class_id != image_class.id:
        raise _missing_image()
    return image


ClassImageDep = Annotated[StoredImage, Depends(get_class_image)]


def get_job(jid: str, store: StoreDep) -> Job:
    job = store.get_job(jid)
    if job is None:
        raise TeachboxError(
            "There is no job with this id. List a project's jobs with GET /api/projects/{id}/jobs.",
            404,
        )
    return job


JobDep = Annotated[Job, Depends(get_job)]


class _MultiPartParser(MultiPartParser):
    """Starlette's multipart parser, noting whether the closing boundary arrived."""

    finished = False

    def on_end(self) -> None:
        self.finished = True


async def _first_part_within(
    stream: AsyncIterator[bytes], boundary: bytes, limit: int
) -> AsyncIterator[bytes]:
    """The body as it arrives, refused with 400 when its first part does not start within `limit` bytes."""
    marker, head, found = b"--" + boundary, b"", False
    async for chunk in stream:
        if found:
            yield chunk
            continue
        head += chunk
        if marker in head[: limit + len(marker)]:
            found = True
            yield head
        elif len(head) > limit + len(marker):
            raise TeachboxError(
                f"The multipart body has more than {limit // 1024} KB before its first part. Send the files as multipart/form-data without a preamble.",
                400,
            )
    if not found and head:
        yield head


def _multipart_error(message: str, settings: Settings) -> TeachboxError:
    if message.startswith("Too many files"):
        return TeachboxError(
            f"At most {settings.max_files_per_request} files can be sent in one request. Send them in smaller batches.",
            413,
        )
    return TeachboxError(
        f"The multipart body could not be read ({message}). Send the files as multipart/form-data.",
        400,
    )


async def read_form(request: Request, settings: SettingsDep) -> AsyncIterator[FormData]:
    """The multipart body, files spooled to unnamed temporary files, closed after the response.

    Parsing stops at the first malformed byte; a body with a long preamble, or one that ends
    before its closing boundary, is refused too, and the files already spooled are closed.
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise TeachboxError(
            "Send the files as multipart/form-data (an HTML form with enctype=multipart/form-data).",
            415,
        )
    boundary = parse_options_header(content_type)[1].get(b"boundary", b"")
    parser = _MultiPartParser(
        request.headers,
        _first_part_within(request.stream(), boundary, MAX_PREAMBLE_BYTES),
        max_files=settings.max_files_per_request,
        max_fields=MAX_FORM_FIELDS,
        max_part_size=MAX_FIELD_BYTES,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        # python-multipart's own words (e.g. 'Maximum header size exceeded') say more than Starlette's
        raise _multipart_error(str(exc.__cause__ or exc.message), settings) from None
    try:
        if not parser.finished:
            raise _multipart_error("it ends before its closing boundary", settings)
        yield form
    finally:
        await form.close()


FormDep = Annotated[FormData, Depends(read_form)]


def form_files(form: FormData, field: str) -> list[UploadFile]:
    return [value for value in form.getlist(field) if isinstance(value, UploadFile)]


def multipart_body(field: str, many: bool) -> dict:
    """OpenAPI for a multipart body read with FormDep, so /docs offers a file picker."""
    binary = {"type": "string", "format": "binary"}
    schema = {"type": "array", "items": binary} if many else binary
    content = {
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {field: schema}, "required": [field]}
        }
    }
    return {"requestBody": {"required": True, "content": content}}
