"""Forecast-service fixtures: a real ingest process with simulated data, fast training settings,
the forecast app in-process on the test's rolled-back session, and session factories for
calling the service's functions (training, jobs, nightly) directly.

* ``ingest``: ingest as a uvicorn process on a database of its own, loaded once per session
  through its API by the simulator (2 sites, 7 pieces of equipment, 35 days, a seed whose fleet
  fails often enough in that window: ``fleet_seed``); tests add
  hand-made sites through the same API (``ingest.site(...)``, ``ingest.readings(...)``).
* ``settings``: the forecast settings the tests use: a one-week backtest, few boosting
  iterations, no worker thread and no nightly schedule (tests drive both).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from services.common.http import ServiceAuth
from services.common.settings import ServiceSettings
from services.common.stack import ServiceProcess, start_services
from services.forecast.config import ForecastSettings
from services.forecast.data import IngestReader
from services.forecast.main import build_app
from services.ingest.simulator.catalog import equipment_specs, site_specs
from services.ingest.simulator.client import IngestClient, backfill, current_hour
from services.ingest.simulator.model import equipment_history
from tests.conftest import TEST_SECRET, bind_session, process_env, token_for

SIM_SITES = 2
SIM_DAYS = 35
SIM_SEED = 42
# Failures the simulated fleet must have in the window for the maintenance model to learn from
# (its MaintenanceParams.min_failures is 3), with a margin.
SIM_MIN_FAILURES = 5
_codes = itertools.count(1)

Row = tuple[datetime, float, float]


class IngestAPI:
    """A real ingest process and a client to write hand-made test data through its API."""

    def __init__(self, proc: ServiceProcess, env: dict[str, str], database_url: str) -> None:
        self.proc = proc
        self.env = env
        self.database_url = database_url
        settings = ServiceSettings(secret_key=TEST_SECRET, environment="test")
        self.http = httpx.Client(base_url=proc.url, auth=ServiceAuth(settings, "tests"), timeout=60)
        self.end = current_hour()
        specs = site_specs(SIM_SITES)
        self.sites = [s.code for s in specs]
        self.equipment = [e.code for e in equipment_specs(specs)]

    @property
    def url(self) -> str:
        return self.proc.url

    def site(
        self, prefix: str = "T", capacity_kw: float = 100.0, timezone: str = "Europe/Paris"
    ) -> str:
        """A new site with a unique code."""
        code = f"{prefix}{next(_codes)}-{int(time.time() * 1000) % 100000}"
        r = self.http.post(
            "/v1/sites",
            json={
                "code": code,
                "name": code,
                "timezone": timezone,
                "country_code": "FR",
                "capacity_kw": capacity_kw,
            },
        )
        assert r.status_code == 201, r.text
        return code

    def readings(self, code: str, rows: list[Row], source: str = "real") -> None:
        """Hourly readings (ts, consumption, production) of a site."""
        body = [
            {
                "site": code,
                "ts": ts.isoformat(),
                "consumption_kwh": round(c, 3),
                "production_kwh": round(p, 3),
                "interval_s": 3600,
                "source": source,
            }
            for ts, c, p in rows
        ]
        r = self.http.post("/v1/readings/batch", json=body)
        assert r.status_code == 200 and r.json()["quarantined"] == 0, r.text

    def post(self, path: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        r = self.http.post(path, json=rows)
        assert r.status_code == 200, r.text
        return dict(r.json())


def fleet_seed(end: datetime) -> int:
    """The first seed from SIM_SEED whose fleet has SIM_MIN_FAILURES failures to learn from in
    the SIM_DAYS before ``end``.

    The simulator's draws are functions of the absolute time slot, so a fixed seed gives a
    different number of failures in a window that ends now every day (one on 2026-12-06,
    eight a month earlier). Counted: failures after the first day and before the last
    horizon (7 days) plus one, the ones that usable equipment-days lead up to.
    """
    equipment = equipment_specs(site_specs(SIM_SITES))
    start_s = int((end - timedelta(days=SIM_DAYS - 2)).timestamp())
    end_s = int((end - timedelta(days=8)).timestamp())
    for seed in itertools.count(SIM_SEED):
        failures = sum(
            event.kind == "failure"
            for eq in equipment
            for event in equipment_history(eq, seed, start_s, end_s)[1]
        )
        if failures >= SIM_MIN_FAILURES:
            return seed
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def ingest(
    make_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IngestAPI]:
    """Ingest as a real process on its own database, with simulated sites and equipment."""
    database_url = make_database("forecast_ingest")
    env = process_env(
        database_url,
        INGEST_NOTIFY_ALERTS="false",
    )
    log_dir: Path = tmp_path_factory.mktemp("forecast-ingest")
    (proc,) = start_services(env, ("ingest",), log_dir=log_dir)
    try:
        api = IngestAPI(proc, env, database_url)
        settings = ServiceSettings(secret_key=TEST_SECRET, environment="test")
        specs = site_specs(SIM_SITES)
        with IngestClient(proc.url, ServiceAuth(settings, "simulator"), echo=lambda _: None) as c:
            seed = fleet_seed(api.end)
            backfill(c, specs, equipment_specs(specs), days=SIM_DAYS, seed=seed, end=api.end)
        yield api
        api.http.close()
    finally:
        proc.stop()


def fast_settings(**overrides: Any) -> dict[str, Any]:
    """Forecast settings that keep a training run to a few seconds on a loaded machine."""
    return {
        "forecast_backtest_days": 7,
        "forecast_retrain_every_days": 7,
        "forecast_importance_repeats": 1,
        "forecast_max_iter": 60,
        "forecast_history_days": 60,
        "forecast_job_poll_s": 0,
        "forecast_schedule_enabled": False,
        **overrides,
    }


@pytest.fixture
def settings(settings_env: dict[str, Any], ingest: IngestAPI) -> ForecastSettings:
    return ForecastSettings(**settings_env, ingest_url=ingest.url, **fast_settings())


@pytest.fixture
def reader(settings: ForecastSettings) -> Iterator[IngestReader]:
    r = IngestReader(settings)
    yield r
    r.close()


@pytest.fixture
def sessions(connection: Connection) -> sessionmaker[Session]:
    """Sessions whose transactions are savepoints of the test's (rolled back) transaction."""
    return sessionmaker(bind=connection, join_transaction_mode="create_savepoint")


@pytest.fixture
def client(session: Session, settings: ForecastSettings) -> Iterator[TestClient]:
    """The forecast app on the test session, as an operator (no lifespan: no worker)."""
    app = build_app(settings)
    c = bind_session(app, session)
    c.headers["Authorization"] = f"Bearer {token_for('operator', subject='olivia')}"
    yield c
    app.state.reader.close()


# --- hand-made series ------------------------------------------------------------------------


def hours(start: datetime, end: datetime) -> list[datetime]:
    """UTC hour starts of [start, end)."""
    out, ts = [], start.astimezone(UTC)
    while ts < end:
        out.append(ts)
        ts += timedelta(hours=1)
    return out


def weekly_rows(start: datetime, end: datetime, tz: str = "Europe/Paris") -> list[Row]:
    """A load that repeats exactly every week (local weekday x hour), no production."""
    zone = ZoneInfo(tz)
    rows = []
    for ts in hours(start, end):
        local = ts.astimezone(zone)
        workday = local.weekday() < 5
        level = 80.0 if workday and 7 <= local.hour < 19 else 30.0
        rows.append((ts, level + 3.0 * local.weekday() + 0.5 * local.hour, 0.0))
    return rows


def days_ago(n: float) -> datetime:
    return current_hour() - timedelta(days=n)
