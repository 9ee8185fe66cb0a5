"""Alerts service: rules, incidents and notifications.

Run with ``uvicorn --factory services.alerts.main:build_app``.

Two background loops run in the lifespan, each doing its blocking work in a thread so the
event loop keeps serving requests: the evaluation schedule (the safety net behind ingest's
notifications) and the delivery worker (the outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI

from services.alerts.api import router
from services.alerts.config import AlertsSettings
from services.alerts.evaluation import evaluate_site
from services.alerts.incidents import refresh_open_gauge
from services.alerts.metrics import EVALUATIONS
from services.alerts.notifier import Notifier
from services.alerts.sources import Sources
from services.common.app import create_app
from services.common.db import Database

log = logging.getLogger("spe.alerts")


def evaluate_all(db: Database, sources: Sources, settings: AlertsSettings) -> int:
    """One pass of the schedule: every site, last ALERTS_EVAL_LOOKBACK_H hours; evaluated count.

    A site another replica is evaluating right now is skipped (it is being done).
    """
    end = datetime.now(UTC)
    start = end - timedelta(hours=settings.alerts_eval_lookback_h)
    done = 0
    for site in sources.sites():
        try:
            with db.sessionmaker.begin() as session:
                result = evaluate_site(
                    session, sources, settings, site.code, start, end,
                    trigger="schedule", wait=False,
                )  # fmt: skip
        except Exception:  # one site's failure must not stop the others
            EVALUATIONS.labels("schedule", "error").inc()
            log.exception("scheduled evaluation of %s failed", site.code)
            continue
        EVALUATIONS.labels("schedule", "ok" if result else "busy").inc()
        done += result is not None
    with db.sessionmaker() as session:
        refresh_open_gauge(session)
    return done


async def _every(period_s: float, name: str, work: Callable[[], object]) -> None:
    """Run blocking ``work`` in a thread every ``period_s``, logging (not dying on) failures."""
    while True:
        try:
            await asyncio.to_thread(work)
        except Exception:
            log.exception("%s failed; next try in %.0f s", name, period_s)
        await asyncio.sleep(period_s)


def build_app(settings: AlertsSettings | None = None) -> FastAPI:
    """The alerts app, configured from the environment unless settings are given."""
    settings = settings or AlertsSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db: Database = app.state.db
        notifier = Notifier(settings, db.sessionmaker)
        app.state.notifier = notifier
        tasks = []
        if settings.alerts_delivery_poll_s > 0:
            tasks.append(
                asyncio.create_task(
                    _every(settings.alerts_delivery_poll_s, "delivery", notifier.run_once)
                )
            )
        if settings.alerts_eval_interval_s > 0:
            sources = app.state.sources

            async def _schedule() -> None:
                # The first pass waits one period: at start-up ingest may still be coming up.
                await asyncio.sleep(settings.alerts_eval_interval_s)
                await _every(
                    settings.alerts_eval_interval_s,
                    "scheduled evaluation",
                    lambda: evaluate_all(db, sources, settings),
                )

            tasks.append(asyncio.create_task(_schedule()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            notifier.close()
            app.state.sources.close()

    app = create_app(
        "alerts",
        settings,
        routers=[router],
        lifespan=lifespan,
        description="Rules, incidents, notifications.",
    )
    # Created with the app (not in the lifespan) so routes work without a lifespan (tests).
    app.state.sources = Sources(settings)
    return app
