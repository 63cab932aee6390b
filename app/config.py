"""Every setting of Teachbox in one typed place: a default, a description, and `TEACHBOX_*` env vars."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "teachbox"


class Settings(BaseSettings):
    """Settings read from flags (`teachbox serve --data-dir ...`) or `TEACHBOX_<NAME>` variables."""

    model_config = SettingsConfigDict(env_prefix="TEACHBOX_", extra="ignore")

    host: str = Field(
        "127.0.0.1",
        description="Address the web server binds to. Keep 127.0.0.1 unless a reverse proxy sits in front.",
    )
    port: int = Field(8000, ge=1, le=65535, description="Port the web server listens on.")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names requests may address besides 127.0.0.1, localhost, [::1] and HOST (any port), comma-separated: the names a reverse proxy forwards. Others get 400.",
    )
    auth: Literal["none", "accounts"] = Field(
        "none",
        description="none: one trusted user, no sign-in (for a server on loopback). accounts: everyone signs in (teachbox users add NAME) and sees only their own projects; admins see all.",
    )
    open_host: bool = Field(
        False,
        description="Serve on a non-loopback HOST with AUTH=none anyway (refused otherwise): only when something in front already decides who may come in.",
    )
    session_hours: float = Field(
        168.0,
        gt=0,
        le=24 * 366,
        description="Hours a sign-in lasts before the browser must sign in again (AUTH=accounts).",
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where projects, images, models and the SQLite database are stored.",
    )
    database_url: str | None = Field(
        None,
        description="Where projects, classes, images, jobs, events and accounts are kept: a PostgreSQL URL (postgresql://user:password@host:5432/teachbox), for web servers and workers on several machines. Unset: DATA_DIR/teachbox.sqlite. Move an existing data dir with `teachbox db copy --to URL`; image and model files stay in DATA_DIR either way.",
    )
    cache_dir: Path | None = Field(
        None,
        description="Where embeddings and exported backbones are cached; defaults to DATA_DIR/cache (the teachbox command: ~/.cache/teachbox).",
    )
    weights: Path | None = Field(
        None,
        description="An explicit pretrained-weights file for the backbone, used before torch's hub cache.",
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$",
        description="Where training runs: auto picks CUDA, then Apple's MPS, then the CPU; cuda:N names one GPU (a worker per GPU).",
    )
    feature_engine: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description="Engine for frozen-backbone features: auto uses ONNX Runtime on CPU and PyTorch on a GPU.",
    )
    max_file_mb: float = Field(
        20.0,
        gt=0,
        description="Largest single uploaded file, in megabytes; larger files are refused with 413.",
    )
    max_request_mb: float = Field(
        200.0,
        gt=0,
        description="Largest request body, in megabytes; larger requests are refused with 413.",
    )
    max_files_per_request: int = Field(
        500, ge=1, description="Most files accepted in one upload request."
    )
    max_pixels: int = Field(
        40_000_000,
        ge=1,
        description="Largest image, in pixels (width x height), checked before decoding.",
    )
    max_import_mb: float = Field(
        1000.0,
        gt=0,
        description="Largest total uncompressed size of an imported zip, in megabytes.",
    )
    max_import_files: int = Field(20_000, ge=1, description="Most entries in an imported zip.")
    upload_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Seconds an upload may stall before the server gives up on it; also the window UPLOAD_MIN_KB_S is measured over.",
    )
    upload_min_kb_s: float = Field(
        5.0,
        ge=0,
        description="Slowest upload accepted, in kilobytes per second, averaged over each UPLOAD_TIMEOUT_S window; slower uploads are cut off with 408 (0 turns the rule off).",
    )
    max_import_ratio: float = Field(
        100.0,
        gt=1,
        description="Largest ratio of uncompressed to compressed size of an imported zip; more is refused as a zip bomb.",
    )
    sse_heartbeat_s: float = Field(
        15.0, gt=0, description="Seconds between heartbeat comments on an idle job event stream."
    )
    embed_on_upload: bool = Field(
        True,
        description="Compute the features of uploaded images in the background, so that a transfer-mode job only trains the head.",
    )
    warm_models: int = Field(
        4, ge=1, description="How many trained models predict keeps loaded in memory."
    )
    predict_max_batch: int = Field(
        16,
        ge=1,
        le=256,
        description="Most predict requests run together as one batch when they arrive at once (1 runs each alone).",
    )
    tflite: bool = Field(
        False,
        description="Also put model.tflite (and model.int8.tflite when int8 is on) in each model zip, each checked with the LiteRT interpreter; needs the tflite extra and adds minutes to each export on a small CPU (7 on two shared cores).",
    )
    broker_url: str | None = Field(
        None,
        description="A Redis URL (redis://host:6379/0): jobs then go through Celery to `teachbox worker` processes instead of the web server's own worker thread. Unset: the embedded worker.",
    )
    job_lease_s: float = Field(
        15.0,
        gt=1,
        description="With BROKER_URL: seconds a worker's hold on its running job lasts unrenewed (it renews every second). A worker silent this long is taken as lost and its job goes back to the queue.",
    )
    job_max_lost_workers: int = Field(
        3,
        ge=1,
        description="With BROKER_URL: a job fails, with a sentence, once this many workers were lost while running it.",
    )
    job_resend_after_s: float = Field(
        10.0,
        gt=0,
        description="With BROKER_URL: seconds a job may stay queued with no message for it in the broker (its web server stopped before sending it, or Redis lost it) before a reaper sends it again.",
    )
    shutdown_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Seconds a shutdown waits for open requests and the running job before stopping them.",
    )

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        """`TEACHBOX_ALLOWED_HOSTS=a.example,b.example`: a comma-separated list, compared without case."""
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return [str(name).strip().lower() for name in value if str(name).strip()]
        return value

    def resolved_cache_dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.data_dir / "cache"


def get_settings() -> Settings:
    return Settings()
