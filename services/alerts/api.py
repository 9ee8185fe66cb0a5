"""Alerts HTTP API: evaluation, incidents and their lifecycle, rules, silences, deliveries,
and the deficit histogram. Writes are in the request's transaction (SessionDep commits)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.alerts import incidents as lifecycle
from services.alerts.config import AlertsSettings
from services.alerts.evaluation import check_range, evaluate_site
from services.alerts.metrics import EVALUATIONS
from services.alerts.models import (
    AuditEntry,
    Delivery,
    Incident,
    Notification,
    Rule,
    RuleOverride,
    RuleStatus,
    Silence,
)
from services.alerts.rules import parse_params, rules_for_site
from services.alerts.schemas import (
    AcknowledgeIn,
    AssignIn,
    AuditOut,
    AuditPage,
    DeliveryOut,
    DeliveryPage,
    EffectiveRuleOut,
    EvaluateIn,
    EvaluationOut,
    FeedbackIn,
    HistogramOut,
    IncidentDetail,
    IncidentOut,
    IncidentPage,
    IncidentStatus,
    NotificationOut,
    OverrideIn,
    OverrideOut,
    ResolveIn,
    RuleIn,
    RuleOut,
    RulePatch,
    Severity,
    SilenceIn,
    SilenceOut,
)
from services.alerts.silences import covers
from services.alerts.sources import Sources
from services.common.auth import Principal, ReaderDep, WriterDep, require_role
from services.common.db import SessionDep
from services.common.errors import BadInput, Conflict, NotFound
from services.common.query_time import QueryTime

router = APIRouter(prefix="/v1")
AdminDep = Annotated[Principal, Depends(require_role("admin"))]
SiteCodePath = Annotated[str, Path(max_length=32)]
Limit = Annotated[int, Query(ge=1, le=1000)]
BeforeId = Annotated[
    int | None, Query(ge=1, le=2**63 - 1, description="next_before_id of the previous page")
]


def _settings(request: Request) -> AlertsSettings:
    settings: AlertsSettings = request.app.state.settings
    return settings


def _sources(request: Request) -> Sources:
    sources: Sources = request.app.state.sources
    return sources


SettingsDep = Annotated[AlertsSettings, Depends(_settings)]
SourcesDep = Annotated[Sources, Depends(_sources)]


# --- evaluation ------------------------------------------------------------------------------


@router.post(
    "/evaluate",
    response_model=EvaluationOut,
    tags=["evaluation"],
    summary="Evaluate a site's rules on new data (ingest calls this after it commits)",
    responses={404: {"description": "no such site"}},
)
def evaluate(
    body: EvaluateIn,
    session: SessionDep,
    settings: SettingsDep,
    sources: SourcesDep,
    caller: WriterDep,
) -> EvaluationOut:
    """Idempotent: evaluating the same data again changes nothing."""
    end = body.end or datetime.now(UTC)
    start = body.start or end - timedelta(hours=settings.alerts_eval_lookback_h)
    try:
        result = evaluate_site(
            session, sources, settings, body.site, start, end, trigger=f"api:{caller.subject}"
        )
    except Exception:
        EVALUATIONS.labels("api", "error").inc()
        raise
    EVALUATIONS.labels("api", "ok").inc()
    assert result is not None  # waiting for the lock always evaluates
    return EvaluationOut.model_validate(result)


# --- incidents -------------------------------------------------------------------------------

incidents = APIRouter(prefix="/incidents", tags=["incidents"])


@incidents.get("", response_model=IncidentPage, summary="Incidents, newest first (keyset pages)")
def list_incidents(
    session: SessionDep,
    _: ReaderDep,
    site: Annotated[str | None, Query(max_length=32)] = None,
    severity: Severity | None = None,
    status_: Annotated[IncidentStatus | None, Query(alias="status")] = None,
    active: Annotated[bool | None, Query(description="true: open or acknowledged")] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    start: Annotated[QueryTime | None, Query(description="incidents active after this")] = None,
    end: Annotated[QueryTime | None, Query(description="incidents that began before this")] = None,
    limit: Limit = 100,
    before_id: BeforeId = None,
) -> IncidentPage:
    """Filter by site, severity, status, kind and time range; follow next_before_id."""
    if start and end and end <= start:
        raise BadInput("query.end: end must be after start")
    q = select(Incident).order_by(Incident.id.desc()).limit(limit + 1)
    if site:
        q = q.where(Incident.site == site)
    if severity:
        q = q.where(Incident.severity == severity)
    if status_:
        q = q.where(Incident.status == status_)
    if active is not None:
        q = q.where((Incident.status != "resolved") if active else (Incident.status == "resolved"))
    if kind:
        q = q.where(Incident.kind == kind)
    if end:
        q = q.where(Incident.first_seen_at < end)
    if start:
        q = q.where(or_(Incident.resolved_at.is_(None), Incident.resolved_at >= start))
    if before_id:
        q = q.where(Incident.id < before_id)
    rows = session.scalars(q).all()
    page = rows[:limit]
    return IncidentPage(
        items=[IncidentOut.model_validate(i) for i in page],
        next_before_id=page[-1].id if len(rows) > limit else None,
    )


@incidents.get("/{incident_id}", response_model=IncidentDetail, summary="One incident")
def read_incident(
    incident_id: Annotated[int, Path(ge=1, le=2**63 - 1)], session: SessionDep, _: ReaderDep
) -> IncidentDetail:
    """The incident with its audit trail and its notifications."""
    inc = lifecycle.get_incident(session, incident_id)
    trail = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.entity == "incident", AuditEntry.entity_id == str(inc.id))
        .order_by(AuditEntry.id)
    ).all()
    notes = session.scalars(
        select(Notification).where(Notification.incident_id == inc.id).order_by(Notification.id)
    ).all()
    return IncidentDetail(
        **IncidentOut.model_validate(inc).model_dump(),
        audit=[AuditOut.model_validate(a) for a in trail],
        notifications=[NotificationOut.model_validate(n) for n in notes],
    )


IncidentId = Annotated[int, Path(ge=1, le=2**63 - 1)]


_STATE_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "the incident is already resolved (or acknowledged)"}
}


@incidents.post(
    "/{incident_id}/acknowledge",
    response_model=IncidentOut,
    summary="Acknowledge",
    responses=_STATE_CONFLICT,
)
def acknowledge(
    incident_id: IncidentId, body: AcknowledgeIn, session: SessionDep, caller: WriterDep
) -> Incident:
    """open → acknowledged, by the caller, with an optional comment."""
    inc = lifecycle.acknowledge(session, incident_id, caller.subject, body.comment)
    lifecycle.refresh_open_gauge(session)
    return inc


@incidents.post(
    "/{incident_id}/resolve",
    response_model=IncidentOut,
    summary="Resolve",
    responses=_STATE_CONFLICT,
)
def resolve(
    incident_id: IncidentId,
    body: ResolveIn,
    session: SessionDep,
    settings: SettingsDep,
    caller: WriterDep,
) -> Incident:
    """open/acknowledged → resolved by the caller; later data makes a new incident."""
    inc = lifecycle.resolve(session, settings, incident_id, caller.subject, body.comment)
    lifecycle.refresh_open_gauge(session)
    return inc


@incidents.post("/{incident_id}/feedback", response_model=IncidentOut, summary="Give feedback")
def feedback(
    incident_id: IncidentId, body: FeedbackIn, session: SessionDep, caller: WriterDep
) -> Incident:
    """True or false positive, with a comment; in any status."""
    return lifecycle.give_feedback(
        session, incident_id, caller.subject, body.true_positive, body.comment
    )


@incidents.post("/{incident_id}/assign", response_model=IncidentOut, summary="Assign")
def assign(
    incident_id: IncidentId, body: AssignIn, session: SessionDep, caller: WriterDep
) -> Incident:
    """Set (or clear, with null) who is in charge."""
    return lifecycle.assign(session, incident_id, caller.subject, body.assignee)


@router.get("/audit", response_model=AuditPage, tags=["audit"], summary="The audit log")
def read_audit(
    session: SessionDep,
    _: ReaderDep,
    entity: Annotated[str | None, Query(max_length=32)] = None,
    entity_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 100,
    before_id: BeforeId = None,
) -> AuditPage:
    """Newest first; every change to incidents, rules and silences."""
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
    if entity:
        q = q.where(AuditEntry.entity == entity)
    if entity_id:
        q = q.where(AuditEntry.entity_id == entity_id)
    if before_id:
        q = q.where(AuditEntry.id < before_id)
    rows = session.scalars(q).all()
    page = rows[:limit]
    return AuditPage(
        items=[AuditOut.model_validate(a) for a in page],
        next_before_id=page[-1].id if len(rows) > limit else None,
    )


# --- rules -----------------------------------------------------------------------------------

rules = APIRouter(prefix="/rules", tags=["rules"])
RuleId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _rule(session: Session, rule_id: int) -> Rule:
    rule = session.get(Rule, rule_id)
    if rule is None:
        raise NotFound(f"no rule with id {rule_id}; list rules with GET /v1/rules")
    return rule


def _rule_out(session: Session, rule: Rule) -> RuleOut:
    overrides = session.scalars(
        select(RuleOverride).where(RuleOverride.rule_id == rule.id).order_by(RuleOverride.site)
    ).all()
    out = RuleOut.model_validate(rule)
    out.overrides = [OverrideOut.model_validate(o) for o in overrides]
    return out


def _rule_snapshot(rule: Rule) -> dict[str, Any]:
    return {
        k: getattr(rule, k)
        for k in (
            "name",
            "kind",
            "severity",
            "sites",
            "params",
            "pending_s",
            "recovery_s",
            "enabled",
        )
    }


@rules.get("", response_model=list[RuleOut], summary="Every rule with its site overrides")
def list_rules(session: SessionDep, _: ReaderDep) -> list[RuleOut]:
    return [_rule_out(session, r) for r in session.scalars(select(Rule).order_by(Rule.id))]


@rules.get("/{rule_id}", response_model=RuleOut, summary="One rule")
def read_rule(rule_id: RuleId, session: SessionDep, _: ReaderDep) -> RuleOut:
    return _rule_out(session, _rule(session, rule_id))


_NAME_TAKEN: dict[int | str, dict[str, Any]] = {409: {"description": "a rule has that name"}}


@rules.post(
    "",
    response_model=RuleOut,
    status_code=status.HTTP_201_CREATED,
    summary="Add a rule",
    responses=_NAME_TAKEN,
)
def create_rule(body: RuleIn, session: SessionDep, caller: AdminDep) -> RuleOut:
    """A rule for every site (sites null) or a group; parameters checked for the kind."""
    parse_params(body.kind, body.params)
    rule = Rule(**body.model_dump(), created_by=caller.subject)
    try:
        with session.begin_nested():
            session.add(rule)
    except IntegrityError:
        raise Conflict(f"a rule named {body.name!r} already exists") from None
    lifecycle.audit(session, caller.subject, "rule_created", "rule", rule.id, _rule_snapshot(rule))
    return _rule_out(session, rule)


@rules.patch("/{rule_id}", response_model=RuleOut, summary="Change a rule", responses=_NAME_TAKEN)
def update_rule(rule_id: RuleId, body: RulePatch, session: SessionDep, caller: AdminDep) -> RuleOut:
    """Only the fields sent change; params are replaced whole (send them all)."""
    rule = _rule(session, rule_id)
    before = _rule_snapshot(rule)
    changes = body.model_dump(exclude_unset=True)
    if "params" in changes:
        parse_params(rule.kind, changes["params"] or {})
        changes["params"] = changes["params"] or {}
    name = changes.get("name", rule.name)
    for key, value in changes.items():
        setattr(rule, key, value)
    rule.updated_at = lifecycle.now()
    # Flushed before any other query: the overrides' SELECT below would autoflush a taken
    # name outside this savepoint, and the IntegrityError became a 500 instead of a 409.
    # The message uses the name read before: the failed flush leaves `rule` unusable.
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"a rule named {name!r} already exists") from None
    for o in session.scalars(select(RuleOverride).where(RuleOverride.rule_id == rule.id)):
        parse_params(rule.kind, {**rule.params, **o.params}, where=f"overrides.{o.site}.params")
    lifecycle.audit(
        session, caller.subject, "rule_updated", "rule", rule.id,
        {"before": before, "after": _rule_snapshot(rule)},
    )  # fmt: skip
    return _rule_out(session, rule)


@rules.delete(
    "/{rule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a rule",
    responses={409: {"description": "incidents refer to the rule: disable it instead"}},
)
def delete_rule(rule_id: RuleId, session: SessionDep, caller: AdminDep) -> Response:
    """Only a rule that never raised an incident; otherwise disable it (the history stays)."""
    rule = _rule(session, rule_id)
    used = session.scalar(select(func.count()).where(Incident.rule_id == rule.id))
    if used:
        raise Conflict(
            f"rule {rule_id} has {used} incident(s); disable it instead "
            "(PATCH enabled=false) so their history keeps its rule"
        )
    lifecycle.audit(session, caller.subject, "rule_deleted", "rule", rule.id, _rule_snapshot(rule))
    session.delete(rule)
    session.flush()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@rules.put(
    "/{rule_id}/overrides/{site}", response_model=OverrideOut, summary="Set a site's override"
)
def put_override(
    rule_id: RuleId,
    site: SiteCodePath,
    body: OverrideIn,
    session: SessionDep,
    caller: AdminDep,
) -> RuleOverride:
    """Replace what this site changes in the rule (params merged over the rule's)."""
    rule = _rule(session, rule_id)
    parse_params(rule.kind, {**rule.params, **body.params}, where="params")
    override = session.get(RuleOverride, (rule.id, site))
    if override is None:
        override = RuleOverride(rule_id=rule.id, site=site)
        session.add(override)
    for key, value in body.model_dump().items():
        setattr(override, key, value)
    override.updated_by, override.updated_at = caller.subject, lifecycle.now()
    session.flush()
    lifecycle.audit(
        session, caller.subject, "override_set", "rule", rule.id,
        {"site": site, **body.model_dump()},
    )  # fmt: skip
    return override


@rules.delete(
    "/{rule_id}/overrides/{site}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a site's override",
)
def delete_override(
    rule_id: RuleId, site: SiteCodePath, session: SessionDep, caller: AdminDep
) -> Response:
    rule = _rule(session, rule_id)
    gone = session.execute(
        delete(RuleOverride).where(RuleOverride.rule_id == rule.id, RuleOverride.site == site)
    ).rowcount  # type: ignore[attr-defined]
    if not gone:
        raise NotFound(f"rule {rule_id} has no override for site {site!r}")
    lifecycle.audit(session, caller.subject, "override_removed", "rule", rule.id, {"site": site})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/sites/{code}/rules",
    response_model=list[EffectiveRuleOut],
    tags=["rules"],
    summary="The rules as they apply to one site, with their last evaluation status",
)
def site_rules(code: SiteCodePath, session: SessionDep, _: ReaderDep) -> list[EffectiveRuleOut]:
    statuses = {
        s.rule_id: s for s in session.scalars(select(RuleStatus).where(RuleStatus.site == code))
    }
    out = []
    for r in rules_for_site(session, code):
        item = EffectiveRuleOut.model_validate(r)
        if (st := statuses.get(r.id)) is not None:
            item.status, item.status_detail, item.evaluated_at = (
                st.status,
                st.detail,
                st.evaluated_at,
            )
        out.append(item)
    return out


