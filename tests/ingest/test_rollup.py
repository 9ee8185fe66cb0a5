"""Roll-ups and raw-data retention (services/ingest/rollup.py) against real databases.

Each test has databases of its own (the roll-up job moves a database-wide watermark), written
through the real write API so that late writes leave their invalidations, and read through the
real read API: the answers of a database whose roll-ups are in use must be those of a database
that only ever reads raw readings, and must not change when raw readings are dropped.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient

from services.ingest import rollup, timescale
from services.ingest.config import IngestSettings
from services.ingest.main import build_app
from tests.conftest import TEST_SECRET, token_for

# Whole-hour, half-hour and 45-minute offsets; DST in Paris (29 Mar / 25 Oct 2026), St John's
# (8 Mar / 1 Nov, -03:30 / -02:30), and Lord Howe (5 Apr: +11:00 -> +10:30, a 30-minute jump).
ZONES = {
    "PAR": "Europe/Paris",
    "KOL": "Asia/Kolkata",
    "KTM": "Asia/Kathmandu",
    "LHI": "Australia/Lord_Howe",
    "NFL": "America/St_Johns",
    "UTC": "UTC",
}
WINDOWS = (  # data windows around the DST changes (UTC)
    (datetime(2026, 3, 6, tzinfo=UTC), datetime(2026, 4, 8, tzinfo=UTC)),
    (datetime(2026, 10, 22, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC)),
)
SOURCES = (None, "real", "import", "simulated")
RESOLUTIONS = ("hour", "day", "week", "month")


def settings_for(url: str, **overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "database_url": url,
        "environment": "test",
        "secret_key": TEST_SECRET,
        "log_json": False,
        "log_level": "WARNING",
        "ingest_notify_alerts": False,
        "ingest_rollup_interval_s": 0,
    }
    return IngestSettings(**(values | overrides))


class Ingest:
    """An ingest app on one database, driven through its HTTP API (commits for real)."""

    def __init__(self, url: str, **overrides: Any) -> None:
        self.url = url
        self.settings = settings_for(url, **overrides)
        self.client = TestClient(build_app(self.settings), raise_server_exceptions=False)
        self.client.headers["Authorization"] = f"Bearer {token_for('admin')}"

    def create_sites(self) -> None:
        for code, zone in ZONES.items():
            r = self.client.post("/v1/sites", json={"code": code, "name": code, "timezone": zone})
            assert r.status_code == 201, r.text

    def write(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        for i in range(0, len(rows), 40_000):
            r = self.client.post("/v1/readings/batch", json=rows[i : i + 40_000])
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
        return body

    def get(self, path: str, params: dict[str, str]) -> Any:
        r = self.client.get(path, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    def run_job(self, now: datetime | None = None, **overrides: Any) -> rollup.Report:
        report = rollup.run_locked(self.settings.model_copy(update=overrides), now)
        assert report is not None
        return report

    def sql(self, query: str, *params: Any) -> Any:
        with psycopg.connect(self.url.replace("+psycopg", "")) as conn:
            return conn.execute(query, params).fetchone()


def _ingest(make_database: Callable[[str], str], name: str) -> Ingest:
    db = Ingest(make_database(name))
    db.create_sites()
    return db


@pytest.fixture(scope="module")
def pair(make_database: Callable[[str], str]) -> tuple[Ingest, Ingest]:
    """Two databases given the same writes: the first runs the roll-up job, the second never."""
    return _ingest(make_database, "rollup_a"), _ingest(make_database, "rollup_b")


@pytest.fixture(scope="module")
def spare(make_database: Callable[[str], str]) -> Ingest:
    """A database for the tests that need little data."""
    return _ingest(make_database, "rollup_c")


def reading(
    code: str, ts: datetime, c: float, p: float, source: str, interval: int
) -> dict[str, Any]:
    return {
        "site": code,
        "ts": ts.isoformat(),
        "consumption_kwh": c,
        "production_kwh": p,
        "source": source,
        "interval_s": interval,
    }


def history(rng: random.Random) -> list[dict[str, Any]]:
    """Hourly real and simulated readings with gaps, and days of quarter-hour imports."""
    rows = []
    for first, last in WINDOWS:
        for code in ZONES:
            ts = first
            while ts < last:
                if rng.random() < 0.9:
                    rows.append(
                        reading(
                            code,
                            ts,
                            round(rng.uniform(5, 80), 3),
                            round(rng.uniform(0, 60), 3),
                            "real",
                            3600,
                        )
                    )
                if rng.random() < 0.5:
                    rows.append(
                        reading(code, ts, round(rng.uniform(5, 80), 3), 0.0, "simulated", 3600)
                    )
                if ts.day % 5 == 0:
                    for q in range(4):
                        rows.append(
                            reading(
                                code,
                                ts + timedelta(minutes=15 * q),
                                round(rng.uniform(1, 20), 3),
                                round(rng.uniform(0, 15), 3),
                                "import",
                                900,
                            )
                        )
                ts += timedelta(hours=1)
    return rows


def late_writes(rng: random.Random, rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Corrections of stored readings and new readings at odd minutes, anywhere in the past."""
    late = []
    for row in rng.sample(rows, n // 2):
        late.append(row | {"consumption_kwh": round(rng.uniform(0, 90), 3)})
    for _ in range(n - n // 2):
        first, last = rng.choice(WINDOWS)
        minutes = rng.randrange(int((last - first).total_seconds() // 60))
        ts = first + timedelta(minutes=minutes)
        late.append(
            reading(
                rng.choice(list(ZONES)),
                ts,
                round(rng.uniform(0, 50), 3),
                round(rng.uniform(0, 50), 3),
                rng.choice(("real", "import")),
                600,
            )
        )
    return late


def random_query(rng: random.Random) -> tuple[str, dict[str, str]]:
    code = rng.choice(list(ZONES))
    zone = ZoneInfo(ZONES[code])
    first, last = rng.choice(WINDOWS)
    start = first - timedelta(days=1) + timedelta(minutes=rng.randrange(60 * 24 * 44))
    if rng.random() < 0.5:  # local midnight: whole local days
        local = start.astimezone(zone)
        start = local.replace(hour=0, minute=0).astimezone(UTC)
    end = start + timedelta(minutes=rng.randrange(30, 60 * 24 * 30))
    params = {"start": start.isoformat(), "end": end.isoformat()}
    source = rng.choice(SOURCES)
    if source:
        params["source"] = source
    if rng.random() < 0.2:
        return f"/v1/sites/{code}/balance", params
    params["resolution"] = rng.choice(RESOLUTIONS)
    return f"/v1/sites/{code}/readings", params


def assert_same_answers(rolled: Ingest, raw: Ingest, rng: random.Random, n: int) -> None:
    for _ in range(n):
        path, params = random_query(rng)
        assert rolled.get(path, params) == raw.get(path, params), (path, params)


def test_rollup_reads_equal_raw_reads_with_late_writes(pair: tuple[Ingest, Ingest]) -> None:
    rolled, raw = pair
    rng = random.Random(7)
    rows = history(rng)
    for db in (rolled, raw):
        db.write(rows)

    # Roll up to mid-April: the first window is served from roll-ups, the second is raw.
    report = rolled.run_job(datetime(2026, 4, 20, tzinfo=UTC))
    assert report.watermark == datetime(2026, 4, 19, 23, tzinfo=UTC)
    assert report.hours_advanced > 24 * 30
    assert rolled.sql("SELECT count(*) FROM ingest.reading_hourly")[0] > 5000
    assert_same_answers(rolled, raw, random.Random(1), 40)

    # Late writes below and above the watermark: answered at once (pending invalidations)...
    late = late_writes(rng, rows, 400)
    for db in (rolled, raw):
        db.write(late)
    assert rolled.sql("SELECT count(*) FROM ingest.rollup_invalidation")[0] >= len(ZONES)
    assert_same_answers(rolled, raw, random.Random(2), 40)

    # ... and after the job has folded them in and rolled everything up.
    rolled.run_job()
    assert rolled.sql("SELECT count(*) FROM ingest.rollup_invalidation")[0] == 0
    assert_same_answers(rolled, raw, random.Random(3), 40)
    late = late_writes(rng, rows, 200)
    for db in (rolled, raw):
        db.write(late)
    rolled.run_job()
    assert_same_answers(rolled, raw, random.Random(4), 40)


def _local_midnight(code: str, year: int, month: int, day: int) -> str:
    return datetime(year, month, day, tzinfo=ZoneInfo(ZONES[code])).isoformat()


def _whole_periods() -> list[tuple[str, dict[str, str]]]:
    """Reads over whole local days / months: what must survive dropping raw readings."""
    queries = []
    for code in ZONES:
        # The month of the spring DST changes, and whole weeks around them.
        for first, last in (((2026, 3, 1), (2026, 4, 1)), ((2026, 3, 23), (2026, 4, 13))):
            base = {"start": _local_midnight(code, *first), "end": _local_midnight(code, *last)}
            for source in (None, "import"):
                params = base | ({"source": source} if source else {})
                queries.append((f"/v1/sites/{code}/balance", params))
                for resolution in RESOLUTIONS:
                    queries.append(
                        (f"/v1/sites/{code}/readings", params | {"resolution": resolution})
                    )
    return queries


def telemetry(rng: random.Random) -> list[dict[str, Any]]:
    """Samples every 20 minutes of two pumps (a sensor sometimes missing), two sources."""
    rows = []
    first, last = WINDOWS[0]
    for code in ("P-KOL", "P-LHI"):
        ts = first
        while ts < last:
            for source in ("real", "simulated") if ts.hour % 3 == 0 else ("real",):
                rows.append(
                    {
                        "equipment": code,
                        "ts": ts.isoformat(),
                        "source": source,
                        "flow_m3h": round(rng.uniform(0, 300), 3),
                        "pressure_bar": None if rng.random() < 0.2 else round(rng.uniform(1, 9), 2),
                        "vibration_mm_s": round(rng.uniform(0, 12), 2),
                    }
                )
            ts += timedelta(minutes=20)
    return rows


def _telemetry_periods() -> list[dict[str, str]]:
    out = []
    for code, site in (("P-KOL", "KOL"), ("P-LHI", "LHI")):
        for first, last in (((2026, 3, 7), (2026, 4, 1)), ((2026, 4, 3), (2026, 4, 7))):
            span = {"start": _local_midnight(site, *first), "end": _local_midnight(site, *last)}
            for source in (None, "simulated"):
                for resolution in ("hour", "day"):
                    params = span | {"resolution": resolution, "code": code}
                    out.append(params | ({"source": source} if source else {}))
    return out


def _read_telemetry(db: Ingest, params: dict[str, str]) -> Any:
    query = {k: v for k, v in params.items() if k != "code"}
    return db.get(f"/v1/equipment/{params['code']}/telemetry", query)


def test_retention_drops_raw_readings_and_keeps_every_total(
    make_database: Callable[[str], str],
) -> None:
    db = _ingest(make_database, "retention")
    rng = random.Random(11)
    db.write(history(rng))
    for code, site in (("P-KOL", "KOL"), ("P-LHI", "LHI")):
        body = {"code": code, "site": site, "name": code, "kind": "pump"}
        assert db.client.post("/v1/equipment", json=body).status_code == 201
    samples = db.client.post("/v1/telemetry/batch", json=telemetry(rng))
    assert samples.status_code == 200 and samples.json()["quarantined"] == 0, samples.text
    db.run_job()
    queries = _whole_periods()
    before = [db.get(path, params) for path, params in queries]
    assert before[0]["n_readings"] > 0
    telemetry_before = [_read_telemetry(db, params) for params in _telemetry_periods()]
    # Summed as numeric: a float sum depends on the order rows arrive in, which dropping raw
    # readings may change; each value is rounded to the mWh, so numeric sums them exactly.
    reporting = (
        "SELECT count(*), sum(consumption_kwh::numeric), sum(deficit_kwh::numeric), "
        "sum(n_readings) FROM {} WHERE hour_start < '2026-04-12'"
    )
    hourly_views = ("reporting.hourly_balance", "reporting.hourly_balance_by_source")
    reported = [db.sql(reporting.format(view)) for view in hourly_views]
    assert reported[0][0] > 0

    now = datetime.now(UTC)
    days = (now - datetime(2026, 4, 9, tzinfo=UTC)).days
    report = db.run_job(ingest_raw_retention_days=days)

    horizon = (now - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert report.raw_horizon == horizon
    assert report.raw_dropped > 0
    assert db.sql("SELECT count(*) FROM ingest.reading WHERE ts < %s", horizon)[0] == 0
    assert db.sql("SELECT count(*) FROM ingest.reading")[0] > 0  # the autumn window stays
    after = [db.get(path, params) for path, params in queries]
    for (path, params), old, new in zip(queries, before, after, strict=True):
        assert new == old, (path, params)
    assert db.sql("SELECT count(*) FROM ingest.telemetry WHERE ts < %s", horizon)[0] == 0
    telemetry_after = [_read_telemetry(db, params) for params in _telemetry_periods()]
    assert telemetry_after == telemetry_before
    assert telemetry_after[0]["items"][0]["n_samples"] >= 3
    # The gateway's BI views read the roll-ups too.
    assert [db.sql(reporting.format(view)) for view in hourly_views] == reported

    # Behind the horizon (+ 1 h) a reading can no longer be changed: quarantined, with why.
    refused = db.write([reading("PAR", horizon + timedelta(minutes=30), 1.0, 0.0, "real", 3600)])
    assert refused["quarantined"] == 1
    assert "retention horizon" in refused["rejected"][0]["reason"]
    assert (
        db.write([reading("PAR", horizon + timedelta(hours=2), 1.0, 0.0, "real", 3600)])["accepted"]
        == 1
    )
    # A chunk left empty by another check (capacity) still answers.
    assert db.client.patch("/v1/sites/UTC", json={"capacity_kw": 1.0}).status_code == 200
    too_much = reading("UTC", horizon + timedelta(days=3), 1.0, 50.0, "real", 3600)
    assert db.write([too_much])["quarantined"] == 1
    old_sample = {"equipment": "P-KOL", "ts": horizon.isoformat(), "flow_m3h": 1.0}
    assert db.client.post("/v1/telemetry/batch", json=[old_sample]).json()["quarantined"] == 1
    # The hour buckets of a site with dropped raw readings are tied to its timezone.
    r = db.client.patch("/v1/sites/PAR", json={"timezone": "Europe/London"})
    assert r.status_code == 409, r.text
    # The accepted late reading is folded in; nothing more is dropped.
    answers = [db.get(path, params) for path, params in queries]
    assert db.run_job(ingest_raw_retention_days=days).raw_dropped == 0
    assert [db.get(path, params) for path, params in queries] == answers


def test_timezone_change_rebuckets_rollups(pair: tuple[Ingest, Ingest]) -> None:
    rolled, raw = pair  # same data in both, rolled up in the first
    rolled.run_job()
    for db in (rolled, raw):
        r = db.client.patch("/v1/sites/KOL", json={"timezone": "Asia/Kathmandu"})
        assert r.status_code == 200, r.text
    params = {"start": "2026-03-01T00:00:00+05:45", "end": "2026-04-01T00:00:00+05:45"}
    for resolution in ("hour", "day"):
        path, query = "/v1/sites/KOL/readings", params | {"resolution": resolution}
        assert rolled.get(path, query) == raw.get(path, query)  # raw until rebuilt
        rolled.run_job()
        assert rolled.get(path, query) == raw.get(path, query)
    assert rolled.sql("SELECT count(*) FROM ingest.rollup_invalidation")[0] == 0


def test_job_runs_in_one_replica_at_a_time(spare: Ingest) -> None:
    db = spare
    with psycopg.connect(db.url.replace("+psycopg", ""), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (rollup.JOB_LOCK,))
        assert rollup.run_locked(db.settings) is None  # another replica holds it
        other.execute("SELECT pg_advisory_unlock(%s)", (rollup.JOB_LOCK,))
    assert rollup.run_locked(db.settings) is not None


def test_service_runs_the_job_in_the_background(spare: Ingest) -> None:
    db = spare
    rolled_up = db.sql("SELECT count(*) FROM ingest.reading_hourly")[0]
    db.write([reading("KTM", datetime(2026, 3, 1, 5, tzinfo=UTC), 2.0, 1.0, "real", 3600)])
    app = build_app(db.settings.model_copy(update={"ingest_rollup_interval_s": 0.05}))
    deadline = time.monotonic() + 10
    with TestClient(app) as client:
        while db.sql("SELECT count(*) FROM ingest.reading_hourly")[0] < rolled_up + 2:
            assert time.monotonic() < deadline, "the background job never rolled up"
            time.sleep(0.05)
        metrics = client.get("/metrics").text
    assert "ingest_rollup_watermark_timestamp_seconds" in metrics
    assert not any(t.name == "rollup" for t in threading.enumerate())  # stopped with the app


def test_timescaledb_hypertable_when_available(spare: Ingest) -> None:
    db = spare
    with psycopg.connect(db.url.replace("+psycopg", ""), autocommit=True) as conn:
        if not timescale.available(conn.execute):
            pytest.skip("the timescaledb extension is not installed on this PostgreSQL server")
        assert timescale.enabled(conn.execute)  # migration 0003 made reading a hypertable
    db.write([reading("UTC", datetime(2026, 3, 2, 5, tzinfo=UTC), 2.0, 1.0, "real", 3600)])
    db.run_job(ingest_raw_retention_days=30)
    body = db.get(
        "/v1/sites/UTC/readings",
        {"start": "2026-03-02T00:00:00Z", "end": "2026-03-03T00:00:00Z", "resolution": "day"},
    )
    assert body["items"][0]["consumption_kwh"] == 2.0
