"""A whole project in one file: class names, images, the current model and its training settings.

The bundle is a zip: `manifest.json` (format, project name, classes in order, each image with its
class and sha256, the model's training parameters), `images/<class index>/<file>` and, when the
project has a model, `model.zip` (its model zip). Opening one is checked like a zip import: the
same limits and refusals before anything is read. The model is rebuilt from the weights in
`model.safetensors` (tensors, no code) into Teachbox's own network and exported again here,
parity check included, so no model file from an upload is ever loaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ValidationError

from app.config import Settings
from app.engine.errors import ImageRejected, InvalidRequest, TeachboxError
from app.engine.export import export_model_zip
from app.engine.metrics import TrainMetrics
from app.engine.model_zip import load_classifier
from app.engine.params import TrainParams
from app.engine.training import TrainResult
from app.service.records import Job, JobKind, JobStatus, Project, StoredImage, new_id
from app.service.store import Store
from app.service.uploads import prepare_image
from app.service.zip_import import ArchiveMember, check_size, entry_parts, read_member

BUNDLE_FORMAT = "teachbox-project"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
MODEL_MEMBER = "model.zip"
NameCheck = Callable[[str], str]


class BundleImage(BaseModel):
    file: str
    class_name: str
    filename: str
    sha256: str


class BundleModel(BaseModel):
    file: str
    params: dict[str, Any]
    labels: list[str]
    metrics: dict[str, Any] | None = None


class Manifest(BaseModel):
    format: str
    version: int
    name: str
    classes: list[str]
    images: list[BundleImage]
    model: BundleModel | None = None


def _refused(reason: str) -> InvalidRequest:
    return InvalidRequest(
        f"This is not a Teachbox project bundle that can be opened: {reason}. Give the file that Save project (or `teachbox bundle save`) wrote."
    )


# Saving


def _manifest(store: Store, project: Project) -> tuple[Manifest, list[tuple[str, Path]]]:
    """The manifest and, for each entry, the stored file it is written from."""
    classes = store.list_classes(project.id)
    index = {image_class.id: position for position, image_class in enumerate(classes)}
    files: list[tuple[str, Path]] = []
    images = []
    for image in store.list_images(project.id):
        entry = f"images/{index[image.class_id]}/{image.stored_name}"
        files.append((entry, store.image_path(image)))
        images.append(
            BundleImage(
                file=entry,
                class_name=classes[index[image.class_id]].name,
                filename=image.filename,
                sha256=image.sha256,
            )
        )
    model = None
    job = store.latest_model_job(project.id)
    if job is not None and store.model_path(job).is_file():
        files.append((MODEL_MEMBER, store.model_path(job)))
        metadata = json.loads(zipfile.ZipFile(store.model_path(job)).read("metadata.json"))
        model = BundleModel(
            file=MODEL_MEMBER, params=metadata["params"], labels=job.labels, metrics=job.metrics
        )
    manifest = Manifest(
        format=BUNDLE_FORMAT,
        version=BUNDLE_VERSION,
        name=project.name,
        classes=[image_class.name for image_class in classes],
        images=images,
        model=model,
    )
    return manifest, files


def write_bundle(store: Store, project: Project, out: IO[bytes]) -> None:
    """Write the project's bundle to `out` (images and the model zip stored, not recompressed)."""
    manifest, files = _manifest(store, project)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(MANIFEST, manifest.model_dump_json(indent=2), zipfile.ZIP_DEFLATED)
        for entry, path in files:
            archive.write(path, entry)


# Opening


def _read_manifest(archive: zipfile.ZipFile, settings: Settings) -> Manifest:
    try:
        info = archive.getinfo(MANIFEST)
    except KeyError:
        raise _refused(f"it has no {MANIFEST}") from None
    data = read_member(archive, ArchiveMember(info, None, MANIFEST), settings)
    if isinstance(data, str):
        raise _refused(data)
    try:
        raw = json.loads(data)
    except ValueError:
        raise _refused(f"its {MANIFEST} is not JSON") from None
    if not isinstance(raw, dict) or raw.get("format") != BUNDLE_FORMAT:
        raise _refused(f"its {MANIFEST} does not say format '{BUNDLE_FORMAT}'")
    if isinstance(raw.get("version"), int) and raw["version"] > BUNDLE_VERSION:
        raise InvalidRequest(
            f"This bundle was saved by a newer Teachbox (bundle version {raw['version']}; this one opens up to {BUNDLE_VERSION}). Update Teachbox, then open it."
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise _refused(f"its {MANIFEST} has a bad '{where}' ({first['msg']})") from None


def _check_manifest(
    manifest: Manifest, names: set[str], project_name: NameCheck, class_name: NameCheck
) -> Manifest:
    """Names valid and unique, every image of a known class and present, the model's labels known."""
    try:
        valid = project_name(manifest.name) == manifest.name and all(
            class_name(name) == name for name in manifest.classes
        )
    except ValueError as exc:
        raise _refused(f"a name in it is not valid ({exc})") from None
    if not valid:  # names this server stored are already clean; any other was made by hand
        raise _refused("a name in it is not as Teachbox stores names")
    if len(set(manifest.classes)) != len(manifest.classes):
        raise _refused("it names a class twice")
    known = set(manifest.classes)
    for image in manifest.images:
        if image.class_name not in known:
            raise _refused(f"the image '{image.file}' is of a class it does not list")
        if image.file not in names or not image.file.startswith("images/"):
            raise _refused(f"the image '{image.file}' is missing from it")
    if len({image.file for image in manifest.images}) != len(manifest.images):
        raise _refused("it lists an image twice")
    if manifest.model is not None:
        if manifest.model.file != MODEL_MEMBER or MODEL_MEMBER not in names:
            raise _refused(f"its model, {MODEL_MEMBER}, is missing")
        if not manifest.model.labels or not set(manifest.model.labels) <= known:
            raise _refused("its model's labels are not among its classes")
    return manifest


def _member_bytes(archive: zipfile.ZipFile, name: str, settings: Settings) -> bytes:
    data = read_member(archive, ArchiveMember(archive.getinfo(name), None, name), settings)
    if isinstance(data, str):
        raise _refused(f"'{name}': {data}")
    return data


def _model_bytes(archive: zipfile.ZipFile) -> bytes:
    """The model zip, larger than one image may be; its size was checked with the archive's."""
    info = archive.getinfo(MODEL_MEMBER)
    try:
        with archive.open(info) as member:
            return member.read(info.file_size + 1)
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError) as exc:
        raise _refused(f"its {MODEL_MEMBER} is damaged or encrypted ({exc})") from None