# --- silences --------------------------------------------------------------------------------

silences = APIRouter(prefix="/silences", tags=["silences"])


def _silence_out(s: Silence) -> SilenceOut:
    out = SilenceOut.model_validate(s)
    out.active_now = covers(s, datetime.now(UTC))
    return out


@silences.get("", response_model=list[SilenceOut], summary="Silences, newest first")
def list_silences(
    session: SessionDep,
    _: ReaderDep,
    include_expired: bool = False,
    site: Annotated[str | None, Query(max_length=32)] = None,
) -> list[SilenceOut]:
    q = select(Silence).order_by(Silence.id.desc()).limit(1000)
    if not include_expired:
        at = datetime.now(UTC)
        q = q.where(
            Silence.expired_at.is_(None), or_(Silence.ends_at.is_(None), Silence.ends_at > at)
        )
    if site:
        q = q.where(or_(Silence.site.is_(None), Silence.site == site))
    return [_silence_out(s) for s in session.scalars(q)]


@silences.post(
    "", response_model=SilenceOut, status_code=status.HTTP_201_CREATED, summary="Add a silence"
)
def create_silence(body: SilenceIn, session: SessionDep, caller: WriterDep) -> SilenceOut:
    """One-off (starts_at → ends_at) or recurring (weekdays, start_time → end_time, timezone)."""
    if body.rule_id is not None:
        _rule(session, body.rule_id)
    values = body.model_dump()
    values["starts_at"] = body.starts_at or datetime.now(UTC)
    if body.ends_at is not None and body.ends_at <= values["starts_at"]:
        raise BadInput("ends_at: must be after starts_at (default: now)")
    silence = Silence(**values, created_by=caller.subject)
    session.add(silence)
    session.flush()
    lifecycle.audit(
        session, caller.subject, "silence_created", "silence", silence.id,
        body.model_dump(mode="json"),
    )  # fmt: skip
    return _silence_out(silence)


