"""Ingest reads: readings, energy balance, telemetry, equipment events, weather, quarantine,
labels.

Each route takes a connection of the read pool (``Database.read``: autocommit, held only while
the route's thread runs), looks its site (or equipment) up, which also sets the connection's
TimeZone to the site's, then runs one data statement (services.ingest.queries): two round trips
to PostgreSQL, in the thread the route already runs in. Responses are written as JSON
directly (readings: the items array comes ready-made from PostgreSQL; the rest through
pydantic-core's serializer): validating thousands of response models per request would cost
more than the query. The response models document the shapes and the tests check them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Response
from pydantic_core import to_json
from sqlalchemy import Connection, Row, TextClause

from services.common.auth import ReaderDep
from services.common.db import ReadsDep
from services.common.errors import AppError, BadInput
from services.common.query_time import QueryTime
from services.ingest import queries
from services.ingest.read_schemas import (
    AnomalyLabelOut,
    BalanceOut,
    EquipmentEventsOut,
    QuarantinePage,
    ReadingsOut,
    TelemetryOut,
    WeatherOut,
)
from services.ingest.schemas import Resolution, Source
from services.ingest.service import EquipmentNotFound, SiteNotFound

router = APIRouter(tags=["reads"])

# Bounds that keep one request's cost bounded; past them the caller is told what to change.
MAX_RAW_ROWS = 100_000
MAX_SPAN_DAYS: dict[str, int] = {
    "raw": 3 * 366,  # the row cap is the real limit; this one only bounds the index scan
    "hour": 3 * 366,  # ~26k hourly buckets
    "day": 50 * 366,
    "week": 50 * 366,
    "month": 50 * 366,
}
MAX_BALANCE_DAYS = 3 * 366
_COARSER = {"raw": "hour", "hour": "day", "day": "week", "week": "month", "month": "month"}

Start = Annotated[QueryTime, Query(description="range start, inclusive, with a timezone")]
End = Annotated[QueryTime, Query(description="range end, exclusive, with a timezone")]
SourceQuery = Annotated[
    Source | None,
    Query(description="only this source; omitted: one per interval, real > import > simulated"),
]
SiteCode = Annotated[str, Path(max_length=32)]
EquipmentCode = Annotated[str, Path(max_length=64)]


def _field_error(field: str, message: str) -> BadInput:
    """A 422 for one query parameter, in the shape FastAPI's own validation errors have."""
    errors = [{"loc": ["query", field], "msg": message, "type": "value_error"}]
    return BadInput(f"query.{field}: {message}", extra={"errors": errors})


def _check_range(start: datetime, end: datetime, max_days: int, coarser: str | None) -> None:
    if end <= start:
        raise _field_error("end", "end must be after start")
    span = end - start
    if span > timedelta(days=max_days):
        hint = f"use resolution={coarser} or a shorter range" if coarser else "use a shorter range"
        raise _field_error(
            "end", f"the range spans {span.days} days, over the {max_days}-day limit here; {hint}"
        )


def _json(body: Any) -> Response:
    # NaN / Infinity are not JSON: a sensor column that holds one is shown as null.
    return Response(to_json(body, inf_nan_mode="null"), media_type="application/json")


def _iso(ts: datetime | None, tz: ZoneInfo) -> str | None:
    """ISO 8601 in the site's zone; the same text PostgreSQL's to_json gives a timestamptz."""
    return ts.astimezone(tz).isoformat() if ts is not None else None


def _lookup(conn: Connection, query: TextClause, code: str, missing: AppError) -> Row[Any]:
    """The entity (id, timezone) by code, with the connection's TimeZone set to its zone."""
    entity = conn.execute(query, {"code": code}).first()
    if entity is None:
        raise missing
    return entity


def _site(conn: Connection, code: str) -> Row[Any]:
    missing = SiteNotFound(f"no site with code {code!r}; list sites with GET /v1/sites")
    return _lookup(conn, queries.SITE, code, missing)


def _over_cap(what: str, hint: str) -> BadInput:
    return _field_error("end", f"more than {MAX_RAW_ROWS} {what} in this range; {hint}")


def _range_params(
    entity: Row[Any],
    start: datetime,
    end: datetime,
    source: str | None,
    resolution: str | None = None,
) -> dict[str, Any]:
    """Parameters of a range statement; with a resolution, raw's row cap or the bucket's."""
    params: dict[str, Any] = {
        "entity_id": entity.id,
        "start": start,
        "end": end,
    }
    if source is not None:
        params["source"] = source
    if resolution == "raw":
        params["cap"] = MAX_RAW_ROWS
    elif resolution is not None:
        params["field"] = resolution
        params["rollup_source"] = source or "*"
    return params


