"""Benchmark of the ingest write path: JSON batches, against a raw COPY, and a CSV import.

Starts a throwaway embedded PostgreSQL and a real ingest process (uvicorn), then:

1. posts 100 JSON bodies of 10,000 readings (1,000,000 rows, 10 sites, 15-minute intervals;
   generated before the clock starts) from 2 concurrent clients, and times them end to end;
2. COPYs the same 1,000,000 rows with psycopg (binary, one stream, one commit) into a plain
   logged table like ``ingest.reading`` (same columns, defaults, checks, primary key and
   foreign key to ``ingest.site``), for the ratio of the two;
3. restarts the ingest process and uploads a 1,000,000-row CSV file (streamed from disk by
   httpx), reporting rows/s and the process's peak RSS (VmHWM) during the import.

Last line: one JSON object of the figures.

Run: .venv/bin/python bench/ingest.py
"""

from __future__ import annotations

import json
import os
import queue
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from _harness import PostgresCpu, Stack, cpu_s

SITES = 10
BODIES = 100
ROWS_PER_BODY = 10_000
CLIENTS = 2
WARMUP = ROWS_PER_BODY  # rows posted before timing, at earlier timestamps
STEP = timedelta(minutes=15)
FIRST = datetime(2020, 1, 1, tzinfo=UTC)
CAPACITY_KW = 1_000.0
COLUMNS = ("site_id", "ts", "source", "consumption_kwh", "production_kwh", "interval_s")
TYPES = ("int4", "timestamptz", "text", "float8", "float8", "int4")


def rows(site_codes: list[str]) -> list[tuple[str, datetime, float, float]]:
    """1,000,000 (site, ts, consumption, production) readings, seeded, in body order."""
    rng = random.Random(42)
    per_site = BODIES * ROWS_PER_BODY // SITES
    per_body = ROWS_PER_BODY // SITES
    out = []
    for body in range(BODIES):
        for code in site_codes:
            for k in range(body * per_body, (body + 1) * per_body):
                out.append(
                    (
                        code,
                        FIRST + k * STEP,
                        round(rng.uniform(5, 80), 3),
                        round(rng.uniform(0, 200), 3),
                    )
                )
    assert len(out) == per_site * SITES
    return out


def json_bodies(data: list[tuple[str, datetime, float, float]]) -> list[bytes]:
    """The readings as JSON batch bodies of ``ROWS_PER_BODY`` rows each."""
    bodies = []
    for start in range(0, len(data), ROWS_PER_BODY):
        batch = [
            {
                "site": code,
                "ts": ts.isoformat(),
                "consumption_kwh": c,
                "production_kwh": p,
                "interval_s": 900,
                "source": "real",
            }
            for code, ts, c, p in data[start : start + ROWS_PER_BODY]
        ]
        bodies.append(json.dumps(batch, separators=(",", ":")).encode())
    return bodies


def post_concurrently(url: str, headers: dict[str, str], bodies: list[bytes]) -> float:
    """Post every body from ``CLIENTS`` threads; return the wall time in seconds."""
    work: queue.Queue[bytes] = queue.Queue()
    for body in bodies:
        work.put(body)
    failures: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                r = http.post(
                    "/v1/readings/batch", content=body, headers={"Content-Type": "application/json"}
                )
                if r.status_code != 200 or r.json()["accepted"] != ROWS_PER_BODY:
                    failures.append(f"{r.status_code} {r.text[:300]}")

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{len(failures)} batches failed, e.g. {failures[0]}")
    return elapsed


def raw_copy(
    url: str, site_ids: dict[str, int], data: list[tuple[str, datetime, float, float]]
) -> float:
    """COPY the same rows into a table like ingest.reading; return the seconds it took."""
    tuples = [(site_ids[code], ts, "real", c, p, 900) for code, ts, c, p in data]
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS public.bench_reading")
        conn.execute("CREATE TABLE public.bench_reading (LIKE ingest.reading INCLUDING ALL)")
        conn.commit()
        start = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                f"COPY public.bench_reading ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(list(TYPES))
            for row in tuples:
                copy.write_row(row)
        conn.commit()
        return time.perf_counter() - start


def write_csv(path: Path, data: list[tuple[str, datetime, float, float]]) -> None:
    """The readings as an import file (source defaults to ``import``: new keys)."""
    with path.open("w", encoding="utf-8") as f:
        f.write("site,ts,consumption_kwh,production_kwh,interval_s\n")
        for code, ts, c, p in data:
            f.write(f"{code},{ts.isoformat()},{c},{p},900\n")


