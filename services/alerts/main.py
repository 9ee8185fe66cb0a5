"""Alerts service: rules, incidents and notifications.

Run with ``uvicorn --factory services.alerts.main:build_app``.

Two background loops run in the lifespan, each doing its blocking work in a thread so the
event loop keeps serving requests: the evaluation schedule (the safety net behind ingest's
notifications; one leader among all workers and replicas runs it) and the delivery worker (the
outbox; rows taken with SKIP LOCKED, so every worker may run it).
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
from services.common.leader import LeaderLock

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


def _refresh_gauge(db: Database) -> None:
    with db.sessionmaker() as session:
        refresh_open_gauge(session)


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
        try:
            # Each worker starts with the gauge at 0 (metrics.py); with several workers the
            # latest value written is exported, so set the truth now, not at the next change.
            await asyncio.to_thread(_refresh_gauge, db)
        except Exception:  # the database may be late: /ready says so; the gauge comes later
            log.exception("could not read the open incidents for the gauge")
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

            # One pass per period for the whole service: every worker and replica runs this
            # loop, only the holder of the leader lock evaluates (the others take over if it
            # stops). Per-site advisory locks still keep a pass and an API call apart.
            leader = LeaderLock(settings.database_url, "alerts.schedule")
            app.state.schedule_leader = leader

            def _pass() -> int:
                return evaluate_all(db, sources, settings) if leader.acquire() else 0

            async def _schedule() -> None:
                # The first pass waits one period: at start-up ingest may still be coming up.
                await asyncio.sleep(settings.alerts_eval_interval_s)
                await _every(settings.alerts_eval_interval_s, "scheduled evaluation", _pass)

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
            if getattr(app.state, "schedule_leader", None) is not None:
                app.state.schedule_leader.release()

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
