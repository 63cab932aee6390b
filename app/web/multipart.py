"""Multipart bodies read with limits: files spooled to temporary files, malformed bodies refused early."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from app.config import Settings
from app.engine.errors import InvalidRequest, TeachboxError, TooLarge, UnsupportedMediaType
from app.web.deps import SettingsDep

MAX_FORM_FIELDS = 100


MAX_FIELD_BYTES = 64 * 1024


# Browsers send none; a client that sends more before the first part is not uploading files.
MAX_PREAMBLE_BYTES = 16 * 1024


class _MultiPartParser(MultiPartParser):
    """Starlette's multipart parser, noting whether the closing boundary arrived."""

    finished = False

    def on_end(self) -> None:
        self.finished = True


async def _first_part_within(
    stream: AsyncIterator[bytes], boundary: bytes, limit: int
) -> AsyncGenerator[bytes, None]:
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
            raise InvalidRequest(
                f"The multipart body has more than {limit // 1024} KB before its first part. Send the files as multipart/form-data without a preamble."
            )
    if not found and head:
        yield head


def _multipart_error(message: str, settings: Settings) -> TeachboxError:
    if message.startswith("Too many files"):
        return TooLarge(
            f"At most {settings.max_files_per_request} files can be sent in one request. Send them in smaller batches."
        )
    return InvalidRequest(
        f"The multipart body could not be read ({message}). Send the files as multipart/form-data."
    )


async def read_form(request: Request, settings: SettingsDep) -> AsyncIterator[FormData]:
    """The multipart body, files spooled to unnamed temporary files, closed after the response.

    Parsing stops at the first malformed byte; a body with a long preamble, or one that ends
    before its closing boundary, is refused too, and the files already spooled are closed.
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType(
            "Send the files as multipart/form-data (an HTML form with enctype=multipart/form-data)."
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
