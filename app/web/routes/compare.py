"""Transfer learning against fine-tuning side by side, and keeping one of the two models."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from app.engine.errors import Conflict, InvalidInput, NotFound
from app.service.records import JobKind, JobStatus
from app.web.api_models import CompareParams, JobCreated, JobOut, KeepIn
from app.web.deps import JobDep, ModelsDep, ProjectDep, RunnerDep, StoreDep
from app.web.openapi import documented

router = APIRouter(tags=["compare"])


@router.post(
    "/api/projects/{pid}/compare",
    status_code=202,
    responses=documented(NotFound, Conflict, InvalidInput),
)
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


@router.post("/api/jobs/{jid}/keep", responses=documented(NotFound, Conflict, InvalidInput))
def keep_model(body: KeepIn, job: JobDep, store: StoreDep, models: ModelsDep) -> JobOut:
    """Make one of a finished comparison's models the project's model (predict and export use it)."""
    if job.kind is not JobKind.COMPARE:
        raise Conflict(
            f"Job {job.id} is a training, not a comparison; its model is already the project's model when it is the latest."
        )
    if job.status is not JobStatus.SUCCEEDED:
        raise Conflict(
            f"Job {job.id} is {job.status}; a model can be kept once the comparison has succeeded."
        )
    if not store.model_path(job, body.mode).is_file():
        raise NotFound(
            f"The {body.mode} model of job {job.id} is missing from the data folder. Compare again."
        )
    store.keep_mode(job.id, body.mode)
    models.forget([job.id])
    return JobOut.of(store.get_job(job.id) or job)
