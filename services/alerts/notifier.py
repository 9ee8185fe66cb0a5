"""Delivery of the outbox: grouping, silences, channels (log, webhook, e-mail) and retries.

Two steps, each in its own short transaction and safe with several replicas (rows are taken
with ``FOR UPDATE SKIP LOCKED``):

1. **group**: once the oldest pending notification of a channel has waited
   ``ALERTS_GROUP_WAIT_S`` (or ``ALERTS_GROUP_MAX`` are waiting), every pending notification
   of that channel becomes one delivery; those under a silence are marked ``silenced``.
2. **send**: each due delivery is sent; a failure is kept with its error and retried after
   ``base * 2^(attempt-1)`` seconds (capped). Past the attempt limit it is ``failed``: still
   listed, and ``POST /v1/deliveries/{id}/retry`` sends it again. Nothing is ever dropped.

A delivery's row stays locked while it is being sent, so another replica never sends it
twice; if the process dies mid-send the transaction rolls back and it is sent again later
(at least once; webhook receivers deduplicate on ``X-SPE-Delivery``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.alerts.config import AlertsSettings
from services.alerts.metrics import DELIVERIES, DELIVERY_FAILURES
from services.alerts.models import CHANNELS, Delivery, Incident, Notification
from services.alerts.silences import silence_for

log = logging.getLogger("spe.alerts.notify")
SIGNATURE_HEADER = "X-SPE-Signature"
TIMESTAMP_HEADER = "X-SPE-Timestamp"
DELIVERY_HEADER = "X-SPE-Delivery"
SEND_PER_TICK = 20


class DeliveryError(RuntimeError):
    """The channel did not take the message; the delivery will be retried."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``"<timestamp>." + body`` with the shared secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def retry_delay_s(settings: AlertsSettings, attempts: int) -> float:
    """Exponential backoff: base, 2 x base, 4 x base… capped."""
    delay = settings.alerts_retry_base_s * 2 ** max(attempts - 1, 0)
    return float(min(delay, settings.alerts_retry_max_delay_s))


def incident_view(incident: Incident, event: str, settings: AlertsSettings) -> dict[str, Any]:
    """What a notification says about one incident."""
    view: dict[str, Any] = {
        "event": event,
        "id": incident.id,
        "title": incident.title,
        "site": incident.site,
        "kind": incident.kind,
        "condition": incident.condition_key,
        "severity": incident.severity,
        "status": incident.status,
        "first_seen_at": incident.first_seen_at.isoformat(),
        "last_seen_at": incident.last_seen_at.isoformat(),
        "peak_value": incident.peak_value,
        "threshold": incident.threshold,
        "unit": incident.unit,
        "why": (incident.details or {}).get("why", ""),
    }
    if settings.alerts_public_url:
        view["url"] = f"{settings.alerts_public_url.rstrip('/')}/alerts?incident={incident.id}"
    return view


