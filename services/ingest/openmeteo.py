"""Open-Meteo weather connector: hourly temperature, irradiance and wind for a site, stored as
weather rows of source ``real`` (forecast endpoint: ``is_forecast``; archive: observed).

Alignment: readings cover the interval *starting* at ``ts``, and so does a weather row's
irradiance (the simulator follows the same rule). Open-Meteo's ``shortwave_radiation`` at T is
the mean of the hour *ending* at T, so it is stored on the row of T - 1 h; temperature and wind
are instantaneous and stay at T. An archive fetch asks for one day more to fill the last hour.

Usable three ways: the route ``POST /v1/sites/{code}/weather/fetch``, the functions
``fetch_site_weather`` / ``refresh_forecasts`` (for a schedule), and the CLI
``python -m services.ingest.openmeteo forecast|archive``.
"""

from __future__ import annotations

import argparse
import math
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError
from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from services.common.auth import WriterDep
from services.common.db import SessionDep, get_engine
from services.common.errors import AppError, BadInput
from services.ingest.config import IngestSettings
from services.ingest.models import Quarantine, Site, Weather
from services.ingest.schemas import RejectedRow, WeatherIn
from services.ingest.service import get_site

FetchKind = Literal["forecast", "archive"]
HOURLY = ("temperature_2m", "shortwave_radiation", "wind_speed_10m")
ARCHIVE_FIRST_DAY = date(1940, 1, 1)
FORECAST_MAX_DAYS = 16
FORECAST_PAST_DAYS = 92  # how far back the forecast endpoint serves past days
UPSERT_CHUNK_ROWS = 5_000  # 6 parameters a row: far below PostgreSQL's 65,535 per statement

WEATHER_FETCHES = Counter(
    "ingest_weather_fetch_total",
    "Open-Meteo fetches, by kind (forecast, archive) and outcome (ok, upstream_error)",
    ["kind", "outcome"],
)


class WeatherSourceError(AppError):
    """Open-Meteo failed: unreachable, too slow, refused the request, or sent nonsense."""

    status_code = 502


class SiteWithoutCoordinates(BadInput):
    """Weather is fetched by position; the site has none."""


@dataclass(frozen=True)
class HourlyWeather:
    """One hour of Open-Meteo weather, aligned to the interval starting at ``ts``."""

    ts: datetime
    temperature_c: float | None
    irradiance_w_m2: float | None
    wind_speed_m_s: float | None


# --- HTTP ------------------------------------------------------------------------------------


def request_params(
    latitude: float,
    longitude: float,
    *,
    start: date | None = None,
    end: date | None = None,
    days: int | None = None,
) -> dict[str, str | int | float]:
    """Query parameters: UTC ISO times, wind in m/s, and either a date range or forecast days."""
    params: dict[str, str | int | float] = {
        "latitude": latitude,
        "longitude": longitude,
        "hourly": ",".join(HOURLY),
        "wind_speed_unit": "ms",
        "timezone": "GMT",
        "timeformat": "iso8601",
    }
    if start is not None and end is not None:
        params |= {"start_date": start.isoformat(), "end_date": end.isoformat()}
    elif days is not None:
        params["forecast_days"] = days
    return params


