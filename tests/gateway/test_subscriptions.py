"""Scheduled reports: subscriptions, the worker's schedule, e-mail through a local SMTP server
(aiosmtpd), retries and their visibility; on the real ingest and alerts of the stack."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import Message
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy import update

from services.common.stack import free_port
from services.gateway.main import build_app
from services.gateway.models import ReportDelivery, ReportSubscription
from services.gateway.subscriptions import last_period, next_run
from tests.gateway.conftest import (
    STACK_END,
    STACK_SITE,
    STACK_START,
    Stack,
    stack_headers,
    stack_settings,
)

pytestmark = pytest.mark.e2e
PARIS = ZoneInfo("Europe/Paris")


class Mailbox:
    """A local SMTP server that can be started and stopped on one port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[Message] = []
        self.controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if m["To"] == address]


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(free_port())
    box.start()
    yield box
    box.stop()


@pytest.fixture(scope="module")
def gateway(stack: Stack, mailbox: Mailbox) -> Iterator[TestClient]:
    """The gateway with its report worker off the clock: tests run its ticks themselves."""
    settings = stack_settings(
        stack, alerts_smtp_host="127.0.0.1", alerts_smtp_port=mailbox.port, reports_max_attempts=3
    )
    with TestClient(build_app(settings), raise_server_exceptions=False) as client:
        yield client


def tick(client: TestClient) -> int:
    """One pass of the report worker, on the app's event loop."""
    worker = client.app.state.report_worker  # type: ignore[attr-defined]
    assert client.portal is not None
    return int(client.portal.call(worker.run_once))


