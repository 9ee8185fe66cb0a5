"""A webhook receiver that is down for a whole minute while incidents keep being raised: every
notification reaches it once it is back, none lost, none twice, and the outbox shows the
retries. The backoff is shortened (base 2 s, capped at 8 s) so retries happen in the minute."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.alerts.notifier import sign
from services.common.migrations import upgrade
from services.common.stack import ServiceProcess, create_database, free_port
from tests.alerts.conftest import webhook_server
from tests.conftest import process_env
from tests.reliability.conftest import SERVICE_HEADERS, Stack, make_site, wait_for

pytestmark = pytest.mark.e2e
DOWN_S = 60.0
WAVES_AT_S = (0.0, 20.0, 40.0)  # incidents raised while the receiver is down
SITES_PER_WAVE = 2
SECRET = "receiver-outage-secret"
RETRY_BASE_S, RETRY_MAX_DELAY_S = 2, 8


@pytest.fixture(scope="module")
def receiver_port() -> int:
    """The receiver's port: nothing listens on it until the test starts the receiver."""
    return free_port()


@pytest.fixture(scope="module")
def alerts(
    stack: Stack, receiver_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """An alerts process of its own (database of its own) reading the stack's ingest."""
    database_url = create_database(stack.pg.url, "spe_rel_receiver")
    upgrade("alerts", database_url)  # alerts' schema only: it reads ingest over HTTP
    env = process_env(
        database_url,
        INGEST_URL=stack.url("ingest"),
        ALERTS_EVAL_INTERVAL_S="0",
        ALERTS_DELIVERY_POLL_S="0.5",
        ALERTS_GROUP_WAIT_S="0.5",
        ALERTS_RETRY_BASE_S=str(RETRY_BASE_S),
        ALERTS_RETRY_MAX_DELAY_S=str(RETRY_MAX_DELAY_S),
        ALERTS_DELIVERY_MAX_ATTEMPTS="100",
        ALERTS_WEBHOOK_TIMEOUT_S="2",
        ALERTS_WEBHOOK_URL=f"http://127.0.0.1:{receiver_port}/hooks/spe",
        ALERTS_WEBHOOK_SECRET=SECRET,
        ALERTS_LOG_NOTIFICATIONS="false",
    )
    log = tmp_path_factory.mktemp("receiver-outage") / "alerts.log"
    proc = ServiceProcess("alerts", int(env["ALERTS_PORT"]), env, log).start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def _raise_deficits(stack: Stack, http: httpx.Client, wave: int) -> list[str]:
    """New sites with a deficit over the last hours, evaluated now: one incident each."""
    first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    sites = []
    for n in range(SITES_PER_WAVE):
        site = make_site(stack, f"HOOK-{wave}-{n}")
        rows = [{"site": site, "ts": (first + timedelta(hours=h)).isoformat(),
                 "consumption_kwh": 140.0 + h, "production_kwh": 30.0, "interval_s": 3600}
                for h in range(2)]  # fmt: skip
        r = httpx.post(f"{stack.url('ingest')}/v1/readings/batch", json=rows,
                       headers=SERVICE_HEADERS, timeout=30)  # fmt: skip
        assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
        window = {"site": site, "start": first.isoformat(),
                  "end": (first + timedelta(hours=2)).isoformat()}  # fmt: skip
        r = http.post("/v1/evaluate", json=window)
        assert r.status_code == 200, r.text
        sites.append(site)
    return sites


def _deliveries(http: httpx.Client) -> list[dict[str, Any]]:
    r = http.get("/v1/deliveries", params={"channel": "webhook"})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def test_receiver_down_for_a_minute_gets_every_notification_once_when_back(
    stack: Stack, alerts: ServiceProcess, receiver_port: int
) -> None:
    # Arrange / Act 1: the receiver is down; incidents are raised in three waves meanwhile.
    http = httpx.Client(base_url=alerts.url, headers=SERVICE_HEADERS, timeout=30)
    down_since = time.monotonic()
    sites: list[str] = []
    for wave, at_s in enumerate(WAVES_AT_S):
        time.sleep(max(0.0, down_since + at_s - time.monotonic()))
        sites += _raise_deficits(stack, http, wave)
    raised = {i["id"]: i["site"] for i in http.get("/v1/incidents").json()["items"]}
    time.sleep(max(0.0, down_since + DOWN_S - 3 - time.monotonic()))
    while_down = _deliveries(http)

    # Act 2: after a full minute, the receiver comes back on the same address.
    time.sleep(max(0.0, down_since + DOWN_S - time.monotonic()))
    with webhook_server(receiver_port) as receiver:
        down_s = time.monotonic() - down_since
        done = wait_for(
            lambda: (
                (ds := _deliveries(http)) and all(d["status"] == "delivered" for d in ds) and ds
            ),
            timeout_s=RETRY_MAX_DELAY_S * 3,
        )
        time.sleep(1.5)  # a few more worker passes: nothing must be sent twice
        calls = list(receiver.calls)
    http.close()

    # Assert: a real minute down, the outbox kept retrying, visibly.
    assert down_s >= DOWN_S
    assert len(raised) == len(sites) == len(WAVES_AT_S) * SITES_PER_WAVE, raised
    assert set(raised.values()) == set(sites)
    assert while_down and {d["status"] for d in while_down} == {"retrying"}, while_down
    first_wave = min(while_down, key=lambda d: d["id"])
    assert first_wave["attempts"] >= 5, first_wave  # ~55 s of backoff capped at 8 s
    assert all(d["attempts"] >= 2 for d in while_down), while_down
    assert all("Connect" in (d["last_error"] or "") for d in while_down), while_down
    # Every delivery arrived exactly once, signed, and carries each incident exactly once.
    assert done, _deliveries(httpx.Client(base_url=alerts.url, headers=SERVICE_HEADERS))
    assert {c["answered"] for c in calls} == {200}
    headers = [{k.lower(): v for k, v in c["headers"].items()} for c in calls]
    delivery_ids = [h["x-spe-delivery"] for h in headers]
    assert len(delivery_ids) == len(set(delivery_ids)), delivery_ids
    assert sorted(delivery_ids) == sorted(str(d["id"]) for d in done)
    for call, h in zip(calls, headers, strict=True):
        assert h["x-spe-signature"] == sign(SECRET, int(h["x-spe-timestamp"]), call["body"])
    notified = Counter(i["id"] for c in calls for i in json.loads(c["body"])["incidents"])
    assert notified == Counter(list(raised)), (notified, raised)  # each incident once
    by_id = {str(d["id"]): d for d in done}
    for h in headers:
        delivery = by_id[h["x-spe-delivery"]]
        assert delivery["attempts"] == int(h["x-spe-attempt"]) >= 2, delivery
        assert delivery["delivered_at"] is not None
    assert sum(d["n_notifications"] for d in done) == len(raised)