def _header(tz: ZoneInfo, start: datetime, end: datetime, **fields: Any) -> dict[str, Any]:
    return {**fields, "timezone": tz.key, "start": _iso(start, tz), "end": _iso(end, tz)}


@router.get(
    "/sites/{code}/readings",
    response_model=ReadingsOut,
    summary="Readings of a site for a range, raw or summed by hour, day, week or month",
)
def read_readings(
    code: SiteCode,
    start: Start,
    end: End,
    db: ReadsDep,
    _: ReaderDep,
    resolution: Resolution = "hour",
    source: SourceQuery = None,
) -> Response:
    """Energy per bucket in the site's timezone (local days, Monday weeks, calendar months)."""
    _check_range(start, end, MAX_SPAN_DAYS[resolution], _COARSER[resolution])
    kind = resolution if resolution in ("raw", "hour") else "period"
    with db.read() as conn:
        site = _site(conn, code)
        params = _range_params(site, start, end, source, resolution)
        statement = queries.READINGS[kind, source is not None]
        n_items, items_json = conn.execute(statement, params).one()
    if n_items > MAX_RAW_ROWS:
        raise _over_cap("readings", "use resolution=hour (or coarser) or a shorter range")
    tz = ZoneInfo(site.timezone)
    head = to_json(_header(tz, start, end, site=code, resolution=resolution, source=source))
    # The items come as JSON text from PostgreSQL; splice them in rather than re-parse them.
    body = b"".join((head[:-1], b',"items":', items_json.encode(), b"}"))
    return Response(body, media_type="application/json")


@router.get(
    "/sites/{code}/balance",
    response_model=BalanceOut,
    summary="Consumed against produced over a range: coverage rate and hourly deficits",
)
def read_balance(
    code: SiteCode,
    start: Start,
    end: End,
    db: ReadsDep,
    _: ReaderDep,
    source: SourceQuery = None,
) -> Response:
    """Totals, coverage rate and deficit figures over the site-zone hours of the range."""
    _check_range(start, end, MAX_BALANCE_DAYS, None)
    with db.read() as conn:
        site = _site(conn, code)
        params = {**_range_params(site, start, end, source), "rollup_source": source or "*"}
        r = conn.execute(queries.BALANCE[source is not None], params).one()
    tz = ZoneInfo(site.timezone)
    consumed, produced = r.consumed_kwh or 0.0, r.produced_kwh or 0.0
    return _json(
        {
            **_header(tz, start, end, site=code, source=source),
            "consumed_kwh": consumed,
            "produced_kwh": produced,
            "coverage_rate": round(produced / consumed, 6) if consumed > 0 else None,
            "deficit_kwh": r.deficit_kwh or 0.0,
            "deficit_hours": r.deficit_hours,
            "peak_deficit_hour": _iso(r.peak_hour, tz),
            "peak_deficit_kwh": r.peak_deficit_kwh,
            "n_readings": r.n_readings,
            "first_ts": _iso(r.first_ts, tz),
            "last_ts": _iso(r.last_ts, tz),
        }
    )


def _rows_json(rows: Sequence[Row[Any]], tz: ZoneInfo) -> list[dict[str, Any]]:
    return [{**r._asdict(), "ts": _iso(r.ts, tz)} for r in rows]


@router.get(
    "/equipment/{code}/telemetry",
    response_model=TelemetryOut,
    summary="Telemetry of one piece of equipment: raw samples, or hourly / daily avg and max",
)
def read_telemetry(
    code: EquipmentCode,
    start: Start,
    end: End,
    db: ReadsDep,
    _: ReaderDep,
    resolution: Literal["raw", "hour", "day"] = "raw",
    source: SourceQuery = None,
) -> Response:
    """Sensor samples in [start, end); buckets in the timezone of the equipment's site."""
    _check_range(start, end, MAX_SPAN_DAYS[resolution], _COARSER[resolution])
    missing = EquipmentNotFound(f"no equipment with code {code!r}")
    raw = resolution == "raw"
    with db.read() as conn:
        equipment = _lookup(conn, queries.EQUIPMENT, code, missing)
        params = _range_params(equipment, start, end, source, resolution)
        rows = conn.execute(queries.TELEMETRY[raw, source is not None], params).all()
    if len(rows) > MAX_RAW_ROWS:
        raise _over_cap("samples", "use resolution=hour or day, or a shorter range")
    tz = ZoneInfo(equipment.timezone)
    return _json(
        {
            **_header(tz, start, end, equipment=code, resolution=resolution, source=source),
            "items": _rows_json(rows, tz),
        }
    )


