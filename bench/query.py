"""Benchmark of the ingest read path: a site's year at hourly resolution, and its balance.

Starts a throwaway embedded PostgreSQL, loads 20 sites x 2 years of hourly readings with COPY,
starts a real ingest process, then times 200 HTTP requests of each kind (varying the site).
The same SQL run directly through psycopg is timed too, so the HTTP + serialisation overhead
shows: first before the hourly roll-ups exist (every bucket read from raw readings, ``*_sql_raw``),
then after the roll-up job has materialised them (``rollup_s``), as the service runs it.
Last line: one JSON object of the figures.

Run: .venv/bin/python bench/query.py
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from _harness import SECRET, Stack
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect

from services.ingest import queries, rollup
from services.ingest.config import IngestSettings

SITES = 20
DAYS = 731  # 2024-01-01 .. 2025-12-31, 17,544 hours per site
FIRST = datetime(2024, 1, 1, tzinfo=UTC)
REQUESTS = 200
WARMUP = 20
ZONES = ("Europe/Paris", "Asia/Kolkata", "America/New_York", "UTC", "Australia/Sydney")
YEAR = {"start": "2025-01-01T00:00:00+00:00", "end": "2026-01-01T00:00:00+00:00"}


def load(url: str) -> int:
    """Create the sites and COPY their hourly readings in; return the number of readings."""
    n = 0
    with psycopg.connect(url) as conn:
        site_ids = [
            conn.execute(
                "INSERT INTO ingest.site (code, name, timezone, capacity_kw) "
                "VALUES (%s, %s, %s, 500) RETURNING id",
                (f"B{i:02d}", f"Bench {i}", ZONES[i % len(ZONES)]),
            ).fetchone()[0]  # type: ignore[index]
            for i in range(SITES)
        ]
        with conn.cursor().copy(
            "COPY ingest.reading (site_id, ts, source, consumption_kwh, production_kwh, "
            "interval_s) FROM STDIN"
        ) as copy:
            for site_id in site_ids:
                lines = []
                for h in range(DAYS * 24):
                    ts = FIRST + timedelta(hours=h)
                    hour = h % 24
                    consumption = 40 + 15 * math.sin((hour - 6) / 24 * 2 * math.pi) + site_id
                    production = max(0.0, 60 * math.sin((hour - 6) / 12 * math.pi))
                    lines.append(
                        f"{site_id}\t{ts.isoformat()}\treal\t{consumption:.3f}\t"
                        f"{production:.3f}\t3600\n"
                    )
                copy.write("".join(lines))
                n += len(lines)
        conn.commit()
        conn.execute("ANALYZE ingest.reading")
        conn.execute("ANALYZE ingest.site")
    return n


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    """p50 and p99 in ms (nearest-rank on the sorted samples)."""
    s = sorted(samples_ms)
    p99 = s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]
    return round(statistics.median(s), 2), round(p99, 2)


def timed(call: Callable[[int], Any]) -> list[float]:
    """Run call(i) WARMUP times untimed, then REQUESTS times timed; return ms per call."""
    for i in range(WARMUP):
        call(i)
    out = []
    for i in range(REQUESTS):
        t0 = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def site_code(i: int) -> str:
    return f"B{i % SITES:02d}"


def main() -> None:
    with Stack.create("query") as stack:
        run(stack)


def run(stack: Stack) -> None:
    url = stack.url
    t0 = time.perf_counter()
    n = load(url)
    print(f"loaded {n} readings ({SITES} sites x {DAYS} days) in {time.perf_counter() - t0:.1f}s")

    # The very SQL the service runs, compiled to psycopg's placeholders, for the baseline:
    # the site lookup (which sets the connection's TimeZone), then the data statement.
    dialect = psycopg_dialect()
    site_sql = str(queries.SITE.compile(dialect=dialect))
    readings_sql = str(queries.READINGS["hour", False].compile(dialect=dialect))
    balance_sql = str(queries.BALANCE[False].compile(dialect=dialect))
    start, end = datetime.fromisoformat(YEAR["start"]), datetime.fromisoformat(YEAR["end"])

    with psycopg.connect(url) as conn:

        def direct(sql: str, i: int, **extra: Any) -> list[Any]:
            site_id, tz, _ = conn.execute(site_sql, {"code": site_code(i)}).fetchone()  # type: ignore[misc]
            params = {"entity_id": site_id, "tz": tz, "start": start, "end": end, **extra}
            rows = conn.execute(sql, {"rollup_source": "*", **params}).fetchall()
            conn.commit()
            return rows

        def explain() -> None:
            plan_params = {"entity_id": 1, "start": start, "end": end, "field": "hour"}
            plan = conn.execute(
                "EXPLAIN (ANALYZE, BUFFERS) " + readings_sql, {"rollup_source": "*", **plan_params}
            ).fetchall()
            conn.commit()
            print("EXPLAIN ANALYZE of the hourly readings statement:")
            for (line,) in plan:
                print("   ", line)

        raw_readings = timed(lambda i: direct(readings_sql, i, field="hour"))
        raw_balance = timed(lambda i: direct(balance_sql, i))
        t0 = time.perf_counter()
        report = rollup.run_locked(IngestSettings(database_url=url, secret_key=SECRET))
        rollup_s = round(time.perf_counter() - t0, 2)
        assert report is not None and report.hours_advanced > 0
        print(f"roll-up job: {report.hours_advanced} hours materialised in {rollup_s}s")
        conn.execute("ANALYZE ingest.reading_hourly")
        conn.commit()
        explain()
        direct_readings = timed(lambda i: direct(readings_sql, i, field="hour"))
        direct_balance = timed(lambda i: direct(balance_sql, i))

    ingest = stack.start("ingest")["ingest"]
    headers = stack.service_headers("viewer")
    with httpx.Client(base_url=ingest.url, headers=headers, timeout=30) as http:
        first = http.get(f"/v1/sites/{site_code(0)}/readings", params={**YEAR})
        first.raise_for_status()
        items = first.json()["items"]
        assert len(items) == 8760, f"expected 8760 hourly buckets, got {len(items)}"
        print(f"readings response: {len(items)} buckets, {len(first.content)} bytes")

        def readings(i: int) -> None:
            r = http.get(f"/v1/sites/{site_code(i)}/readings", params={**YEAR})
            r.raise_for_status()

        def balance(i: int) -> None:
            r = http.get(f"/v1/sites/{site_code(i)}/balance", params={**YEAR})
            r.raise_for_status()

        http_readings = timed(readings)
        http_balance = timed(balance)

    figures: dict[str, float] = {}
    for name, samples in (
        ("readings", http_readings),
        ("balance", http_balance),
        ("readings_sql", direct_readings),
        ("balance_sql", direct_balance),
        ("readings_sql_raw", raw_readings),
        ("balance_sql_raw", raw_balance),
    ):
        p50, p99 = percentiles(samples)
        figures[f"{name}_p50_ms"], figures[f"{name}_p99_ms"] = p50, p99
        # The fastest request: what the path costs when no other process takes the CPU.
        figures[f"{name}_min_ms"] = best = round(min(samples), 2)
        print(
            f"{name:>14}: p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   min {best:7.2f} ms"
            f"   ({len(samples)} requests)"
        )
    figures["rollup_s"] = rollup_s
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
