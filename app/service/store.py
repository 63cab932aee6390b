"""Projects, classes, images and jobs: metadata in SQLite, files under the data dir, written atomically.

Layout under DATA_DIR: `teachbox.sqlite`, and per project `projects/<id>/images/<image id>.<ext>`
(the uploaded bytes), `thumbnails/<image id>.jpg` (re-encoded by us) and `models/<job id>.zip`.
Files are written before the row that names them is committed, so a row never points at nothing.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.engine.errors import InvalidInput, NotFound
from app.service.files import write_atomic
from app.service.job_table import JobTable
from app.service.records import (
    ImageClass,
    Job,
    JobKind,
    Project,
    StoredImage,
    is_id,
    new_id,
)
from app.service.schema import IMAGE_COLUMNS, class_query, image_from_row, project_query
from app.service.share_table import ShareTable
from app.service.tables import classes, images, insertion_order, projects
from app.service.uploads import (
    PreparedImage,
    clean_filename,
)

# Built once: the statements each request runs (building one costs more than running it).
PROJECT_BY_ID = project_query().where(projects.c.id == bindparam("project_id"))
CLASS_BY_ID = class_query().where(
    classes.c.project_id == bindparam("project_id"), classes.c.id == bindparam("class_id")
)
IMAGE_BY_ID = select(*IMAGE_COLUMNS).where(
    images.c.project_id == bindparam("project_id"), images.c.id == bindparam("image_id")
)


class Store(JobTable, ShareTable):
    """All metadata and files of one data dir; every path under it is made here. Thread-safe."""

    def __init__(self, data_dir: Path, database_url: str | None = None) -> None:
        """The files live under `data_dir`; the metadata in its SQLite file, or in the database
        `database_url` names (PostgreSQL)."""
        self.data_dir = data_dir
        self.projects_dir = data_dir / "projects"
        self.projects_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(database_url or self.database_file(data_dir))

    @staticmethod
    def database_file(data_dir: Path) -> Path:
        """The data dir's SQLite database (the default metadata database)."""
        return data_dir / "teachbox.sqlite"

    # Files

    def project_dir(self, project_id: str) -> Path:
        return self.projects_dir / project_id

    def images_dir(self, project_id: str) -> Path:
        return self.project_dir(project_id) / "images"

    def thumbnails_dir(self, project_id: str) -> Path:
        return self.project_dir(project_id) / "thumbnails"

    def models_dir(self, project_id: str) -> Path:
        return self.project_dir(project_id) / "models"

    def image_path(self, image: StoredImage) -> Path:
        return self.images_dir(image.project_id) / image.stored_name

    def thumbnail_path(self, image: StoredImage) -> Path:
        return self.thumbnails_dir(image.project_id) / f"{image.id}.jpg"

    def model_path(self, job: Job, mode: str | None = None) -> Path:
        """A training's model zip; for a comparison, the zip of `mode`, else of the kept or recommended mode."""
        if job.kind is JobKind.COMPARE:
            chosen = mode or job.kept_mode or (job.metrics or {}).get("recommendation", "transfer")
            return self.compare_dir(job) / f"{chosen}.zip"
        return self.models_dir(job.project_id) / f"{job.id}.zip"

    def compare_dir(self, job: Job) -> Path:
        """Where a comparison writes transfer.zip, finetune.zip and report.json."""
        return self.models_dir(job.project_id) / job.id

    def sweep(self, exports: bool = True) -> None:
        """Remove what a crash can leave behind: partial files, half-written model exports (unless
        `exports` is False: other processes may be exporting), and image files no row names."""
        for partial in self.projects_dir.glob("*/*/.*.partial"):
            if exports or partial.parent.name != "models":
                partial.unlink(missing_ok=True)
        if exports:
            for scratch in self.projects_dir.glob("*/models/.export-*"):
                shutil.rmtree(scratch, ignore_errors=True)
        with self._db() as db:
            known = set(db.execute(select(images.c.id)).scalars())
            project_ids = list(db.execute(select(projects.c.id)).scalars())
        for folder in self.projects_dir.iterdir():
            if folder.is_dir() and folder.name not in project_ids and _holds_no_files(folder):
                # an upload that raced its project's delete can leave empty folders behind
                shutil.rmtree(folder, ignore_errors=True)
        for project_id in project_ids:
            for folder in (self.images_dir(project_id), self.thumbnails_dir(project_id)):
                for path in folder.glob("*"):
                    if path.name.split(".", 1)[0] not in known:
                        path.unlink(missing_ok=True)

    # Projects

    def create_project(self, name: str, owner_id: str | None = None) -> Project:
        project = Project(id=new_id(), name=name, created_at=time.time(), owner_id=owner_id)
        with self._db(write=True) as db:
            db.execute(
                insert(projects).values(
                    id=project.id, name=name, created_at=project.created_at, owner_id=owner_id
                )
            )
        return project

    def list_projects(self, owner_id: str | None = None, everyone: bool = True) -> list[Project]:
        """Every project, or (with `everyone` false) only those `owner_id` owns."""
        query = project_query().order_by(*insertion_order(projects))
        if not everyone:
            query = query.where(projects.c.owner_id == owner_id)
        with self._db() as db:
            return [Project(**row) for row in db.execute(query).mappings()]

    def get_project(self, project_id: str) -> Project | None:
        if not is_id(project_id):
            return None
        with self._db() as db:
            row = db.execute(PROJECT_BY_ID, {"project_id": project_id}).mappings().first()
        return Project(**row) if row else None

    def rename_project(self, project_id: str, name: str) -> None:
        with self._db(write=True) as db:
            cursor = db.execute(
                update(projects).where(projects.c.id == project_id).values(name=name)
            )
        if cursor.rowcount == 0:
            raise _project_gone()

    def delete_project(self, project_id: str) -> None:
        with self._db(write=True) as db:
            self.lock_project(db, project_id)
            self.refuse_while_training(db, project_id, "delete the project")
            cursor = db.execute(delete(projects).where(projects.c.id == project_id))
        if cursor.rowcount == 0:
            raise _project_gone()
        shutil.rmtree(self.project_dir(project_id), ignore_errors=True)

    def _project_exists(self, db: Connection, project_id: str) -> bool:
        return (
            db.execute(select(projects.c.id).where(projects.c.id == project_id)).first() is not None
        )

    # Classes

    def create_class(self, project_id: str, name: str) -> ImageClass:
        image_class = ImageClass(
            id=new_id(), project_id=project_id, name=name, created_at=time.time()
        )
        with self._db(write=True) as db:
            self._insert_class(db, image_class)
        return image_class

    def _insert_class(self, db: Connection, image_class: ImageClass) -> None:
        try:
            # In a savepoint: on PostgreSQL a failed statement spoils the rest of its transaction.
            with db.begin_nested():
                db.execute(
                    insert(classes).values(
                        id=image_class.id,
                        project_id=image_class.project_id,
                        name=image_class.name,
                        created_at=image_class.created_at,
                    )
                )
        except IntegrityError:
            if not self._project_exists(db, image_class.project_id):
                raise _project_gone() from None
            raise _duplicate_class(image_class.name) from None

    def class_named(self, project_id: str, name: str) -> ImageClass:
        """The project's class with this name, created when there is none (for imports)."""
        with self._db(write=True) as db:
            self.lock_project(db, project_id)  # one import at a time makes a class of this name
            row = (
                db.execute(
                    class_query().where(classes.c.project_id == project_id, classes.c.name == name)
                )
                .mappings()
                .first()
            )
            if row:
                return ImageClass(**row)
            image_class = ImageClass(
                id=new_id(), project_id=project_id, name=name, created_at=time.time()
            )
            self._insert_class(db, image_class)
        return image_class

    def list_classes(self, project_id: str) -> list[ImageClass]:
        with self._db() as db:
            rows = db.execute(
                class_query()
                .where(classes.c.project_id == project_id)
                .order_by(*insertion_order(classes))
            ).mappings()
            return [ImageClass(**row) for row in rows]

    def get_class(self, project_id: str, class_id: str) -> ImageClass | None:
        if not is_id(class_id):
            return None
        with self._db() as db:
            row = (
                db.execute(CLASS_BY_ID, {"project_id": project_id, "class_id": class_id})
                .mappings()
                .first()
            )
        return ImageClass(**row) if row else None

    def rename_class(self, image_class: ImageClass, name: str) -> None:
        with self._db(write=True) as db:
            try:
                cursor = db.execute(
                    update(classes).where(classes.c.id == image_class.id).values(name=name)
                )
            except IntegrityError:
                raise _duplicate_class(name) from None
        if cursor.rowcount == 0:
            raise _class_gone()

    def delete_class(self, image_class: ImageClass) -> None:
        with self._db(write=True) as db:
            self.lock_project(db, image_class.project_id)
            self.refuse_while_training(db, image_class.project_id, "delete the class")
            removed = [
                image_from_row(row)
                for row in db.execute(
                    select(*IMAGE_COLUMNS).where(images.c.class_id == image_class.id)
                ).mappings()
            ]
            cursor = db.execute(delete(classes).where(classes.c.id == image_class.id))
        if cursor.rowcount == 0:
            raise _class_gone()
        for image in removed:
            self._remove_files(image)

    # Images

    def add_image(
        self, image_class: ImageClass, filename: str, prepared: PreparedImage
    ) -> StoredImage:
        image_id = new_id()
        image = StoredImage(
            id=image_id,
            project_id=image_class.project_id,
            class_id=image_class.id,
            filename=clean_filename(filename),
            stored_name=image_id + prepared.suffix,
            sha256=prepared.sha256,
            width=prepared.width,
            height=prepared.height,
            size_bytes=len(prepared.data),
            created_at=time.time(),
        )
        try:
            write_atomic(self.image_path(image), prepared.data)
            write_atomic(self.thumbnail_path(image), prepared.thumbnail)
            with self._db(write=True) as db:
                db.execute(insert(images).values(**asdict(image)))
        except (IntegrityError, FileNotFoundError):
            # The class or its project was deleted meanwhile (its folder perhaps while writing).
            self._remove_files(image)
            if self.get_class(image.project_id, image.class_id) is not None:
                raise
            if self.get_project(image.project_id) is None:
                shutil.rmtree(self.project_dir(image.project_id), ignore_errors=True)
            raise NotFound(
                "The class was deleted while its images were uploading. Create it again and upload them."
            ) from None
        return image

    def list_images(self, project_id: str, class_id: str | None = None) -> list[StoredImage]:
        query = select(*IMAGE_COLUMNS).where(images.c.project_id == project_id)
        if class_id is not None:
            query = query.where(images.c.class_id == class_id)
        with self._db() as db:
            rows = db.execute(query.order_by(*insertion_order(images))).mappings()
            return [image_from_row(row) for row in rows]

    def get_image(self, project_id: str, image_id: str) -> StoredImage | None:
        if not is_id(image_id):
            return None
        with self._db() as db:
            row = (
                db.execute(IMAGE_BY_ID, {"project_id": project_id, "image_id": image_id})
                .mappings()
                .first()
            )
        return image_from_row(row) if row else None

    def content_keys(self, project_id: str) -> dict[Path, str]:
        """Each stored image file's content hash: a split keyed on it is the same for the same
        images, whatever names the server made up for them and whichever order they came in."""
        return {self.image_path(image): image.sha256 for image in self.list_images(project_id)}

    def move_image(self, image: StoredImage, class_id: str) -> StoredImage:
        """Put the image in another class of its project (a label corrected); files stay as they are.

        Allowed while a job runs: the job trains on the labels it was submitted with."""
        with self._db(write=True) as db:
            # FOR UPDATE on PostgreSQL: the class cannot be deleted between this check and the move.
            target = db.execute(
                select(classes.c.id)
                .where(classes.c.id == class_id, classes.c.project_id == image.project_id)
                .with_for_update()
            ).first()
            if target is None:
                raise missing_class()
            moved = db.execute(
                update(images).where(images.c.id == image.id).values(class_id=class_id)
            ).rowcount
        if not moved:
            raise NotFound("The image was deleted meanwhile. Upload it again into the right class.")
        return replace(image, class_id=class_id)

    def delete_image(self, image: StoredImage) -> None:
        with self._db(write=True) as db:
            self.lock_project(db, image.project_id)
            self.refuse_while_training(db, image.project_id, "delete the image")
            cursor = db.execute(delete(images).where(images.c.id == image.id))
        if cursor.rowcount == 0:
            raise NotFound("The image was deleted meanwhile. List the class's images again.")
        self._remove_files(image)

    def _remove_files(self, image: StoredImage) -> None:
        self.image_path(image).unlink(missing_ok=True)
        self.thumbnail_path(image).unlink(missing_ok=True)

    def job_items(self, job: Job) -> list[tuple[Path, str]]:
        """The (image file, class name) pairs the job was submitted with."""
        folder = self.images_dir(job.project_id)
        return [(folder / stored_name, name) for stored_name, name in self.job_snapshot(job)]


def _holds_no_files(folder: Path) -> bool:
    return not any(path.is_file() for path in folder.rglob("*"))


def _project_gone() -> NotFound:
    return NotFound("The project was deleted meanwhile. List the projects again.")


def _class_gone() -> NotFound:
    return NotFound("The class was deleted meanwhile. Get the project again to see its classes.")


def missing_class() -> NotFound:
    return NotFound(
        "This project has no class with this id. Get the project to see its classes and their ids."
    )


def _duplicate_class(name: str) -> InvalidInput:
    return InvalidInput(f"This project already has a class named '{name}'. Choose another name.")
