"""A service is killed (SIGKILL, no shutdown at all) and started again, the gateway staying up:
it degrades to 503 on that service's routes only and recovers by itself. Ingest killed under a
posting client loses no acknowledged reading; alerts killed still gets ingest's notice of the
readings that arrived meanwhile."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.reliability.conftest import (
    SERVICE_HEADERS,
    BatchSender,
    Stack,
    counter,
    make_site,
    stored_rows,
    wait_for,
)

pytestmark = pytest.mark.e2e


def _states(http: httpx.Client) -> dict[str, str]:
    r = http.get("/api/v1/status")
    assert r.status_code == 200, r.text
    return {s["service"]: s["status"] for s in r.json()["services"]}


def test_killed_ingest_degrades_the_gateway_which_recovers_when_it_is_back(
    stack: Stack,
) -> None:
    # Arrange: a client posting through the gateway.
    gateway_pid = stack.procs["gateway"].proc.pid  # type: ignore[union-attr]
    sender = BatchSender(
        f"{stack.url('gateway')}/api/v1/readings/batch", stack.admin,
        make_site(stack, "KILL-GW"), "gateway",
    ).begin()  # fmt: skip
    http = httpx.Client(base_url=stack.url("gateway"), headers=stack.admin, timeout=10)
    assert wait_for(lambda: len(sender.acked) >= 3), sender.failures
    before = _states(http)

    # Act 1: kill -9, mid-stream.
    ingest = stack.procs["ingest"]
    assert ingest.proc is not None
    ingest.proc.send_signal(signal.SIGKILL)
    ingest.proc.wait(10)
    started = time.monotonic()
    down_site = http.get("/api/v1/sites/KILL-GW")
    down_s = time.monotonic() - started
    saw_503 = wait_for(lambda: sender.count(503) >= 2)
    down_states = _states(http)
    alerts_routes = [http.get("/api/v1/incidents"), http.get("/api/v1/alert-rules")]
    me = http.get("/api/v1/auth/me")
    acked_while_down = len(sender.acked)

    # Act 2: ingest is started again; the same gateway process must use it again.
    stack.restart("ingest")
    recovered = wait_for(lambda: len(sender.acked) >= acked_while_down + 3, timeout_s=30)
    sender.finish()
    up_site = http.get("/api/v1/sites/KILL-GW")
    up_states = wait_for(lambda: (s := _states(http))["ingest"] == "ready" and s)
    http.close()

    # Assert: degraded on ingest's routes only, with a clear 503.
    assert before["ingest"] == before["alerts"] == "ready", before
    assert down_site.status_code == 503, down_site.text
    assert down_site.headers["retry-after"] == "1"
    assert down_site.json() == {
        "error": "ServiceUnavailable",
        "detail": "the ingest service is not answering; retry shortly",
    }
    assert down_s < 2.0  # refused at once: no waiting for a timeout
    assert saw_503, sender.answers[-3:]
    assert down_states["ingest"] == "unavailable" and down_states["alerts"] == "ready"
    assert [r.status_code for r in alerts_routes] == [200, 200], [r.text for r in alerts_routes]
    assert me.status_code == 200
    # The client only ever saw 2xx or 503 + Retry-After, and resent.
    assert sender.failures == [], sender.failures
    assert {a.status for a in sender.answers} <= {200, 503}
    assert all(a.retry_after for a in sender.answers if a.status == 503)
    # Recovered, same gateway process.
    assert recovered, (len(sender.acked), sender.answers[-3:])
    assert up_site.status_code == 200 and up_site.json()["code"] == "KILL-GW", up_site.text
    assert up_states and up_states["ingest"] == "ready", up_states
    assert stack.procs["gateway"].proc.pid == gateway_pid  # type: ignore[union-attr]
    # Nothing acknowledged was lost to the crash, nothing doubled by the resends.
    assert stored_rows(stack.database_url, sender.site) == sender.expected_rows()


def test_killed_alerts_degrades_its_routes_and_gets_the_missed_notice_once_back(
    stack: Stack,
) -> None:
    # Arrange: a deficit 40 hours ago, older than what the schedule judges (6-hour look-back
    # plus the evaluator's 24-hour warm-up), so only ingest's notice can make alerts see it.
    site = make_site(stack, "KILL-ALERTS")
    first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=40)
    rows = [{"site": site, "ts": (first + timedelta(hours=h)).isoformat(),
             "consumption_kwh": 160.0 + h, "production_kwh": 10.0, "interval_s": 3600}
            for h in range(2)]  # fmt: skip
    ingest = httpx.Client(base_url=stack.url("ingest"), headers=SERVICE_HEADERS, timeout=10)
    http = httpx.Client(base_url=stack.url("gateway"), headers=stack.admin, timeout=10)
    unreachable_before = _notices(ingest, "unreachable")
    ok_before = _notices(ingest, "ok")

    # Act 1: alerts is killed; the readings arrive meanwhile.
    alerts = stack.procs["alerts"]
    assert alerts.proc is not None
    alerts.proc.send_signal(signal.SIGKILL)
    alerts.proc.wait(10)
    posted = ingest.post("/v1/readings/batch", json=rows)
    missed = wait_for(lambda: _notices(ingest, "unreachable") > unreachable_before)
    down = [http.get("/api/v1/incidents"), http.get("/api/v1/alert-rules")]
    sites = http.get("/api/v1/sites")
    down_states = _states(http)

    # Act 2: alerts is back; the kept notice reaches it.
    stack.restart("alerts")
    incident = wait_for(
        lambda: http.get("/api/v1/incidents", params={"site": site}).json().get("items"),
        timeout_s=20,
    )
    up_states = _states(http)
    ok_after = _notices(ingest, "ok")
    ingest.close()
    http.close()

    # Assert
    assert posted.status_code == 200 and posted.json()["accepted"] == 2, posted.text
    for answer in down:
        assert answer.status_code == 503 and answer.headers["retry-after"], answer.text
        assert answer.json()["detail"] == "the alerts service is not answering; retry shortly"
    assert sites.status_code == 200 and site in [s["code"] for s in sites.json()]
    assert down_states["alerts"] == "unavailable" and down_states["ingest"] == "ready"
    assert missed, "ingest tried to notify alerts while it was down"
    assert incident and incident[0]["condition_key"] == "deficit", incident
    assert ok_after > ok_before
    assert up_states["alerts"] == "ready"


def _notices(ingest: httpx.Client, outcome: str) -> float:
    return counter(ingest.get("/metrics").text, "ingest_alerts_notices_total", outcome=outcome)
