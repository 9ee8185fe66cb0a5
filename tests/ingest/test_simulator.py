"""The data simulator: seeded, realistic shapes, labelled anomalies, degradation before failures,
DST-correct local time, rows the API accepts, and the whole path through the ingest API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from services.common.http import ServiceAuth
from services.common.migrations import upgrade_all
from services.common.settings import to_sqlalchemy_url
from services.common.stack import create_database, start_services
from services.ingest import writes
from services.ingest.config import IngestSettings
from services.ingest.models import AnomalyLabel, EquipmentEvent, Reading, Telemetry, Weather
from services.ingest.schemas import (
    AnomalyLabelIn,
    EquipmentEventIn,
    ReadingIn,
    TelemetryIn,
    WeatherIn,
)
from services.ingest.simulator.catalog import SITES, equipment_specs, site_specs
from services.ingest.simulator.client import (
    IngestClient,
    Totals,
    backfill,
    current_hour,
    run_live,
    seed_demo_if_empty,
    simulation_rows,
)
from services.ingest.simulator.model import (
    ANOMALY_FACTORS,
    ANOMALY_HOURS,
    HOUR_S,
    EquipmentSpec,
    Simulation,
    SimulationError,
    expected_load_kw,
    local_calendar,
    simulate,
    simulate_readings,
    simulate_telemetry,
    sun_elevation_sin,
    time_grid,
)
from tests.conftest import TEST_SECRET, process_env

LYON, MARSEILLE, REUNION = SITES[0], SITES[1], SITES[2]
WINTER = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


def _sim(days: int = 14, seed: int = 42, start: datetime = WINTER) -> Simulation:
    sites = site_specs(3)
    return simulate(sites, equipment_specs(sites), start, start + timedelta(days=days), seed=seed)


# --- determinism -----------------------------------------------------------------------------


def test_simulate_same_seed_gives_identical_data() -> None:
    a, b = _sim(seed=7), _sim(seed=7)

    for ra, rb in zip(a.readings, b.readings, strict=True):
        np.testing.assert_array_equal(ra.consumption_kwh, rb.consumption_kwh)
        np.testing.assert_array_equal(ra.production_kwh, rb.production_kwh)
    for ta, tb in zip(a.telemetry, b.telemetry, strict=True):
        np.testing.assert_array_equal(ta.vibration_mm_s, tb.vibration_mm_s)
    np.testing.assert_array_equal(a.weather[0].temperature_c, b.weather[0].temperature_c)
    assert a.events == b.events and a.anomalies == b.anomalies


def test_simulate_different_seed_gives_different_data() -> None:
    a, b = _sim(seed=7), _sim(seed=8)

    assert not np.allclose(a.readings[0].consumption_kwh, b.readings[0].consumption_kwh)
    assert not np.allclose(a.weather[0].temperature_c, b.weather[0].temperature_c)
    assert a.anomalies != b.anomalies


def test_simulate_values_do_not_depend_on_the_window() -> None:
    # Backfill in chunks, then live hour by hour: the same instants must get the same values.
    whole = _sim(days=10)
    part = _sim(days=2, start=WINTER + timedelta(days=3, hours=7))

    offset = 3 * 24 + 7
    for w, p in zip(whole.readings, part.readings, strict=True):
        np.testing.assert_allclose(p.consumption_kwh, w.consumption_kwh[offset : offset + 48])
        np.testing.assert_allclose(p.production_kwh, w.production_kwh[offset : offset + 48])
    for w, p in zip(whole.telemetry, part.telemetry, strict=True):
        np.testing.assert_allclose(
            p.temperature_c, w.temperature_c[offset : offset + 48], equal_nan=True
        )
    inside = [a for a in whole.anomalies if a.end_s > part.start_s and a.start_s < part.end_s]
    assert part.anomalies == inside


def test_simulate_quarter_hour_windows_give_each_hourly_sample_once() -> None:
    # Live mode with 15-minute readings posts 15-minute windows; weather and telemetry are
    # hourly and must still appear exactly once.
    sites = site_specs(1)
    equipment = equipment_specs(sites)
    edges = [WINTER + timedelta(minutes=15 * k) for k in range(9)]

    parts = [
        simulate(sites, equipment, a, b, seed=1, interval_s=900)
        for a, b in zip(edges, edges[1:], strict=False)
    ]
    whole = simulate(sites, equipment, edges[0], edges[-1], seed=1, interval_s=900)

    np.testing.assert_array_equal(
        np.concatenate([p.weather[0].ts for p in parts]), whole.weather[0].ts
    )
    np.testing.assert_array_equal(
        np.concatenate([p.telemetry[0].vibration_mm_s for p in parts]),
        whole.telemetry[0].vibration_mm_s,
    )
    assert sum(p.readings[0].ts.size for p in parts) == whole.readings[0].ts.size == 8


# --- shapes ----------------------------------------------------------------------------------


def test_readings_office_workday_mean_above_weekend_mean() -> None:
    start = datetime(2025, 5, 12, tzinfo=UTC)  # mild weeks: little heating or cooling
    r = simulate_readings(LYON, 42, _epoch(start), _epoch(start + timedelta(days=28)))
    _, daytype = local_calendar(r.ts, LYON.timezone, LYON.country_code)

    workday = r.expected_kwh[daytype == 0].mean()
    weekend = r.expected_kwh[daytype != 0].mean()

    assert workday > 1.8 * weekend


def test_readings_pv_only_site_produces_nothing_at_night_and_something_by_day() -> None:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    r = simulate_readings(REUNION, 42, _epoch(start), _epoch(start + timedelta(days=14)))
    sun_at_start = sun_elevation_sin(r.ts, REUNION.latitude, REUNION.longitude)
    sun_at_end = sun_elevation_sin(r.ts + HOUR_S, REUNION.latitude, REUNION.longitude)
    night = (sun_at_start < 0) & (sun_at_end < 0)
    noon = (sun_at_start > 0.7) & (sun_at_end > 0.7)

    assert night.sum() > 100 and noon.sum() > 20
    assert np.all(r.production_kwh[night] == 0.0)
    assert np.all(r.production_kwh[noon] > 0.05 * REUNION.capacity_kw)


def test_readings_some_hours_are_in_deficit_and_some_not() -> None:
    sim = _sim(days=28)

    for r in sim.readings:
        deficit = (r.consumption_kwh > r.production_kwh).mean()
        assert 0.05 < deficit < 0.95, r.site


def test_readings_colder_climate_consumes_more() -> None:
    # Same seed, so same noise: only the climate differs.
    cold = replace(LYON, mean_temp_c=LYON.mean_temp_c - 6)
    start, end = _epoch(WINTER), _epoch(WINTER + timedelta(days=14))

    mild_kwh = simulate_readings(LYON, 42, start, end).expected_kwh
    cold_kwh = simulate_readings(cold, 42, start, end).expected_kwh

    assert cold_kwh.sum() > 1.1 * mild_kwh.sum()
    assert np.all(cold_kwh >= mild_kwh - 1e-9)


def test_readings_colder_days_consume_more_within_one_series() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    sim = simulate([LYON], [], start, start + timedelta(days=120), seed=42)
    r, w = sim.readings[0], sim.weather[0]
    _, daytype = local_calendar(r.ts, LYON.timezone, LYON.country_code)
    days = r.ts.size // 24
    kwh = r.expected_kwh[: days * 24].reshape(days, 24).sum(axis=1)
    temp = w.temperature_c[: days * 24].reshape(days, 24).mean(axis=1)
    workdays = (daytype[: days * 24].reshape(days, 24) == 0).all(axis=1)

    corr = np.corrcoef(temp[workdays], kwh[workdays])[0, 1]

    assert corr < -0.5


def test_readings_quarter_hour_interval_has_quarter_energy() -> None:
    start, end = _epoch(WINTER), _epoch(WINTER + timedelta(days=7))

    hourly = simulate_readings(LYON, 42, start, end, HOUR_S)
    quarter = simulate_readings(LYON, 42, start, end, 900)

    assert quarter.ts.size == 4 * hourly.ts.size
    summed = quarter.expected_kwh.reshape(-1, 4).sum(axis=1)
    assert abs(summed.sum() / hourly.expected_kwh.sum() - 1) < 0.02


def test_readings_interval_not_dividing_the_hour_is_refused() -> None:
    with pytest.raises(SimulationError, match="divide 3600"):
        simulate_readings(LYON, 42, _epoch(WINTER), _epoch(WINTER) + 7 * HOUR_S, 700)


# --- anomalies -------------------------------------------------------------------------------


def test_anomaly_labels_match_the_injected_changes() -> None:
    sim = _sim(days=90)
    kinds = {a.kind for a in sim.anomalies}

    assert kinds == {"spike", "drop", "stuck"}
    for r in sim.readings:
        labelled = np.zeros(r.ts.size, dtype=bool)
        for a in sorted(r.anomalies, key=lambda a: a.start_s):
            inside = (r.ts >= a.start_s) & (r.ts < a.end_s)
            assert not (labelled & inside).any(), "anomalies overlap"
            labelled |= inside
            hours = (a.end_s - a.start_s) // HOUR_S
            assert ANOMALY_HOURS[a.kind][0] <= hours <= ANOMALY_HOURS[a.kind][1]
            if a.kind == "stuck":
                assert np.all(r.consumption_kwh[inside] == r.consumption_kwh[inside][0])
                assert r.consumption_kwh[inside][0] == pytest.approx(a.magnitude, abs=1e-3)
            else:
                lo, hi = ANOMALY_FACTORS[a.kind]
                assert lo <= a.magnitude <= hi
                ratio = r.consumption_kwh[inside] / r.expected_kwh[inside]
                np.testing.assert_allclose(ratio, a.magnitude)
        # Outside the labels the meter reads the truth: every change is labelled.
        np.testing.assert_array_equal(r.consumption_kwh[~labelled], r.expected_kwh[~labelled])


# --- equipment -------------------------------------------------------------------------------


def test_telemetry_degradation_precedes_each_warned_failure() -> None:
    pump = EquipmentSpec("T-PMP", LYON.code, "pump", "pump")
    start, end = _epoch(WINTER), _epoch(WINTER + timedelta(days=365))
    series, events, episodes = simulate_telemetry(pump, LYON, 42, start, end)
    warned = [e for e in episodes if e.onset_s is not None]
    failures = {ev.ts_s for ev in events if ev.kind == "failure"}
    repairs = {ev.ts_s for ev in events if ev.kind == "maintenance"}

    assert len(warned) >= 3
    for e in warned:
        before = (series.ts >= e.onset_s - 3 * 86_400) & (series.ts < e.onset_s)
        last_day = (series.ts >= e.failure_s - 86_400) & (series.ts < e.failure_s)
        after = (series.ts >= e.repaired_s) & (series.ts < e.repaired_s + 86_400)
        healthy = np.nanmean(series.vibration_mm_s[before])
        assert np.nanmean(series.vibration_mm_s[last_day]) > 2 * healthy
        assert (
            np.nanmean(series.temperature_c[last_day])
            > np.nanmean(series.temperature_c[before]) + 8
        )
        assert np.nanmean(series.vibration_mm_s[after]) < 1.3 * healthy  # reset by maintenance
        assert e.failure_s in failures and e.repaired_s in repairs and e.repaired_s > e.failure_s


def test_telemetry_some_failures_come_without_warning() -> None:
    start, end = _epoch(WINTER), _epoch(WINTER + timedelta(days=365))
    sudden = 0

    for eq in equipment_specs(site_specs(3)):
        site = next(s for s in SITES if s.code == eq.site)
        series, _, episodes = simulate_telemetry(eq, site, 42, start, end)
        healthy = np.nanmedian(series.vibration_mm_s)
        for e in (e for e in episodes if e.onset_s is None):
            sudden += 1
            last_day = (series.ts >= e.failure_s - 86_400) & (series.ts < e.failure_s)
            assert np.nanmean(series.vibration_mm_s[last_day]) < 1.5 * healthy

    assert sudden >= 3


def test_telemetry_has_some_missing_values_but_never_an_empty_row() -> None:
    sim = _sim(days=60)
    stacked = [
        np.column_stack([t.flow_m3h, t.pressure_bar, t.vibration_mm_s, t.temperature_c])
        for t in sim.telemetry
    ]

    pumps = [s for s, t in zip(stacked, sim.telemetry, strict=True) if "PMP" in t.equipment]
    assert sum(np.isnan(s[:, 2]).sum() for s in pumps) > 0
    assert all(not np.isnan(s).all(axis=1).any() for s in stacked)


# --- time zones ------------------------------------------------------------------------------


def test_dst_europe_paris_days_have_23_and_25_hours_and_load_follows_local_time() -> None:
    paris = ZoneInfo("Europe/Paris")
    start, end = datetime(2025, 3, 27, tzinfo=UTC), datetime(2025, 11, 1, tzinfo=UTC)
    r = simulate_readings(LYON, 42, _epoch(start), _epoch(end))
    local_days = [datetime.fromtimestamp(t, paris).date() for t in r.ts.tolist()]

    assert np.all(np.diff(r.ts) == HOUR_S)  # no gap, no duplicate in UTC
    assert local_days.count(datetime(2025, 3, 30).date()) == 23
    assert local_days.count(datetime(2025, 10, 26).date()) == 25
    # The office opens at the same local hour on both sides of each change: the steepest
    # relative rise of the load (no heating, so only the shape moves it) is at 07:00 local.
    no_weather = replace(LYON, heating_per_c=0.0, cooling_per_c=0.0)
    for day in (datetime(2025, 3, 28), datetime(2025, 3, 31), datetime(2025, 10, 27)):
        first = datetime(day.year, day.month, day.day, tzinfo=paris).astimezone(UTC)
        ts = time_grid(_epoch(first), _epoch(first) + 12 * HOUR_S, HOUR_S)
        kw = expected_load_kw(no_weather, 42, ts, HOUR_S)
        steepest = datetime.fromtimestamp(int(ts[1 + np.argmax(kw[1:] / kw[:-1])]), paris)
        assert steepest.hour == 7, day


def test_site_in_another_zone_uses_its_own_clock() -> None:
    start = datetime(2025, 6, 2, tzinfo=UTC)  # a Monday
    ts = time_grid(_epoch(start), _epoch(start) + 24 * HOUR_S, HOUR_S)

    hour, _ = local_calendar(ts, REUNION.timezone, REUNION.country_code)

    assert hour[0] == 4.0  # Indian/Reunion is UTC+4, no DST


# --- rows, and the path through the API ------------------------------------------------------


def test_simulation_rows_pass_the_api_schemas() -> None:
    rows = simulation_rows(_sim(days=30))
    schemas: dict[str, Any] = {
        "/v1/readings/batch": ReadingIn,
        "/v1/weather/batch": WeatherIn,
        "/v1/telemetry/batch": TelemetryIn,
        "/v1/equipment-events/batch": EquipmentEventIn,
        "/v1/anomaly-labels/batch": AnomalyLabelIn,
    }

    for path, schema in schemas.items():
        parsed = TypeAdapter(list[schema]).validate_json(json.dumps(rows[path]))
        assert len(parsed) == len(rows[path]) > 0, path
        assert {p.source for p in parsed} == {"simulated"}


def test_current_hour_is_aligned_and_not_in_the_future() -> None:
    now = datetime(2025, 7, 1, 10, 59, 59, 999, tzinfo=UTC)

    assert current_hour(now) == datetime(2025, 7, 1, 10, tzinfo=UTC)
    assert current_hour(now, 900) == datetime(2025, 7, 1, 10, 45, tzinfo=UTC)
    assert current_hour() <= datetime.now(UTC)


_HAS_WRITES = any(
    getattr(route, "path", "").endswith("/readings/batch") for route in writes.router.routes
)
needs_writes = pytest.mark.skipif(
    not _HAS_WRITES, reason="services/ingest/writes.py has no /v1/readings/batch route yet"
)


def _api(client: TestClient) -> IngestClient:
    settings = IngestSettings(secret_key=TEST_SECRET, environment="test")
    return IngestClient("http://testserver", ServiceAuth(settings, "simulator"), http=client)


def _count(session: Session, model: Any) -> int:
    return session.scalar(
        select(func.count()).select_from(model).where(model.source == "simulated")
    )


@needs_writes
def test_backfill_through_the_api_stores_everything_once(
    client: TestClient, session: Session
) -> None:
    sites = site_specs(2)
    equipment = equipment_specs(sites)
    end = current_hour()

    with _api(client) as api:
        first = backfill(api, sites, equipment, days=3, seed=5, end=end, chunk_days=1)
        again = backfill(api, sites, equipment, days=3, seed=5, end=end)

    assert (first.sites_created, first.equipment_created) == (2, len(equipment))
    assert (again.sites_created, again.equipment_created) == (0, 0)
    assert first.totals["readings"].accepted == 2 * 72
    assert all(t.quarantined == 0 for t in first.totals.values())
    assert _count(session, Reading) == 2 * 72
    assert _count(session, Weather) == 2 * 72
    assert _count(session, Telemetry) == len(equipment) * 72
    assert _count(session, EquipmentEvent) == first.totals.get("events", Totals()).accepted
    assert _count(session, AnomalyLabel) == first.totals.get("anomaly labels", Totals()).accepted
    last = session.scalar(select(func.max(Reading.ts)))
    assert last == end - timedelta(hours=1)


@needs_writes
def test_run_live_posts_the_intervals_completed_since_start(
    client: TestClient, session: Session
) -> None:
    sites = site_specs(1)
    start = current_hour() - timedelta(hours=5)

    with _api(client) as api:
        report = run_live(
            api,
            sites,
            [],
            seed=5,
            tick_s=0.01,
            speedup=1e9,
            start=start,
            max_ticks=2,
            echo=lambda _: None,
        )

    assert report.totals["readings"].accepted == 5
    assert _count(session, Reading) == 5


@pytest.fixture
def ingest_process(database_url: str) -> Iterator[dict[str, str]]:
    """A real ingest process on a database of its own (its writes commit); yields its env."""
    url = create_database(database_url, "spe_simulator_e2e")
    upgrade_all(url)
    env = process_env(
        url,
    )
    procs = start_services(env, names=("ingest",))
    try:
        yield env
    finally:
        for proc in procs:
            proc.stop()


@needs_writes
@pytest.mark.e2e
def test_seed_demo_if_empty_seeds_once_through_a_real_ingest(
    ingest_process: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    env = ingest_process

    hour_before, started = current_hour(), time.perf_counter()
    seed_demo_if_empty(env["INGEST_URL"], env)
    seconds = time.perf_counter() - started
    first = capsys.readouterr().out
    seed_demo_if_empty(env["INGEST_URL"], env)
    second = capsys.readouterr().out

    assert first.startswith("demo data: 3 sites, 10 equipment, 90 days"), first
    assert "quarantined" not in first
    assert second == ""
    assert seconds < 30
    engine = create_engine(to_sqlalchemy_url(env["DATABASE_URL"]))
    with engine.connect() as conn:
        readings = conn.execute(text("SELECT count(*), max(ts) FROM ingest.reading")).one()
    engine.dispose()
    assert readings[0] == 3 * 90 * 24
    # The last interval ends at the hour the seeding ran in (which may have just ticked over).
    assert readings[1] + timedelta(hours=1) in {hour_before, current_hour()}
