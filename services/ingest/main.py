"""Ingest service: the single source of truth for measurements.

Run with ``uvicorn --factory services.ingest.main:build_app``.
"""

from fastapi import FastAPI

from services.common.app import create_app
from services.ingest.api import router
from services.ingest.config import IngestSettings
from services.ingest.notify import notifier_lifespan


def build_app(settings: IngestSettings | None = None) -> FastAPI:
    """The ingest app, configured from the environment unless settings are given."""
    settings = settings or IngestSettings()
    return create_app(
        "ingest",
        settings,
        routers=[router],
        lifespan=notifier_lifespan,
        description="Sites, readings, equipment telemetry, weather: validated, idempotent "
        "writes and aggregated reads.",
        upload_limit=(settings.ingest_max_upload_mb * 2**20, "INGEST_MAX_UPLOAD_MB"),
    )