class Notifier:
    """The delivery worker: call :meth:`run_once` periodically (in a thread)."""

    def __init__(
        self,
        settings: AlertsSettings,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        self.http = httpx.Client(timeout=settings.alerts_webhook_timeout_s)

    def close(self) -> None:
        self.http.close()

    def run_once(self) -> int:
        """Group what is due, then send what is due; the number of deliveries attempted."""
        self.group()
        return self.send_due()

    # --- grouping ----------------------------------------------------------------------------

    def group(self) -> int:
        """Turn due pending notifications into deliveries; returns deliveries created."""
        created = 0
        for channel in CHANNELS:
            with self.sessions.begin() as session:
                created += self._group_channel(session, channel)
        return created

    def _group_channel(self, session: Session, channel: str) -> int:
        s = self.settings
        rows = session.scalars(
            select(Notification)
            .where(Notification.channel == channel, Notification.status == "pending")
            .order_by(Notification.id)
            .limit(s.alerts_group_max)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return 0
        at = self.clock()
        oldest = min(n.created_at for n in rows)
        if len(rows) < s.alerts_group_max and at - oldest < timedelta(
            seconds=s.alerts_group_wait_s
        ):
            return 0  # wait for the rest of the flood
        incidents = {
            i.id: i
            for i in session.scalars(
                select(Incident).where(Incident.id.in_({n.incident_id for n in rows}))
            )
        }
        to_send = []
        for n in rows:
            silence = silence_for(session, incidents[n.incident_id], n.created_at)
            if silence is not None:
                n.status, n.silence_id = "silenced", silence.id
                n.reason = f"silence {silence.id}: {silence.comment}"[:500]
            else:
                to_send.append(n)
        if not to_send:
            return 0
        items = [incident_view(incidents[n.incident_id], n.event, s) for n in to_send]
        payload = {
            "version": 1,
            "source": "spe-alerts",
            "channel": channel,
            "count": len(items),
            "critical": sum(1 for i in items if i["severity"] == "critical"),
            "incidents": items,
        }
        delivery = Delivery(
            channel=channel, status="pending", payload=payload, n_notifications=len(items)
        )
        session.add(delivery)
        session.flush()
        for n in to_send:
            n.status, n.delivery_id = "queued", delivery.id
        return 1

    # --- sending -----------------------------------------------------------------------------

    def send_due(self, limit: int = SEND_PER_TICK) -> int:
        """Attempt up to ``limit`` due deliveries, each in its own transaction."""
        attempted = 0
        while attempted < limit:
            with self.sessions.begin() as session:
                delivery = session.scalars(
                    select(Delivery)
                    .where(
                        Delivery.status.in_(("pending", "retrying")),
                        Delivery.next_attempt_at <= self.clock(),
                    )
                    .order_by(Delivery.next_attempt_at, Delivery.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                ).first()
                if delivery is None:
                    break
                self.attempt(delivery)
            attempted += 1
        return attempted

    def attempt(self, delivery: Delivery) -> None:
        """Send one delivery now and record the outcome on its row."""
        delivery.attempts += 1
        try:
            self._send(delivery)
        except Exception as exc:  # any failure of the peer: kept, retried, visible
            delivery.last_error = f"{type(exc).__name__}: {exc}"[:1000]
            DELIVERIES.labels(delivery.channel, "failed").inc()
            DELIVERY_FAILURES.labels(delivery.channel).inc()
            if delivery.attempts >= self.settings.alerts_delivery_max_attempts:
                delivery.status = "failed"
                log.error(
                    "delivery %s to %s failed for good after %s attempts: %s",
                    delivery.id, delivery.channel, delivery.attempts, delivery.last_error,
                )  # fmt: skip
            else:
                delivery.status = "retrying"
                delay = retry_delay_s(self.settings, delivery.attempts)
                delivery.next_attempt_at = self.clock() + timedelta(seconds=delay)
                log.warning(
                    "delivery %s to %s failed (attempt %s), retrying in %.0f s: %s",
                    delivery.id, delivery.channel, delivery.attempts, delay, delivery.last_error,
                )  # fmt: skip
            return
        delivery.status, delivery.delivered_at = "delivered", self.clock()
        DELIVERIES.labels(delivery.channel, "delivered").inc()

    def _send(self, delivery: Delivery) -> None:
        if delivery.channel == "log":
            log.warning(
                "ALERT %s",
                "; ".join(f"[{i['severity']}] {i['event']}: {i['title']}"
                          for i in delivery.payload["incidents"]),
                extra={"delivery_id": delivery.id, "payload": delivery.payload},
            )  # fmt: skip
        elif delivery.channel == "webhook":
            self._webhook(delivery)
        elif delivery.channel == "email":
            self._email(delivery)
        else:  # pragma: no cover - the table's check constraint forbids it
            raise DeliveryError(f"unknown channel {delivery.channel!r}")

    def _webhook(self, delivery: Delivery) -> None:
        s = self.settings
        if not s.alerts_webhook_url:
            raise DeliveryError("ALERTS_WEBHOOK_URL is not set")
        body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            DELIVERY_HEADER: str(delivery.id),
            TIMESTAMP_HEADER: str(stamp),
            "X-SPE-Attempt": str(delivery.attempts),
        }
        if s.alerts_webhook_secret:
            headers[SIGNATURE_HEADER] = sign(s.alerts_webhook_secret, stamp, body)
        r = self.http.post(s.alerts_webhook_url, content=body, headers=headers)
        if not r.is_success:
            raise DeliveryError(f"webhook answered HTTP {r.status_code}: {r.text[:200]}")

    def _email(self, delivery: Delivery) -> None:
        s = self.settings
        recipients = [a.strip() for a in s.alerts_smtp_to.split(",") if a.strip()]
        if not s.alerts_smtp_host or not recipients:
            raise DeliveryError("ALERTS_SMTP_HOST / ALERTS_SMTP_TO are not set")
        msg = email_message(delivery, s.alerts_smtp_from, recipients)
        with smtplib.SMTP(
            s.alerts_smtp_host, s.alerts_smtp_port, timeout=s.alerts_smtp_timeout_s
        ) as smtp:
            if s.alerts_smtp_starttls:
                smtp.starttls()
            if s.alerts_smtp_user:
                smtp.login(s.alerts_smtp_user, s.alerts_smtp_password)
            smtp.send_message(msg)


def email_message(delivery: Delivery, sender: str, recipients: list[str]) -> EmailMessage:
    """A plain-text e-mail for a (possibly grouped) delivery."""
    items = delivery.payload["incidents"]
    critical = sum(1 for i in items if i["severity"] == "critical")
    head = items[0]["title"] if len(items) == 1 else f"{len(items)} incidents"
    msg = EmailMessage()
    msg["Subject"] = f"[SP-E]{' CRITICAL' if critical else ''} {head}"
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["X-SPE-Delivery"] = str(delivery.id)
    lines = []
    for i in items:
        lines.append(f"[{i['severity'].upper()}] {i['event']}: {i['title']} (incident {i['id']})")
        lines.append(f"  first seen {i['first_seen_at']}, last seen {i['last_seen_at']}")
        lines.append(f"  peak {i['peak_value']:.3f} {i['unit']}; {i['why']}")
        if "url" in i:
            lines.append(f"  {i['url']}")
        lines.append("")
    msg.set_content("\n".join(lines))
    return msg
