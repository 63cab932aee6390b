"""Training jobs: submit, list, read, cancel, follow live over server-sent events, download the model."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import FileResponse, StreamingResponse

from app.engine.errors import Conflict, InvalidInput, NotFound
from app.engine.events import TERMINAL_TYPES
from app.engine.params import Mode, TrainParams
from app.service.event_log import EventLog
from app.service.records import JobKind, JobStatus
from app.web.api_models import JobCreated, JobOut
from app.web.deps import EventLogDep, JobDep, ProjectDep, RunnerDep, SettingsDep, StoreDep
from app.web.openapi import documented

router = APIRouter(tags=["jobs"])
# How often an idle stream checks whether the server is shutting down.
STOP_POLL_S = 1.0
RECONNECT_MS = 2000


@router.post(
    "/api/projects/{pid}/jobs",
    status_code=202,
    responses=documented(NotFound, Conflict, InvalidInput),
)
def create_job(
    project: ProjectDep,
    store: StoreDep,
    runner: RunnerDep,
    params: Annotated[TrainParams | None, Body()] = None,
) -> JobCreated:
    """Queue training on the project's images as they are now; 409 while another job is active."""
    job = store.create_job(project.id, params or TrainParams())
    runner.submit(job)
    return JobCreated(id=job.id, status=job.status)


@router.get("/api/projects/{pid}/jobs", responses=documented(NotFound))
def list_jobs(project: ProjectDep, store: StoreDep) -> list[JobOut]:
    """The project's job history, newest first."""
    return [JobOut.of(job) for job in store.list_jobs(project.id)]


@router.get("/api/jobs/{jid}", responses=documented(NotFound))
def get_job(job: JobDep) -> JobOut:
    return JobOut.of(job)


@router.post("/api/jobs/{jid}/cancel", status_code=202, responses=documented(NotFound, Conflict))
def cancel_job(job: JobDep, store: StoreDep, runner: RunnerDep) -> JobCreated:
    """Cancel a queued job at once, or ask a running one to stop; its stream ends with `cancelled`."""
    if not job.active:
        raise Conflict(
            f"Job {job.id} has already ended ({job.status}); there is nothing to cancel."
        )
    runner.cancel(job)
    current = store.get_job(job.id) or job
    return JobCreated(id=job.id, status=current.status)


def format_event(seq: int, event_type: str, data: str) -> str:
    return f"id: {seq}\nevent: {event_type}\ndata: {data}\n\n"


async def event_stream(
    log: EventLog,
    job_id: str,
    after: int,
    heartbeat_s: float,
    stopping: Callable[[], bool],
    ended: bool = False,
) -> AsyncIterator[str]:
    """Replay the events after `after`, then follow live until a terminal event; heartbeats when idle.

    `ended` says the job had already ended when the client asked: with nothing left to replay
    (it reconnected after the terminal event) the stream ends at once.
    """
    yield f"retry: {RECONNECT_MS}\n\n"
    if ended and not await log.read_async(job_id, after):
        return
    quiet_since = time.monotonic()
    while not stopping():
        events = await log.wait(job_id, after, timeout_s=min(heartbeat_s, STOP_POLL_S))
        for event in events:
            yield format_event(event.seq, event.type, event.data)
            after = event.seq
            if event.type in TERMINAL_TYPES:
                return
        if events:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= heartbeat_s:
            yield ": heartbeat\n\n"
            quiet_since = time.monotonic()


def _event_id(value: str | None) -> int:
    return int(value) if value is not None and re.fullmatch(r"\d{1,12}", value.strip()) else 0


@router.get(
    "/api/jobs/{jid}/events",
    response_class=StreamingResponse,
    responses=documented(NotFound, ok={"content": {"text/event-stream": {}}}),
)
async def job_events(
    job: JobDep,
    request: Request,
    log: EventLogDep,
    settings: SettingsDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-sent events: `id:` increasing, `event:` the type, `data:` the event as JSON. Send
    `Last-Event-ID` to resume after that event. A client leaving never affects the job."""
    stopping = request.app.state.is_stopping
    after = _event_id(last_event_id)
    stream = event_stream(
        log, job.id, after, settings.sse_heartbeat_s, stopping, ended=not job.active
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/api/jobs/{jid}/model",
    response_class=FileResponse,
    responses=documented(NotFound, Conflict, InvalidInput, ok={"content": {"application/zip": {}}}),
)
def download_model(
    job: JobDep,
    store: StoreDep,
    mode: Annotated[
        Mode | None,
        Query(
            description="A comparison: which model (default: the kept, else the recommended one)."
        ),
    ] = None,
) -> FileResponse:
    """The model zip (ONNX, safetensors, labels, metadata, predict.py); 409 until the job succeeded."""
    if job.status is not JobStatus.SUCCEEDED:
        raise Conflict(
            f"Job {job.id} is {job.status}; its model can be downloaded once it has succeeded."
        )
    if mode is not None and job.kind is JobKind.TRAIN and mode is not job.params.mode:
        raise InvalidInput(
            f"Job {job.id} trained one {job.params.mode} model; leave mode out to download it."
        )
    path = store.model_path(job, mode)
    if not path.is_file():
        raise NotFound(
            f"The model file of job {job.id} is missing from the data folder. Train the project again."
        )
    suffix = f"-{path.stem}" if job.kind is JobKind.COMPARE else ""
    return FileResponse(
        path, media_type="application/zip", filename=f"teachbox-model-{job.id[:8]}{suffix}.zip"
    )
