"""Scheduled reports: operators subscribe a mailbox to a site's daily or weekly report.

A worker in the gateway's lifespan, every ``REPORTS_POLL_S``:

1. **schedules**: each active subscription whose ``next_run_at`` has come gets a delivery
   for the period that just ended (the previous local day, or Monday-Sunday), at most one
   per period (a unique index: two replicas ticking together add nothing);
2. **sends**: each due delivery is leased (``sending``, ``lease_until``), its report is built
   from ingest and alerts like an export, and e-mailed over SMTP (the relay alert e-mails
   use). A failure is kept with its error and retried after ``base * 2^(attempt-1)`` s,
   capped; past ``REPORTS_MAX_ATTEMPTS`` the delivery is ``failed``: still listed, and sent
   again on request. A gateway dying mid-send leaves a lease that expires: sent again
   (at least once).

Deliveries are listed per subscription; each delivered report is in the audit log with its
data checksum.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from email import policy
from email.message import EmailMessage
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, FastAPI, Path, Query, Request, Response, status
from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from services.common.db import SessionDep
from services.common.errors import Conflict, Forbidden, NotFound
from services.common.openapi import ErrorOut
from services.gateway.authn import Caller, OperatorDep, client_addr
from services.gateway.config import GatewaySettings
from services.gateway.export_data import site_info
from services.gateway.exports import render_report
from services.gateway.models import ReportDelivery, ReportSubscription
from services.gateway.proxy import UpstreamFailed
from services.gateway.reports import ReportData, kpis
from services.gateway.schemas import (
    ReportDeliveryOut,
    ReportDeliveryPage,
    ReportSubscriptionIn,
    ReportSubscriptionOut,
)
from services.gateway.service import audit, now_utc

log = logging.getLogger("spe.gateway.reports")
SEND_PER_TICK = 10
REPORT_DELIVERIES = Counter(
    "gateway_report_deliveries_total",
    "Scheduled report e-mail attempts, by format and outcome (delivered, failed)",
    ["format", "outcome"],
)
_MEDIA = {
    "pdf": ("application", "pdf"),
    "xlsx": ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
}


# --- schedule arithmetic (pure) --------------------------------------------------------------


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


def last_period(frequency: str, tz: ZoneInfo, at: datetime) -> tuple[datetime, datetime]:
    """The last complete local day (daily) or Monday-Sunday week (weekly) before ``at``."""
    today = at.astimezone(tz).date()
    if frequency == "weekly":
        monday = today - timedelta(days=today.weekday())
        return _midnight(monday - timedelta(days=7), tz), _midnight(monday, tz)
    return _midnight(today - timedelta(days=1), tz), _midnight(today, tz)


def next_run(frequency: str, tz: ZoneInfo, after: datetime, send_hour: int) -> datetime:
    """The first due time strictly after ``after``: daily at send_hour, or Mondays then."""
    day = after.astimezone(tz).date()
    while True:
        due = datetime.combine(day, time(send_hour), tzinfo=tz)
        if due > after and (frequency == "daily" or day.weekday() == 0):
            return due
        day += timedelta(days=1)


def retry_delay_s(settings: GatewaySettings, attempts: int) -> float:
    """Exponential backoff: base, 2 x base, 4 x base… capped."""
    delay = settings.reports_retry_base_s * 2 ** max(attempts - 1, 0)
    return float(min(delay, settings.reports_retry_max_delay_s))


# --- the worker --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """A delivery leased for sending, with what its subscription asks for."""

    delivery_id: int
    attempts: int
    period_start: datetime
    period_end: datetime
    subscription_id: int
    site: str
    format: str
    frequency: str
    email: str
    source: str | None


class SendFailed(RuntimeError):
    """The report could not be built or the mail relay did not take it."""


def report_email(
    settings: GatewaySettings, claimed: Claimed, content: bytes, checksum: str, data: ReportData
) -> EmailMessage:
    """The e-mail: key figures and the checksum in the text, the report attached."""
    day = data.start.date().isoformat()
    # Lines up to RFC 5322's 998 characters: the checksum header stays on one line, unfolded.
    msg = EmailMessage(policy=policy.SMTP.clone(max_line_length=998))
    msg["Subject"] = f"[SP-E] {claimed.frequency} report {claimed.site} {day}"
    msg["From"] = settings.reports_smtp_from
    msg["To"] = claimed.email
    msg["X-SPE-Report-Delivery"] = str(claimed.delivery_id)
    msg["X-SPE-Data-SHA256"] = checksum
    lines = [
        f"SP-E {claimed.frequency} energy report for site {claimed.site}",
        f"Period: {data.start.isoformat()} to {data.end.isoformat()} (end exclusive)",
        f"Source: {data.source_label}",
        "",
        *(f"{label}: {value}" for label, value in kpis(data)),
        "",
        f"Data SHA-256: {checksum}",
        f"Subscription {claimed.subscription_id}, delivery {claimed.delivery_id}.",
    ]
    msg.set_content("\n".join(lines))
    maintype, subtype = _MEDIA[claimed.format]
    name = f"spe-report-{claimed.site}-{data.start:%Y%m%d}-{data.end:%Y%m%d}.{claimed.format}"
    msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return msg


def send_email(settings: GatewaySettings, msg: EmailMessage) -> None:
    """Hand the message to the SMTP relay (blocking: run it in a thread)."""
    if not settings.alerts_smtp_host:
        raise SendFailed("ALERTS_SMTP_HOST is not set: no mail relay to send reports through")
    with smtplib.SMTP(
        settings.alerts_smtp_host, settings.alerts_smtp_port, timeout=settings.alerts_smtp_timeout_s
    ) as smtp:
        if settings.alerts_smtp_starttls:
            smtp.starttls()
        if settings.alerts_smtp_user:
            smtp.login(settings.alerts_smtp_user, settings.alerts_smtp_password)
        smtp.send_message(msg)


class ReportWorker:
    """Schedules due subscriptions and sends due deliveries; ``run_once`` is one tick."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.settings: GatewaySettings = app.state.settings

    def _session(self) -> Session:
        session: Session = self.app.state.db.sessionmaker()
        return session

    def schedule_due(self) -> int:
        """Add the just-ended period's delivery to every subscription that is due."""
        at = now_utc()
        created = 0
        with self._session() as session, session.begin():
            due = session.scalars(
                select(ReportSubscription)
                .where(ReportSubscription.active, ReportSubscription.next_run_at <= at)
                .with_for_update(skip_locked=True)
            ).all()
            for sub in due:
                tz = ZoneInfo(sub.site_timezone)
                created += _queue(session, sub, *last_period(sub.frequency, tz, at), at)
                sub.next_run_at = next_run(sub.frequency, tz, at, self.settings.reports_send_hour)
        return created

    def claim(self) -> Claimed | None:
        """Lease the next due delivery (or one whose sender died), if any."""
        at = now_utc()
        with self._session() as session, session.begin():
            row = session.execute(
                select(ReportDelivery, ReportSubscription)
                .join(ReportSubscription, ReportSubscription.id == ReportDelivery.subscription_id)
                .where(
                    ReportSubscription.active,
                    ReportDelivery.next_attempt_at <= at,
                    (ReportDelivery.status.in_(("pending", "retrying")))
                    | ((ReportDelivery.status == "sending") & (ReportDelivery.lease_until < at)),
                )
                .order_by(ReportDelivery.next_attempt_at, ReportDelivery.id)
                .limit(1)
                .with_for_update(of=ReportDelivery, skip_locked=True)
            ).first()
            if row is None:
                return None
            delivery, sub = row
            delivery.status = "sending"
            delivery.attempts += 1
            delivery.lease_until = at + timedelta(seconds=self.settings.reports_lease_s)
            return Claimed(
                delivery.id, delivery.attempts, delivery.period_start, delivery.period_end,
                sub.id, sub.site, sub.format, sub.frequency, sub.email, sub.source,
            )  # fmt: skip

    def _finish(self, claimed: Claimed, **values: object) -> None:
        with self._session() as session, session.begin():
            # Only if the lease is still ours (attempts unchanged): a slow sender whose lease
            # expired and was taken over does not overwrite the newer attempt's outcome.
            session.execute(
                update(ReportDelivery)
                .where(
                    ReportDelivery.id == claimed.delivery_id,
                    ReportDelivery.status == "sending",
                    ReportDelivery.attempts == claimed.attempts,
                )
                .values(lease_until=None, **values)
            )
            if values.get("status") == "delivered":
                audit(
                    session,
                    actor=f"report-subscription:{claimed.subscription_id}",
                    action=f"report.delivered_{claimed.format}",
                    target=f"site:{claimed.site}",
                    detail={
                        "delivery_id": claimed.delivery_id,
                        "email": claimed.email,
                        "start": claimed.period_start.isoformat(),
                        "end": claimed.period_end.isoformat(),
                        "sha256": values.get("sha256"),
                    },
                )

    async def attempt(self, claimed: Claimed) -> bool:
        """Build and send one leased delivery; record the outcome. True when delivered."""
        caller = Caller("user", f"report-subscription:{claimed.subscription_id}", "viewer")
        try:
            content, checksum, data = await render_report(
                self.app, caller, claimed.site, claimed.period_start, claimed.period_end,
                claimed.source, claimed.format,  # type: ignore[arg-type]
            )  # fmt: skip
            msg = report_email(self.settings, claimed, content, checksum, data)
            await run_in_threadpool(send_email, self.settings, msg)
        except Exception as exc:  # any failure (service down, relay refusing): kept, retried
            error = exc.detail if isinstance(exc, UpstreamFailed) else f"{exc}"
            error = f"{type(exc).__name__}: {error}"[:1000]
            REPORT_DELIVERIES.labels(claimed.format, "failed").inc()
            if claimed.attempts >= self.settings.reports_max_attempts:
                log.error("report delivery %s failed for good: %s", claimed.delivery_id, error)
                await run_in_threadpool(self._finish, claimed, status="failed", last_error=error)
            else:
                delay = retry_delay_s(self.settings, claimed.attempts)
                log.warning(
                    "report delivery %s failed (attempt %s), retrying in %.0f s: %s",
                    claimed.delivery_id, claimed.attempts, delay, error,
                )  # fmt: skip
                await run_in_threadpool(
                    self._finish, claimed, status="retrying", last_error=error,
                    next_attempt_at=now_utc() + timedelta(seconds=delay),
                )  # fmt: skip
            return False
        REPORT_DELIVERIES.labels(claimed.format, "delivered").inc()
        await run_in_threadpool(
            self._finish, claimed, status="delivered", delivered_at=now_utc(),
            sha256=checksum, bytes=len(content), last_error=None,
        )  # fmt: skip
        return True

    async def run_once(self) -> int:
        """One tick: schedule, then send up to SEND_PER_TICK deliveries; the number attempted."""
        await run_in_threadpool(self.schedule_due)
        attempted = 0
        while attempted < SEND_PER_TICK:
            claimed = await run_in_threadpool(self.claim)
            if claimed is None:
                break
            await self.attempt(claimed)
            attempted += 1
        return attempted

    async def loop(self) -> None:
        """Tick every REPORTS_POLL_S, logging (never dying on) a failed tick."""
        period = self.settings.reports_poll_s
        await asyncio.sleep(min(period, 5.0))  # the services may still be starting
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("scheduled reports tick failed; next in %.0f s", period)
            await asyncio.sleep(period)


