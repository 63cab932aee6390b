"""Images of a class: upload (validated one by one), list, download re-encoded, delete."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse

from app.config import Settings
from app.engine.errors import (
    Conflict,
    ImageRejected,
    InvalidInput,
    InvalidRequest,
    NotFound,
    StorageFull,
    TooLarge,
    UnsupportedMediaType,
)
from app.service.records import ImageClass, StoredImage
from app.service.store import Store
from app.service.uploads import clean_filename, file_too_large, prepare_image, reencode
from app.web.api_models import AddedImage, ImageMove, ImageOut, RejectedFile, UploadResult
from app.web.deps import (
    ClassDep,
    ClassImageDep,
    ImageDep,
    ProjectDep,
    RunnerDep,
    SettingsDep,
    StoreDep,
)
from app.web.multipart import FormDep, form_files, multipart_body
from app.web.openapi import documented

router = APIRouter(tags=["images"])
_JPEG = documented(
    NotFound,
    ok={"content": {"image/jpeg": {}}, "description": "The image, re-encoded as JPEG."},
)
_CACHE = {"Cache-Control": "private, max-age=86400"}


def ingest(
    store: Store, image_class: ImageClass, filename: str, data: bytes, settings: Settings
) -> StoredImage | RejectedFile:
    """Store one uploaded file, or say why it was rejected; one bad file never sinks the others."""
    if len(data) > settings.max_file_mb * 1e6:
        return RejectedFile(filename=filename, reason=file_too_large(len(data), settings))
    try:
        return store.add_image(image_class, filename, prepare_image(data, settings.max_pixels))
    except ImageRejected as exc:
        return RejectedFile(filename=filename, reason=exc.reason)


def upload_result(outcomes: list[StoredImage | RejectedFile]) -> UploadResult:
    return UploadResult(
        added=[AddedImage.of(item) for item in outcomes if isinstance(item, StoredImage)],
        rejected=[item for item in outcomes if isinstance(item, RejectedFile)],
    )


@router.post(
    "/api/projects/{pid}/classes/{cid}/images",
    openapi_extra=multipart_body("files", many=True),
    responses=documented(
        NotFound, InvalidRequest, TooLarge, UnsupportedMediaType, InvalidInput, StorageFull
    ),
)
def upload_images(
    image_class: ClassDep, form: FormDep, store: StoreDep, runner: RunnerDep, settings: SettingsDep
) -> UploadResult:
    """Add images to a class: multipart, the field `files` repeated once per image."""
    uploads = form_files(form, "files")
    if not uploads:
        raise InvalidInput("Attach at least one image in the multipart field 'files'.")
    oversized = [upload for upload in uploads if (upload.size or 0) > settings.max_file_mb * 1e6]
    if len(oversized) == len(uploads):
        raise TooLarge(file_too_large(oversized[0].size or 0, settings))
    outcomes: list[StoredImage | RejectedFile] = []
    for upload in uploads:
        name = clean_filename(upload.filename)
        if upload in oversized:
            outcomes.append(
                RejectedFile(filename=name, reason=file_too_large(upload.size or 0, settings))
            )
        else:
            outcomes.append(ingest(store, image_class, name, upload.file.read(), settings))
    result = upload_result(outcomes)
    runner.embed_soon(
        image_class.project_id, [item for item in outcomes if isinstance(item, StoredImage)]
    )
    return result


@router.get("/api/projects/{pid}/classes/{cid}/images", responses=documented(NotFound))
def list_class_images(image_class: ClassDep, store: StoreDep) -> list[ImageOut]:
    return [
        ImageOut.of(image) for image in store.list_images(image_class.project_id, image_class.id)
    ]


@router.get("/api/projects/{pid}/images", responses=documented(NotFound))
def list_project_images(project: ProjectDep, store: StoreDep) -> list[ImageOut]:
    return [ImageOut.of(image) for image in store.list_images(project.id)]


def _jpeg(image: StoredImage, store: Store, settings: Settings) -> Response:
    try:
        data = reencode(store.image_path(image), settings.max_pixels)
    except (ImageRejected, FileNotFoundError):
        raise NotFound(
            "The stored file of this image is missing or damaged. Delete the image and upload it again."
        ) from None
    return Response(data, media_type="image/jpeg", headers=_CACHE)


def _thumbnail(image: StoredImage, store: Store) -> Response:
    path = store.thumbnail_path(image)
    if not path.is_file():
        raise NotFound(
            "The thumbnail of this image is missing. Delete the image and upload it again."
        )
    return FileResponse(path, media_type="image/jpeg", headers=_CACHE)


@router.get("/api/projects/{pid}/images/{iid}", response_class=Response, responses=_JPEG)
def download_image(image: ImageDep, store: StoreDep, settings: SettingsDep) -> Response:
    return _jpeg(image, store, settings)


@router.get("/api/projects/{pid}/images/{iid}/thumbnail", response_class=Response, responses=_JPEG)
def download_thumbnail(image: ImageDep, store: StoreDep) -> Response:
    return _thumbnail(image, store)


@router.patch("/api/projects/{pid}/images/{iid}", responses=documented(NotFound, InvalidInput))
def move_image(body: ImageMove, image: ImageDep, store: StoreDep) -> ImageOut:
    """Move the image to another class of the project ("this is actually …"). A running job keeps
    the labels it was submitted with."""
    return ImageOut.of(store.move_image(image, body.class_id))


@router.delete(
    "/api/projects/{pid}/images/{iid}", status_code=204, responses=documented(NotFound, Conflict)
)
def delete_image(image: ImageDep, store: StoreDep) -> Response:
    store.delete_image(image)
    return Response(status_code=204)


@router.get(
    "/api/projects/{pid}/classes/{cid}/images/{iid}", response_class=Response, responses=_JPEG
)
def download_class_image(image: ClassImageDep, store: StoreDep, settings: SettingsDep) -> Response:
    return _jpeg(image, store, settings)


@router.get(
    "/api/projects/{pid}/classes/{cid}/images/{iid}/thumbnail",
    response_class=Response,
    responses=_JPEG,
)
def download_class_thumbnail(image: ClassImageDep, store: StoreDep) -> Response:
    return _thumbnail(image, store)


@router.delete(
    "/api/projects/{pid}/classes/{cid}/images/{iid}",
    status_code=204,
    responses=documented(NotFound, Conflict),
)
def delete_class_image(image: ClassImageDep, store: StoreDep) -> Response:
    store.delete_image(image)
    return Response(status_code=204)
