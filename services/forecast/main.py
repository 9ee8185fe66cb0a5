"""Forecast service: J+1 hourly load forecasts and predictive maintenance.

Run with ``uvicorn --factory services.forecast.main:build_app``.

The lifespan starts the job worker (a thread: training never runs on the event loop) and the
nightly schedule (an asyncio task that hands the work to a thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import distinct_on

from services.common.app import create_app
from services.common.db import Database
from services.forecast.api import router
from services.forecast.config import ForecastSettings
from services.forecast.data import IngestReader
from services.forecast.jobs import JobWorker, run_nightly, seconds_until
from services.forecast.metrics import BACKTEST_MAPE
from services.forecast.models import ModelRun

log = logging.getLogger("spe.forecast")


def restore_gauges(db: Database) -> None:
    """Set the backtest-MAPE gauges from the latest run of each site, so a restarted replica
    reports them before its next training."""
    with db.sessionmaker() as session:
        latest = (
            select(ModelRun.site, ModelRun.kind, ModelRun.metrics)
            .where(ModelRun.status == "succeeded", ModelRun.site.is_not(None))
            .ext(distinct_on(ModelRun.site, ModelRun.kind))
            .order_by(ModelRun.site, ModelRun.kind, ModelRun.id.desc())
        )
        for site, kind, metrics in session.execute(latest):
            mape = (metrics or {}).get("mape")
            if isinstance(mape, int | float):
                BACKTEST_MAPE.labels(site, kind).set(mape)


def build_app(settings: ForecastSettings | None = None) -> FastAPI:
    """The forecast app, configured from the environment unless settings are given."""
    settings = settings or ForecastSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db: Database = app.state.db
        reader: IngestReader = app.state.reader
        try:
            await asyncio.to_thread(restore_gauges, db)
        except Exception:  # the database may be late: /ready says so; gauges come later
            log.exception("could not restore the backtest gauges")
        worker: JobWorker | None = None
        if settings.forecast_job_poll_s > 0:
            worker = JobWorker(db.sessionmaker, reader, settings)
            worker.start()
        app.state.worker = worker
        tasks = []
        if settings.forecast_schedule_enabled:

            async def nightly() -> None:
                while True:
                    await asyncio.sleep(seconds_until(settings.forecast_nightly_hour))
                    try:
                        await asyncio.to_thread(
                            run_nightly, db.sessionmaker, reader, settings,
                            wake=worker.wake_event if worker is not None else None,
                        )  # fmt: skip
                    except Exception:
                        log.exception("nightly retraining failed; next try tomorrow")

            tasks.append(asyncio.create_task(nightly()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if worker is not None:
                await asyncio.to_thread(worker.stop)
            reader.close()

    app = create_app(
        "forecast",
        settings,
        routers=[router],
        lifespan=lifespan,
        description="Day-ahead forecasts, model runs, retraining jobs, maintenance risk.",
    )
    # Created with the app (not in the lifespan) so routes work without a lifespan (tests).
    app.state.reader = IngestReader(settings)
    app.state.worker = None
    return app
