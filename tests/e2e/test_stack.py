"""The stack as a user runs it: `scripts/run.py` (what `make run` runs) in a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from services.common.stack import ROOT, free_port
from tests.conftest import TEST_SECRET, token_for

pytestmark = pytest.mark.e2e


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout_s: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            lines.append(line)
            if needle in line:
                return lines
        elif proc.poll() is not None:
            break
        else:
            time.sleep(0.05)
    raise AssertionError(f"{needle!r} not printed in {timeout_s}s; output:\n{''.join(lines)}")


def test_run_script_starts_all_services_seeds_and_stops_on_ctrl_c(e2e_database_url: str) -> None:
    ports = {name: free_port() for name in ("GATEWAY", "INGEST", "FORECAST", "ALERTS")}
    env = dict(os.environ, DATABASE_URL=e2e_database_url, LOG_JSON="false", SECRET_KEY=TEST_SECRET)
    env.update({f"{name}_PORT": str(port) for name, port in ports.items()})
    proc = subprocess.Popen(
        [sys.executable, "scripts/run.py"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        output = _wait_for_line(proc, "Ctrl-C stops everything", timeout_s=120)

        answers = {
            name: [httpx.get(f"http://127.0.0.1:{port}{probe}", timeout=5) for probe in
                   ("/health", "/ready", "/metrics")]
            for name, port in ports.items()
        }  # fmt: skip
        token = token_for("viewer")
        sites = httpx.get(
            f"http://127.0.0.1:{ports['INGEST']}/v1/sites",
            headers={"Authorization": f"Bearer {token}"}, timeout=5,
        ).json()  # fmt: skip
        jobs = httpx.get(
            f"http://127.0.0.1:{ports['FORECAST']}/v1/jobs",
            headers={"Authorization": f"Bearer {token}"}, timeout=5,
        ).json()["items"]  # fmt: skip
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()

    assert f"http://127.0.0.1:{ports['GATEWAY']}" in "".join(output)
    for name, (health, ready, metrics) in answers.items():
        assert health.status_code == 200, (name, health.text)
        assert ready.status_code == 200, (name, ready.text)
        assert "http_requests_total" in metrics.text, name
    assert "demo data:" in "".join(output)
    assert "login: admin / " in "".join(output)
    assert len(sites) >= 3
    # The demo's first forecasts are on their way (an every-site job, as the nightly run's).
    assert "first forecasts: retraining job" in "".join(output)
    assert [(j["kind"], j["site"]) for j in jobs] == [("retrain", None)]
    assert code == 0