def _add_images(
    archive: zipfile.ZipFile, manifest: Manifest, project: Project, store: Store, settings: Settings
) -> list[tuple[StoredImage, str]]:
    classes = {name: store.create_class(project.id, name) for name in manifest.classes}
    added = []
    for image in manifest.images:
        data = _member_bytes(archive, image.file, settings)
        if hashlib.sha256(data).hexdigest() != image.sha256:
            raise _refused(f"the image '{image.file}' does not match its sha256")
        try:
            prepared = prepare_image(data, settings.max_pixels)
        except ImageRejected as exc:
            raise _refused(f"the image '{image.file}' cannot be used ({exc.reason})") from None
        stored = store.add_image(classes[image.class_name], image.filename, prepared)
        added.append((stored, image.class_name))
    return added


def _rebuild_model(
    model_zip: bytes,
    model: BundleModel,
    images: list[tuple[StoredImage, str]],
    project: Project,
    store: Store,
    settings: Settings,
) -> None:
    """Load the bundled weights into Teachbox's network, export and verify it here, record its job."""
    try:
        inner = zipfile.ZipFile(io.BytesIO(model_zip))
        # Only two of its members are read, by name, so its entry names never matter; its size does.
        check_size(inner.infolist(), len(model_zip), settings)
        params = TrainParams.model_validate(
            {key: value for key, value in model.params.items() if key in TrainParams.model_fields}
        )
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / MODEL_MEMBER
            path.write_bytes(model_zip)
            network, metadata = load_classifier(path)
        metrics = TrainMetrics.model_validate(metadata["metrics"])
    except Exception as exc:  # whatever a hostile file makes the readers raise is a refusal
        reason = exc.message if isinstance(exc, TeachboxError) else f"{type(exc).__name__}: {exc}"
        raise _refused(f"its model cannot be loaded ({reason.splitlines()[0][:300]})") from None
    if list(metadata["labels"]) != model.labels:
        raise _refused("its model's labels differ from the manifest's")
    paths = [store.image_path(image) for image, _ in images]
    known = [(image, name) for image, name in images if name in model.labels]
    now = time.time()
    job = Job(
        id=new_id(),
        project_id=project.id,
        status=JobStatus.SUCCEEDED,
        params=params,
        labels=model.labels,
        image_count=len(images),
        created_at=now,
        kind=JobKind.TRAIN,
        started_at=now,
        finished_at=now,
    )
    result = TrainResult(
        labels=model.labels,
        params=params,
        model=network,
        history=[],
        metrics=metrics,
        val_paths=[store.image_path(image) for image, _ in known],
        train_seconds=metrics.train_seconds,
        device="cpu",
        val_labels=[model.labels.index(name) for _, name in known],
        train_paths=paths,
    )
    exported = export_model_zip(result, store.model_path(job), settings.max_pixels, settings.tflite)
    metrics_now = {**(model.metrics or {}), "parity": exported["parity"]}
    store.add_finished_job(
        replace(job, metrics=metrics_now), [(image.stored_name, name) for image, name in images]
    )


def open_bundle(
    file: IO[bytes],
    size: int,
    store: Store,
    settings: Settings,
    project_name: NameCheck,
    class_name: NameCheck,
) -> Project:
    """A new project from a bundle; a bundle refused at any step leaves nothing behind."""
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError):
        raise InvalidRequest(
            "The file is not a zip archive. Give the bundle that Save project (or `teachbox bundle save`) wrote."
        ) from None
    with archive:
        infos = archive.infolist()
        check_size(infos, size, settings)
        names = {"/".join(entry_parts(info)) for info in infos if not info.is_dir()}
        manifest = _check_manifest(
            _read_manifest(archive, settings), names, project_name, class_name
        )
        project = store.create_project(manifest.name)
        try:
            images = _add_images(archive, manifest, project, store, settings)
            if manifest.model is not None:
                model_zip = _model_bytes(archive)
                _rebuild_model(model_zip, manifest.model, images, project, store, settings)
        except BaseException:
            store.delete_project(project.id)
            raise
    return store.get_project(project.id) or project