def _queue(
    session: Session, sub: ReportSubscription, start: datetime, end: datetime, at: datetime
) -> int:
    """A pending delivery of [start, end) for ``sub``, unless that period already has one."""
    result = session.execute(
        insert(ReportDelivery)
        .values(subscription_id=sub.id, period_start=start, period_end=end, next_attempt_at=at)
        .on_conflict_do_nothing(index_elements=["subscription_id", "period_start"])
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the worker for the app's lifetime (merged into the app's lifespan)."""
    worker = ReportWorker(app)
    app.state.report_worker = worker
    task = asyncio.create_task(worker.loop()) if worker.settings.reports_poll_s > 0 else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# --- the API -----------------------------------------------------------------------------------

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "not authenticated"},
    403: {"model": ErrorOut, "description": "needs the operator role"},
    404: {"model": ErrorOut, "description": "unknown site, subscription or delivery"},
}
router = APIRouter(
    prefix="/api/v1/report-subscriptions",
    tags=["report subscriptions"],
    responses=_ERRORS,
    lifespan=_lifespan,
)
SubscriptionId = Annotated[int, Path(ge=1, le=2**31 - 1)]
DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _get(session: Session, subscription_id: int) -> ReportSubscription:
    sub = session.get(ReportSubscription, subscription_id)
    if sub is None:
        raise NotFound(f"no report subscription with id {subscription_id}")
    return sub


def _out(session: Session, sub: ReportSubscription) -> ReportSubscriptionOut:
    out = ReportSubscriptionOut.model_validate(sub)
    last = session.scalars(
        select(ReportDelivery)
        .where(ReportDelivery.subscription_id == sub.id)
        .order_by(ReportDelivery.id.desc())
        .limit(1)
    ).first()
    out.last_delivery = ReportDeliveryOut.model_validate(last) if last else None
    return out


@router.post(
    "",
    response_model=ReportSubscriptionOut,
    status_code=status.HTTP_201_CREATED,
    summary="Subscribe a mailbox to a site's daily or weekly report (PDF or Excel)",
)
async def create_subscription(
    body: ReportSubscriptionIn, request: Request, session: SessionDep, caller: OperatorDep
) -> ReportSubscriptionOut | Response:
    """Daily reports cover the previous local day, weekly ones Monday-Sunday; they are due at
    REPORTS_SEND_HOUR (06:00 by default) in the site's time zone. Role: operator."""
    try:
        site = await site_info(request.app, caller, body.site)
    except UpstreamFailed as exc:
        return exc.response
    settings: GatewaySettings = request.app.state.settings
    tz = ZoneInfo(site["timezone"])
    sub = ReportSubscription(
        **body.model_dump(),
        site_timezone=site["timezone"],
        created_by=caller.actor,
        next_run_at=next_run(body.frequency, tz, now_utc(), settings.reports_send_hour),
    )

    def _store() -> ReportSubscriptionOut:
        session.add(sub)
        session.flush()
        audit(
            session, actor=caller.actor, action="report_subscription.create",
            target=f"report_subscription:{sub.id}",
            detail=body.model_dump(), client_addr=client_addr(request),
        )  # fmt: skip
        return _out(session, sub)

    return await run_in_threadpool(_store)