def get_json(
    url: str, params: dict[str, Any], timeout_s: float, transport: httpx.BaseTransport | None = None
) -> Any:
    """GET ``url`` and return its JSON, or raise WeatherSourceError saying what went wrong."""
    try:
        with httpx.Client(timeout=timeout_s, transport=transport) as client:
            response = client.get(url, params=params)
    except httpx.TimeoutException:
        raise WeatherSourceError(f"Open-Meteo did not answer within {timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise WeatherSourceError(f"Open-Meteo is unreachable: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        reason = body.get("reason") if isinstance(body, dict) else None
        raise WeatherSourceError(
            f"Open-Meteo answered {response.status_code}: {reason or response.text[:200]}"
        )
    if body is None:
        raise WeatherSourceError("Open-Meteo sent a malformed answer: the body is not JSON")
    return body


# --- parsing (pure) --------------------------------------------------------------------------


def _malformed(why: str) -> WeatherSourceError:
    return WeatherSourceError(f"Open-Meteo sent a malformed answer: {why}")


def _value(x: Any, name: str, i: int) -> float | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise _malformed(f"hourly.{name}[{i}] is {x!r}, not a number")
    return float(x)


def parse_hourly(payload: Any) -> list[HourlyWeather]:
    """The hours of an Open-Meteo answer, irradiance moved to the hour it was measured over.

    Nulls stay None (the caller skips rows without any value); anything not shaped like
    Open-Meteo's answer raises WeatherSourceError.
    """
    if not isinstance(payload, dict):
        raise _malformed("expected a JSON object")
    if payload.get("error"):
        raise WeatherSourceError(f"Open-Meteo refused the request: {payload.get('reason')}")
    hourly = payload.get("hourly")
    if not isinstance(hourly, dict) or not isinstance(hourly.get("time"), list):
        raise _malformed("no hourly.time array")
    times = hourly["time"]
    columns = {}
    for name in HOURLY:
        column = hourly.get(name)
        if not isinstance(column, list) or len(column) != len(times):
            raise _malformed(f"hourly.{name} is missing or not as long as hourly.time")
        columns[name] = [_value(x, name, i) for i, x in enumerate(column)]
    offset = payload.get("utc_offset_seconds", 0)
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise _malformed("utc_offset_seconds is not an integer")
    stamps = []
    for i, text in enumerate(times):
        try:
            at = datetime.fromisoformat(text)
        except (TypeError, ValueError):
            raise _malformed(f"hourly.time[{i}] is {text!r}, not an ISO 8601 time") from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC) - timedelta(seconds=offset)
        stamps.append(at.astimezone(UTC))
    radiation = columns["shortwave_radiation"]
    hours = []
    for i, at in enumerate(stamps):
        # Radiation reported at T+1h is the mean over [T, T+1h): this row's interval.
        follows = i + 1 < len(stamps) and stamps[i + 1] - at == timedelta(hours=1)
        hours.append(
            HourlyWeather(
                ts=at,
                temperature_c=columns["temperature_2m"][i],
                irradiance_w_m2=radiation[i + 1] if follows else None,
                wind_speed_m_s=columns["wind_speed_10m"][i],
            )
        )
    return hours


# --- storage ---------------------------------------------------------------------------------


class WeatherFetchOut(BaseModel):
    """What one fetch stored: rows upserted, rows without any value, rows quarantined."""

    site: str
    kind: FetchKind
    source: Literal["real"] = "real"
    first_ts: datetime | None
    last_ts: datetime | None
    received: int
    stored: int
    skipped_empty: int
    kept_observed: int  # forecast hours not written because an observation is already stored
    quarantined: int
    rejected: list[RejectedRow]


