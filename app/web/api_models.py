"""Request and response bodies of the REST API (training parameters are app.engine.params.TrainParams)."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema, WithJsonSchema

from app.engine.params import Mode, TrainParams
from app.service.accounts import (
    MAX_PASSWORD,
    MIN_PASSWORD,
    USERNAME,
    USERNAME_RULE,
    JoinCode,
    Token,
)
from app.service.records import ImageClass, Job, JobKind, JobStatus, Project, StoredImage

MAX_CLASS_NAME = 64
MAX_PROJECT_NAME = 100


def _time(timestamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp is not None else None


def image_url(image: StoredImage) -> str:
    return f"/api/projects/{image.project_id}/images/{image.id}"


# Code points never part of a name: control and formatting characters (Unicode categories Cc and
# Cf: bidi overrides, zero-width joiners, tags) and line and paragraph separators (Zl, Zp).
_INVISIBLE = (
    (0x00, 0x1F), (0x7F, 0x9F), (0xAD, 0xAD), (0x600, 0x605), (0x61C, 0x61C), (0x6DD, 0x6DD),
    (0x70F, 0x70F), (0x890, 0x891), (0x8E2, 0x8E2), (0x180E, 0x180E), (0x200B, 0x200F),
    (0x2028, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x13438), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F),
)  # fmt: skip
# Spaces (Zs): allowed inside a name, but a name needs one character that is neither.
_SPACES = ((0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000))  # fmt: skip


def _char_set(ranges: tuple[tuple[int, int], ...]) -> str:
    """The body of a regex character set: `\\uXXXX` escapes, astral code points as themselves,
    which Python's `re` and JSON Schema validators read alike."""

    def char(point: int) -> str:
        return f"\\u{point:04x}" if point <= 0xFFFF else chr(point)

    return "".join(char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in ranges)


_NO_NAME, _SPACE = _char_set(_INVISIBLE), _char_set(_SPACES)
_SURROGATES = re.compile(r"[\ud800-\udfff]")


def name_pattern(also_forbidden: str = "") -> str:
    allowed, visible = f"[^{_NO_NAME}{also_forbidden}]", f"[^{_NO_NAME}{_SPACE}{also_forbidden}]"
    return f"^{allowed}*{visible}{allowed}*$"


PROJECT_NAME_PATTERN = name_pattern()
CLASS_NAME_PATTERN = name_pattern("/\\\\")


def _name(value: str, what: str, longest: int, pattern: str) -> str:
    """Checked as the schema says (length, pattern), then stripped of surrounding spaces and
    NFC-normalised, so that names that look the same are the same."""
    if not 1 <= len(value) <= longest or not value.strip():
        raise ValueError(f"A {what} name must be 1 to {longest} characters long.")
    if _SURROGATES.search(value) or not re.search(pattern, value):
        raise ValueError(
            f"A {what} name may not contain control or formatting characters or line breaks."
        )
    return unicodedata.normalize("NFC", value.strip())


def check_class_name(value: str) -> str:
    """1-64 characters without slashes, control or formatting characters; see `_name`."""
    if "/" in value or "\\" in value:
        raise ValueError("A class name may not contain slashes.")
    return _name(value, "class", MAX_CLASS_NAME, CLASS_NAME_PATTERN)


def check_project_name(value: str) -> str:
    return _name(value, "project", MAX_PROJECT_NAME, PROJECT_NAME_PATTERN)


def _name_schema(longest: int, pattern: str) -> dict[str, Any]:
    return {"minLength": 1, "maxLength": longest, "pattern": pattern}