@router.get("", response_model=list[ReportSubscriptionOut], summary="Report subscriptions")
def list_subscriptions(
    session: SessionDep,
    _: OperatorDep,
    site: Annotated[str | None, Query(max_length=32)] = None,
    include_inactive: bool = False,
) -> list[ReportSubscriptionOut]:
    """Each with its last delivery's state. Role: operator."""
    q = select(ReportSubscription).order_by(ReportSubscription.id)
    if site:
        q = q.where(ReportSubscription.site == site)
    if not include_inactive:
        q = q.where(ReportSubscription.active)
    return [_out(session, s) for s in session.scalars(q)]


@router.get("/{subscription_id}", response_model=ReportSubscriptionOut, summary="One subscription")
def read_subscription(
    subscription_id: SubscriptionId, session: SessionDep, _: OperatorDep
) -> ReportSubscriptionOut:
    return _out(session, _get(session, subscription_id))


@router.delete(
    "/{subscription_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Unsubscribe (kept for the record, no further report)",
)
def delete_subscription(
    subscription_id: SubscriptionId, request: Request, session: SessionDep, caller: OperatorDep
) -> Response:
    """Its creator or an admin. Role: operator."""
    sub = _get(session, subscription_id)
    if sub.created_by != caller.actor and not caller.can("admin"):
        raise Forbidden(f"subscription {subscription_id} is {sub.created_by!r}'s; ask an admin")
    sub.active = False
    audit(
        session, actor=caller.actor, action="report_subscription.delete",
        target=f"report_subscription:{sub.id}", client_addr=client_addr(request),
    )  # fmt: skip
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{subscription_id}/deliveries",
    response_model=ReportDeliveryPage,
    summary="A subscription's deliveries, newest first (keyset pagination)",
)
def list_deliveries(
    subscription_id: SubscriptionId,
    session: SessionDep,
    _: OperatorDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> ReportDeliveryPage:
    """pending, sending, retrying (with the last error), delivered (with the checksum), failed."""
    _get(session, subscription_id)
    q = (
        select(ReportDelivery)
        .where(ReportDelivery.subscription_id == subscription_id)
        .order_by(ReportDelivery.id.desc())
        .limit(limit + 1)
    )
    if before_id:
        q = q.where(ReportDelivery.id < before_id)
    rows = session.scalars(q).all()
    page = rows[:limit]
    return ReportDeliveryPage(
        items=[ReportDeliveryOut.model_validate(d) for d in page],
        next_before_id=page[-1].id if len(rows) > limit else None,
    )


@router.post(
    "/{subscription_id}/send",
    response_model=ReportDeliveryOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send the last complete period's report now",
    responses={409: {"model": ErrorOut, "description": "the subscription is cancelled"}},
)
def send_now(
    subscription_id: SubscriptionId, request: Request, session: SessionDep, caller: OperatorDep
) -> ReportDelivery:
    """Queues (or re-queues) the delivery of the last complete period; the worker sends it
    within REPORTS_POLL_S. Role: operator."""
    sub = _get(session, subscription_id)
    if not sub.active:
        raise Conflict(f"subscription {subscription_id} has been cancelled")
    at = now_utc()
    start, end = last_period(sub.frequency, ZoneInfo(sub.site_timezone), at)
    _queue(session, sub, start, end, at)
    delivery = session.scalars(
        select(ReportDelivery)
        .where(ReportDelivery.subscription_id == sub.id, ReportDelivery.period_start == start)
        .with_for_update()
    ).one()
    if delivery.status != "sending":  # being sent right now: nothing to do
        if delivery.status in ("delivered", "failed"):
            delivery.status = "retrying"
        delivery.next_attempt_at = at
    audit(
        session, actor=caller.actor, action="report_subscription.send",
        target=f"report_subscription:{sub.id}", detail={"delivery_id": delivery.id},
        client_addr=client_addr(request),
    )  # fmt: skip
    session.flush()
    return delivery


@router.post(
    "/{subscription_id}/deliveries/{delivery_id}/retry",
    response_model=ReportDeliveryOut,
    summary="Send a failed or retrying delivery again now",
    responses={409: {"model": ErrorOut, "description": "already delivered"}},
)
def retry_delivery(
    subscription_id: SubscriptionId,
    delivery_id: DeliveryId,
    request: Request,
    session: SessionDep,
    caller: OperatorDep,
) -> ReportDelivery:
    """Role: operator."""
    delivery = session.scalars(
        select(ReportDelivery)
        .where(ReportDelivery.id == delivery_id, ReportDelivery.subscription_id == subscription_id)
        .with_for_update()
    ).first()
    if delivery is None:
        raise NotFound(f"subscription {subscription_id} has no delivery {delivery_id}")
    if delivery.status == "delivered":
        raise Conflict(f"delivery {delivery_id} was delivered at {delivery.delivered_at}")
    if delivery.status != "sending":
        delivery.status, delivery.next_attempt_at = "retrying", now_utc()
    audit(
        session, actor=caller.actor, action="report_delivery.retry",
        target=f"report_delivery:{delivery_id}", client_addr=client_addr(request),
    )  # fmt: skip
    session.flush()
    return delivery
