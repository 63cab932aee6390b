"""The rules for importing a zip of class folders: which entries count, which refuse the whole archive."""

from __future__ import annotations

import re
import stat
import zipfile
from dataclasses import dataclass

from app.config import Settings
from app.engine.errors import InvalidRequest, TooLarge, beside_limit
from app.service.uploads import clean_filename, file_too_large

# Files that can carry code when loaded (pickles, TorchScript, other frameworks' models).
# fmt: off
MODEL_SUFFIXES = frozenset({
    ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".onnx", ".safetensors", ".bin", ".h5", ".hdf5", ".keras",
    ".pb", ".tflite", ".joblib", ".npy", ".npz", ".mar", ".ptl", ".torchscript", ".mlmodel",
})


# fmt: on
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ArchiveMember:
    info: zipfile.ZipInfo
    folder: str | None
    filename: str


def entry_parts(info: zipfile.ZipInfo) -> list[str]:
    """The entry's path components; refuses absolute paths, `..`, NUL and symbolic links."""
    raw = info.filename
    name = raw.replace("\\", "/")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    unsafe = name.startswith("/") or _DRIVE.match(name) or ".." in parts or "\x00" in name
    if unsafe:
        raise InvalidRequest(
            f"The archive entry '{clean_filename(raw)}' points outside its folder. Zip the class folders themselves and import again."
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InvalidRequest(
            f"The archive entry '{clean_filename(raw)}' is a symbolic link. Zip the images themselves and import again."
        )
    if parts and "." + parts[-1].rsplit(".", 1)[-1].lower() in MODEL_SUFFIXES:
        raise InvalidRequest(
            f"The archive contains a model file, '{clean_filename(raw)}'; Teachbox never loads models from uploads. Remove it and import again."
        )
    return parts


def check_size(infos: list[zipfile.ZipInfo], archive_bytes: int, settings: Settings) -> None:
    if len(infos) > settings.max_import_files:
        raise TooLarge(
            f"The archive has {len(infos)} entries, over the limit of {settings.max_import_files}. Split it and import the parts."
        )
    total = sum(info.file_size for info in infos)
    if total > settings.max_import_mb * 1e6:
        raise TooLarge(
            "The archive unpacks to {} MB, over the limit of {} MB. Split it and import the parts.".format(
                *beside_limit(total / 1e6, settings.max_import_mb)
            )
        )
    if total > settings.max_import_ratio * max(archive_bytes, 1):
        raise TooLarge(
            f"The archive unpacks to {total / max(archive_bytes, 1):.0f} times its size, which looks like a zip bomb. Zip the images themselves."
        )


def _hidden(parts: list[str]) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


def plan_import(
    archive: zipfile.ZipFile, archive_bytes: int, settings: Settings
) -> list[ArchiveMember]:
    """Every image-bearing entry with its class folder; raises 400/413 before anything is read."""
    infos = archive.infolist()
    check_size(infos, archive_bytes, settings)
    files = [
        (info, parts)
        for info in infos
        if (parts := entry_parts(info)) and not info.is_dir() and not _hidden(parts)
    ]
    tops = {parts[0] for _, parts in files}
    if len(tops) == 1 and all(
        len(parts) >= 3 for _, parts in files
    ):  # a zip of the folder that holds the classes
        files = [(info, parts[1:]) for info, parts in files]
    return [
        ArchiveMember(info, parts[0] if len(parts) > 1 else None, clean_filename(parts[-1]))
        for info, parts in files
    ]


def read_member(archive: zipfile.ZipFile, entry: ArchiveMember, settings: Settings) -> bytes | str:
    """The entry's bytes, or the reason it cannot be read."""
    if entry.info.file_size > settings.max_file_mb * 1e6:
        return file_too_large(entry.info.file_size, settings)
    try:
        with archive.open(entry.info) as member:
            return member.read(entry.info.file_size + 1)
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError) as exc:
        return f"The file is damaged or encrypted inside the archive ({exc}). Zip it again."
