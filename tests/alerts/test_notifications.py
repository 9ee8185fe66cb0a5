"""Notifications through real local peers: webhook (failing twice), SMTP, grouping, silences."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from services.alerts.notifier import Notifier, sign
from tests.alerts.conftest import (
    WEBHOOK_SECRET,
    IngestAPI,
    Webhook,
    evaluate,
    hours_ago,
    incidents,
    make_notifier,
)

H = timedelta(hours=1)


def _deficits(
    client: TestClient, ingest: IngestAPI, n_sites: int = 1, hours_back: int = 3
) -> list[str]:
    """Sites with an ongoing deficit, evaluated: one open incident each (one outbox row each)."""
    sites = []
    first = hours_ago(hours_back)
    for _ in range(n_sites):
        site = ingest.site(capacity_kw=500)
        ingest.readings(site, [(first + i * H, 120.0 + i, 50.0) for i in range(2)])
        evaluate(client, site, first, first + 2 * H)
        sites.append(site)
    return sites


def _drain(
    notifier: Notifier, session: Session, until: Callable[[], bool], timeout_s: float = 5
) -> None:
    """Run the delivery worker until ``until()`` holds (retries need their backoff to pass)."""
    deadline = time.monotonic() + timeout_s
    while True:
        notifier.run_once()
        session.expire_all()
        if until() or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _deliveries(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/v1/deliveries", params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def test_webhook_failing_twice_is_retried_with_backoff_then_delivered(
    make_client: Callable[..., TestClient],
    ingest: IngestAPI,
    webhook: Webhook,
    connection: Connection,
    session: Session,
) -> None:
    # Arrange: a receiver that answers 500 twice.
    webhook.fail_first = 2
    client = make_client(alerts_webhook_url=webhook.url, alerts_webhook_secret=WEBHOOK_SECRET,
                         alerts_log_notifications=False)  # fmt: skip
    notifier = make_notifier(connection, client.app.state.settings)  # type: ignore[attr-defined]
    (site,) = _deficits(client, ingest)

    # Act: the first attempt fails and stays visible as retrying.
    notifier.run_once()
    session.expire_all()
    retrying = _deliveries(client, channel="webhook")
    _drain(notifier, session, lambda: len(webhook.delivered) == 1)
    done = _deliveries(client, channel="webhook")

    # Assert
    assert retrying[0]["status"] == "retrying" and "HTTP 500" in retrying[0]["last_error"]
    assert len(webhook.calls) == 3 and [c["answered"] for c in webhook.calls] == [500, 500, 200]
    assert done[0]["status"] == "delivered" and done[0]["attempts"] == 3
    (inc,) = incidents(client, site=site, kind="deficit")
    assert done[0]["incident_ids"] == [inc["id"]]
    call = webhook.calls[-1]
    headers = {k.lower(): v for k, v in call["headers"].items()}
    expected = sign(WEBHOOK_SECRET, int(headers["x-spe-timestamp"]), call["body"])
    assert headers["x-spe-signature"] == expected
    assert headers["x-spe-delivery"] == str(done[0]["id"]) and headers["x-spe-attempt"] == "3"
    payload = json.loads(call["body"])
    assert payload["count"] == 1 and payload["incidents"][0]["id"] == inc["id"]
    assert payload["incidents"][0]["event"] == "opened" and payload["incidents"][0]["why"]


def test_a_flood_of_incidents_is_one_grouped_message(
    make_client: Callable[..., TestClient],
    ingest: IngestAPI,
    webhook: Webhook,
    connection: Connection,
    session: Session,
) -> None:
    client = make_client(alerts_webhook_url=webhook.url, alerts_log_notifications=False)
    notifier = make_notifier(connection, client.app.state.settings)  # type: ignore[attr-defined]
    sites = _deficits(client, ingest, n_sites=3)

    _drain(notifier, session, lambda: len(webhook.delivered) >= 1)
    notifier.run_once()

    assert len(webhook.calls) == 1
    payload = json.loads(webhook.calls[0]["body"])
    assert payload["count"] == 3 and {i["site"] for i in payload["incidents"]} == set(sites)
    assert _deliveries(client)[0]["n_notifications"] == 3


def test_group_wait_holds_notifications_until_it_has_passed(
    make_client: Callable[..., TestClient],
    ingest: IngestAPI,
    webhook: Webhook,
    connection: Connection,
    session: Session,
) -> None:
    client = make_client(alerts_webhook_url=webhook.url, alerts_group_wait_s=3600)
    notifier = make_notifier(connection, client.app.state.settings)  # type: ignore[attr-defined]
    _deficits(client, ingest)

    attempted = notifier.run_once()

    assert attempted == 0 and webhook.calls == [] and _deliveries(client) == []


def test_email_is_sent_over_smtp(
    make_client: Callable[..., TestClient],
    ingest: IngestAPI,
    smtp: tuple[int, Any],
    connection: Connection,
    session: Session,
) -> None:
    port, mailbox = smtp
    client = make_client(
        alerts_smtp_host="127.0.0.1",
        alerts_smtp_port=port,
        alerts_smtp_from="alerts@spe.test",
        alerts_smtp_to="ops@spe.test, boss@spe.test",
        alerts_log_notifications=False,
    )
    notifier = make_notifier(connection, client.app.state.settings)  # type: ignore[attr-defined]
    (site,) = _deficits(client, ingest)

    _drain(notifier, session, lambda: bool(mailbox.messages))

    (msg,) = mailbox.messages
    assert msg["Subject"] == f"[SP-E] Consumption above production at {site}"
    assert msg["From"] == "alerts@spe.test" and "boss@spe.test" in msg["To"]
    assert "[WARNING] opened" in msg.get_payload()
    assert _deliveries(client, channel="email")[0]["status"] == "delivered"


def test_smtp_server_down_keeps_the_email_retrying(
    make_client: Callable[..., TestClient],
    ingest: IngestAPI,
    connection: Connection,
    session: Session,
) -> None:
    from services.common.stack import free_port

    client = make_client(alerts_smtp_host="127.0.0.1", alerts_smtp_port=free_port(),
                         alerts_smtp_to="ops@spe.test", alerts_smtp_timeout_s=1,
                         alerts_log_notifications=False)  # fmt: skip
    notifier = make_notifier(connection, client.app.state.settings)  # type: ignore[attr-defined]
    _deficits(client, ingest)

    notifier.run_once()
    session.expire_all()

    (d,) = _deliveries(client, channel="email")
    assert d["status"] == "retrying" and d["attempts"] == 1 and "Connection" in d["last_error"]


def test_failed_for_good_stays_listed_and_can_be_sent_again(
    make_client: Callable[..., TestClient],
    ingest: IngestAPI,
    webhook: Webhook,
    connection: Connection,
    session: Session,
) -> None:
    # Arrange: two attempts allowed, the receiver fails twice.
    webhook.fail_first = 2
    client = make_client(alerts_webhook_url=webhook.url, alerts_delivery_max_attempts=2,
                         alerts_log_notifications=False)  # fmt: skip
    notifier = make_notifier(connection, client.app.state.settings)  # type: ignore[attr-defined]
    _deficits(client, ingest)
    _drain(notifier, session, lambda: len(webhook.calls) == 2)
    failed = _deliveries(client, status="failed")

    # Act
    retried = client.post(f"/v1/deliveries/{failed[0]['id']}/retry")
    _drain(notifier, session, lambda: len(webhook.delivered) == 1)

    # Assert
    assert len(failed) == 1 and failed[0]["attempts"] == 2
    assert retried.status_code == 200 and retried.json()["status"] == "retrying"
    assert _deliveries(client)[0]["status"] == "delivered"
    again = client.post(f"/v1/deliveries/{failed[0]['id']}/retry")
    assert again.status_code == 409


def test_silenced_incident_is_recorded_but_not_notified(
    make_client: Callable[..., TestClient],
    ingest: IngestAPI,
    webhook: Webhook,
    connection: Connection,
    session: Session,
) -> None:
    # Arrange: a silence every day, all day, for one site only.
    client = make_client(alerts_webhook_url=webhook.url, alerts_log_notifications=False)
    notifier = make_notifier(connection, client.app.state.settings)  # type: ignore[attr-defined]
    quiet, loud = ingest.site(capacity_kw=500), ingest.site(capacity_kw=500)
    created = client.post(
        "/v1/silences",
        json={"site": quiet, "weekdays": list(range(7)), "start_time": "00:00",
              "end_time": "00:00", "timezone": "Europe/Paris", "comment": "works"},
    )  # fmt: skip
    first = hours_ago(3)
    for site in (quiet, loud):
        ingest.readings(site, [(first + i * H, 120.0 + i, 50.0) for i in range(2)])
        evaluate(client, site, first, first + 2 * H)

    # Act
    _drain(notifier, session, lambda: len(webhook.delivered) == 1)

    # Assert
    assert created.status_code == 201 and created.json()["active_now"] is True
    (silenced,) = incidents(client, site=quiet)
    assert silenced["status"] == "open"
    notes = client.get(f"/v1/incidents/{silenced['id']}").json()["notifications"]
    assert [(n["status"], n["silence_id"]) for n in notes] == [("silenced", created.json()["id"])]
    payload = json.loads(webhook.calls[0]["body"])
    assert [i["site"] for i in payload["incidents"]] == [loud]


def test_silences_api_validates_and_expires(client: TestClient) -> None:
    one_off_without_end = client.post("/v1/silences", json={"site": "X"})
    half_recurring = client.post("/v1/silences", json={"weekdays": [5, 6]})
    bad_zone = client.post(
        "/v1/silences",
        json={"weekdays": [5], "start_time": "00:00", "end_time": "00:00", "timezone": "Mars/Base"},
    )
    made = client.post(
        "/v1/silences",
        json={"starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-02T00:00:00Z"},
    )
    listed = client.get("/v1/silences").json()
    expired = client.delete(f"/v1/silences/{made.json()['id']}")
    twice = client.delete(f"/v1/silences/{made.json()['id']}")

    assert one_off_without_end.status_code == 422 and half_recurring.status_code == 422
    assert bad_zone.status_code == 422
    assert made.status_code == 201 and made.json()["active_now"] is False
    assert made.json()["id"] in [s["id"] for s in listed]
    assert expired.status_code == 204 and twice.status_code == 404
    assert made.json()["id"] not in [s["id"] for s in client.get("/v1/silences").json()]


def test_backfilled_history_is_recorded_but_not_notified(
    make_client: Callable[..., TestClient],
    ingest: IngestAPI,
    webhook: Webhook,
    connection: Connection,
    session: Session,
) -> None:
    client = make_client(alerts_webhook_url=webhook.url)
    notifier = make_notifier(connection, client.app.state.settings)  # type: ignore[attr-defined]
    (site,) = _deficits(client, ingest, hours_back=48)

    notifier.run_once()

    (inc,) = incidents(client, site=site, kind="deficit")
    notes = client.get(f"/v1/incidents/{inc['id']}").json()["notifications"]
    assert {n["status"] for n in notes} == {"skipped"} and "historical" in notes[0]["reason"]
    assert webhook.calls == []
