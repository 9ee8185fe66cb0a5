"""Hourly roll-ups of readings, kept exact, and the raw-data retention that relies on them.

Design (the continuous-aggregate pattern, in plain PostgreSQL so TimescaleDB runs it too):

* ``ingest.reading_hourly`` holds, per site, source (and ``'*'``: the source-precedence pick
  the reads use without a source filter) and **site-zone hour**, the numeric (exact) sums,
  count and first / last timestamp of the raw readings. The bucket of a reading is
  ``date_trunc('hour', ts)`` in the site's zone: the instant its local hour starts, so zones
  with 30- or 45-minute offsets (India, Nepal, Chatham) get their own hour boundaries, and every
  local day, week and month is a whole number of these buckets. A site's zone may only change
  while its raw readings are all still kept (the API refuses otherwise).
* A background job (one replica at a time: session advisory lock ``JOB_LOCK``) materialises
  the buckets below a **watermark** that trails the clock by an hour, a month per transaction.
* Every write of readings inserts one ``rollup_invalidation`` row per site it touched (first
  and last ``ts``), whatever the watermark, in the write's own transaction: cheap (one row per
  batch per site), and free of races with the job. The job re-materialises the buckets those
  rows cover below the watermark and deletes the rows it has seen.
* Reads use a roll-up bucket only when it lies below the watermark **and** one hour before
  the site's earliest pending invalidation; everything else is read raw, in the same
  statement (services/ingest/queries.py). A late write is therefore in the next answer.
* Retention (``INGEST_RAW_RETENTION_DAYS`` > 0): the job moves the **write horizon** to the
  UTC day N days back (never above the watermark) under the exclusive ``WRITE_LOCK``, which
  every readings write holds shared: in-flight writes finish first, later ones refuse rows
  older than horizon + 1 h (their bucket could be one whose raw readings are gone). It then
  folds the pending invalidations in, rolls up the telemetry hours that are about to go
  (``telemetry_hourly``: they can no longer change, so telemetry needs no watermark), and
  deletes raw readings and telemetry whose bucket starts before the horizon (on TimescaleDB,
  whole chunks first with ``drop_chunks``). Roll-ups are never deleted; buckets below the raw
  horizon are never re-materialised.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from fastapi import FastAPI
from prometheus_client import Counter, Gauge
from psycopg import errors as pg_errors

from services.ingest import queries, timescale
from services.ingest.config import IngestSettings

log = logging.getLogger("spe.ingest.rollup")

# Arbitrary constants (the migrations lock is 0x5BE_0001).
JOB_LOCK = 0x5BE_1001
WRITE_LOCK = 0x5BE_1002
HOUR = timedelta(hours=1)
# The watermark trails the clock: the current hour is still filling up.
LAG = timedelta(hours=1)
# One transaction materialises at most this much time for every site.
STEP = timedelta(days=31)
# Invalidations folded in per transaction.
INVALIDATION_BATCH = 10_000
# The retention step waits at most this long for in-flight writes, then tries next run. New
# writes queue behind its waiting lock meanwhile: this bounds that stall (once a day, when
# the horizon moves).
HORIZON_LOCK_TIMEOUT = "2s"

RUNS = Counter("ingest_rollup_runs_total", "Roll-up job runs by outcome", ["outcome"])
WATERMARK = Gauge(
    "ingest_rollup_watermark_timestamp_seconds",
    "Hours before this instant are served from roll-ups (as last seen by this process's job)",
)
RAW_HORIZON = Gauge(
    "ingest_raw_horizon_timestamp_seconds",
    "Raw readings whose hour starts before this instant have been dropped (0: none)",
)

_SOURCE_RANK = "CASE x.source WHEN 'real' THEN 0 WHEN 'import' THEN 1 ELSE 2 END"

# Buckets K of each (site, klo, khi) with klo <= K < khi, rebuilt from the raw readings
# (K <= ts < K + 1 h). The picked ('*') rows take one reading per ts by source precedence,
# exactly as the reads do.
_DELETE = """
    DELETE FROM ingest.reading_hourly h
    USING unnest(%(site_ids)s::int[], %(los)s::timestamptz[], %(his)s::timestamptz[])
          AS r(site_id, klo, khi)
    WHERE h.site_id = r.site_id AND h.hour >= r.klo AND h.hour < r.khi
