"""Classes of a project: create, list, read, rename, delete (with their images)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.engine.errors import Conflict, InvalidInput, NotFound
from app.web.api_models import ClassIn, ClassOut
from app.web.deps import ClassDep, ProjectDep, StoreDep
from app.web.openapi import documented

router = APIRouter(prefix="/api/projects/{pid}/classes", tags=["classes"])


@router.post("", status_code=201, responses=documented(NotFound, InvalidInput))
def create_class(body: ClassIn, project: ProjectDep, store: StoreDep) -> ClassOut:
    return ClassOut.of(store.create_class(project.id, body.name))


@router.get("", responses=documented(NotFound))
def list_classes(project: ProjectDep, store: StoreDep) -> list[ClassOut]:
    return [ClassOut.of(image_class) for image_class in store.list_classes(project.id)]


@router.get("/{cid}", responses=documented(NotFound))
def get_class(image_class: ClassDep) -> ClassOut:
    return ClassOut.of(image_class)


@router.patch("/{cid}", responses=documented(NotFound, InvalidInput))
def rename_class(body: ClassIn, image_class: ClassDep, store: StoreDep) -> ClassOut:
    store.rename_class(image_class, body.name)
    return ClassOut.of(store.get_class(image_class.project_id, image_class.id) or image_class)


@router.delete("/{cid}", status_code=204, responses=documented(NotFound, Conflict))
def delete_class(image_class: ClassDep, store: StoreDep) -> Response:
    store.delete_class(image_class)
    return Response(status_code=204)
