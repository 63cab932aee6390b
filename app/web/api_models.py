"""Request and response bodies of the REST API (training parameters are app.engine.params.TrainParams)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from app.engine.params import Mode, TrainParams
from app.service.records import ImageClass, Job, JobKind, JobStatus, Project, StoredImage

MAX_CLASS_NAME = 64
MAX_PROJECT_NAME = 100


def _time(timestamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp is not None else None


def image_url(image: StoredImage) -> str:
    return f"/api/projects/{image.project_id}/images/{image.id}"


def _printable_name(value: str, what: str, longest: int) -> str:
    name = value.strip()
    if not 1 <= len(name) <= longest:
        raise ValueError(f"A {what} name must be 1 to {longest} characters long.")
    if not name.isprintable():
        raise ValueError(f"A {what} name may only contain printable characters.")
    return name


def check_class_name(value: str) -> str:
    """1-64 printable characters without slashes; surrounding spaces are dropped."""
    name = _printable_name(value, "class", MAX_CLASS_NAME)
    if "/" in name or "\\" in name:
        raise ValueError("A class name may not contain slashes.")
    return name


def check_project_name(value: str) -> str:
    return _printable_name(value, "project", MAX_PROJECT_NAME)


ClassName = Annotated[str, AfterValidator(check_class_name)]
ProjectName = Annotated[str, AfterValidator(check_project_name)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectIn(_Request):
    name: ProjectName = Field(description="1 to 100 printable characters.")


class ClassIn(_Request):
    name: ClassName = Field(
        description="1 to 64 printable characters without slashes, unique within the project."
    )


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class ClassOut(BaseModel):
    id: str
    name: str
    image_count: int = 0

    @classmethod
    def of(cls, image_class: ImageClass) -> ClassOut:
        return cls(id=image_class.id, name=image_class.name, image_count=image_class.image_count)


class ProjectOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    class_count: int = 0
    image_count: int = 0

    @classmethod
    def of(cls, project: Project) -> ProjectOut:
        return cls(
            id=project.id,
            name=project.name,
            created_at=_time(project.created_at),
            class_count=project.class_count,
            image_count=project.image_count,
        )


class ImageOut(BaseModel):
    id: str
    class_id: str
    filename: str = Field(
        description="The uploaded name, cleaned of paths and control characters; metadata only."
    )
    width: int
    height: int
    size_bytes: int
    created_at: datetime
    url: str
    thumbnail_url: str

    @classmethod
    def of(cls, image: StoredImage) -> ImageOut:
        return cls(
            id=image.id,
            class_id=image.class_id,
            filename=image.filename,
            width=image.width,
            height=image.height,
            size_bytes=image.size_bytes,
            created_at=_time(image.created_at),
            url=image_url(image),
            thumbnail_url=image_url(image) + "/thumbnail",
        )


class ImageMove(BaseModel):
    """A corrected label: the class, of the same project, that the image belongs in."""

    class_id: str = Field(description="The id of the class to move the image to.")


class AddedImage(BaseModel):
    id: str
    filename: str
    class_id: str
    thumbnail_url: str

    @classmethod
    def of(cls, image: StoredImage) -> AddedImage:
        return cls(
            id=image.id,
            filename=image.filename,
            class_id=image.class_id,
            thumbnail_url=image_url(image) + "/thumbnail",
        )


class RejectedFile(BaseModel):
    filename: str
    reason: str


class UploadResult(BaseModel):
    added: list[AddedImage] = Field(default_factory=list)
    rejected: list[RejectedFile] = Field(default_factory=list)


class JobCreated(BaseModel):
    id: str
    status: JobStatus


class CompareParams(TrainParams):
    """The training parameters both runs of a comparison share; the mode is what is compared, so it is not given."""

    mode: SkipJsonSchema[None] = Field(None, exclude=True)  # type: ignore[assignment]

    @field_validator("mode", mode="before")
    @classmethod
    def _no_mode(cls, value: object) -> None:
        if value is not None:
            raise ValueError("leave mode out: a comparison trains both modes")
        return None

    def for_job(self) -> TrainParams:
        """As stored with the job; each run sets its own mode (and, unless epochs is given, its own epochs)."""
        return TrainParams.model_validate(self.model_dump())


class KeepIn(_Request):
    mode: Mode = Field(description="Which of the comparison's models becomes the project's model.")


class JobOut(BaseModel):
    id: str
    project_id: str
    kind: JobKind = Field(
        description="train: one model. compare: transfer learning and fine-tuning side by side."
    )
    status: JobStatus
    kept_mode: Mode | None = Field(
        None,
        description="A comparison: the mode whose model was kept as the project's model, if any.",
    )
    params: dict[str, Any] = Field(
        description="The training parameters as used, defaults filled in."
    )
    metrics: dict[str, Any] | None = Field(
        description="What the done event carried: accuracy, per-class results, confusion matrix."
    )
    error: str | None
    labels: list[str]
    image_count: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    events_url: str
    model_url: str | None = Field(
        description="Where to download the model zip, once the job succeeded."
    )

    @classmethod
    def of(cls, job: Job) -> JobOut:
        succeeded = job.status is JobStatus.SUCCEEDED
        compare = job.kind is JobKind.COMPARE
        return cls(
            id=job.id,
            project_id=job.project_id,
            kind=job.kind,
            status=job.status,
            kept_mode=job.kept_mode,
            params=job.params.model_dump(mode="json", exclude={"mode"})
            if compare
            else job.params.resolved(),
            metrics=job.metrics,
            error=job.error,
            labels=job.labels,
            image_count=job.image_count,
            created_at=_time(job.created_at),
            started_at=_time(job.started_at),
            finished_at=_time(job.finished_at),
            events_url=f"/api/jobs/{job.id}/events",
            model_url=f"/api/jobs/{job.id}/model" if succeeded else None,
        )


class ProjectDetail(ProjectOut):
    classes: list[ClassOut]
    active_job: JobOut | None = Field(
        description="The job queued or running for this project, if any."
    )
    model_job_id: str | None = Field(
        description="The job whose model predict and export use: the latest succeeded training, or the comparison whose model was kept last."
    )
    pending_embeddings: int = Field(
        description="Uploaded images whose features are still being computed in the background."
    )


class Prediction(BaseModel):
    label: str
    probability: float


class PredictResult(BaseModel):
    predictions: list[Prediction] = Field(description="Every class, most likely first.")
    job_id: str