def upsert_weather(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert or update weather rows on (site_id, ts, source); return how many were written.

    A forecast never overwrites an observation of the same hour: the forecast endpoint also
    serves today's past hours, and they must not replace what the archive measured.
    """
    written = 0
    for i in range(0, len(rows), UPSERT_CHUNK_ROWS):
        stmt = insert(Weather).values(list(rows[i : i + UPSERT_CHUNK_ROWS]))
        stmt = stmt.on_conflict_do_update(
            index_elements=[Weather.site_id, Weather.ts, Weather.source],
            set_={
                "temperature_c": stmt.excluded.temperature_c,
                "irradiance_w_m2": stmt.excluded.irradiance_w_m2,
                "wind_speed_m_s": stmt.excluded.wind_speed_m_s,
                "is_forecast": stmt.excluded.is_forecast,
                "received_at": stmt.excluded.received_at,
            },
            where=or_(stmt.excluded.is_forecast.is_(False), Weather.is_forecast.is_(True)),
        )
        # RETURNING lists the rows actually inserted or updated (not those the WHERE kept).
        written += len(session.execute(stmt.returning(Weather.ts)).all())
    return written


def store_hours(
    session: Session, site: Site, hours: Iterable[HourlyWeather], *, kind: FetchKind
) -> WeatherFetchOut:
    """Validate the hours against the API's bounds, upsert the good ones, quarantine the bad."""
    now = datetime.now(UTC)
    good: list[dict[str, Any]] = []
    bad: list[tuple[int, dict[str, Any], str]] = []
    received = skipped = 0
    for i, hour in enumerate(hours):
        received += 1
        values = (hour.temperature_c, hour.irradiance_w_m2, hour.wind_speed_m_s)
        if all(v is None for v in values):
            skipped += 1
            continue
        row = {
            "site": site.code,
            "ts": hour.ts,
            "temperature_c": hour.temperature_c,
            "irradiance_w_m2": hour.irradiance_w_m2,
            "wind_speed_m_s": hour.wind_speed_m_s,
            "is_forecast": kind == "forecast",
            "source": "real",
        }
        try:
            checked = WeatherIn.model_validate(row)
        except ValidationError as exc:
            bad.append((i, row, _reason(exc)))
            continue
        good.append(checked.model_dump(exclude={"site"}) | {"site_id": site.id, "received_at": now})
    stored = upsert_weather(session, good)
    if bad:
        batch_id = uuid.uuid4()
        session.add_all(
            Quarantine(
                batch_id=batch_id,
                kind="weather",
                row_number=i,
                payload=_json_safe(row),
                reason=f"Open-Meteo: {reason}",
            )
            for i, row, reason in bad
        )
        session.flush()
    stamps = [r["ts"] for r in good]
    return WeatherFetchOut(
        site=site.code,
        kind=kind,
        first_ts=min(stamps, default=None),
        last_ts=max(stamps, default=None),
        received=received,
        stored=stored,
        skipped_empty=skipped,
        kept_observed=len(good) - stored,
        quarantined=len(bad),
        rejected=[RejectedRow(row=i, reason=reason) for i, _, reason in bad],
    )


def _reason(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "row"
    return f"{where}: {first['msg']} (got {first.get('input')!r})"


def _json_safe(row: dict[str, Any]) -> Any:
    # JSONB takes no NaN / Infinity: keep them readable as strings.
    return jsonable_encoder(
        {
            k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in row.items()
        }
    )


# --- one fetch, end to end -------------------------------------------------------------------


def _today() -> date:
    return datetime.now(UTC).date()


def _check_range(kind: FetchKind, start: date | None, end: date | None, max_days: int) -> None:
    today = _today()
    if (start is None) != (end is None):
        raise BadInput("give both start and end (YYYY-MM-DD), or neither")
    if start is None or end is None:
        if kind == "archive":
            raise BadInput("an archive fetch needs start and end dates (YYYY-MM-DD)")
        return
    if end < start:
        raise BadInput("end must not be before start")
    if kind == "archive":
        if start < ARCHIVE_FIRST_DAY or end > today:
            raise BadInput(
                f"archive dates must lie between {ARCHIVE_FIRST_DAY} and today ({today})"
            )
        if (end - start).days + 1 > max_days:
            raise BadInput(f"an archive fetch spans at most {max_days} days; split the range")
    else:
        first, last = today - timedelta(days=FORECAST_PAST_DAYS), today + timedelta(days=15)
        if start < first or end > last:
            raise BadInput(f"forecast dates must lie between {first} and {last}")


def fetch_site_weather(
    session: Session,
    settings: IngestSettings,
    code: str,
    kind: FetchKind,
    *,
    start: date | None = None,
    end: date | None = None,
    days: int | None = None,
    transport: httpx.BaseTransport | None = None,
) -> WeatherFetchOut:
    """Fetch a site's hourly weather from Open-Meteo and upsert it as source ``real``."""
    _check_range(kind, start, end, settings.openmeteo_max_archive_days)
    site = get_site(session, code)
    if site.latitude is None or site.longitude is None:
        raise SiteWithoutCoordinates(
            f"site {code!r} has no latitude/longitude; set them with PATCH /v1/sites/{code}"
        )
    url = settings.openmeteo_archive_url if kind == "archive" else settings.openmeteo_forecast_url
    upto = None
    if start is not None and end is not None:
        # One day more fills the last hour's irradiance (reported at the next hour).
        limit = _today() if kind == "archive" else _today() + timedelta(days=15)
        params = request_params(
            site.latitude, site.longitude, start=start, end=min(end + timedelta(days=1), limit)
        )
        upto = datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC)
    else:
        params = request_params(
            site.latitude, site.longitude, days=days or settings.openmeteo_forecast_days
        )
    try:
        hours = parse_hourly(get_json(url, params, settings.openmeteo_timeout_s, transport))
    except WeatherSourceError:
        WEATHER_FETCHES.labels(kind, "upstream_error").inc()
        raise
    if upto is not None:
        hours = [h for h in hours if h.ts < upto]
    WEATHER_FETCHES.labels(kind, "ok").inc()
    return store_hours(session, site, hours, kind=kind)


def refresh_forecasts(
    settings: IngestSettings, *, days: int | None = None
) -> dict[str, WeatherFetchOut | str]:
    """Fetch the forecast of every site with coordinates (for a schedule); errors by site."""
    engine = get_engine(settings.database_url, settings.db_pool_size)
    with Session(engine) as session:
        codes = list(
            session.scalars(
                select(Site.code).where(Site.latitude.is_not(None), Site.longitude.is_not(None))
            )
        )
    results: dict[str, WeatherFetchOut | str] = {}
    for code in codes:
        # One transaction per site: a failing site does not undo the others.
        with Session(engine) as session, session.begin():
            try:
                results[code] = fetch_site_weather(session, settings, code, "forecast", days=days)
            except AppError as exc:
                results[code] = f"{type(exc).__name__}: {exc.detail}"
    return results


# --- route -----------------------------------------------------------------------------------

router = APIRouter(tags=["weather"])


@router.post(
    "/sites/{code}/weather/fetch",
    response_model=WeatherFetchOut,
    summary="Fetch real weather for a site from Open-Meteo",
    responses={502: {"description": "Open-Meteo failed (unreachable, timeout, error, malformed)"}},
)
def fetch_weather(
    code: Annotated[str, Path(max_length=32)],
    request: Request,
    session: SessionDep,
    _: WriterDep,
    kind: FetchKind = "forecast",
    start: date | None = None,
    end: date | None = None,
    days: Annotated[int | None, Query(ge=1, le=FORECAST_MAX_DAYS)] = None,
) -> WeatherFetchOut:
    """Forecast (next ``days``, or start..end) or archive (start..end, observed), stored as real."""
    return fetch_site_weather(
        session, request.app.state.settings, code, kind, start=start, end=end, days=days
    )


# --- CLI -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m services.ingest.openmeteo forecast|archive``: fetch and store, print results."""
    parser = argparse.ArgumentParser(
        prog="python -m services.ingest.openmeteo",
        description="Fetch Open-Meteo weather for sites into ingest.weather (source real).",
    )
    parser.add_argument("kind", choices=["forecast", "archive"])
    parser.add_argument("--site", help="site code (default for forecast: every site)")
    parser.add_argument("--start", type=date.fromisoformat, help="YYYY-MM-DD")
    parser.add_argument("--end", type=date.fromisoformat, help="YYYY-MM-DD")
    parser.add_argument("--days", type=int, help=f"forecast days (1-{FORECAST_MAX_DAYS})")
    args = parser.parse_args(argv)
    settings = IngestSettings()
    if args.site is None:
        if args.kind == "archive":
            parser.error("archive needs --site")
        results = refresh_forecasts(settings, days=args.days)
    else:
        engine = get_engine(settings.database_url, settings.db_pool_size)
        with Session(engine) as session, session.begin():
            try:
                results = {
                    args.site: fetch_site_weather(
                        session,
                        settings,
                        args.site,
                        args.kind,
                        start=args.start,
                        end=args.end,
                        days=args.days,
                    )
                }
            except AppError as exc:
                results = {args.site: f"{type(exc).__name__}: {exc.detail}"}
    failed = 0
    for code, result in results.items():
        if isinstance(result, str):
            failed += 1
            print(f"{code}: {result}", file=sys.stderr)
        else:
            print(
                f"{code}: {result.stored} hours stored ({result.first_ts} .. {result.last_ts}),"
                f" {result.skipped_empty} empty, {result.quarantined} quarantined"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