@silences.delete(
    "/{silence_id}", status_code=status.HTTP_204_NO_CONTENT, summary="End a silence now"
)
def expire_silence(
    silence_id: Annotated[int, Path(ge=1, le=2**63 - 1)], session: SessionDep, caller: WriterDep
) -> Response:
    """Kept for the record, marked expired."""
    silence = session.get(Silence, silence_id)
    if silence is None or silence.expired_at is not None:
        raise NotFound(f"no active silence with id {silence_id}")
    silence.expired_at = datetime.now(UTC)
    lifecycle.audit(session, caller.subject, "silence_expired", "silence", silence.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- deliveries ------------------------------------------------------------------------------

deliveries = APIRouter(prefix="/deliveries", tags=["notifications"])


@deliveries.get("", response_model=DeliveryPage, summary="Notification deliveries and state")
def list_deliveries(
    session: SessionDep,
    _: ReaderDep,
    status_: Annotated[str | None, Query(alias="status", max_length=16)] = None,
    channel: Annotated[str | None, Query(max_length=16)] = None,
    incident_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Limit = 100,
    before_id: BeforeId = None,
) -> DeliveryPage:
    """Newest first: pending, retrying (with the last error), delivered, failed."""
    q = select(Delivery).order_by(Delivery.id.desc()).limit(limit + 1)
    if status_:
        q = q.where(Delivery.status == status_)
    if channel:
        q = q.where(Delivery.channel == channel)
    if incident_id:
        q = q.where(
            Delivery.id.in_(
                select(Notification.delivery_id).where(Notification.incident_id == incident_id)
            )
        )
    if before_id:
        q = q.where(Delivery.id < before_id)
    rows = session.scalars(q).all()
    page = rows[:limit]
    ids: dict[int, list[int]] = defaultdict(list)
    if page:
        for delivery_id, inc_id in session.execute(
            select(Notification.delivery_id, Notification.incident_id)
            .where(Notification.delivery_id.in_([d.id for d in page]))
            .order_by(Notification.id)
        ).all():
            ids[delivery_id].append(inc_id)  # type: ignore[index]
    items = []
    for d in page:
        out = DeliveryOut.model_validate(d)
        out.incident_ids = ids.get(d.id, [])
        items.append(out)
    return DeliveryPage(items=items, next_before_id=page[-1].id if len(rows) > limit else None)


@deliveries.post(
    "/{delivery_id}/retry",
    response_model=DeliveryOut,
    summary="Send a delivery again now",
    responses={409: {"description": "already delivered"}},
)
def retry_delivery(
    delivery_id: Annotated[int, Path(ge=1, le=2**63 - 1)], session: SessionDep, caller: WriterDep
) -> DeliveryOut:
    """A failed (or retrying) delivery goes back to the queue, due now."""
    d = session.scalars(
        select(Delivery).where(Delivery.id == delivery_id).with_for_update()
    ).first()
    if d is None:
        raise NotFound(f"no delivery with id {delivery_id}")
    if d.status == "delivered":
        raise Conflict(f"delivery {delivery_id} was delivered at {d.delivered_at:%Y-%m-%d %H:%M}")
    d.status, d.next_attempt_at = "retrying", datetime.now(UTC)
    lifecycle.audit(session, caller.subject, "delivery_retry", "delivery", d.id)
    session.flush()
    return DeliveryOut.model_validate(d)


# --- histogram -------------------------------------------------------------------------------


@router.get(
    "/sites/{code}/deficit-histogram",
    response_model=HistogramOut,
    tags=["histogram"],
    summary="Hours where consumption exceeded production, by local hour of day and by day",
)
def deficit_histogram(
    code: SiteCodePath,
    start: QueryTime,
    end: QueryTime,
    sources: SourcesDep,
    _: ReaderDep,
    source: Annotated[str | None, Query(pattern="^(real|simulated|import)$")] = None,
) -> HistogramOut:
    """Computed from ingest's hourly readings of the site, in the site's time zone."""
    check_range(start, end)
    site = sources.site(code)
    hours = sources.hourly(code, start, end, source)
    tz = ZoneInfo(site.timezone)
    by_hour = [{"hour": h, "deficit_hours": 0, "deficit_kwh": 0.0, "hours": 0} for h in range(24)]
    by_day: dict[Any, dict[str, Any]] = {}
    for h in hours:
        local = h.ts.astimezone(tz)
        deficit = h.consumption_kwh - h.production_kwh
        day = by_day.setdefault(
            local.date(), {"date": local.date(), "deficit_hours": 0, "deficit_kwh": 0.0, "hours": 0}
        )
        slot = by_hour[local.hour]
        for b in (slot, day):
            b["hours"] += 1
            if deficit > 0:
                b["deficit_hours"] += 1
                b["deficit_kwh"] += deficit
    for b in (*by_hour, *by_day.values()):
        b["deficit_kwh"] = round(b["deficit_kwh"], 3)
    return HistogramOut(
        site=code,
        timezone=site.timezone,
        start=start,
        end=end,
        source=source,
        hours=len(hours),
        deficit_hours=sum(b["deficit_hours"] for b in by_hour),
        deficit_kwh=round(sum(b["deficit_kwh"] for b in by_hour), 3),
        by_hour=by_hour,  # type: ignore[arg-type]
        by_day=[by_day[d] for d in sorted(by_day)],  # type: ignore[arg-type]
    )


router.include_router(incidents)
router.include_router(rules)
router.include_router(silences)
router.include_router(deliveries)
