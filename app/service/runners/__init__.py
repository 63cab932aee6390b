"""What runs jobs: the protocol the routes use, the embedded worker thread that ships by default,
and the queue (Celery on Redis) that TEACHBOX_BROKER_URL switches to."""

from __future__ import annotations

from app.config import Settings
from app.service.event_log import EventLog
from app.service.runners.base import JobRunner
from app.service.store import Store
from app.service.warm_models import WarmModels


def build_runner(
    store: Store, models: WarmModels, settings: Settings
) -> tuple[EventLog, JobRunner]:
    """The event log and the runner the settings ask for: in-process unless BROKER_URL is set."""
    if not settings.broker_url:
        from app.service.runners.in_process import InProcessRunner

        log = EventLog(store)
        return log, InProcessRunner(store, log, models, settings)
    from app.service.runners.celery_runner import CeleryRunner  # celery loads only when asked for
    from app.service.runners.job_queue import JobQueue

    queue = JobQueue(settings)
    log = EventLog(store, shared=True, publish=queue.publish_event)
    return log, CeleryRunner(store, log, settings, queue)
