"""The database is stopped and started again while clients keep posting batches of readings,
one straight to ingest and one through the gateway. Nothing is restarted but PostgreSQL."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.reliability.conftest import (
    CLIENT_TIMEOUT_S,
    SERVICE_HEADERS,
    BatchSender,
    Stack,
    counter,
    make_site,
    stored_rows,
    wait_for,
)

pytestmark = pytest.mark.e2e


def _schedule_ok(alerts: httpx.Client) -> float:
    """How many scheduled evaluations of a site alerts has completed."""
    metrics = alerts.get("/metrics").text
    return counter(metrics, "alerts_evaluations_total", trigger="schedule", outcome="ok")


def test_database_restart_loses_no_acknowledged_reading_and_services_recover(
    stack: Stack,
) -> None:
    # Arrange: two clients posting, a baseline of acknowledged batches before the outage.
    pids = {name: proc.proc.pid for name, proc in stack.procs.items() if proc.proc}
    direct = BatchSender(
        f"{stack.url('ingest')}/v1/readings/batch", SERVICE_HEADERS,
        make_site(stack, "DB-DIRECT"), "direct",
    )  # fmt: skip
    via_gateway = BatchSender(
        f"{stack.url('gateway')}/api/v1/readings/batch", stack.admin,
        make_site(stack, "DB-GATEWAY"), "gateway",
    )  # fmt: skip
    senders = (direct, via_gateway)
    for sender in senders:
        sender.begin()
    assert wait_for(lambda: all(len(s.acked) >= 3 for s in senders)), [s.failures for s in senders]
    alerts = httpx.Client(base_url=stack.url("alerts"), headers=SERVICE_HEADERS, timeout=10)
    schedule_ran = wait_for(lambda: _schedule_ok(alerts))

    # Act 1: PostgreSQL goes away; the clients keep going.
    stack.pg.stop()
    down_at = time.monotonic()
    saw_503 = wait_for(lambda: all(s.count(503) >= 2 for s in senders), timeout_s=20)
    probes = {
        name: (httpx.get(f"{stack.url(name)}/health", timeout=5).status_code,
               httpx.get(f"{stack.url(name)}/ready", timeout=5))
        for name in ("ingest", "alerts", "gateway")
    }  # fmt: skip
    time.sleep(max(0.0, 3.0 - (time.monotonic() - down_at)))  # a few schedule passes fail
    schedule_ok_before = _schedule_ok(alerts)
    acked_during = [len(s.acked) for s in senders]

    # Act 2: PostgreSQL is back; the same processes must serve again on their own.
    stack.pg.start()
    outage_s = time.monotonic() - down_at
    recovered = wait_for(
        lambda: all(len(s.acked) >= n + 3 for s, n in zip(senders, acked_during, strict=True)),
        timeout_s=30,
    )
    for sender in senders:
        sender.finish()
    # A deficit in the last hours: the notice and the schedule must still reach alerts, and its
    # delivery worker must still send (the log channel).
    deficit_site = make_site(stack, "DB-DEFICIT")
    first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    rows = [{"site": deficit_site, "ts": (first + timedelta(hours=h)).isoformat(),
             "consumption_kwh": 150.0 + h, "production_kwh": 20.0, "interval_s": 3600}
            for h in range(2)]  # fmt: skip
    posted = httpx.post(f"{stack.url('ingest')}/v1/readings/batch", json=rows,
                        headers=SERVICE_HEADERS, timeout=10)  # fmt: skip
    incident = wait_for(
        lambda: alerts.get("/v1/incidents", params={"site": deficit_site}).json()["items"]
    )
    delivered = wait_for(
        lambda: [d for d in alerts.get("/v1/deliveries", params={"channel": "log"}).json()["items"]
                 if incident and incident[0]["id"] in d["incident_ids"]
                 and d["status"] == "delivered"]
    )  # fmt: skip
    schedule_ok_after = wait_for(lambda: _schedule_ok(alerts) > schedule_ok_before)
    alerts.close()
    alerts_log = (stack.log_dir / "alerts.log").read_text()

    # Assert: during the outage, 503 + Retry-After only, quickly, never a 500 nor a hang.
    assert saw_503, [(s.name, s.answers[-3:], s.failures) for s in senders]
    for sender in senders:
        assert sender.failures == [], sender.failures
        statuses = {a.status for a in sender.answers}
        assert statuses <= {200, 503}, statuses
        refused = [a for a in sender.answers if a.status == 503]
        assert all(a.retry_after == "1" for a in refused), refused[:3]
        assert all(a.seconds < CLIENT_TIMEOUT_S / 2 for a in refused), max(
            a.seconds for a in refused
        )
        assert any("database is not answering" in a.body for a in refused), refused[:3]
    # Probes: alive but not ready while the database is away.
    for name, (health, ready) in probes.items():
        assert health == 200, name
        assert ready.status_code == 503 and ready.headers["retry-after"], (name, ready.text)
        assert ready.json()["error"] == "NotReady", ready.text
    # Recovery without a restart of any service.
    assert recovered, [(s.name, len(s.acked), s.answers[-3:]) for s in senders]
    assert outage_s >= 3.0
    for name, proc in stack.procs.items():
        assert proc.proc is not None and proc.proc.poll() is None, f"{name} died"
        assert proc.proc.pid == pids[name], f"{name} was restarted"
        assert httpx.get(f"{proc.url}/ready", timeout=5).status_code == 200, name
    # Every acknowledged reading is stored exactly once, with its values.
    for sender in senders:
        stored = stored_rows(stack.database_url, sender.site)
        expected = sender.expected_rows()
        assert len(stored) == len(expected) == len({r[0] for r in expected})
        assert stored == expected
    # Background work of alerts survived the outage.
    assert posted.status_code == 200, posted.text
    assert incident and incident[0]["condition_key"] == "deficit", incident
    assert delivered, "the delivery worker sent the new incident after the outage"
    assert schedule_ran, "the evaluation schedule ran before the outage"
    # Logged by the loop (listing sites failed) or per site (evaluating one failed).
    assert re.search(r"scheduled evaluation (of \S+ )?failed", alerts_log), "no outage seen"
    assert schedule_ok_after, "the evaluation schedule runs again after the outage"
