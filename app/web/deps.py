"""Typed dependencies in one place: routes say `project: ProjectDep`; an unknown or malformed id is a 404 here."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.engine.errors import Forbidden, NotFound, TeachboxError, Unauthorized
from app.service.accounts import Accounts, Caller
from app.service.event_log import EventLog
from app.service.records import ImageClass, Job, Project, StoredImage
from app.service.runners.base import JobRunner
from app.service.store import Store, missing_class
from app.service.throttle import SignInThrottle
from app.service.warm_models import WarmModels


# The accessors below are async only so that FastAPI calls them on the event loop: a plain `def`
# dependency costs a round trip through the thread pool on every request.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_runner(request: Request) -> JobRunner:
    return request.app.state.runner


async def get_event_log(request: Request) -> EventLog:
    return request.app.state.event_log


async def get_models(request: Request) -> WarmModels:
    return request.app.state.models


async def get_caller(request: Request) -> Caller:
    """Who is asking, as the guard found out; a request it let through without credentials (to a
    public route) has no caller, and a route that asks for one answers 401."""
    caller: Caller | None = request.scope.get("state", {}).get("caller")
    if caller is None:
        raise Unauthorized("Sign in first, or send a token as `Authorization: Bearer <token>`.")
    return caller


async def get_accounts(request: Request) -> Accounts:
    accounts: Accounts | None = getattr(request.app.state, "accounts", None)
    if accounts is None:
        raise NotFound("This server runs without accounts (TEACHBOX_AUTH=none).")
    return accounts


async def get_throttle(request: Request) -> SignInThrottle:
    return request.app.state.throttle


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]
EventLogDep = Annotated[EventLog, Depends(get_event_log)]
ModelsDep = Annotated[WarmModels, Depends(get_models)]
CallerDep = Annotated[Caller, Depends(get_caller)]
AccountsDep = Annotated[Accounts, Depends(get_accounts)]
ThrottleDep = Annotated[SignInThrottle, Depends(get_throttle)]


def get_admin(caller: CallerDep) -> Caller:
    if not caller.sees_all:
        raise Forbidden(
            "Only an admin may do this. Ask one, or have one run `teachbox users add NAME --admin`."
        )
    return caller


AdminDep = Annotated[Caller, Depends(get_admin)]


def _missing_project() -> NotFound:
    return NotFound(
        "There is no project with this id. List the projects with GET /api/projects and use one of their ids."
    )


def get_project(pid: str, store: StoreDep, caller: CallerDep) -> Project:
    """The project, when the caller may see it: another user's project is as missing as none."""
    project = store.get_project(pid)
    if project is None or not caller.may_see(project.owner_id):
        raise _missing_project()
    return project


ProjectDep = Annotated[Project, Depends(get_project)]


def get_class(cid: str, project: ProjectDep, store: StoreDep) -> ImageClass:
    image_class = store.get_class(project.id, cid)
    if image_class is None:
        raise missing_class()
    return image_class


ClassDep = Annotated[ImageClass, Depends(get_class)]


def _missing_image() -> TeachboxError:
    return NotFound(
        "This project has no image with this id. List the class's images to see their ids."
    )


def get_image(iid: str, project: ProjectDep, store: StoreDep) -> StoredImage:
    image = store.get_image(project.id, iid)
    if image is None:
        raise _missing_image()
    return image


ImageDep = Annotated[StoredImage, Depends(get_image)]


def get_class_image(iid: str, image_class: ClassDep, store: StoreDep) -> StoredImage:
    image = store.get_image(image_class.project_id, iid)
    if image is None or image.class_id != image_class.id:
        raise _missing_image()
    return image


ClassImageDep = Annotated[StoredImage, Depends(get_class_image)]


def get_job(jid: str, store: StoreDep, caller: CallerDep) -> Job:
    """The job, when the caller may see its project."""
    job = store.get_job(jid)
    project = store.get_project(job.project_id) if job is not None else None
    if job is None or project is None or not caller.may_see(project.owner_id):
        raise NotFound(
            "There is no job with this id. List a project's jobs with GET /api/projects/{id}/jobs."
        )
    return job


JobDep = Annotated[Job, Depends(get_job)]
