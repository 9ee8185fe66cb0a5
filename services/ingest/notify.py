"""Tell the alerts service which sites got new readings, after the write has committed.

Notices are coalesced per site, so a backfill of a hundred batches costs the alerts service
one evaluation per site, not a hundred. A notice alerts cannot take now (down, restarting,
its database away: no answer or 503) is kept and sent again after its ``Retry-After``, for
up to ``NOTICE_RETRY_FOR_S``; past that the alerts schedule has long covered it. A notice
refused for another reason (4xx) is logged and dropped: sending it again would not help.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
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
NOTICE_RETRY_FOR_S = 600.0
_UNREACHABLE_RETRY_S = 5.0
_MAX_RETRY_AFTER_S = 60.0


class AlertsNotifier:
    """Coalesces per-site spans of new readings and posts them to ``/v1/evaluate``."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.pending: dict[str, Span] = {}
        self.failing_since: dict[str, float] = {}  # site -> monotonic time of first failure
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
                site = next(iter(self.pending))  # oldest first: a retried site goes last
                span = self.pending.pop(site)
                retry_in = await self._send(site, span[0], span[1] + _MAX_INTERVAL)
                if retry_in is None:
                    self.failing_since.pop(site, None)
                    continue
                since = self.failing_since.setdefault(site, time.monotonic())
                if time.monotonic() - since > NOTICE_RETRY_FOR_S:
                    self.failing_since.pop(site)
                    NOTICES.labels("dropped").inc()
                    log.warning("notice for %s dropped after %.0f s; the schedule covers it",
                                site, NOTICE_RETRY_FOR_S)  # fmt: skip
                    continue
                self.notify({site: span})  # merged with whatever came meanwhile
                await asyncio.sleep(retry_in)

    async def _send(self, site: str, start: datetime, end: datetime) -> float | None:
        """Post one notice; None when done with it, else seconds to wait before resending."""
        body = {"site": site, "start": start.isoformat(), "end": end.isoformat()}
        try:
            response = await self.client.post("/v1/evaluate", json=body)
        except httpx.HTTPError as exc:
            NOTICES.labels("unreachable").inc()
            log.warning("alerts not notified of %s (retrying): %r", site, exc)
            return _UNREACHABLE_RETRY_S
        if response.is_success:
            NOTICES.labels("ok").inc()
            return None
        if response.status_code in (429, 503):
            NOTICES.labels("unavailable").inc()
            log.warning("alerts cannot take the notice for %s now (%s); retrying",
                        site, response.status_code)  # fmt: skip
            return _retry_after_s(response)
        NOTICES.labels("refused").inc()
        log.warning(
            "alerts refused notice for %s: %s %s",
            site,
            response.status_code,
            response.text[:200],
        )
        return None


def _retry_after_s(response: httpx.Response) -> float:
    """The answer's Retry-After in seconds (a number), within sane bounds."""
    try:
        value = float(response.headers.get("retry-after", _UNREACHABLE_RETRY_S))
    except ValueError:
        value = _UNREACHABLE_RETRY_S
    return min(max(value, 0.5), _MAX_RETRY_AFTER_S)


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
