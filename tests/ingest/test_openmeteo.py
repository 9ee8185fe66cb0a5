"""The Open-Meteo connector against a local HTTP server that answers like Open-Meteo."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.common.stack import free_port
from services.ingest import openmeteo
from services.ingest.config import IngestSettings
from services.ingest.main import build_app
from services.ingest.models import Quarantine, Weather
from services.ingest.openmeteo import WeatherSourceError, parse_hourly
from tests.conftest import bind_session, token_for
from tests.ingest.conftest import make_site

ROUTE = "/v1/sites/{code}/weather/fetch"
TIMEOUT_S = 0.5


class FakeOpenMeteo:
    """Answers GET like the forecast and archive endpoints; ``mode`` picks a failure."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.nulls: dict[int, tuple[str, ...]] = {}  # hour index -> variables sent as null
        self.overrides: dict[tuple[int, str], Any] = {}
        self.requests: list[dict[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = dict(parse_qsl(urlsplit(self.path).query))
                fake.requests.append(query | {"path": urlsplit(self.path).path})
                status, body = fake.answer(query)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, query: dict[str, str]) -> tuple[int, bytes]:
        if self.mode == "error":
            reason = "Parameter 'start_date' is out of allowed range"
            return 400, json.dumps({"error": True, "reason": reason}).encode()
        if self.mode == "slow":
            time.sleep(TIMEOUT_S * 3)
        if self.mode == "malformed":
            return 200, b'{"latitude": 45.0, "hourly": {"time": ["2025-'
        if self.mode == "short":
            payload = self.payload(query)
            payload["hourly"]["wind_speed_10m"].pop()
            return 200, json.dumps(payload).encode()
        return 200, json.dumps(self.payload(query)).encode()

    def payload(self, query: dict[str, str]) -> dict[str, Any]:
        if "start_date" in query:
            first = date.fromisoformat(query["start_date"])
            days = (date.fromisoformat(query["end_date"]) - first).days + 1
        else:
            first, days = datetime.now(UTC).date(), int(query["forecast_days"])
        start = datetime.combine(first, datetime.min.time())
        times = [start + timedelta(hours=h) for h in range(24 * days)]
        hourly: dict[str, list[Any]] = {
            "time": [t.strftime("%Y-%m-%dT%H:%M") for t in times],
            "temperature_2m": [5.0 + t.hour / 2 for t in times],
            "shortwave_radiation": [float(max(0, 100 * (6 - abs(t.hour - 13)))) for t in times],
            "wind_speed_10m": [3.25 for _ in times],
        }
        for i, names in self.nulls.items():
            for name in names:
                hourly[name][i] = None
        for (i, name), value in self.overrides.items():
            hourly[name][i] = value
        return {
            "latitude": float(query["latitude"]),
            "longitude": float(query["longitude"]),
            "generationtime_ms": 0.1,
            "utc_offset_seconds": 0,
            "timezone": "GMT",
            "timezone_abbreviation": "GMT",
            "elevation": 170.0,
            "hourly_units": {
                "time": "iso8601",
                "temperature_2m": "°C",
                "shortwave_radiation": "W/m²",
                "wind_speed_10m": "m/s",
            },
            "hourly": hourly,
        }


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOpenMeteo]:
    fake = FakeOpenMeteo()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def fake(fake_server: FakeOpenMeteo) -> FakeOpenMeteo:
    fake_server.mode, fake_server.nulls, fake_server.overrides = "ok", {}, {}
    fake_server.requests.clear()
    return fake_server


@pytest.fixture
def weather_client(
    session: Session, settings_env: dict[str, Any], fake: FakeOpenMeteo
) -> Iterator[TestClient]:
    """The ingest app with Open-Meteo pointed at the fake server, as an operator."""
    settings = IngestSettings(
        **settings_env,
        openmeteo_forecast_url=f"{fake.url}/v1/forecast",
        openmeteo_archive_url=f"{fake.url}/v1/archive",
        openmeteo_timeout_s=TIMEOUT_S,
    )
    app = build_app(settings)
    if ROUTE not in app.openapi()["paths"]:  # until api.py includes the connector's router
        app.include_router(openmeteo.router, prefix="/v1")
        app.openapi_schema = None
    with bind_session(app, session) as c:
        c.headers["Authorization"] = f"Bearer {token_for('operator')}"
        yield c


def _rows(session: Session, site_id: int) -> list[Weather]:
    return list(
        session.scalars(select(Weather).where(Weather.site_id == site_id).order_by(Weather.ts))
    )


def _day(days_ago: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=days_ago)).isoformat()


# --- parsing ---------------------------------------------------------------------------------