def memory_kb(pid: int, field: str) -> int:
    """A ``VmRSS`` / ``VmHWM`` figure of a process, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main() -> None:
    # The write path alone: the roll-up job would otherwise fold the million readings of the
    # JSON phase in while the CSV phase runs (~13 us of PostgreSQL CPU per reading, measured by
    # bench/query.py as rollup_s). Each write still records its roll-up invalidation.
    with Stack.create("ingest", INGEST_ROLLUP_INTERVAL_S="0") as stack:
        run(stack)


def run(stack: Stack) -> None:
    url, tmp = stack.url, stack.tmp
    codes = [f"B{i:02d}" for i in range(SITES)]
    with psycopg.connect(url) as conn:
        site_ids = {
            code: conn.execute(
                "INSERT INTO ingest.site (code, name, timezone, capacity_kw) "
                "VALUES (%s, %s, 'Europe/Paris', %s) RETURNING id",
                (code, f"Bench {code}", CAPACITY_KW),
            ).fetchone()[0]  # type: ignore[index]
            for code in codes
        }
    pg_cpu = PostgresCpu(tmp / "pg")
    headers = stack.service_headers("operator")
    print(f"generating {BODIES} bodies of {ROWS_PER_BODY} readings ...", flush=True)
    data = rows(codes)
    bodies = json_bodies(data)
    print(f"  {sum(map(len, bodies)) / 2**20:.0f} MB of JSON", flush=True)

    ingest = stack.start("ingest")["ingest"]
    try:
        # Warm-up (not timed): imports, adapters, connections; keys outside the timed data.
        warm = [
            (c, FIRST - (k + 1) * STEP, 1.0, 0.0) for k in range(WARMUP // SITES) for c in codes
        ]
        post_concurrently(ingest.url, headers, json_bodies(warm))
        pid = ingest.pid
        cpu0 = cpu_s(pid), pg_cpu(), time.process_time()
        elapsed = post_concurrently(ingest.url, headers, bodies)
        json_cpu = cpu_s(pid) - cpu0[0], pg_cpu() - cpu0[1], time.process_time() - cpu0[2]
        readings_per_s = len(data) / elapsed
        json_peak_mb = memory_kb(pid, "VmHWM") / 1024
    finally:
        ingest.stop()
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM ingest.reading WHERE source = 'real'"
        ).fetchone()
    assert stored is not None and stored[0] == len(data) + WARMUP, stored
    print(
        f"JSON batches: {len(data):,} readings in {elapsed:.2f} s from {CLIENTS} clients: "
        f"{readings_per_s:,.0f} readings/s (ingest peak RSS {json_peak_mb:.0f} MB)\n"
        f"  CPU seconds: ingest {json_cpu[0]:.1f}, PostgreSQL {json_cpu[1]:.1f}, "
        f"clients {json_cpu[2]:.1f} (of {elapsed * (os.cpu_count() or 1):.1f} on "
        f"{os.cpu_count()} cores)",
        flush=True,
    )

    cpu1 = pg_cpu(), time.process_time()
    copy_s = raw_copy(url, site_ids, data)
    copy_cpu = pg_cpu() - cpu1[0], time.process_time() - cpu1[1]
    copy_per_s = len(data) / copy_s
    print(
        f"raw COPY (binary, 1 stream, logged table LIKE ingest.reading: same PK and checks): "
        f"{copy_s:.2f} s: {copy_per_s:,.0f} rows/s; ratio {readings_per_s / copy_per_s:.2f}\n"
        f"  CPU seconds: PostgreSQL {copy_cpu[0]:.1f}, client {copy_cpu[1]:.1f} "
        "(building the tuples is not timed)",
        flush=True,
    )

    csv_path = tmp / "readings.csv"
    write_csv(csv_path, data)
    ingest = stack.start("ingest")["ingest"]  # a fresh process: its peak RSS is the import's
    try:
        pid = ingest.pid
        idle_mb = memory_kb(pid, "VmRSS") / 1024
        with csv_path.open("rb") as f, httpx.Client(timeout=900) as http:
            cpu2 = cpu_s(pid), pg_cpu()
            start = time.perf_counter()
            r = http.post(
                f"{ingest.url}/v1/readings/import",
                headers=headers,
                files={"file": ("readings.csv", f, "text/csv")},
            )
            csv_s = time.perf_counter() - start
            csv_cpu = cpu_s(pid) - cpu2[0], pg_cpu() - cpu2[1]
        result: dict[str, Any] = r.json()
        if r.status_code != 200 or result["accepted"] != len(data):
            raise RuntimeError(f"CSV import failed: {r.status_code} {r.text[:500]}")
        csv_peak_mb = memory_kb(pid, "VmHWM") / 1024
    finally:
        ingest.stop()
    csv_mb = csv_path.stat().st_size / 2**20
    csv_per_s = len(data) / csv_s
    print(
        f"CSV import: {len(data):,} rows ({csv_mb:.0f} MB) in {csv_s:.2f} s: {csv_per_s:,.0f} "
        f"rows/s; ingest RSS {idle_mb:.0f} MB idle, {csv_peak_mb:.0f} MB peak\n"
        f"  CPU seconds: ingest {csv_cpu[0]:.1f}, PostgreSQL {csv_cpu[1]:.1f}",
        flush=True,
    )
    figures = {
        "readings_per_s": round(readings_per_s),
        "copy_readings_per_s": round(copy_per_s),
        "ratio_to_copy": round(readings_per_s / copy_per_s, 3),
        "csv_rows_per_s": round(csv_per_s),
        "csv_peak_rss_mb": round(csv_peak_mb, 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
