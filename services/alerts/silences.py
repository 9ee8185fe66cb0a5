"""Silences: windows where notifications are suppressed (the incident is still recorded).

A silence applies to one site or all (``site`` NULL) and one rule or all (``rule_id`` NULL).
It is either one-off (``starts_at`` → ``ends_at``) or recurring: on the listed local weekdays
(0 = Monday) from ``start_time`` to ``end_time`` in ``timezone``, active between
``starts_at`` and ``ends_at`` (NULL: no end). A window whose end is at or before its start
runs past midnight into the next day (nightly 22:00 → 06:00); start == end is the whole day
(weekends: weekdays [5, 6], 00:00 → 00:00).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from services.alerts.models import Incident, Silence


def covers(silence: Silence, at: datetime) -> bool:
    """True when ``silence`` is in force at the instant ``at``."""
    if silence.expired_at is not None and silence.expired_at <= at:
        return False
    if at < silence.starts_at or (silence.ends_at is not None and at >= silence.ends_at):
        return False
    if silence.weekdays is None or silence.start_time is None or silence.end_time is None:
        return True
    local = at.astimezone(ZoneInfo(silence.timezone))
    t, day, days = local.time(), local.weekday(), set(silence.weekdays)
    start, end = silence.start_time, silence.end_time
    if start == end:
        return day in days
    if start < end:
        return day in days and start <= t < end
    # Past midnight: the evening part belongs to the listed day, the morning to the next.
    return (day in days and t >= start) or ((day - 1) % 7 in days and t < end)


def silence_for(session: Session, incident: Incident, at: datetime) -> Silence | None:
    """The first silence in force at ``at`` for this incident's site and rule, if any."""
    candidates = session.scalars(
        select(Silence)
        .where(
            Silence.expired_at.is_(None) | (Silence.expired_at > at),
            Silence.starts_at <= at,
            or_(Silence.ends_at.is_(None), Silence.ends_at > at),
            or_(Silence.site.is_(None), Silence.site == incident.site),
            or_(Silence.rule_id.is_(None), Silence.rule_id == incident.rule_id),
        )
        .order_by(Silence.id)
    )
    return next((s for s in candidates if covers(s, at)), None)