def test_parse_hourly_moves_radiation_to_the_hour_it_covers() -> None:
    payload = {
        "utc_offset_seconds": 0,
        "hourly": {
            "time": ["2025-06-01T10:00", "2025-06-01T11:00", "2025-06-01T12:00"],
            "temperature_2m": [20.0, 21, None],
            "shortwave_radiation": [500.0, 600.0, 700.0],
            "wind_speed_10m": [2.0, None, 4.0],
        },
    }

    hours = parse_hourly(payload)

    assert [h.ts for h in hours] == [datetime(2025, 6, 1, h, tzinfo=UTC) for h in (10, 11, 12)]
    assert [h.irradiance_w_m2 for h in hours] == [600.0, 700.0, None]
    assert [h.temperature_c for h in hours] == [20.0, 21.0, None]
    assert [h.wind_speed_m_s for h in hours] == [2.0, None, 4.0]


def test_parse_hourly_applies_the_utc_offset_of_the_answer() -> None:
    payload = {
        "utc_offset_seconds": 7200,
        "hourly": {name: [1.0] for name in openmeteo.HOURLY} | {"time": ["2025-06-01T10:00"]},
    }

    (hour,) = parse_hourly(payload)

    assert hour.ts == datetime(2025, 6, 1, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"error": True, "reason": "nope"},
        {"hourly": {}},
        {"hourly": {"time": ["2025-06-01T10:00"], "temperature_2m": [1.0]}},
        {"hourly": {n: [1.0] for n in openmeteo.HOURLY} | {"time": ["yesterday"]}},
        {"hourly": {n: ["1.0"] for n in openmeteo.HOURLY} | {"time": ["2025-06-01T10:00"]}},
        {"hourly": {n: [True] for n in openmeteo.HOURLY} | {"time": ["2025-06-01T10:00"]}},
    ],
    ids=["array", "error", "no-time", "short-column", "bad-time", "string-value", "bool-value"],
)
def test_parse_hourly_rejects_malformed_answers(payload: Any) -> None:
    with pytest.raises(WeatherSourceError):
        parse_hourly(payload)


# --- the route against the fake server -------------------------------------------------------


def test_fetch_archive_stores_real_observed_rows_once(
    weather_client: TestClient, session: Session, fake: FakeOpenMeteo
) -> None:
    site = make_site(session, latitude=45.76, longitude=4.86)
    params = {"kind": "archive", "start": _day(5), "end": _day(4)}

    first = weather_client.post(ROUTE.format(code=site.code), params=params)
    again = weather_client.post(ROUTE.format(code=site.code), params=params)

    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["received"], body["stored"], body["quarantined"]) == (48, 48, 0)
    assert again.json()["stored"] == 48
    rows = _rows(session, site.id)
    assert len(rows) == 48  # re-fetching updated, did not duplicate
    assert {(r.source, r.is_forecast) for r in rows} == {("real", False)}
    assert rows[0].ts == datetime.combine(date.fromisoformat(_day(5)), datetime.min.time(), UTC)
    # Every row has its irradiance, the last one too: one extra day was asked for.
    assert all(r.irradiance_w_m2 is not None for r in rows)
    assert fake.requests[0]["end_date"] == _day(3)


def test_fetch_forecast_sends_open_meteo_parameters_and_stores_forecast_rows(
    weather_client: TestClient, session: Session, fake: FakeOpenMeteo
) -> None:
    site = make_site(session, latitude=43.3, longitude=5.4)

    r = weather_client.post(ROUTE.format(code=site.code), params={"days": 2})

    assert r.status_code == 200, r.text
    sent = fake.requests[0]
    assert sent["path"] == "/v1/forecast"
    assert (sent["latitude"], sent["longitude"], sent["forecast_days"]) == ("43.3", "5.4", "2")
    assert sent["hourly"] == "temperature_2m,shortwave_radiation,wind_speed_10m"
    assert (sent["wind_speed_unit"], sent["timezone"], sent["timeformat"]) == (
        "ms",
        "GMT",
        "iso8601",
    )
    rows = _rows(session, site.id)
    assert len(rows) == 48 and all(row.is_forecast for row in rows)
    assert rows[0].wind_speed_m_s == 3.25


def test_fetch_forecast_never_overwrites_an_observation(
    weather_client: TestClient, session: Session
) -> None:
    site = make_site(session)
    today = _day(0)
    weather_client.post(
        ROUTE.format(code=site.code), params={"kind": "archive", "start": today, "end": today}
    )

    r = weather_client.post(ROUTE.format(code=site.code), params={"days": 2})

    assert r.status_code == 200, r.text
    assert (r.json()["stored"], r.json()["kept_observed"]) == (24, 24)
    rows = _rows(session, site.id)
    assert [row.is_forecast for row in rows] == [False] * 24 + [True] * 24