"""
_MATERIALISE = f"""
    WITH x AS (
        SELECT y.* FROM (
            -- One site per statement, the transaction's TimeZone set to its zone. Each reading
            -- converted to numeric once (both sums below read this materialised CTE).
            SELECT x.site_id, x.ts, x.source, CAST(x.consumption_kwh AS numeric) AS c,
                   CAST(x.production_kwh AS numeric) AS p, date_trunc('hour', x.ts) AS hour,
                   r.klo, r.khi
            FROM unnest(%(site_ids)s::int[], %(los)s::timestamptz[], %(his)s::timestamptz[])
                 AS r(site_id, klo, khi)
            JOIN LATERAL (
                SELECT * FROM ingest.reading x
                WHERE x.site_id = r.site_id AND x.ts >= r.klo
                  AND x.ts < r.khi + interval '1 hour'
                ORDER BY x.ts
            ) x ON true
            OFFSET 0  -- computes each hour once, not again in the filter below
        ) y
        WHERE y.hour >= y.klo AND y.hour < y.khi
    ), picked AS (
        SELECT DISTINCT ON (x.site_id, x.ts) x.*
        FROM x ORDER BY x.site_id, x.ts, {_SOURCE_RANK}
    )
    INSERT INTO ingest.reading_hourly (site_id, source, hour, consumption_kwh, production_kwh,
        n_readings, first_ts, last_ts, bucket_json)
    SELECT a.*, CAST(row_to_json(j) AS text)
    FROM (
        SELECT site_id, source, hour, sum(c) AS c, sum(p) AS p, count(*) AS n, min(ts), max(ts)
        FROM x GROUP BY site_id, source, hour
        UNION ALL
        SELECT site_id, '*', hour, sum(c), sum(p), count(*), min(ts), max(ts)
        FROM picked GROUP BY site_id, hour
    ) a
    -- The bucket as the readings API renders it (the transaction's TimeZone is the site's).
    CROSS JOIN LATERAL (
        SELECT {queries.bucket_row("g")} FROM (SELECT a.hour AS ts, a.c, a.p, a.n) g
    ) j
"""

_SENSORS = ("flow_m3h", "pressure_bar", "vibration_mm_s", "temperature_c")
_SENSOR_ROLLUPS = ", ".join(f"count({s}), sum({s}::numeric), max({s})" for s in _SENSORS)
# Telemetry hours klo <= K < khi of every piece of equipment, rolled up just before retention
# drops their raw samples (writes there are refused by then: these hours never change again).
_TELEMETRY_ROLLUP = f"""
    WITH x AS (
        SELECT x.*, date_trunc('hour', x.ts, s.timezone) AS hour
        FROM ingest.equipment q
        JOIN ingest.site s ON s.id = q.site_id
        JOIN LATERAL (
            SELECT * FROM ingest.telemetry x
            WHERE x.equipment_id = q.id AND x.ts >= %(klo)s
              AND x.ts < %(khi)s + interval '1 hour'
            ORDER BY x.ts
        ) x ON true
        WHERE date_trunc('hour', x.ts, s.timezone) >= %(klo)s
          AND date_trunc('hour', x.ts, s.timezone) < %(khi)s
    ), picked AS (
        SELECT DISTINCT ON (x.equipment_id, x.ts) x.*
        FROM x ORDER BY x.equipment_id, x.ts, {_SOURCE_RANK}
    )
    INSERT INTO ingest.telemetry_hourly (equipment_id, source, hour, n_samples,
        {", ".join(f"{s}_n, {s}_sum, {s}_max" for s in _SENSORS)})
    SELECT equipment_id, source, hour, count(*), {_SENSOR_ROLLUPS}
    FROM x GROUP BY equipment_id, source, hour
    UNION ALL
    SELECT equipment_id, '*', hour, count(*), {_SENSOR_ROLLUPS}
    FROM picked GROUP BY equipment_id, hour
