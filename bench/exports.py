"""Benchmark of the gateway's certified exports, with the services as real processes.

Starts a throwaway embedded PostgreSQL, COPYs ``BENCH_YEARS`` (default 3) years of
15-minute readings of one site, starts ingest, alerts and the gateway under uvicorn, then
measures through the gateway:

- the raw CSV export of the whole range (streamed window by window): rows/s, MB/s, time to
  the first byte, and the gateway's resident memory at its peak during the export compared
  with a one-month export (bounded memory means the two are close);
- the hourly CSV of the whole range;
- the Excel and PDF reports over 366 days (hourly rows, daily totals, incidents).

Last line: {"csv_raw_rows", "csv_raw_rows_per_s", "csv_raw_mb_per_s", "csv_first_byte_ms",
"csv_hour_s", "rss_month_mb", "rss_years_mb", "xlsx_year_s", "pdf_year_s", "xlsx_kb",
"pdf_kb"}.

Run: .venv/bin/python bench/exports.py
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402
import psycopg  # noqa: E402

from services.common.migrations import upgrade_all  # noqa: E402
from services.common.stack import (  # noqa: E402
    create_database,
    embedded_postgres,
    free_port,
    service_env,
    start_services,
)

YEARS = int(os.environ.get("BENCH_YEARS", "3"))
FIRST = datetime(2023, 1, 1, tzinfo=UTC)
SECRET = "bench-secret-not-for-production-0123456789"
ADMIN_PASSWORD = "bench admin passphrase"
SITE = "X01"


def load(url: str) -> int:
    """The site and its 15-minute readings, COPYed in; the number of readings."""
    n = YEARS * 365 * 96
    with psycopg.connect(url) as conn:
        site_id = conn.execute(
            "INSERT INTO ingest.site (code, name, timezone, capacity_kw) "
            "VALUES (%s, 'Export bench', 'Europe/Paris', 500) RETURNING id",
            (SITE,),
        ).fetchone()[0]  # type: ignore[index]
        with conn.cursor().copy(
            "COPY ingest.reading (site_id, ts, source, consumption_kwh, production_kwh, "
            "interval_s) FROM STDIN"
        ) as copy:
            for q in range(n):
                hour = (q // 4) % 24
                consumption = 10 + 4 * math.sin((hour - 6) / 24 * 2 * math.pi)
                production = max(0.0, 15 * math.sin((hour - 6) / 12 * math.pi))
                ts = (FIRST + timedelta(minutes=15 * q)).isoformat()
                copy.write(f"{site_id}\t{ts}\treal\t{consumption:.3f}\t{production:.3f}\t900\n")
        conn.commit()
        conn.execute("ANALYZE ingest.reading")
    return n


class PeakRss:
    """Samples a process's resident memory every 20 ms while in a ``with`` block."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()


def csv_export(
    http: httpx.Client, start: datetime, end: datetime, resolution: str
) -> dict[str, float]:
    """Stream one CSV export; rows, bytes, seconds and time to the first byte."""
    params = {"site": SITE, "start": start.isoformat(), "end": end.isoformat(),
              "resolution": resolution}  # fmt: skip
    t0 = time.perf_counter()
    first_byte = None
    size = rows = 0
    with http.stream("GET", "/api/v1/exports/readings.csv", params=params) as r:
        r.raise_for_status()
        for chunk in r.iter_bytes():
            if first_byte is None:
                first_byte = time.perf_counter() - t0
            size += len(chunk)
            rows += chunk.count(b"\n")
    elapsed = time.perf_counter() - t0
    return {"rows": rows - 11, "bytes": size, "s": elapsed, "first_byte_s": first_byte or 0.0}


def report(http: httpx.Client, fmt: str, start: datetime) -> tuple[float, int]:
    params = {"site": SITE, "start": start.isoformat(),
              "end": (start + timedelta(days=366)).isoformat()}  # fmt: skip
    t0 = time.perf_counter()
    r = http.get(f"/api/v1/exports/report.{fmt}", params=params)
    r.raise_for_status()
    return time.perf_counter() - t0, len(r.content)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="spe-bench-exports-"))
    url = create_database(embedded_postgres(tmp / "pg", on_exit="delete"), "bench_exports")
    upgrade_all(url)
    t0 = time.perf_counter()
    n = load(url)
    print(f"loaded {n} readings in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    ports = {name: free_port() for name in ("GATEWAY", "INGEST", "FORECAST", "ALERTS")}
    env = service_env(
        url,
        SECRET_KEY=SECRET,
        ENVIRONMENT="test",
        LOG_JSON="false",
        LOG_LEVEL="WARNING",
        ADMIN_USERNAME="admin",
        ADMIN_PASSWORD=ADMIN_PASSWORD,
        ALERTS_EVAL_INTERVAL_S="0",
        REPORTS_POLL_S="0",
        HTTP_TIMEOUT_S="30",
        **{f"{name}_PORT": str(port) for name, port in ports.items()},
        **{f"{name}_URL": f"http://127.0.0.1:{port}" for name, port in ports.items()},
    )
    procs = start_services(env, ("ingest", "alerts", "gateway"), log_dir=tmp)
    gateway = procs[-1]
    assert gateway.proc is not None
    try:
        with httpx.Client(base_url=gateway.url, timeout=300) as http:
            login = http.post(
                "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
            )
            http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            end = FIRST + timedelta(days=YEARS * 365)
            csv_export(http, FIRST, FIRST + timedelta(days=7), "raw")  # warm-up
            with PeakRss(gateway.proc.pid) as month_rss:
                csv_export(http, FIRST, FIRST + timedelta(days=31), "raw")
            with PeakRss(gateway.proc.pid) as years_rss:
                raw = csv_export(http, FIRST, end, "raw")
            hourly = csv_export(http, FIRST, end, "hour")
            report(http, "xlsx", FIRST)  # warm-up (imports, fonts)
            xlsx_s, xlsx_bytes = report(http, "xlsx", FIRST + timedelta(days=366))
            pdf_s, pdf_bytes = report(http, "pdf", FIRST + timedelta(days=366))
    finally:
        for proc in reversed(procs):
            proc.stop()
    figures = {
        "csv_raw_rows": int(raw["rows"]),
        "csv_raw_rows_per_s": round(raw["rows"] / raw["s"]),
        "csv_raw_mb_per_s": round(raw["bytes"] / raw["s"] / 1e6, 2),
        "csv_first_byte_ms": round(raw["first_byte_s"] * 1000, 1),
        "csv_hour_s": round(hourly["s"], 2),
        "rss_month_mb": round(month_rss.peak / 1e6, 1),
        "rss_years_mb": round(years_rss.peak / 1e6, 1),
        "xlsx_year_s": round(xlsx_s, 2),
        "pdf_year_s": round(pdf_s, 2),
        "xlsx_kb": round(xlsx_bytes / 1024),
        "pdf_kb": round(pdf_bytes / 1024),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
