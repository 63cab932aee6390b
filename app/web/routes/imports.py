"""Importing a zip of class folders: the archive is checked whole before any entry is read.

Entries are never extracted to disk: each one is read into memory (bounded by its declared size
and the per-file limit) and goes through the same validation and storage as an upload.
"""

from __future__ import annotations

import zipfile
from collections import defaultdict
from typing import IO

from fastapi import APIRouter

from app.config import Settings
from app.engine.errors import (
    InvalidInput,
    InvalidRequest,
    NotFound,
    StorageFull,
    TooLarge,
    UnsupportedMediaType,
)
from app.service.records import ImageClass, Project, StoredImage
from app.service.store import Store
from app.service.uploads import clean_filename
from app.service.zip_import import (
    ArchiveMember,
    plan_import,
    read_member,
)
from app.web.api_models import RejectedFile, UploadResult, check_class_name
from app.web.deps import ProjectDep, RunnerDep, SettingsDep, StoreDep
from app.web.multipart import FormDep, form_files, multipart_body
from app.web.openapi import documented
from app.web.routes.images import ingest, upload_result

router = APIRouter(tags=["import"])


def _class_for(store: Store, project: Project, folder: str | None) -> ImageClass | str:
    if folder is None:
        return "The file is not inside a class folder. Put each class's images in a folder named after the class."
    try:
        return store.class_named(project.id, check_class_name(folder))
    except ValueError as exc:
        return f"The folder name '{clean_filename(folder)}' is not a valid class name: {exc}"


def _import_entry(
    archive: zipfile.ZipFile,
    entry: ArchiveMember,
    target: ImageClass | str,
    store: Store,
    settings: Settings,
) -> StoredImage | RejectedFile:
    if isinstance(target, str):
        return RejectedFile(filename=entry.filename, reason=target)
    data = read_member(archive, entry, settings)
    if isinstance(data, str):
        return RejectedFile(filename=entry.filename, reason=data)
    return ingest(store, target, entry.filename, data, settings)


def import_archive(
    file: IO[bytes], archive_bytes: int, project: Project, store: Store, settings: Settings
) -> list[StoredImage | RejectedFile]:
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError):
        raise InvalidRequest(
            "The file is not a zip archive. Zip the class folders and import the .zip file."
        ) from None
    with archive:
        by_folder: dict[str | None, list[ArchiveMember]] = defaultdict(list)
        for entry in plan_import(archive, archive_bytes, settings):
            by_folder[entry.folder].append(entry)
        outcomes: list[StoredImage | RejectedFile] = []
        for folder, entries in by_folder.items():
            target = _class_for(store, project, folder)
            outcomes.extend(
                _import_entry(archive, entry, target, store, settings) for entry in entries
            )
    return outcomes


@router.post(
    "/api/projects/{pid}/import",
    openapi_extra=multipart_body("file", many=False),
    responses=documented(
        NotFound, InvalidRequest, TooLarge, UnsupportedMediaType, InvalidInput, StorageFull
    ),
)
def import_zip(
    project: ProjectDep, form: FormDep, store: StoreDep, runner: RunnerDep, settings: SettingsDep
) -> UploadResult:
    """Import a zip of class folders (multipart field `file`); classes are created as needed."""
    uploads = form_files(form, "file") or form_files(form, "files")
    if len(uploads) != 1:
        raise InvalidInput("Attach one .zip file in the multipart field 'file'.")
    outcomes = import_archive(uploads[0].file, uploads[0].size or 0, project, store, settings)
    runner.embed_soon(project.id, [item for item in outcomes if isinstance(item, StoredImage)])
    return upload_result(outcomes)
