"""Each service's app built in-process (no database needed) for its route table and OpenAPI."""

from __future__ import annotations

import importlib
import logging
from functools import cache
from typing import Any

from fastapi import FastAPI

from tests.conftest import TEST_SECRET

SETTINGS = {
    "ingest": "IngestSettings",
    "forecast": "ForecastSettings",
    "alerts": "AlertsSettings",
    "gateway": "GatewaySettings",
}


@cache
def built_app(service: str) -> FastAPI:
    """The service's app as ``uvicorn --factory`` builds it (never started: no lifespan)."""
    config = importlib.import_module(f"services.{service}.config")
    main = importlib.import_module(f"services.{service}.main")
    settings = getattr(config, SETTINGS[service])(
        # Never connected: the engine is created lazily and the app is not started.
        database_url="postgresql://nobody@127.0.0.1:1/unused",
        environment="test",
        secret_key=TEST_SECRET,
        log_json=False,
        log_level="ERROR",
    )
    # Built at collection time: leave the test process's logging as it was (create_app
    # points the root logger at the stdout of the moment).
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        app: FastAPI = main.build_app(settings)
    finally:
        root.handlers[:], root.level = handlers, level
    return app


def openapi_document(service: str) -> dict[str, Any]:
    """The OpenAPI document the running service serves at /openapi.json."""
    return built_app(service).openapi()