def _subscribe(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = client.post(
        "/api/v1/report-subscriptions", json={"site": STACK_SITE, **body}, headers=headers
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _db(client: TestClient) -> Any:
    return client.app.state.db.sessionmaker  # type: ignore[attr-defined]


def _attachment(msg: Message) -> tuple[str, bytes]:
    part = next(p for p in msg.walk() if p.get_filename())
    return part.get_filename() or "", part.get_payload(decode=True)  # type: ignore[return-value]


def test_delivery_emails_the_report_with_its_figures(gateway: TestClient, mailbox: Mailbox) -> None:
    # Arrange: a PDF subscription, and its delivery for the period that has data.
    operator = stack_headers(gateway, "operator")
    sub = _subscribe(gateway, operator, format="pdf", frequency="weekly", email="pdf@example.com")
    with _db(gateway).begin() as session:
        session.add(ReportDelivery(
            subscription_id=sub["id"], period_start=STACK_START, period_end=STACK_END,
            next_attempt_at=datetime.now(UTC),
        ))  # fmt: skip
    balance = gateway.get(
        f"/api/v1/sites/{STACK_SITE}/balance",
        params={"start": STACK_START.isoformat(), "end": STACK_END.isoformat()},
        headers=operator,
    ).json()

    # Act
    tick(gateway)
    deliveries = gateway.get(
        f"/api/v1/report-subscriptions/{sub['id']}/deliveries", headers=operator
    ).json()["items"]

    # Assert
    (msg,) = mailbox.to("pdf@example.com")
    assert msg["Subject"] == f"[SP-E] weekly report {STACK_SITE} 2026-03-27"
    name, content = _attachment(msg)
    assert name.endswith(".pdf") and content[:5] == b"%PDF-"
    text = " ".join(
        " ".join(p.extract_text() for p in PdfReader(io.BytesIO(content)).pages).split()
    )
    assert f"{balance['consumed_kwh']:.3f}" in text and f"{balance['deficit_kwh']:.3f}" in text
    (delivery,) = deliveries
    assert delivery["status"] == "delivered" and delivery["attempts"] == 1
    assert delivery["sha256"] == msg["X-SPE-Data-SHA256"] and delivery["sha256"] in text
    assert delivery["bytes"] == len(content)


def test_scheduled_subscription_queues_the_period_that_ended(
    gateway: TestClient, mailbox: Mailbox
) -> None:
    # Arrange: an Excel daily subscription that has come due.
    operator = stack_headers(gateway, "operator")
    sub = _subscribe(gateway, operator, format="xlsx", email="daily@example.com")
    now = datetime.now(UTC)
    with _db(gateway).begin() as session:
        session.execute(
            update(ReportSubscription)
            .where(ReportSubscription.id == sub["id"])
            .values(next_run_at=now - timedelta(minutes=1))
        )

    # Act
    tick(gateway)
    tick(gateway)  # a second pass (another replica) adds nothing
    after = gateway.get(f"/api/v1/report-subscriptions/{sub['id']}", headers=operator).json()
    deliveries = gateway.get(
        f"/api/v1/report-subscriptions/{sub['id']}/deliveries", headers=operator
    ).json()["items"]

    # Assert
    yesterday, today = last_period("daily", PARIS, now)
    (delivery,) = deliveries
    assert datetime.fromisoformat(delivery["period_start"]) == yesterday
    assert datetime.fromisoformat(delivery["period_end"]) == today
    assert delivery["status"] == "delivered"
    assert after["last_delivery"]["id"] == delivery["id"]
    due = datetime.fromisoformat(after["next_run_at"])
    assert now < due <= now + timedelta(days=1) and due.astimezone(PARIS).hour == 6
    (msg,) = mailbox.to("daily@example.com")
    name, content = _attachment(msg)
    wb = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    cert = {row[0]: row[1] for row in wb["Certificate"].iter_rows(values_only=True) if row}
    assert name.endswith(".xlsx") and cert["data_sha256"] == delivery["sha256"]


def test_failed_send_is_kept_retried_and_visible(gateway: TestClient, mailbox: Mailbox) -> None:
    # Arrange: the mail relay is down.
    operator = stack_headers(gateway, "operator")
    sub = _subscribe(gateway, operator, email="retry@example.com")
    queued = gateway.post(f"/api/v1/report-subscriptions/{sub['id']}/send", headers=operator)
    mailbox.stop()
    try:
        # Act
        tick(gateway)
        failed = gateway.get(
            f"/api/v1/report-subscriptions/{sub['id']}/deliveries", headers=operator
        ).json()["items"][0]
    finally:
        mailbox.start()
    retried = gateway.post(
        f"/api/v1/report-subscriptions/{sub['id']}/deliveries/{failed['id']}/retry",
        headers=operator,
    )
    tick(gateway)
    done = gateway.get(
        f"/api/v1/report-subscriptions/{sub['id']}/deliveries", headers=operator
    ).json()["items"][0]
    again = gateway.post(
        f"/api/v1/report-subscriptions/{sub['id']}/deliveries/{failed['id']}/retry",
        headers=operator,
    )

    # Assert
    assert queued.status_code == 202 and queued.json()["status"] == "pending", queued.text
    assert failed["status"] == "retrying" and failed["attempts"] == 1
    assert "Connection refused" in failed["last_error"] or "SMTP" in failed["last_error"]
    assert datetime.fromisoformat(failed["next_attempt_at"]) > datetime.now(UTC)
    assert retried.status_code == 200 and retried.json()["status"] == "retrying"
    assert done["status"] == "delivered" and done["attempts"] == 2 and done["last_error"] is None
    assert len(mailbox.to("retry@example.com")) == 1
    assert again.status_code == 409


def test_subscriptions_are_for_operators_and_checked(gateway: TestClient) -> None:
    viewer = stack_headers(gateway, "viewer")
    operator, other = stack_headers(gateway, "operator"), stack_headers(gateway, "operator")
    admin = stack_headers(gateway, "admin")
    body = {"site": STACK_SITE, "email": "x@example.com"}

    refused = gateway.post("/api/v1/report-subscriptions", json=body, headers=viewer)
    listing = gateway.get("/api/v1/report-subscriptions", headers=viewer)
    unknown = gateway.post(
        "/api/v1/report-subscriptions", json={**body, "site": "NOPE"}, headers=operator
    )
    bad = [
        gateway.post("/api/v1/report-subscriptions", json={**body, **change}, headers=operator)
        for change in ({"email": "not an address"}, {"format": "docx"},
                       {"frequency": "hourly"}, {"site": "../x"})
    ]  # fmt: skip
    sub = _subscribe(gateway, operator, email="mine@example.com")
    not_yours = gateway.delete(f"/api/v1/report-subscriptions/{sub['id']}", headers=other)
    by_admin = gateway.delete(f"/api/v1/report-subscriptions/{sub['id']}", headers=admin)
    cancelled_send = gateway.post(f"/api/v1/report-subscriptions/{sub['id']}/send", headers=admin)
    missing = gateway.get("/api/v1/report-subscriptions/999999", headers=operator)

    assert refused.status_code == 403 and listing.status_code == 403
    assert unknown.status_code == 404 and unknown.json()["error"] == "SiteNotFound"
    assert [r.status_code for r in bad] == [422] * 4
    assert sub["site_timezone"] == "Europe/Paris" and sub["format"] == "pdf"
    assert sub["created_by"].startswith("user") and sub["last_delivery"] is None
    assert not_yours.status_code == 403 and by_admin.status_code == 204
    assert cancelled_send.status_code == 409 and missing.status_code == 404


@pytest.mark.parametrize(
    ("frequency", "at", "period", "due"),
    [
        # Daily, on the day the clocks go forward: the previous day had 24 hours.
        ("daily", "2026-03-29T10:00:00+02:00", ("2026-03-28T00:00:00+01:00",
         "2026-03-29T00:00:00+01:00"), "2026-03-30T06:00:00+02:00"),
        # Daily before the send hour: due today.
        ("daily", "2026-03-30T05:59:00+02:00", ("2026-03-29T00:00:00+01:00",
         "2026-03-30T00:00:00+02:00"), "2026-03-30T06:00:00+02:00"),
        # Weekly on a Wednesday: the week before this one, due next Monday.
        ("weekly", "2026-04-01T12:00:00+02:00", ("2026-03-23T00:00:00+01:00",
         "2026-03-30T00:00:00+02:00"), "2026-04-06T06:00:00+02:00"),
    ],
)  # fmt: skip
def test_periods_and_due_times_follow_the_site_clock(
    frequency: str, at: str, period: tuple[str, str], due: str
) -> None:
    moment = datetime.fromisoformat(at)

    start, end = last_period(frequency, PARIS, moment)
    next_due = next_run(frequency, PARIS, moment, send_hour=6)

    assert (start, end) == tuple(datetime.fromisoformat(p) for p in period)
    assert next_due == datetime.fromisoformat(due)
