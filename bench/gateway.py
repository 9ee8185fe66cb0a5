"""Benchmark of the gateway on the cockpit endpoints, against the same calls made to ingest.

Starts a throwaway embedded PostgreSQL, loads 10 sites x 60 days of hourly readings with COPY,
starts ingest and the gateway as real uvicorn processes (``GATEWAY_WORKERS`` /
``INGEST_WORKERS`` workers each, as configured), logs in through the gateway, then for
``BENCH_SECONDS`` (default 30) runs ``BENCH_CLIENTS`` (default 50) concurrent clients
sending ``GET /api/v1/sites/{code}/balance`` and
``GET /api/v1/sites/{code}/readings?resolution=hour`` over one day (the endpoint, the site and
the day vary with each request). The same calls are then made directly to ingest
(``/v1/...`` with a service-signed token) for as long, so the gateway's overhead shows: that
direct run is the baseline.

Each measured run follows ``BENCH_SETTLE_S`` (default 5) seconds of the same load, not counted,
so it measures the steady state: connection pools open, PostgreSQL's buffers and the gateway's
read cache filled. The gateway's first seconds, cache filling, are printed as well
(``cold_*`` in the last line).

The gateway's read cache (``GATEWAY_READ_CACHE_S``, default 5 s) is on, as deployed: the
run spreads its requests over 580 distinct URLs (10 sites x 29 days x 2 endpoints, picked by a
hash of the request's number: ``url_of``), so a URL comes back every 580 / rate seconds on
average: once the gateway answers more than ~116 requests/s, within the TTL, and most answers
come from memory; the share is printed (``read_cache_hit_ratio``), with the number of entries
refreshed ahead in the background (a hit in an entry's last quarter; no caller waits for it).
The same load then runs through a second gateway started with ``GATEWAY_READ_CACHE_S=0``, so
every read goes to ingest: ``uncached_*`` in the last line.

The load generator runs on the same 2 cores as the services: its own CPU is part of what is
measured. Wall-clock figures on a shared machine are noisy, so the CPU each process spent per
request (gateway, ingest, PostgreSQL, the load generator) is printed too, with the load average.

Last line: {"rps", "p50_ms", "p99_ms", "errors", "direct_rps", "direct_p50_ms",
"direct_p99_ms", ..., "uncached_rps", "uncached_p50_ms", "uncached_p99_ms", ...}.

Run: .venv/bin/python bench/gateway.py (``GATEWAY_READ_CACHE_S=2 .venv/bin/python bench/gateway.py``
for another TTL: the services inherit the environment).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from _harness import (
    CpuMeter,
    LoadResult,
    PostgresCpu,
    Request,
    Stack,
    load_average,
    run_load,
)

from services.common.stack import free_port, start_services

SITES = 10
DAYS = 60
FIRST = datetime(2025, 1, 1, tzinfo=UTC)
SECONDS = float(os.environ.get("BENCH_SECONDS", "30"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "50"))
SETTLE_S = float(os.environ.get("BENCH_SETTLE_S", "5"))
MEASURED = {"clients": CLIENTS, "seconds": SECONDS}


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


URL_DAYS = 29
URLS = SITES * URL_DAYS * 2  # 580: site x day x {balance, readings}


def day_query(day_index: int) -> dict[str, str]:
    day = FIRST + timedelta(days=1 + day_index)
    return {"start": day.isoformat(), "end": (day + timedelta(days=1)).isoformat()}


def url_of(i: int) -> int:
    """The i-th request's URL among URLS, by a hash of i.

    A plain cycle (URL i mod URLS) let clients fall into step: client k sends requests k,
    k + 50, ..., so the clients whose numbers agree mod 10 follow the same URL sequence, and
    once two of them met on a URL (one waiting for the other's upstream call) they went on
    together. The clients ended in groups of 5 asking for the same URLs at the same moment, and
    a URL came back 5 times less often than the load's rate says. Hashed, two clients that meet
    on a URL part at their next request. (A multiplicative hash would keep the step: it is
    nearly linear modulo URLS.)
    """
    return int.from_bytes(hashlib.blake2b(i.to_bytes(8), digest_size=8).digest()) % URLS


def cockpit(prefix: str):  # type: ignore[no-untyped-def]
    """The i-th request: a site's balance or hourly readings over one of its days."""

    def make(i: int) -> Request:
        u = url_of(i)
        endpoint, rest = u % 2, u // 2
        site, day = f"G{rest % SITES:02d}", day_query(rest // SITES)
        if endpoint == 0:
            return "balance", "GET", f"{prefix}/sites/{site}/balance", day, None
        params = {**day, "resolution": "hour"}
        return "readings", "GET", f"{prefix}/sites/{site}/readings", params, None

    return make


def settle(base_url: str, headers: dict[str, str], make) -> LoadResult:  # type: ignore[no-untyped-def]
    """The same load for SETTLE_S seconds before a measured run: caches and pools filling."""
    return run_load(base_url, headers, make, clients=CLIENTS, seconds=SETTLE_S, warmup=2 * CLIENTS)


def read_cache_counts(gateway_url: str) -> dict[str, float]:
    """The gateway's read-cache outcomes so far (all workers), from its /metrics."""
    text = httpx.get(f"{gateway_url}/metrics", timeout=10).text
    found = re.findall(r'^gateway_read_cache_total\{outcome="(\w+)"\} (\S+)$', text, re.M)
    return {outcome: float(n) for outcome, n in found}


def main() -> None:
    with Stack.create("gateway") as stack:
        print(f"loaded {load(stack.url)} readings ({SITES} sites x {DAYS} days)")
        stack.start("ingest", "gateway")
        ingest, gateway = stack["ingest"], stack["gateway"]
        pids = {"gateway": gateway.pid, "ingest": ingest.pid}
        pg = PostgresCpu(stack.tmp / "pg")
        print(f"load average before: {load_average()}")

        headers = stack.login()
        cold = settle(gateway.url, headers, cockpit("/api/v1"))
        print(f"through the gateway, first {SETTLE_S:g} s (cache filling): {cold.summary()}")
        before = read_cache_counts(gateway.url)
        with CpuMeter(pids, pg) as cpu:
            through = run_load(gateway.url, headers, cockpit("/api/v1"), **MEASURED)
        after = read_cache_counts(gateway.url)
        counts = {k: int(after.get(k, 0) - before.get(k, 0)) for k in after}
        cache = {k: counts.get(k, 0) for k in ("hit", "shared", "miss")}
        answered = sum(cache.values())
        hit_ratio = round((cache["hit"] + cache["shared"]) / answered, 3) if answered else 0.0
        print(f"through the gateway: {through.summary()}")
        print(f"  CPU ms per request: {cpu.per_request_ms(through.requests)}")
        print(
            f"  read cache (GATEWAY_READ_CACHE_S={stack.env.get('GATEWAY_READ_CACHE_S', '5')}):"
            f" {cache}, answered from memory: {hit_ratio:.1%},"
            f" refreshed ahead in the background: {counts.get('refresh', 0)}"
        )

        # The same through a second gateway with the read cache off: every read goes upstream.
        env = {**stack.env, "GATEWAY_READ_CACHE_S": "0", "GATEWAY_PORT": str(free_port())}
        (uncached_gateway,) = start_services(env, ("gateway",), log_dir=stack.tmp)
        try:
            settle(uncached_gateway.url, headers, cockpit("/api/v1"))
            with CpuMeter({**pids, "gateway": uncached_gateway.pid}, pg) as cpu:
                uncached = run_load(uncached_gateway.url, headers, cockpit("/api/v1"), **MEASURED)
        finally:
            uncached_gateway.stop()
        print(f"through the gateway, GATEWAY_READ_CACHE_S=0: {uncached.summary()}")
        print(f"  CPU ms per request: {cpu.per_request_ms(uncached.requests)}")

        settle(ingest.url, stack.service_headers(), cockpit("/v1"))
        with CpuMeter(pids, pg) as cpu:
            direct = run_load(ingest.url, stack.service_headers(), cockpit("/v1"), **MEASURED)
        print(f"direct to ingest:    {direct.summary()}")
        print(f"  CPU ms per request: {cpu.per_request_ms(direct.requests)}")
        print(f"load average after: {load_average()}")
    t, d, u, c = through.summary(), direct.summary(), uncached.summary(), cold.summary()
    print(
        json.dumps(
            {
                "rps": t["rps"],
                "p50_ms": t["p50_ms"],
                "p99_ms": t["p99_ms"],
                "errors": t["errors"],
                "direct_rps": d["rps"],
                "direct_p50_ms": d["p50_ms"],
                "direct_p99_ms": d["p99_ms"],
                "direct_errors": d["errors"],
                "rps_ratio_vs_direct": round(t["rps"] / d["rps"], 3) if d["rps"] else None,
                "read_cache_hit_ratio": hit_ratio,
                "cold_rps": c["rps"],
                "cold_p99_ms": c["p99_ms"],
                "uncached_rps": u["rps"],
                "uncached_p50_ms": u["p50_ms"],
                "uncached_p99_ms": u["p99_ms"],
                "uncached_errors": u["errors"],
                "clients": CLIENTS,
                "seconds": SECONDS,
                "settle_seconds": SETTLE_S,
                "workers": {
                    "gateway": stack["gateway"].workers,
                    "ingest": stack["ingest"].workers,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
