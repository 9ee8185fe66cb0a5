"""Benchmark of the gateway on the cockpit endpoints, against the same calls made to ingest.

Starts a throwaway embedded PostgreSQL, loads 10 sites x 60 days of hourly readings with COPY,
starts ingest and the gateway as real uvicorn processes (one worker each), logs in through the
gateway, then for ``BENCH_SECONDS`` (default 30) runs ``BENCH_CLIENTS`` (default 50) concurrent
clients alternating ``GET /api/v1/sites/{code}/balance`` and
``GET /api/v1/sites/{code}/readings?resolution=hour`` over one day (varying the site). The same
calls are then made directly to ingest (``/v1/...`` with a service-signed token) for as long,
so the gateway's overhead shows. The load generator runs on the same 2 cores as the services:
its own CPU is part of what is measured.

Last line: {"rps", "p50_ms", "p99_ms", "errors", "direct_rps", "direct_p50_ms", "direct_p99_ms"}.

Run: .venv/bin/python bench/gateway.py
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from services.common.auth import issue_token  # noqa: E402
from services.common.migrations import upgrade_all  # noqa: E402
from services.common.settings import ServiceSettings  # noqa: E402
from services.common.stack import (  # noqa: E402
    create_database,
    embedded_postgres,
    free_port,
    service_env,
    start_services,
)

SITES = 10
DAYS = 60
FIRST = datetime(2025, 1, 1, tzinfo=UTC)
SECONDS = float(os.environ.get("BENCH_SECONDS", "30"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "50"))
SECRET = "bench-secret-not-for-production-0123456789"
ADMIN_PASSWORD = "bench admin passphrase"


def load(url: str) -> int:
    """Create the sites and COPY their hourly readings in; return the number of readings."""
    n = 0
    with psycopg.connect(url) as conn:
        site_ids = [
            conn.execute(
                "INSERT INTO ingest.site (code, name, timezone, capacity_kw) "
                "VALUES (%s, %s, 'Europe/Paris', 500) RETURNING id",
                (f"G{i:02d}", f"Gateway bench {i}"),
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
                    hour = h % 24
                    consumption = 40 + 15 * math.sin((hour - 6) / 24 * 2 * math.pi) + site_id
                    production = max(0.0, 60 * math.sin((hour - 6) / 12 * math.pi))
                    ts = (FIRST + timedelta(hours=h)).isoformat()
                    lines.append(
                        f"{site_id}\t{ts}\treal\t{consumption:.3f}\t{production:.3f}\t3600\n"
                    )
                copy.write("".join(lines))
                n += len(lines)
        conn.commit()
        conn.execute("ANALYZE ingest.reading")
    return n


def day_query(i: int) -> dict[str, str]:
    day = FIRST + timedelta(days=1 + i % (DAYS - 2))
    return {"start": day.isoformat(), "end": (day + timedelta(days=1)).isoformat()}


def requests_for(prefix: str, i: int) -> tuple[str, dict[str, str]]:
    """The i-th request: balance and hourly readings alternate, the site varies."""
    site = f"G{(i // 2) % SITES:02d}"
    if i % 2 == 0:
        return f"{prefix}/sites/{site}/balance", day_query(i)
    return f"{prefix}/sites/{site}/readings", {**day_query(i), "resolution": "hour"}


async def run_load(base_url: str, prefix: str, headers: dict[str, str]) -> dict[str, Any]:
    """CLIENTS concurrent clients for SECONDS; latencies of every completed request."""
    latencies: list[float] = []
    errors: list[str] = []
    # Idle connections are dropped before uvicorn's 5 s keep-alive ends them, so a request is
    # never sent on a connection the server is closing (a client-side race, not a failure).
    limits = httpx.Limits(
        max_connections=CLIENTS, max_keepalive_connections=CLIENTS, keepalive_expiry=2
    )
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=30, limits=limits
    ) as http:
        for i in range(2 * CLIENTS):  # warm-up: connections, caches, plans
            path, params = requests_for(prefix, i)
            (await http.get(path, params=params)).raise_for_status()
        deadline = time.perf_counter() + SECONDS

        async def client(k: int) -> None:
            i = k
            while time.perf_counter() < deadline:
                path, params = requests_for(prefix, i)
                t0 = time.perf_counter()
                try:
                    r = await http.get(path, params=params)
                    if r.status_code != 200:
                        errors.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                latencies.append((time.perf_counter() - t0) * 1000)
                i += CLIENTS

        start = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(CLIENTS)))
        elapsed = time.perf_counter() - start
    s = sorted(latencies)
    return {
        "rps": round(len(s) / elapsed, 1),
        "p50_ms": round(statistics.median(s), 2),
        "p99_ms": round(s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)], 2),
        "errors": len(errors),
        "requests": len(s),
        "first_error": errors[0] if errors else None,
    }


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="spe-bench-gateway-"))
    url = create_database(embedded_postgres(tmp / "pg", on_exit="delete"), "spe_bench_gateway")
    upgrade_all(url)
    t0 = time.perf_counter()
    n = load(url)
    print(f"loaded {n} readings ({SITES} sites x {DAYS} days) in {time.perf_counter() - t0:.1f}s")
    ports = {name: free_port() for name in ("GATEWAY", "INGEST", "FORECAST", "ALERTS")}
    env = service_env(
        url,
        SECRET_KEY=SECRET,
        ENVIRONMENT="test",
        LOG_LEVEL="WARNING",
        ADMIN_USERNAME="admin",
        ADMIN_PASSWORD=ADMIN_PASSWORD,
        **{f"{name}_PORT": str(port) for name, port in ports.items()},
        **{f"{name}_URL": f"http://127.0.0.1:{port}" for name, port in ports.items()},
    )
    ingest, gateway = start_services(env, ("ingest", "gateway"), log_dir=tmp)
    try:
        login = httpx.post(
            f"{gateway.url}/api/v1/auth/login",
            json={"username": "admin", "password": ADMIN_PASSWORD},
            timeout=30,
        )
        login.raise_for_status()
        through = asyncio.run(
            run_load(
                gateway.url,
                "/api/v1",
                {"Authorization": f"Bearer {login.json()['access_token']}"},
            )
        )
        print(f"through the gateway: {through}")
        token = issue_token(
            ServiceSettings(secret_key=SECRET, environment="test"),
            subject="bench",
            role="viewer",
            token_type="access",
            ttl_s=3600,
        )
        direct = asyncio.run(run_load(ingest.url, "/v1", {"Authorization": f"Bearer {token}"}))
        print(f"direct to ingest:    {direct}")
    finally:
        gateway.stop()
        ingest.stop()
    print(
        json.dumps(
            {
                "rps": through["rps"],
                "p50_ms": through["p50_ms"],
                "p99_ms": through["p99_ms"],
                "errors": through["errors"],
                "direct_rps": direct["rps"],
                "direct_p50_ms": direct["p50_ms"],
                "direct_p99_ms": direct["p99_ms"],
                "clients": CLIENTS,
                "seconds": SECONDS,
            }
        )
    )


if __name__ == "__main__":
    main()
