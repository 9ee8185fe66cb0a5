"""Incident lifecycle (open → acknowledged → resolved), the audit log and the outbox.

Every change to an incident is written with its audit row and its outbox rows in the same
transaction: a committed incident change is never without its trail or its notifications.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.alerts.config import AlertsSettings
from services.alerts.metrics import OPEN_INCIDENTS
from services.alerts.models import AuditEntry, Incident, Notification
from services.common.errors import Conflict, NotFound

SYSTEM = "system"
_SEVERITY_RANK = {"warning": 1, "critical": 2}


class IncidentNotFound(NotFound):
    """No incident with this id."""


def now() -> datetime:
    return datetime.now(UTC)


def audit(
    session: Session,
    actor: str,
    action: str,
    entity: str,
    entity_id: object,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one row to the audit log (never updated: a trigger refuses it)."""
    session.add(
        AuditEntry(
            actor=actor,
            action=action,
            entity=entity,
            entity_id=str(entity_id),
            details=_jsonable(details or {}),
        )
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def channels_for(settings: AlertsSettings, severity: str) -> list[str]:
    """The channels configured to hear about an incident of this severity."""
    out = []
    if settings.alerts_log_notifications:
        out.append("log")
    rank = _SEVERITY_RANK[severity]
    if settings.alerts_webhook_url and rank >= _SEVERITY_RANK[settings.alerts_webhook_min_severity]:
        out.append("webhook")
    if (
        settings.alerts_smtp_host
        and settings.alerts_smtp_to
        and rank >= _SEVERITY_RANK[settings.alerts_email_min_severity]
    ):
        out.append("email")
    return out


def enqueue(session: Session, settings: AlertsSettings, incident: Incident, event: str) -> None:
    """Outbox rows for an incident event, one per channel; old news is recorded as skipped."""
    age = (now() - incident.last_seen_at).total_seconds()
    stale = age > settings.alerts_notify_max_age_s
    for channel in channels_for(settings, incident.severity):
        session.add(
            Notification(
                incident_id=incident.id,
                event=event,
                channel=channel,
                status="skipped" if stale else "pending",
                reason=(
                    f"historical: last seen {age / 3600:.0f} h ago, over ALERTS_NOTIFY_MAX_AGE_S"
                    if stale
                    else None
                ),
            )
        )


def get_incident(session: Session, incident_id: int, *, lock: bool = False) -> Incident:
    """The incident, optionally locked for update, or a 404."""
    query = select(Incident).where(Incident.id == incident_id)
    if lock:
        query = query.with_for_update()
    incident = session.scalars(query).first()
    if incident is None:
        raise IncidentNotFound(f"no incident with id {incident_id}")
    return incident


def acknowledge(session: Session, incident_id: int, actor: str, comment: str | None) -> Incident:
    """open → acknowledged; a resolved incident cannot be acknowledged (409)."""
    incident = get_incident(session, incident_id, lock=True)
    if incident.status == "resolved":
        raise Conflict(f"incident {incident_id} is resolved; there is nothing to acknowledge")
    if incident.status == "acknowledged":
        raise Conflict(
            f"incident {incident_id} was already acknowledged by {incident.acknowledged_by} "
            f"at {incident.acknowledged_at:%Y-%m-%d %H:%M} UTC"
        )
    at = now()
    incident.status = "acknowledged"
    incident.acknowledged_by, incident.acknowledged_at, incident.ack_comment = actor, at, comment
    incident.updated_at = at
    audit(session, actor, "acknowledged", "incident", incident.id, {"comment": comment})
    return incident


def resolve(
    session: Session, settings: AlertsSettings, incident_id: int, actor: str, comment: str | None
) -> Incident:
    """open/acknowledged → resolved by a person; resolving twice is a 409."""
    incident = get_incident(session, incident_id, lock=True)
    if incident.status == "resolved":
        raise Conflict(f"incident {incident_id} is already resolved (by {incident.resolved_by})")
    at = now()
    incident.status = "resolved"
    incident.resolved_by, incident.resolved_at, incident.resolve_comment = actor, at, comment
    incident.updated_at = at
    audit(session, actor, "resolved", "incident", incident.id, {"comment": comment})
    session.flush()
    enqueue(session, settings, incident, "resolved")
    return incident


def give_feedback(
    session: Session, incident_id: int, actor: str, true_positive: bool, comment: str | None
) -> Incident:
    """Record (or change) the operator's verdict; the audit keeps every earlier one."""
    incident = get_incident(session, incident_id, lock=True)
    at = now()
    previous = incident.feedback
    incident.feedback, incident.feedback_comment = true_positive, comment
    incident.feedback_by, incident.feedback_at, incident.updated_at = actor, at, at
    audit(
        session,
        actor,
        "feedback",
        "incident",
        incident.id,
        {"true_positive": true_positive, "comment": comment, "previous": previous},
    )
    return incident


def assign(session: Session, incident_id: int, actor: str, assignee: str | None) -> Incident:
    """Set or clear the person in charge."""
    incident = get_incident(session, incident_id, lock=True)
    previous = incident.assignee
    incident.assignee, incident.updated_at = assignee, now()
    audit(
        session,
        actor,
        "assigned",
        "incident",
        incident.id,
        {"assignee": assignee, "previous": previous},
    )
    return incident


def refresh_open_gauge(session: Session) -> None:
    """Set the open-incidents gauge from the database (the truth across replicas)."""
    rows = session.execute(
        select(Incident.severity, func.count())
        .where(Incident.status != "resolved")
        .group_by(Incident.severity)
    ).all()
    counts = {severity: n for severity, n in rows}
    for severity in ("critical", "warning"):
        OPEN_INCIDENTS.labels(severity).set(counts.get(severity, 0))
