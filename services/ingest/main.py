"""Ingest service: the single source of truth for measurements.

Run with ``uvicorn --factory services.ingest.main:build_app``.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.common.app import create_app
from services.ingest.api import router
from services.ingest.config import IngestSettings
from services.ingest.notify import notifier_lifespan
from services.ingest.rollup import rollup_lifespan


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with notifier_lifespan(app), rollup_lifespan(app):
        yield


def build_app(settings: IngestSettings | None = None) -> FastAPI:
    """The ingest app, configured from the environment unless settings are given."""
    settings = settings or IngestSettings()
    return create_app(
        "ingest",
        settings,
        routers=[router],
        lifespan=_lifespan,
        description="Sites, readings, equipment telemetry, weather: validated, idempotent "
        "writes and aggregated reads.",
        upload_limit=(settings.ingest_max_upload_mb * 2**20, "INGEST_MAX_UPLOAD_MB"),
    )
