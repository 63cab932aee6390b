"""Projects: create, list, read (with classes and training state), rename, delete."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.engine.errors import Conflict, InvalidInput, NotFound
from app.service.records import Project
from app.service.store import Store
from app.web.api_models import ClassOut, JobOut, ProjectDetail, ProjectIn, ProjectOut
from app.web.deps import CallerDep, ModelsDep, ProjectDep, RunnerDep, StoreDep
from app.web.openapi import documented

router = APIRouter(prefix="/api/projects", tags=["projects"])


def _refetch(store: Store, project: Project) -> Project:
    return store.get_project(project.id) or project


@router.post("", status_code=201, responses=documented(InvalidInput))
def create_project(body: ProjectIn, store: StoreDep, caller: CallerDep) -> ProjectOut:
    return ProjectOut.of(store.create_project(body.name, owner_id=caller.user_id))


@router.get("")
def list_projects(store: StoreDep, caller: CallerDep) -> list[ProjectOut]:
    """The caller's projects; an admin's list (and, without accounts, anyone's) has them all."""
    projects = store.list_projects(caller.user_id, everyone=caller.sees_all)
    return [ProjectOut.of(project) for project in projects]


@router.get("/{pid}", responses=documented(NotFound))
def get_project(project: ProjectDep, store: StoreDep, runner: RunnerDep) -> ProjectDetail:
    active, model = store.active_job(project.id), store.latest_model_job(project.id)
    return ProjectDetail(
        **ProjectOut.of(project).model_dump(),
        classes=[ClassOut.of(image_class) for image_class in store.list_classes(project.id)],
        active_job=JobOut.of(active) if active else None,
        model_job_id=model.id if model else None,
        pending_embeddings=runner.pending_embeddings(project.id),
    )


@router.patch("/{pid}", responses=documented(NotFound, InvalidInput))
def rename_project(body: ProjectIn, project: ProjectDep, store: StoreDep) -> ProjectOut:
    store.rename_project(project.id, body.name)
    return ProjectOut.of(_refetch(store, project))


@router.delete("/{pid}", status_code=204, responses=documented(NotFound, Conflict))
def delete_project(project: ProjectDep, store: StoreDep, models: ModelsDep) -> Response:
    job_ids = [job.id for job in store.list_jobs(project.id)]
    store.delete_project(project.id)
    models.forget(job_ids)
    return Response(status_code=204)
