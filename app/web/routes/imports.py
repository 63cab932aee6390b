"""Importing a zip of class folders: the archive is checked whole before any entry is read.

Entries are never extracted to disk: each one is read into memory (bounded by its declared size
and the per-file limit) and goes through the same validation and storage as an upload.
"""

from __future__ import annotations

import re
import stat
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from typing import IO

from fastapi import APIRouter

from app.config import Settings
from app.engine.errors import TeachboxError
from app.service.store import ImageClass, Project, Store, StoredImage, clean_filename
from app.web.api_models import RejectedFile, UploadResult, check_class_name
from app.web.deps import (
    FormDep,
    ProjectDep,
    RunnerDep,
    SettingsDep,
    StoreDep,
    form_files,
    multipart_body,
)
from app.web.routes.images import file_too_large, ingest, upload_result

router = APIRouter(tags=["import"])

# Files that can carry code when loaded (pickles, TorchScript, other frameworks' models).
# fmt: off
MODEL_SUFFIXES = frozenset({
    ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".onnx", ".safetensors", ".bin", ".h5", ".hdf5", ".keras",
    ".pb", ".tflite", ".joblib", ".npy", ".npz", ".mar", ".ptl", ".torchscript", ".mlmodel",
})
# fmt: on
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class Entry:
    info: zipfile.ZipInfo
    folder: str | None
    filename: str


def _parts(info: zipfile.ZipInfo) -> list[str]:
    """The entry's path components; refuses absolute paths, `..`, NUL and symbolic links."""
    raw = info.filename
    name = raw.replace("\\", "/")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    unsafe = name.startswith("/") or _DRIVE.match(name) or ".." in parts or "\x00" in name
    if unsafe:
        raise TeachboxError(
            f"The archive entry '{clean_filename(raw)}' points outside its folder. Zip the class folders themselves and import again.",
            400,
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise TeachboxError(
            f"The archive entry '{clean_filename(raw)}' is a symbolic link. Zip the images themselves and import again.",
            400,
        )
    if parts and "." + parts[-1].rsplit(".", 1)[-1].lower() in MODEL_SUFFIXES:
        raise TeachboxError(
            f"The archive contains a model file, '{clean_filename(raw)}'; Teachbox never loads models from uploads. Remove it and import again.",
            400,
        )
    return parts


def _check_size(infos: list[zipfile.ZipInfo], archive_bytes: int, settings: Settings) -> None:
    if len(infos) > settings.max_import_files:
        raise TeachboxError(
            f"The archive has {len(infos)} entries, over the limit of {settings.max_import_files}. Split it and import the parts.",
            413,
        )
    total = sum(info.file_size for info in infos)
    if total > settings.max_import_mb * 1e6:
        raise TeachboxError(
            f"The archive unpacks to {total / 1e6:.3g} MB, over the limit of {settings.max_import_mb:g} MB. Split it and import the parts.",
            413,
        )
    if total > settings.max_import_ratio * max(archive_bytes, 1):
        raise TeachboxError(
            f"The archive unpacks to {total / max(archive_bytes, 1):.0f} times its size, which looks like a zip bomb. Zip the images themselves.",
            413,
        )


def _hidden(parts: list[str]) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


def plan_import(archive: zipfile.ZipFile, archive_bytes: int, settings: Settings) -> list[Entry]:
    """Every image-bearing entry with its class folder; raises 400/413 before anything is read."""
    infos = archive.infolist()
    _check_size(infos, archive_bytes, settings)
    files = [
        (info, parts)
        for info in infos
        if (parts := _parts(info)) and not info.is_dir() and not _hidden(parts)
    ]
    tops = {parts[0] for _, parts in files}
    if len(tops) == 1 and all(
        len(parts) >= 3 for _, parts in files
    ):  # a zip of the folder that holds the classes
        files = [(info, parts[1:]) for info, parts in files]
    return [
        Entry(info, parts[0] if len(parts) > 1 else None, clean_filename(parts[-1]))
        for info, parts in files
    ]


def _read_entry(archive: zipfile.ZipFile, entry: Entry, settings: Settings) -> bytes | str:
    """The entry's bytes, or the reason it cannot be read."""
    if entry.info.file_size > settings.max_file_mb * 1e6:
        return file_too_large(entry.info.file_size, settings)
    try:
        with archive.open(entry.info) as member:
            return member.read(entry.info.file_size + 1)
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError) as exc:
        return f"The file is damaged or encrypted inside the archive ({exc}). Zip it again."


def _class_for(store: Store, project: Project, folder: str | None) -> ImageClass | str:
    if folder is None:
        return "The file is not inside a class folder. Put each class's images in a folder named after the class."
    try:
        return store.class_named(project.id, check_class_name(folder))
    except ValueError as exc:
        return f"The folder name '{clean_filename(folder)}' is not a valid class name: {exc}"


def _import_entry(
    archive: zipfile.ZipFile,
    entry: Entry,
    target: ImageClass | str,
    store: Store,
    settings: Settings,
) -> StoredImage | RejectedFile:
    if isinstance(target, str):
        return RejectedFile(filename=entry.filename, reason=target)
    data = _read_entry(archive, entry, settings)
    if isinstance(data, str):
        return RejectedFile(filename=entry.filename, reason=data)
    return ingest(store, target, entry.filename, data, settings)


def import_archive(
    file: IO[bytes], archive_bytes: int, project: Project, store: Store, settings: Settings
) -> list[StoredImage | RejectedFile]:
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError):
        raise TeachboxError(
            "The file is not a zip archive. Zip the class folders and import the .zip file.", 400
        ) from None
    with archive:
        by_folder: dict[str | None, list[Entry]] = defaultdict(list)
        for entry in plan_import(archive, archive_bytes, settings):
            by_folder[entry.folder].append(entry)
        outcomes: list[StoredImage | RejectedFile] = []
        for folder, entries in by_folder.items():
            target = _class_for(store, project, folder)
            outcomes.extend(
                _import_entry(archive, entry, target, store, settings) for entry in entries
            )
    return outcomes


@router.post("/api/projects/{pid}/import", openapi_extra=multipart_body("file", many=False))
def import_zip(
    project: ProjectDep, form: FormDep, store: StoreDep, runner: RunnerDep, settings: SettingsDep
) -> UploadResult:
    """Import a zip of class folders (multipart field `file`); classes are created as needed."""
    uploads = form_files(form, "file") or form_files(form, "files")
    if len(uploads) != 1:
        raise TeachboxError("Attach one .zip file in the multipart field 'file'.", 422)
    outcomes = import_archive(uploads[0].file, uploads[0].size or 0, project, store, settings)
    runner.embed_soon(project.id, [item for item in outcomes if isinstance(item, StoredImage)])
    return upload_result(outcomes)