"""


@dataclass(frozen=True)
class State:
    watermark: datetime | None  # None: nothing materialised yet
    write_horizon: datetime | None
    raw_horizon: datetime | None


@dataclass
class Report:
    """What one run did."""

    invalidations: int = 0
    hours_advanced: int = 0
    raw_dropped: int = 0
    watermark: datetime | None = None
    raw_horizon: datetime | None = None


Range = tuple[int, datetime, datetime]  # (site_id, klo, khi): buckets klo <= K < khi


def read_state(conn: psycopg.Connection[Any]) -> State:
    """The watermark and horizons (None where still -infinity)."""
    row = conn.execute(
        "SELECT nullif(watermark, '-infinity'), nullif(write_horizon, '-infinity'), "
        "nullif(raw_horizon, '-infinity') FROM ingest.rollup_state"
    ).fetchone()
    assert row is not None, "ingest.rollup_state has no row: run the migrations"
    return State(*row)


def materialise(conn: psycopg.Connection[Any], ranges: Iterable[Range]) -> None:
    """Rebuild the roll-up buckets of ``ranges`` (non-overlapping per site) from raw readings.

    Call inside a transaction (the session's TimeZone is set locally, per site).
    """
    by_site: dict[int, list[Range]] = {}
    for r in ranges:
        by_site.setdefault(r[0], []).append(r)
    if not by_site:
        return
    zones = dict(
        conn.execute(
            "SELECT id, timezone FROM ingest.site WHERE id = ANY(%s)", (list(by_site),)
        ).fetchall()
    )
    for site_id, site_ranges in by_site.items():
        # A site at a time, in its zone: the stored bucket JSON shows the site's UTC offset.
        # (Local to the caller's transaction.)
        conn.execute("SELECT set_config('TimeZone', %s, true)", (zones[site_id],))
        params = {
            "site_ids": [r[0] for r in site_ranges],
            "los": [r[1] for r in site_ranges],
            "his": [r[2] for r in site_ranges],
        }
        conn.execute(_DELETE, params)
        conn.execute(_MATERIALISE, params)


def merge_ranges(ranges: Iterable[Range]) -> list[Range]:
    """Per site, overlapping or touching ranges merged into one."""
    merged: list[Range] = []
    for site_id, lo, hi in sorted(ranges):
        if merged and merged[-1][0] == site_id and lo <= merged[-1][2]:
            last = merged[-1]
            merged[-1] = (site_id, last[1], max(last[2], hi))
        else:
            merged.append((site_id, lo, hi))
    return merged


def fold_invalidations(conn: psycopg.Connection[Any]) -> int:
    """Re-materialise what pending invalidations cover below the watermark; delete them."""
    done = 0
    while True:
        with conn.transaction():
            state = read_state(conn)
            rows = conn.execute(
                "SELECT id, site_id, lo, hi FROM ingest.rollup_invalidation ORDER BY id LIMIT %s",
                (INVALIDATION_BATCH,),
            ).fetchall()
            if not rows:
                return done
            if state.watermark is not None:
                floor = state.raw_horizon or datetime.min.replace(tzinfo=UTC)
                # Readings in [lo, hi] sit in buckets lo - 1 h < K <= hi.
                wanted = (
                    (site_id, max(lo - HOUR, floor), min(hi + HOUR, state.watermark))
                    for _, site_id, lo, hi in rows
                )
                materialise(conn, merge_ranges(r for r in wanted if r[1] < r[2]))
            # Above the watermark nothing is materialised yet: the job's next step reads
            # these rows' readings anyway (they were committed before we saw the rows).
            conn.execute(
                "DELETE FROM ingest.rollup_invalidation WHERE id = ANY(%s)",
                ([r[0] for r in rows],),
            )
        done += len(rows)
        if len(rows) < INVALIDATION_BATCH:
            return done


def _site_ids(conn: psycopg.Connection[Any]) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM ingest.site ORDER BY id")]


def advance(conn: psycopg.Connection[Any], now: datetime) -> int:
    """Materialise every site's buckets up to ``now`` - 1 h (hour), a month per transaction."""
    target = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - LAG
    with conn.transaction():
        state = read_state(conn)
        watermark = state.watermark
        if watermark is None:
            # Start one hour before the first reading of any site (a bucket starts at most an
            # hour before its readings); index probes per site, no scan of the whole table.
            row = conn.execute(
                "SELECT min(f.first) FROM ingest.site s CROSS JOIN LATERAL "
                "(SELECT min(ts) AS first FROM ingest.reading x WHERE x.site_id = s.id) f"
            ).fetchone()
            first = row[0] if row else None
            if first is None:
                watermark = target
            else:
                hour = first.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
                watermark = min(hour - HOUR, target)
            # Writes committed meanwhile below it left invalidations: folded in next run.
            _set(conn, "watermark", watermark)
    hours = 0
    while watermark < target:
        upto = min(watermark + STEP, target)
        with conn.transaction():
            materialise(conn, ((s, watermark, upto) for s in _site_ids(conn)))
            _set(conn, "watermark", upto)
        hours += int((upto - watermark) / HOUR)
        watermark = upto
    return hours


def _set(conn: psycopg.Connection[Any], column: str, value: datetime) -> None:
    conn.execute(
        f"UPDATE ingest.rollup_state SET {column} = %s, updated_at = now()",  # noqa: S608
        (value,),
    )


# Raw tables retention empties: (table, owner key, the owners with their site's zone).
_RETAINED = (
    ("reading", "site_id", "SELECT id, timezone FROM ingest.site ORDER BY id"),
    (
        "telemetry",
        "equipment_id",
        "SELECT q.id, s.timezone FROM ingest.equipment q JOIN ingest.site s "
        "ON s.id = q.site_id ORDER BY q.id",
    ),
)


def retain(conn: psycopg.Connection[Any], days: int, now: datetime) -> int:
    """Drop raw readings and telemetry whose hour is over ``days`` days old; return how many."""
    if days <= 0:
        return 0
    state = read_state(conn)
    if state.watermark is None:
        return 0
    horizon = (now.astimezone(UTC) - timedelta(days=days)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    horizon = min(horizon, state.watermark)
    if state.raw_horizon is not None and horizon <= state.raw_horizon:
        return 0
    if state.write_horizon is None or horizon > state.write_horizon:
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL lock_timeout = '{HORIZON_LOCK_TIMEOUT}'")
                # Waits for in-flight writes of readings (they hold it shared until commit).
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                _set(conn, "write_horizon", horizon)
        except pg_errors.LockNotAvailable:
            log.warning("retention postponed: writes kept the write lock for too long")
            return 0
    # Late writes committed before the horizon moved are folded in while their raw is here.
    fold_invalidations(conn)
    dropped = 0
    floor = state.raw_horizon or datetime.min.replace(tzinfo=UTC)
    with conn.transaction():
        conn.execute(_TELEMETRY_ROLLUP, {"klo": floor, "khi": horizon})
        if timescale.enabled(conn.execute):
            for table in ("reading", "telemetry"):
                timescale.drop_chunks_before(conn.execute, table, horizon.isoformat())
        # Raw rows go only once their whole local hour (in their site's zone) is rolled up.
        for table, key, owners in _RETAINED:
            for owner_id, zone in conn.execute(owners).fetchall():
                cur = conn.execute(
                    f"DELETE FROM ingest.{table} x WHERE x.{key} = %s AND x.ts < %s "
                    "AND date_trunc('hour', x.ts, %s) < %s",
                    (owner_id, horizon + HOUR, zone, horizon),
                )
                dropped += cur.rowcount
        _set(conn, "raw_horizon", horizon)
    return dropped


def run_once(conn: psycopg.Connection[Any], settings: IngestSettings, now: datetime) -> Report:
    """One pass of the job on ``conn`` (autocommit on); the caller holds ``JOB_LOCK``."""
    report = Report()
    report.invalidations = fold_invalidations(conn)
    report.hours_advanced = advance(conn, now)
    report.raw_dropped = retain(conn, settings.ingest_raw_retention_days, now)
    state = read_state(conn)
    report.watermark, report.raw_horizon = state.watermark, state.raw_horizon
    if state.watermark is not None:
        WATERMARK.set(state.watermark.timestamp())
    if state.raw_horizon is not None:
        RAW_HORIZON.set(state.raw_horizon.timestamp())
    return report


def run_locked(settings: IngestSettings, now: datetime | None = None) -> Report | None:
    """Run the job unless another process is running it (then None)."""
    url = settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    # Autocommit: each step opens its own short transactions (``conn.transaction()``).
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (JOB_LOCK,)).fetchone()
        if not (row and row[0]):
            return None
        try:
            # Roll-ups are bucketed in each site's zone explicitly; this session's zone is moot.
            return run_once(conn, settings, now or datetime.now(UTC))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (JOB_LOCK,))


def _loop(settings: IngestSettings, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            report = run_locked(settings)
        except Exception:  # the database may be restarting: log and try again next time
            RUNS.labels("error").inc()
            log.exception("roll-up job failed; retrying in %ss", settings.ingest_rollup_interval_s)
        else:
            RUNS.labels("skipped" if report is None else "ok").inc()
            if report is not None and (
                report.invalidations or report.hours_advanced or report.raw_dropped
            ):
                log.info(
                    "roll-ups: %d invalidations folded, %d hours materialised, "
                    "%d raw readings dropped",
                    report.invalidations,
                    report.hours_advanced,
                    report.raw_dropped,
                )
        stop.wait(settings.ingest_rollup_interval_s)


@asynccontextmanager
async def rollup_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the roll-up job every INGEST_ROLLUP_INTERVAL_S seconds (0: never) in a thread."""
    settings: IngestSettings = app.state.settings
    if settings.ingest_rollup_interval_s <= 0:
        yield
        return
    stop = threading.Event()
    thread = threading.Thread(target=_loop, args=(settings, stop), name="rollup", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        # A run in progress finishes its transaction; a daemon thread never blocks exit.
        thread.join(timeout=5)