ClassName = Annotated[
    str,
    AfterValidator(check_class_name),
    WithJsonSchema({"type": "string", **_name_schema(MAX_CLASS_NAME, CLASS_NAME_PATTERN)}),
]
ProjectName = Annotated[
    str,
    AfterValidator(check_project_name),
    WithJsonSchema({"type": "string", **_name_schema(MAX_PROJECT_NAME, PROJECT_NAME_PATTERN)}),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectIn(_Request):
    name: ProjectName = Field(
        description="1 to 100 characters, not all spaces, without control or formatting characters; surrounding spaces are dropped."
    )


class ClassIn(_Request):
    name: ClassName = Field(
        description="1 to 64 characters, not all spaces, without slashes or control or formatting characters, unique within the project (compared after surrounding spaces are dropped and Unicode NFC normalisation)."
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
    started_at: datetime | None = Field(
        description="When the latest attempt started (a job restarted on another worker starts again)."
    )
    finished_at: datetime | None
    worker: str | None = Field(
        description="The worker that runs or ran the job: `in-process` for the embedded worker, else host:pid:device."
    )
    attempts: int = Field(
        description="How many times a worker started the job: more than 1 after a worker was lost or handed it back."
    )
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
            worker=job.worker,
            attempts=job.attempts,
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
    predictions: list[Prediction] = Field(
        description="Every class, most likely first; calibrated probabilities."
    )
    unsure: bool = Field(
        description="True when the top probability is below the model's unsure_below: show 'Not sure'."
    )
    unsure_below: float = Field(
        description="The model's threshold (metadata.json's unsure_below; 0 for older models)."
    )
    job_id: str


class ErrorOut(BaseModel):
    """Every error the API answers: one sentence that says what to do."""

    detail: str = Field(description="What went wrong and what to do about it.")


class ValidationErrorOut(ErrorOut):
    """A 422: the request's values cannot be used; pydantic's list comes along when it found them."""

    errors: list[dict[str, Any]] = Field(
        default_factory=list,
        description="pydantic's errors (`loc`, `msg`, `type`, `input`), when the request did not validate.",
    )


# Accounts (TEACHBOX_AUTH=accounts)

UserName = Annotated[
    str,
    Field(
        min_length=1, max_length=64, description="The user name, as `teachbox users add` made it."
    ),
]
Password = Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD)]


def _new_user_name(name: str) -> str:
    if not USERNAME.fullmatch(name):
        raise ValueError(f"a user name has {USERNAME_RULE}")
    return name


# Checked with a sentence of its own; the schema gives the same rule as a pattern.
NewUserName = Annotated[
    str,
    AfterValidator(_new_user_name),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": f"^{USERNAME.pattern}$",
            "description": f"A new user name: {USERNAME_RULE}.",
        }
    ),
]
NewPassword = Annotated[str, Field(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)]


class SignIn(_Request):
    username: UserName
    password: Password


class Me(BaseModel):
    username: str
    admin: bool = Field(description="Admins see and manage every project and make join codes.")


class TokenIn(_Request):
    name: str | None = Field(
        None, max_length=100, description="What the token is for, to tell tokens apart in the list."
    )


class TokenOut(BaseModel):
    id: str
    name: str | None
    created_at: datetime

    @classmethod
    def of(cls, token: Token) -> TokenOut:
        return cls(id=token.id, name=token.name, created_at=_time(token.created_at))


class TokenCreated(TokenOut):
    token: str = Field(
        description="The secret, shown this once: send it as `Authorization: Bearer <token>`."
    )


class JoinCodeIn(_Request):
    hours: float = Field(
        24.0,
        gt=0,
        le=24 * 30,
        description="How long the code stays open, in hours (at most 30 days).",
    )


class JoinCodeOut(BaseModel):
    id: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    uses: int = Field(description="How many accounts were made with it.")

    @classmethod
    def of(cls, code: JoinCode) -> JoinCodeOut:
        return cls(
            id=code.id,
            created_by=code.created_by,
            created_at=_time(code.created_at),
            expires_at=_time(code.expires_at),
            uses=code.uses,
        )


class JoinCodeCreated(JoinCodeOut):
    code: str = Field(description="The code to give the students, shown this once.")


class JoinIn(_Request):
    code: str = Field(min_length=1, max_length=64, description="The join code the teacher gave.")
    username: NewUserName
    password: NewPassword


class ShareOut(BaseModel):
    """A project's share link: anyone with the URL runs its current model in their own browser."""

    shared: bool = Field(
        description="Whether the project is shared; the other fields are null when not."
    )
    url: str | None = Field(
        default=None, description="The page that runs the model, with no sign-in: `/s/<token>/`."
    )
    token: str | None = Field(default=None, description="The unguessable part of the URL.")
    embed: str | None = Field(
        default=None, description="An `<iframe>` snippet that embeds the page in another site."
    )
