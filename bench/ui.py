"""Benchmark of the web UI: built JS size, and the cockpit's time to first render with a year
of hourly data for one site.

Builds the UI if needed (`make ui`), starts a throwaway embedded PostgreSQL and the four
services as real processes, posts a year of simulated hourly readings for one site through
ingest (the simulator's backfill), then opens the cockpit on that site over 365 days in
Debian's headless Chromium (Playwright, never a downloaded browser). The UI sets the
performance mark ``spe:cockpit:first-render`` when the chart first draws with data; its
``startTime`` is milliseconds since the navigation started, so it includes loading the page
(assets from the browser cache after the first run, as an operator's browser has them),
resuming the session with the refresh token, fetching the year (8,760 hourly buckets and the
balance through the gateway) and drawing. ``BENCH_RUNS`` (default 7) navigations; the median
is reported. The services, the browser and this script share the machine's 2 cores.

Last line: {"js_gzip_kb", "cockpit_first_render_ms", "cockpit_first_render_min_ms",
"cockpit_points", "runs"}.

Run: .venv/bin/python bench/ui.py
"""

from __future__ import annotations

import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from services.common.migrations import upgrade_all  # noqa: E402
from services.common.stack import (  # noqa: E402
    create_database,
    embedded_postgres,
    free_port,
    service_env,
    start_services,
)
from services.ingest.simulator.catalog import site_specs  # noqa: E402
from services.ingest.simulator.client import IngestClient, backfill, client_auth  # noqa: E402

UI_DIR = ROOT / "services" / "gateway" / "static"
RUNS = int(os.environ.get("BENCH_RUNS", "7"))
DAYS = 365
SECRET = "bench-secret-not-for-production-0123456789"
ADMIN_PASSWORD = "bench admin passphrase"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
MARK = "spe:cockpit:first-render"


def js_gzip_kb() -> float:
    """Gzipped size of every built JS file (what a first visit downloads), in kB."""
    files = sorted((UI_DIR / "assets").glob("*.js"))
    if not files:
        raise SystemExit(f"no built JS in {UI_DIR / 'assets'}; run `make ui`")
    return round(sum(len(gzip.compress(f.read_bytes(), 9)) for f in files) / 1000, 1)


def main() -> None:
    subprocess.run(["make", "-s", "ui"], cwd=ROOT, check=True)
    size_kb = js_gzip_kb()
    server = embedded_postgres(
        Path(tempfile.mkdtemp(prefix="spe-bench-ui-")) / "pg", on_exit="delete"
    )
    url = create_database(server, "spe_bench_ui")
    upgrade_all(url)
    ports = {name: free_port() for name in ("gateway", "ingest", "forecast", "alerts")}
    env = service_env(
        url,
        SECRET_KEY=SECRET,
        ENVIRONMENT="test",
        LOG_JSON="false",
        LOG_LEVEL="WARNING",
        ADMIN_PASSWORD=ADMIN_PASSWORD,
        GATEWAY_STATIC_DIR=str(UI_DIR),
        # Only the UI is measured: no alert evaluation of the year running meanwhile.
        INGEST_NOTIFY_ALERTS="false",
        ALERTS_EVAL_INTERVAL_S="0",
        **{f"{n.upper()}_PORT": str(p) for n, p in ports.items()},
        **{f"{n.upper()}_URL": f"http://127.0.0.1:{p}" for n, p in ports.items()},
    )
    procs = start_services(env, log_dir=Path(tempfile.mkdtemp(prefix="spe-bench-ui-logs-")))
    try:
        (site,) = site_specs(1)
        with IngestClient(env["INGEST_URL"], client_auth(env), echo=lambda _: None) as client:
            backfill(client, [site], [], days=DAYS, seed=11)
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        times, points = measure(gateway, site.code)
    finally:
        for proc in reversed(procs):
            proc.stop()
    median = statistics.median(times)
    print(
        f"JS gzipped {size_kb} kB; cockpit first render over {points} hourly points: "
        f"median {median:.0f} ms, min {min(times):.0f} ms ({RUNS} runs)"
    )
    print(
        json.dumps(
            {
                "js_gzip_kb": size_kb,
                "cockpit_first_render_ms": round(median, 1),
                "cockpit_first_render_min_ms": round(min(times), 1),
                "cockpit_points": points,
                "runs": RUNS,
            }
        )
    )


def measure(gateway: str, site: str) -> tuple[list[float], int]:
    """Sign in once, then time RUNS navigations to the cockpit (one site, one year)."""
    times: list[float] = []
    httpx.get(f"{gateway}/ready", timeout=10).raise_for_status()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{gateway}/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("form[data-testid=login-form] button[type=submit]")
        page.wait_for_selector("[data-testid=kpis]")
        target = f"{gateway}/?site={site}&range=365d"
        points = 0
        for _ in range(RUNS):
            page.goto(target)
            # Functions, not expressions: the page's CSP forbids eval of a string.
            page.wait_for_function("m => performance.getEntriesByName(m).length > 0", arg=MARK)
            times.append(page.evaluate("m => performance.getEntriesByName(m)[0].startTime", MARK))
            points = int(page.get_attribute("[data-testid=cockpit-chart]", "data-points") or 0)
        browser.close()
    return times, points


if __name__ == "__main__":
    main()
