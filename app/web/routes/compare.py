"""Transfer learning against fine-tuning side by side, keeping one of the two models, and data health."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Body, Query

from app.engine.dataset import Dataset, stratified_split
from app.engine.errors import TeachboxError
from app.engine.health.report import HealthReport, analyse_health
from app.engine.params import TrainParams
from app.service.redaction import Publisher
from app.service.store import JobKind, JobStatus, Project, Store
from app.web.api_models import CompareParams, JobCreated, JobOut, KeepIn
from app.web.deps import JobDep, ModelsDep, ProjectDep, RunnerDep, StoreDep

router = APIRouter(tags=["compare"])
STORED_NAME = re.compile(r"'([0-9a-f]{32}\.\w+)'")


@router.post("/api/projects/{pid}/compare", status_code=202)
def create_comparison(
    project: ProjectDep,
    store: StoreDep,
    runner: RunnerDep,
    params: Annotated[CompareParams | None, Body()] = None,
) -> JobCreated:
    """Queue both modes on the same split; the job's events carry `run`, its metrics are the report. 409 while a job is active."""
    job = store.create_job(project.id, (params or CompareParams()).for_job(), JobKind.COMPARE)
    runner.submit(job)
    return JobCreated(id=job.id, status=job.status)


@router.post("/api/jobs/{jid}/keep")
def keep_model(body: KeepIn, job: JobDep, store: StoreDep, models: ModelsDep) -> JobOut:
    """Make one of a finished comparison's models the project's model (predict and export use it)."""
    if job.kind is not JobKind.COMPARE:
        raise TeachboxError(
            f"Job {job.id} is a training, not a comparison; its model is already the project's model when it is the latest.",
            409,
        )
    if job.status is not JobStatus.SUCCEEDED:
        raise TeachboxError(
            f"Job {job.id} is {job.status}; a model can be kept once the comparison has succeeded.",
            409,
        )
    if not store.model_path(job, body.mode).is_file():
        raise TeachboxError(
            f"The {body.mode} model of job {job.id} is missing from the data folder. Compare again.",
            404,
        )
    store.keep_mode(job.id, body.mode)
    models.forget([job.id])
    return JobOut.of(store.get_job(job.id) or job)


def current_dataset(store: Store, project: Project, params: TrainParams) -> Dataset:
    """The project's images as they are now, split as a job with these parameters would split them."""
    labels = [image_class.name for image_class in store.list_classes(project.id)]
    names = {image_class.id: image_class.name for image_class in store.list_classes(project.id)}
    images = store.list_images(project.id)
    if not images:
        raise TeachboxError(
            "This project has no images yet. Add images to its classes, then check its data health.",
            422,
        )
    index = {name: i for i, name in enumerate(labels)}
    items = [
        (store.image_path(image), index[names[image.class_id]])
        for image in images
        if image.class_id in names
    ]
    train, val = stratified_split(items, params.val_split, params.seed)
    return Dataset(labels, train, val)


@router.get("/api/projects/{pid}/health")
def data_health(
    project: ProjectDep,
    store: StoreDep,
    runner: RunnerDep,
    curve: Annotated[
        bool, Query(description="Also train on 25/50/75/100 % of the images: would more data help?")
    ] = True,
) -> HealthReport:
    """What in the project's current images will mislead training, and (with `curve`) whether more images would help.

    Runs in a worker thread on the cached embeddings; images are named by id, never by server path."""
    jobs = store.list_jobs(project.id)
    params = TrainParams(backbone=jobs[0].params.backbone) if jobs else TrainParams()
    dataset = current_dataset(store, project, params)
    report = analyse_health(
        dataset, embedder=runner.embedder(params.backbone), params=params, curve=curve
    )
    public = HealthReport.model_validate(
        Publisher(store.data_dir, project.id).data(report.model_dump(mode="json"))
    )
    names = {image.stored_name: image.filename for image in store.list_images(project.id)}
    return with_filenames(public, names)


def with_filenames(report: HealthReport, names: dict[str, str]) -> HealthReport:
    """The findings' sentences name images as the user uploaded them, not by their stored names."""
    for finding in report.findings:
        finding.message = STORED_NAME.sub(lambda m: f"'{names.get(m[1], m[1])}'", finding.message)
    return report