@router.get(
    "/equipment/{code}/events",
    response_model=EquipmentEventsOut,
    summary="Maintenance, failure and inspection events of one piece of equipment",
)
def read_equipment_events(
    code: EquipmentCode,
    start: Start,
    end: End,
    db: ReadsDep,
    _: ReaderDep,
) -> Response:
    """Events in [start, end) by time, stamped in the timezone of the equipment's site."""
    _check_range(start, end, MAX_SPAN_DAYS["raw"], None)
    missing = EquipmentNotFound(f"no equipment with code {code!r}")
    with db.read() as conn:
        equipment = _lookup(conn, queries.EQUIPMENT, code, missing)
        params = {**_range_params(equipment, start, end, None), "cap": MAX_RAW_ROWS}
        rows = conn.execute(queries.EQUIPMENT_EVENTS, params).all()
    if len(rows) > MAX_RAW_ROWS:
        raise _over_cap("events", "use a shorter range")
    tz = ZoneInfo(equipment.timezone)
    return _json({**_header(tz, start, end, equipment=code), "items": _rows_json(rows, tz)})


@router.get("/sites/{code}/weather", response_model=WeatherOut, summary="Weather at a site")
def read_weather(
    code: SiteCode,
    start: Start,
    end: End,
    db: ReadsDep,
    _: ReaderDep,
    source: SourceQuery = None,
) -> Response:
    """Hourly weather rows in [start, end), observed or forecast, one source per hour."""
    _check_range(start, end, MAX_SPAN_DAYS["raw"], None)
    with db.read() as conn:
        site = _site(conn, code)
        params = {**_range_params(site, start, end, source), "cap": MAX_RAW_ROWS}
        rows = conn.execute(queries.WEATHER[source is not None], params).all()
    if len(rows) > MAX_RAW_ROWS:
        raise _over_cap("weather rows", "use a shorter range")
    tz = ZoneInfo(site.timezone)
    return _json(
        {**_header(tz, start, end, site=code, source=source), "items": _rows_json(rows, tz)}
    )


@router.get(
    "/quarantine",
    response_model=QuarantinePage,
    tags=["quarantine"],
    summary="Rejected rows, newest first, with the reason (keyset pagination)",
)
def read_quarantine(
    db: ReadsDep,
    _: ReaderDep,
    kind: Annotated[str | None, Query(max_length=16, description="e.g. reading")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="next_before_id of the previous page")
    ] = None,
) -> Response:
    """One page of quarantined rows; follow next_before_id until it is null."""
    params = {"kind": kind, "before_id": before_id, "limit": limit}
    with db.read() as conn:
        rows = conn.execute(queries.QUARANTINE, params).all()
    page = rows[:limit]
    items = [
        {**r._asdict(), "batch_id": str(r.batch_id), "received_at": r.received_at.isoformat()}
        for r in page
    ]
    return _json({"items": items, "next_before_id": page[-1].id if len(rows) > limit else None})


@router.get(
    "/anomaly-labels",
    response_model=list[AnomalyLabelOut],
    tags=["anomaly labels"],
    summary="Injected-anomaly ground truth overlapping a range",
)
def read_anomaly_labels(
    db: ReadsDep,
    _: ReaderDep,
    site: Annotated[str | None, Query(max_length=32)] = None,
    start: Annotated[QueryTime | None, Query()] = None,
    end: Annotated[QueryTime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Response:
    """Labels of one site (or all) whose [start_ts, end_ts) overlaps [start, end), by start."""
    if start is not None and end is not None and end <= start:
        raise _field_error("end", "end must be after start")
    with db.read() as conn:
        site_id = _site(conn, site).id if site is not None else None
        params = {"site_id": site_id, "start": start, "end": end, "limit": limit}
        rows = conn.execute(queries.ANOMALY_LABELS, params).all()
    out = []
    for r in rows:
        tz = ZoneInfo(r.timezone)
        item = r._asdict()
        del item["timezone"]
        item["start_ts"], item["end_ts"] = _iso(r.start_ts, tz), _iso(r.end_ts, tz)
        out.append(item)
    return _json(out)
