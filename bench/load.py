"""Mixed load through the gateway: ingest batches, cockpit reads and alert listings at once.

Starts a throwaway embedded PostgreSQL with 10 sites x 60 days of hourly readings, then ingest,
alerts and the gateway as real uvicorn processes (``<SERVICE>_WORKERS`` workers each, as
configured; ingest tells alerts about every batch, as in production). Logged in through the
gateway, ``BENCH_CLIENTS`` (default 50) concurrent clients first run the cockpit reads alone
for ``BENCH_BASELINE_SECONDS`` (default 20): the baseline. Then for ``BENCH_SECONDS`` (default
60) they run the mix, in every 10 requests:

- 2 x ``POST /api/v1/readings/batch``: 24 new hourly readings of one site (a day after the
  loaded history, a different site and day each time);
- 6 x cockpit reads: ``GET /api/v1/sites/{code}/balance`` and ``.../readings?resolution=hour``
  over one day, as bench/gateway.py;
- 2 x ``GET /api/v1/incidents`` (newest 50, all or active only).

Printed: throughput, p99 per endpoint, errors, CPU per request of each process, the peak RSS
of each service (its process and all its workers, sampled every 100 ms) and the load average:
the machine's 2 cores are shared with the load generator and with other work, so wall-clock
figures are noisy.

Last line: {"rps", "p99_ms", "errors", "peak_rss_mb", "baseline_rps", "baseline_p99_ms",
"rps_ratio_vs_baseline", ...}.

Run: .venv/bin/python bench/load.py
"""

from __future__ import annotations

import json
import os
from datetime import timedelta

from _harness import CpuMeter, PeakRss, PostgresCpu, Request, Stack, load_average, run_load
from gateway import DAYS, FIRST, SITES, cockpit, load

SECONDS = float(os.environ.get("BENCH_SECONDS", "60"))
BASELINE_SECONDS = float(os.environ.get("BENCH_BASELINE_SECONDS", "20"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "50"))
SERVICES = ("ingest", "alerts", "gateway")


def batch(w: int) -> list[dict[str, object]]:
    """The w-th write: one site's 24 hourly readings of a day no other write covers."""
    site, day = w % SITES, w // SITES
    start = FIRST + timedelta(days=DAYS + day)
    return [
        {
            "site": f"G{site:02d}",
            "ts": (start + timedelta(hours=h)).isoformat(),
            "consumption_kwh": round(40 + site + (h % 12) * 1.5, 3),
            "production_kwh": round(max(0.0, 50 - abs(12 - h) * 5.0), 3),
            "interval_s": 3600,
            "source": "real",
        }
        for h in range(24)
    ]


def mixed(i: int) -> Request:
    """The i-th request of the mix (see the module docstring)."""
    n, slot = divmod(i, 10)
    if slot < 2:
        return "readings_batch", "POST", "/api/v1/readings/batch", None, batch(2 * n + slot)
    if slot < 8:
        return cockpit("/api/v1")(6 * n + slot - 2)
    params = {"limit": "50"} if slot == 8 else {"limit": "50", "active": "true"}
    return "incidents", "GET", "/api/v1/incidents", params, None


def main() -> None:
    with Stack.create("load") as stack:
        print(f"loaded {load(stack.url)} readings ({SITES} sites x {DAYS} days)")
        stack.start(*SERVICES)
        headers = stack.login()
        pids = {name: stack[name].pid for name in SERVICES}
        pg = PostgresCpu(stack.tmp / "pg")
        print(f"load average before: {load_average()}")

        baseline = run_load(
            stack["gateway"].url, headers, cockpit("/api/v1"),
            clients=CLIENTS, seconds=BASELINE_SECONDS, warmup=2 * CLIENTS,
        )  # fmt: skip
        print(f"baseline (cockpit reads alone, {BASELINE_SECONDS:g} s): {baseline.summary()}")

        with PeakRss(pids) as rss, CpuMeter(pids, pg) as cpu:
            mix = run_load(stack["gateway"].url, headers, mixed, clients=CLIENTS, seconds=SECONDS)
        print(f"mixed load ({SECONDS:g} s): {mix.summary()}")
        print(f"  CPU ms per request: {cpu.per_request_ms(mix.requests)}")
        peak = {name: round(mb, 1) for name, mb in rss.peak_mb.items()}
        print(f"  peak RSS (MB, process + workers): {peak}")
        print(f"load average after: {load_average()}")
        workers = {name: stack[name].workers for name in SERVICES}
    b, m = baseline.summary(), mix.summary()
    print(
        json.dumps(
            {
                "rps": m["rps"],
                "p99_ms": m["p99_ms"],
                "errors": m["errors"],
                "peak_rss_mb": round(sum(peak.values()), 1),
                "baseline_rps": b["rps"],
                "baseline_p99_ms": b["p99_ms"],
                "rps_ratio_vs_baseline": round(m["rps"] / b["rps"], 3) if b["rps"] else None,
                "p99_ms_by_endpoint": m["p99_ms_by_endpoint"],
                "peak_rss_mb_by_service": peak,
                "clients": CLIENTS,
                "seconds": SECONDS,
                "workers": workers,
            }
        )
    )


if __name__ == "__main__":
    main()
