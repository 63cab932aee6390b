"""Data health: what in a project's images will mislead training, and whether more images would help."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query

from app.engine.errors import InvalidInput, NotFound, Unavailable
from app.engine.health.report import HealthReport, analyse_health
from app.engine.params import TrainParams
from app.service.redaction import Publisher
from app.service.snapshots import current_dataset
from app.web.deps import ProjectDep, RunnerDep, StoreDep
from app.web.openapi import documented

router = APIRouter(tags=["data health"])
STORED_NAME = re.compile(r"'([0-9a-f]{32}\.\w+)'")


@router.get("/api/projects/{pid}/health", responses=documented(NotFound, InvalidInput, Unavailable))
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
        Publisher(store, project.id).data(report.model_dump(mode="json"))
    )
    names = {image.stored_name: image.filename for image in store.list_images(project.id)}
    return with_filenames(public, names)


def with_filenames(report: HealthReport, names: dict[str, str]) -> HealthReport:
    """The findings' sentences name images as the user uploaded them, not by their stored names."""
    for finding in report.findings:
        finding.message = STORED_NAME.sub(lambda m: f"'{names.get(m[1], m[1])}'", finding.message)
    return report
