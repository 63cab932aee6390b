"""Liveness: answers without touching the database or the worker, so it stays fast while a job trains."""

from __future__ import annotations

from fastapi import APIRouter

from app.web.api_models import Health

router = APIRouter(tags=["health"])


@router.get("/api/health")
async def health() -> Health:
    return Health()
