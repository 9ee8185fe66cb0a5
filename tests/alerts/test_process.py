"""The alerts service as a real process: its schedule and delivery worker run in the lifespan,
and concurrent evaluations of one site (replicas, retries) do not duplicate incidents."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest

from services.common.stack import ServiceProcess, start_services
from tests.alerts.conftest import IngestAPI, Webhook, hours_ago, webhook_server
from tests.conftest import process_env, token_for

pytestmark = pytest.mark.e2e
H = timedelta(hours=1)


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    """One receiver for the module's alerts process."""
    with webhook_server() as state:
        yield state


@pytest.fixture(scope="module")
def alerts_proc(
    make_database: Callable[[str], str],
    ingest: IngestAPI,
    webhook: Webhook,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    """Alerts under uvicorn on a database of its own, schedule every second, local webhook."""
    env = process_env(
        make_database("alerts_proc"),
        INGEST_URL=ingest.url,
        ALERTS_EVAL_INTERVAL_S="1",
        ALERTS_EVAL_LOOKBACK_H="6",
        ALERTS_DELIVERY_POLL_S="0.2",
        ALERTS_GROUP_WAIT_S="0.2",
        ALERTS_WEBHOOK_URL=webhook.url,
    )
    (proc,) = start_services(env, ("alerts",), log_dir=tmp_path_factory.mktemp("alerts"))
    yield proc
    proc.stop()


def _http(proc: ServiceProcess) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token_for('operator', subject='olivia')}"}
    return httpx.Client(base_url=proc.url, headers=headers, timeout=30)


def _wait(check: Callable[[], Any], timeout_s: float = 10) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    return None


def test_schedule_finds_new_data_and_the_worker_notifies(
    alerts_proc: ServiceProcess, ingest: IngestAPI, webhook: Webhook
) -> None:
    # Arrange: a deficit posted to ingest, and nobody calls /v1/evaluate.
    site = ingest.site(capacity_kw=500)
    first = hours_ago(3)
    ingest.readings(site, [(first + i * H, 120.0 + i, 50.0) for i in range(2)])

    with _http(alerts_proc) as http:
        # Act
        found = _wait(lambda: http.get("/v1/incidents", params={"site": site}).json()["items"])
        delivered = _wait(lambda: [c for c in webhook.delivered if site.encode() in c["body"]])
        metrics = http.get("/metrics").text

    # Assert
    assert found and found[0]["condition_key"] == "deficit"
    assert delivered and any(site.encode() in c["body"] for c in delivered), (
        "the lifespan worker sent the webhook"
    )
    assert 'alerts_evaluations_total{outcome="ok",trigger="schedule"}' in metrics
    assert 'alerts_notification_deliveries_total{channel="webhook",outcome="delivered"}' in metrics


def test_concurrent_evaluations_of_one_site_make_one_incident(
    alerts_proc: ServiceProcess, ingest: IngestAPI
) -> None:
    site = ingest.site(capacity_kw=500)
    first = hours_ago(4)
    ingest.readings(site, [(first + i * H, 130.0 + i, 50.0) for i in range(3)])
    body = {"site": site, "start": first.isoformat(), "end": (first + 3 * H).isoformat()}

    with _http(alerts_proc) as http, ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: http.post("/v1/evaluate", json=body), range(6)))
        found = http.get("/v1/incidents", params={"site": site}).json()["items"]
        trail = http.get(
            "/v1/audit", params={"entity": "incident", "entity_id": str(found[0]["id"])}
        ).json()["items"]

    assert [a.status_code for a in answers] == [200] * 6
    assert sum(r["opened"] for a in answers for r in a.json()["rules"]) == 1
    assert [i["condition_key"] for i in found] == ["deficit"]
    assert [a["action"] for a in trail] == ["opened"]
