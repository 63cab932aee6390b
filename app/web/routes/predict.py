"""Classifying one image with the project's latest trained model, kept warm in memory."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response

from app.engine.errors import (
    Conflict,
    InvalidInput,
    InvalidRequest,
    NotFound,
    TooLarge,
    Unavailable,
    UnsupportedMediaType,
)
from app.engine.images import decode_image
from app.service.uploads import file_too_large
from app.web.api_models import Prediction, PredictResult
from app.web.deps import ModelsDep, ProjectDep, SettingsDep, StoreDep
from app.web.multipart import FormDep, form_files, multipart_body
from app.web.openapi import documented

router = APIRouter(tags=["predict"])


@router.post(
    "/api/projects/{pid}/predict",
    openapi_extra=multipart_body("file", many=False),
    responses=documented(
        NotFound,
        Conflict,
        InvalidRequest,
        TooLarge,
        UnsupportedMediaType,
        InvalidInput,
        Unavailable,
    ),
)
def predict(
    project: ProjectDep,
    form: FormDep,
    store: StoreDep,
    models: ModelsDep,
    settings: SettingsDep,
    response: Response,
) -> PredictResult:
    """Probabilities for every class, most likely first, from the latest succeeded job's model,
    and whether the model is unsure (its top probability below the model's `unsure_below`).

    Requests that arrive together are run as one batch. The `Server-Timing` header says where the
    time went: decoding, waiting for the model, the model itself (and the batch it ran in).
    """
    job = store.latest_model_job(project.id)
    if job is None:
        raise Conflict("This project has no trained model yet. Train it first, then predict.")
    uploads = form_files(form, "file") or form_files(form, "files")
    if not uploads:
        raise InvalidInput("Attach one image in the multipart field 'file'.")
    size = uploads[0].size or 0
    if size > settings.max_file_mb * 1e6:
        raise TooLarge(file_too_large(size, settings))
    started = time.perf_counter()
    image = decode_image(uploads[0].file.read(), settings.max_pixels)
    decode_ms = (time.perf_counter() - started) * 1000
    labels, probabilities, timing = models.predict(job, image)
    response.headers["Server-Timing"] = (
        f"decode;dur={decode_ms:.1f}, queue;dur={timing.queued_s * 1000:.1f}, "
        f'model;dur={timing.model_s * 1000:.1f};desc="batch of {timing.batch_size}"'
    )
    ranked = sorted(zip(labels, probabilities.tolist(), strict=True), key=lambda pair: -pair[1])
    threshold = models.get(job).unsure_below
    return PredictResult(
        predictions=[Prediction(label=label, probability=p) for label, p in ranked],
        unsure=ranked[0][1] < threshold,
        unsure_below=threshold,
        job_id=job.id,
    )
