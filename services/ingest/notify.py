"""Tell the alerts service which sites got new readings, after the write has committed.

Best effort by design: the alerts service also evaluates on a schedule, so a lost notice
delays an alert, it never loses data. Notices are coalesced per site, so a backfill of a
hundred batches costs the alerts service one evaluation per site, not a hundred.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import httpx
from fastapi import FastAPI
from prometheus_client import Counter

from services.common.http import async_service_client
from services.ingest.config import IngestSettings

log = logging.getLogger("spe.ingest.notify")
NOTICES = Counter(
    "ingest_alerts_notices_total",
    "Notices of new readings sent to the alerts service, by outcome",
    ["outcome"],
)
Span = tuple[datetime, datetime]
# Readings are interval starts; the last one's interval ends up to an hour later.
_MAX_INTERVAL = timedelta(hours=1)


class AlertsNotifier:
    """Coalesces per-site spans of new readings and posts them to ``/v1/evaluate``."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.pending: dict[str, Span] = {}
        self.wakeup = asyncio.Event()

    def notify(self, spans: dict[str, Span]) -> None:
        """Queue these sites' spans (called on the event loop after the commit)."""
        for site, (start, end) in spans.items():
            old = self.pending.get(site)
            self.pending[site] = (
                (start, end) if old is None else (min(old[0], start), max(old[1], end))
            )
        if spans:
            self.wakeup.set()

    async def run(self) -> None:
        """Send queued notices until cancelled."""
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.pending:
                site, (start, end) = self.pending.popitem()
                await self._send(site, start, end + _MAX_INTERVAL)

    async def _send(self, site: str, start: datetime, end: datetime) -> None:
        body = {"site": site, "start": start.isoformat(), "end": end.isoformat()}
        try:
            response = await self.client.post("/v1/evaluate", json=body)
        except httpx.HTTPError as exc:
            NOTICES.labels("unreachable").inc()
            log.warning("alerts not notified of %s: %s", site, exc)
            return
        outcome = "ok" if response.is_success else "refused"
        NOTICES.labels(outcome).inc()
        if not response.is_success:
            log.warning(
                "alerts refused notice for %s: %s %s",
                site,
                response.status_code,
                response.text[:200],
            )


@asynccontextmanager
async def notifier_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the notifier for the app's lifetime when INGEST_NOTIFY_ALERTS is on."""
    settings: IngestSettings = app.state.settings
    if not settings.ingest_notify_alerts:
        app.state.notifier = None
        yield
        return
    async with async_service_client(settings, "ingest", settings.alerts_url) as client:
        notifier = AlertsNotifier(client)
        app.state.notifier = notifier
        task = asyncio.create_task(notifier.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
