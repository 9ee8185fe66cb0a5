"""What exports read from the internal services, fetched over HTTP as the caller.

Readings are paged by time windows aligned on the site's local bucket boundaries (a day,
week or month is never split between two requests), so an export of any length holds one
window in memory at a time while the next one is already being fetched.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import FastAPI

from services.common.errors import BadInput
from services.common.query_time import require_aware, restore_plus
from services.gateway.authn import Caller
from services.gateway.proxy import UpstreamFailed, fetch_json
from services.gateway.reports import ReportData, build_tables

Resolution = Literal["raw", "hour", "day", "week", "month"]
Source = Literal["real", "simulated", "import"]
MAX_INCIDENTS = 10_000
# Window length per resolution, in local days: a raw window holds at most 10,080 rows (one
# per minute, the finest interval ingest accepts), an hourly one 744 buckets.
_WINDOW_DAYS: dict[str, int] = {"raw": 7, "hour": 31, "day": 366, "week": 52 * 7}
_MONTH_WINDOW_YEARS = 10


def parse_instant(value: str, field: str) -> datetime:
    """An ISO 8601 instant with its offset, or a 422 naming the query parameter."""
    text = str(restore_plus(value))
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _bad(field, "not an ISO 8601 date-time, e.g. 2026-01-01T00:00:00+01:00") from None
    try:
        return require_aware(parsed)
    except ValueError as exc:
        raise _bad(field, str(exc)) from None


def parse_range(start: str, end: str, max_days: int | None = None) -> tuple[datetime, datetime]:
    """``start`` < ``end``, both aware, and at most ``max_days`` apart when given."""
    first, last = parse_instant(start, "start"), parse_instant(end, "end")
    if last <= first:
        raise _bad("end", "end must be after start")
    if max_days is not None and last - first > timedelta(days=max_days):
        raise _bad("end", f"the period is over {max_days} days; ask for a shorter one")
    return first, last


def _bad(field: str, message: str) -> BadInput:
    errors = [{"loc": ["query", field], "msg": message, "type": "value_error"}]
    return BadInput(f"query.{field}: {message}", extra={"errors": errors})


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


def windows(
    start: datetime, end: datetime, resolution: str, tz: ZoneInfo
) -> list[tuple[datetime, datetime]]:
    """Consecutive [a, b) covering [start, end), cut only on local bucket boundaries."""
    first = start.astimezone(tz).date()
    edges: list[datetime] = []
    if resolution == "month":
        year = first.year + 1
        while (edge := _midnight(date(year, 1, 1), tz)) < end:
            edges.append(edge)
            year += _MONTH_WINDOW_YEARS
    else:
        day = first + timedelta(days=1)
        if resolution == "week":  # weeks start on Monday, as ingest's buckets do
            day += timedelta(days=(7 - day.weekday()) % 7)
        step = timedelta(days=_WINDOW_DAYS[resolution])
        while (edge := _midnight(day, tz)) < end:
            edges.append(edge)
            day += step
    cuts = [start, *(e for e in edges if e > start), end]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def _range_params(start: datetime, end: datetime, source: str | None) -> dict[str, str]:
    params = {"start": start.isoformat(), "end": end.isoformat()}
    if source:
        params["source"] = source
    return params


async def site_info(app: FastAPI, caller: Caller, code: str) -> dict[str, Any]:
    """The site (404 from ingest when unknown)."""
    site: dict[str, Any] = await fetch_json(app, caller, "ingest", f"/v1/sites/{quote(code)}")
    return site


async def reading_windows(
    app: FastAPI,
    caller: Caller,
    site: dict[str, Any],
    start: datetime,
    end: datetime,
    resolution: str,
    source: str | None,
) -> AsyncIterator[list[dict[str, Any]]]:
    """The readings of [start, end), one window's items at a time, the next one prefetched."""
    path = f"/v1/sites/{quote(site['code'])}/readings"

    async def fetch(a: datetime, b: datetime) -> list[dict[str, Any]]:
        params = {**_range_params(a, b, source), "resolution": resolution}
        answer = await fetch_json(app, caller, "ingest", path, params)
        items: list[dict[str, Any]] = answer["items"]
        return items

    spans = windows(start, end, resolution, ZoneInfo(site["timezone"]))
    pending = asyncio.ensure_future(fetch(*spans[0]))
    try:
        for i in range(len(spans)):
            items = await pending
            if i + 1 < len(spans):
                pending = asyncio.ensure_future(fetch(*spans[i + 1]))
            yield items
    finally:
        if not pending.done():
            pending.cancel()


async def incidents(
    app: FastAPI, caller: Caller, site: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Incidents of the site active at some point of [start, end), oldest first."""
    out: list[dict[str, Any]] = []
    params = {"site": site, **_range_params(start, end, None), "limit": "1000"}
    while len(out) < MAX_INCIDENTS:
        page = await fetch_json(app, caller, "alerts", "/v1/incidents", params)
        out.extend(page["items"])
        if page["next_before_id"] is None:
            break
        params["before_id"] = str(page["next_before_id"])
    return out[::-1]


def _local_iso(value: str | None, tz: ZoneInfo) -> str | None:
    if not value:
        return value
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(tz).isoformat()


async def collect_report(
    app: FastAPI,
    caller: Caller,
    code: str,
    start: datetime,
    end: datetime,
    source: str | None,
) -> ReportData:
    """Everything a report needs, fetched concurrently; its tables built."""
    site = await site_info(app, caller, code)
    tz = ZoneInfo(site["timezone"])
    params = _range_params(start, end, source)
    path = f"/v1/sites/{quote(code)}"

    async def buckets(resolution: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        async for chunk in reading_windows(app, caller, site, start, end, resolution, source):
            items.extend(chunk)
        return items

    try:
        # A TaskGroup cancels the other fetches as soon as one fails (a service down).
        async with asyncio.TaskGroup() as group:
            balance_task = group.create_task(
                fetch_json(app, caller, "ingest", f"{path}/balance", params)
            )
            hourly_task = group.create_task(buckets("hour"))
            daily_task = group.create_task(buckets("day"))
            incidents_task = group.create_task(incidents(app, caller, code, start, end))
    except* UpstreamFailed as failures:
        raise failures.exceptions[0] from None
    balance, hourly, daily = balance_task.result(), hourly_task.result(), daily_task.result()
    found = incidents_task.result()
    for incident in found:
        for key in ("first_seen_at", "last_seen_at", "acknowledged_at", "resolved_at"):
            incident[key] = _local_iso(incident.get(key), tz)
    data = ReportData(
        site=site,
        start=start.astimezone(tz),
        end=end.astimezone(tz),
        source=source,
        generated_at=datetime.now(UTC),
        generated_by=caller.actor,
        balance=balance,
        hourly=hourly,
        daily=daily,
        incidents=found,
    )
    data.tables = build_tables(data)
    return data