def test_fetch_skips_hours_without_any_value_and_keeps_partial_ones(
    weather_client: TestClient, session: Session, fake: FakeOpenMeteo
) -> None:
    site = make_site(session)
    # Hour 3 has nothing (its irradiance is reported at hour 4); hour 6 lacks its temperature.
    fake.nulls = {
        3: ("temperature_2m", "wind_speed_10m"),
        4: ("shortwave_radiation",),
        6: ("temperature_2m",),
    }

    r = weather_client.post(ROUTE.format(code=site.code), params={"days": 1})

    assert r.status_code == 200, r.text
    assert (r.json()["received"], r.json()["skipped_empty"], r.json()["stored"]) == (24, 1, 23)
    by_hour = {row.ts.hour: row for row in _rows(session, site.id)}
    assert 3 not in by_hour
    assert by_hour[6].temperature_c is None and by_hour[6].wind_speed_m_s == 3.25


def test_fetch_out_of_bounds_value_is_quarantined_not_stored(
    weather_client: TestClient, session: Session, fake: FakeOpenMeteo
) -> None:
    site = make_site(session)
    fake.overrides = {(5, "temperature_2m"): 75.0}

    r = weather_client.post(ROUTE.format(code=site.code), params={"days": 1})

    assert r.status_code == 200, r.text
    assert (r.json()["stored"], r.json()["quarantined"]) == (23, 1)
    assert r.json()["rejected"][0]["row"] == 5
    assert "temperature_c" in r.json()["rejected"][0]["reason"]
    kept = session.scalars(select(Quarantine).where(Quarantine.kind == "weather")).all()
    assert [q.payload["temperature_c"] for q in kept] == [75.0]


@pytest.mark.parametrize(
    ("mode", "detail"),
    [
        ("error", "Open-Meteo answered 400: Parameter 'start_date' is out of allowed range"),
        ("slow", f"Open-Meteo did not answer within {TIMEOUT_S:g} s"),
        ("malformed", "Open-Meteo sent a malformed answer: the body is not JSON"),
        ("short", "Open-Meteo sent a malformed answer: hourly.wind_speed_10m is missing"),
    ],
)
def test_fetch_upstream_failure_is_502_and_stores_nothing(
    weather_client: TestClient, session: Session, fake: FakeOpenMeteo, mode: str, detail: str
) -> None:
    site = make_site(session)
    fake.mode = mode

    r = weather_client.post(ROUTE.format(code=site.code), params={"days": 1})

    assert r.status_code == 502
    assert r.json()["error"] == "WeatherSourceError"
    assert r.json()["detail"].startswith(detail)
    assert _rows(session, site.id) == []


def test_fetch_unreachable_upstream_is_502(session: Session, settings_env: dict[str, Any]) -> None:
    site = make_site(session)
    settings = IngestSettings(
        **settings_env, openmeteo_forecast_url=f"http://127.0.0.1:{free_port()}"
    )

    with pytest.raises(WeatherSourceError, match="unreachable"):
        openmeteo.fetch_site_weather(session, settings, site.code, "forecast", days=1)


def test_fetch_site_without_coordinates_is_422_and_asks_nothing_upstream(
    weather_client: TestClient, session: Session, fake: FakeOpenMeteo
) -> None:
    site = make_site(session, latitude=None, longitude=None)

    r = weather_client.post(ROUTE.format(code=site.code))

    assert r.status_code == 422
    assert r.json()["error"] == "SiteWithoutCoordinates"
    assert "PATCH" in r.json()["detail"]
    assert fake.requests == []


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"kind": "archive"}, "needs start and end"),
        ({"kind": "archive", "start": "1900-01-01", "end": "1900-01-02"}, "between 1940-01-01"),
        ({"kind": "archive", "start": _day(0), "end": _day(-1)}, "between 1940-01-01"),
        ({"kind": "archive", "start": _day(1), "end": _day(3)}, "end must not be before"),
        ({"kind": "archive", "start": _day(800), "end": _day(1)}, "at most 366 days"),
        ({"kind": "forecast", "start": _day(0)}, "give both"),
        ({"kind": "forecast", "start": _day(0), "end": _day(-30)}, "forecast dates"),
    ],
)
def test_fetch_bad_range_is_422_before_any_upstream_call(
    weather_client: TestClient,
    session: Session,
    fake: FakeOpenMeteo,
    params: dict[str, str],
    detail: str,
) -> None:
    site = make_site(session)

    r = weather_client.post(ROUTE.format(code=site.code), params=params)

    assert r.status_code == 422
    assert detail in r.json()["detail"]
    assert fake.requests == []


def test_fetch_unknown_site_is_404(weather_client: TestClient) -> None:
    r = weather_client.post(ROUTE.format(code="NOPE"), params={"days": 1})

    assert r.status_code == 404
    assert r.json()["error"] == "SiteNotFound"


def test_fetch_needs_the_operator_role(
    weather_client: TestClient, session: Session, auth: Any
) -> None:
    site = make_site(session)

    r = weather_client.post(ROUTE.format(code=site.code), headers=auth("viewer"))

    assert r.status_code == 403
