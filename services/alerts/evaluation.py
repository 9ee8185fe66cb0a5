"""Evaluate a site's rules on its data and bring its incidents in line, idempotently.

One evaluation of one site runs inside one transaction holding a PostgreSQL advisory lock on
the site, so replicas (and the schedule racing an ingest notification) never interleave: the
second waits (API) or skips (schedule, which will come back). Inside it:

1. read the site and its hourly readings from ingest's API (the rules' look-back included);
2. per rule: hourly rules (deficit, threshold, anomaly) turn each hour into FIRE / CLEAR /
   HOLD and run the state machine (services.alerts.episodes); snapshot rules (forecast
   deficit, equipment risk) read the forecast service's latest answer;
3. reconcile episodes with stored incidents, keyed (rule, site, condition): an episode that
   overlaps an incident (within the recovery period) *is* that incident. Nothing is written
   when nothing differs, so running it twice on the same data changes nothing.

Incidents found in the data are dated in data time: ``first_seen_at`` / ``last_seen_at`` are
the hours the condition held, and an automatic resolution is dated at the end of the hour
that completed the recovery period.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

import holidays
import numpy as np
from sqlalchemy import or_, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from services.alerts.config import AlertsSettings
from services.alerts.detect import HourlySeries, detect
from services.alerts.episodes import CLEAR, FIRE, HOLD, HOUR_S, Episode, Obs, run_episodes
from services.alerts.incidents import SYSTEM, audit, enqueue, now, refresh_open_gauge
from services.alerts.metrics import RULE_EVALUATIONS
from services.alerts.models import Incident, RuleStatus
from services.alerts.rules import (
    AnomalyRuleParams,
    DeficitParams,
    EffectiveRule,
    EquipmentRiskParams,
    ForecastDeficitParams,
    ThresholdParams,
    rules_for_site,
)
from services.alerts.sources import Hour, Site, Sources, Unavailable
from services.common.errors import AppError, BadInput

log = logging.getLogger("spe.alerts.evaluation")
HOURLY_KINDS = ("deficit", "threshold", "anomaly")
# State-machine warm-up before the evaluated range: an episode running into the range is
# rebuilt from its start, so it matches the incident it already is.
WARMUP = timedelta(hours=24)
# An active incident older than this before the range is not rebuilt (its episode is
# followed from the warm-up on, and it still resolves when its condition clears).
MAX_EXTENSION = timedelta(days=31)
MAX_RANGE = timedelta(days=366)
_LOCK_CLASS = "spe.alerts.evaluate"
# What started the evaluation under way (api:<caller> or schedule), for the audit rows.
_TRIGGER: ContextVar[str] = ContextVar("alerts_trigger", default="")


@dataclass
class RuleOutcome:
    """What one rule did at the site in this evaluation."""

    rule_id: int
    name: str
    kind: str
    status: str  # ok | firing | skipped | disabled | error
    detail: str = ""
    opened: int = 0
    updated: int = 0
    resolved: int = 0


@dataclass
class EvaluationResult:
    site: str
    start: datetime
    end: datetime
    judged_from: datetime
    hours: int
    rules: list[RuleOutcome] = field(default_factory=list)
    duration_ms: float = 0.0


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


def _dt(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _floor_hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def check_range(start: datetime, end: datetime) -> None:
    """Refuse a range the evaluation cannot take, naming the field."""
    if end <= start:
        raise BadInput("end: end must be after start")
    if end - start > MAX_RANGE:
        raise BadInput(f"end: evaluate at most {MAX_RANGE.days} days at a time")


def lock_site(session: Session, site: str, *, wait: bool) -> bool:
    """Take the site's evaluation lock for this transaction; False if busy and not waiting."""
    fn = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
    got = session.execute(
        text(f"SELECT {fn}(hashtext(:cls), hashtext(:site))"), {"cls": _LOCK_CLASS, "site": site}
    ).scalar()
    return wait or bool(got)


def evaluate_site(
    session: Session,
    sources: Sources,
    settings: AlertsSettings,
    code: str,
    start: datetime,
    end: datetime,
    *,
    trigger: str,
    wait: bool = True,
) -> EvaluationResult | None:
    """Evaluate every rule covering ``code`` for data in [start, end); None if busy (no wait)."""
    began = time.perf_counter()
    check_range(start, end)
    if not lock_site(session, code, wait=wait):
        return None
    _TRIGGER.set(trigger)
    site = sources.site(code)
    rules = rules_for_site(session, code)
    start_h = _floor_hour(start)
    hourly = [r for r in rules if r.enabled and r.kind in HOURLY_KINDS]
    margin = max([WARMUP] + [timedelta(seconds=r.pending_s + r.recovery_s) for r in hourly])
    judge_from = start_h - margin
    oldest_active = session.scalar(
        select(Incident.first_seen_at)
        .where(
            Incident.site == code,
            Incident.status != "resolved",
            Incident.rule_id.in_([r.id for r in hourly] or [-1]),
        )
        .order_by(Incident.first_seen_at)
        .limit(1)
    )
    if oldest_active is not None:
        judge_from = max(min(judge_from, _floor_hour(oldest_active)), start_h - MAX_EXTENSION)
    history = max(
        [AnomalyRuleParams.model_validate(r.params).history_days for r in hourly
         if r.kind == "anomaly" and _valid(r)] or [0]
    )  # fmt: skip
    hours: list[Hour] = []
    if hourly:
        hours = _complete(sources.hourly(code, judge_from - timedelta(days=history), end))
    result = EvaluationResult(code, start, end, judge_from, len(hours))
    for rule in rules:
        outcome = RuleOutcome(rule.id, rule.name, rule.kind, "ok")
        try:
            if not rule.enabled:
                outcome.status, outcome.detail = "disabled", "the rule is disabled for this site"
            elif rule.kind in HOURLY_KINDS:
                _evaluate_hourly(session, settings, rule, site, hours, judge_from, outcome)
            else:
                _evaluate_snapshot(session, settings, sources, rule, site, outcome)
        except AppError as exc:  # bad parameters set through the API: visible, not fatal
            outcome.status, outcome.detail = "error", exc.detail
        RULE_EVALUATIONS.labels(rule.kind, outcome.status).inc()
        result.rules.append(outcome)
    _record_status(session, code, result.rules)
    session.flush()
    refresh_open_gauge(session)
    result.duration_ms = round((time.perf_counter() - began) * 1000, 1)
    return result


def _audit(session: Session, action: str, incident_id: int, details: dict[str, Any]) -> None:
    """An audit row of the rule engine, saying what triggered the evaluation."""
    audit(session, SYSTEM, action, "incident", incident_id, {**details, "trigger": _TRIGGER.get()})


def _valid(rule: EffectiveRule) -> bool:
    try:
        rule.typed()
    except AppError:
        return False
    return True


def _complete(hours: list[Hour]) -> list[Hour]:
    """Drop a last bucket with fewer readings than usual: that hour is still coming in."""
    if len(hours) >= 3:
        usual = int(np.median([h.n_readings for h in hours[-48:]]))
        if hours[-1].n_readings < usual:
            return hours[:-1]
    return hours


def _record_status(session: Session, site: str, outcomes: list[RuleOutcome]) -> None:
    if not outcomes:
        return
    rows = [
        {"rule_id": o.rule_id, "site": site, "status": o.status, "detail": o.detail[:1000]}
        for o in outcomes
    ]
    stmt = insert(RuleStatus).values(rows)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["rule_id", "site"],
            set_={
                "status": stmt.excluded.status,
                "detail": stmt.excluded.detail,
                "evaluated_at": text("now()"),
            },
        )
    )


# --- hourly rules ----------------------------------------------------------------------------


def _three_state(value: float, fire_above: float, clear_at_or_below: float) -> str:
    if value > fire_above:
        return FIRE
    if value <= clear_at_or_below:
        return CLEAR
    return HOLD


def _deficit_obs(
    rule: EffectiveRule, site: Site, hours: list[Hour], outcome: RuleOutcome
) -> tuple[str, float, list[Obs]] | None:
    p: DeficitParams = rule.typed()
    recover = p.min_deficit_kwh if p.recovery_deficit_kwh is None else p.recovery_deficit_kwh
    recover = min(recover, p.min_deficit_kwh)
    obs = []
    if p.basis == "capacity":
        if site.capacity_kw <= 0:
            outcome.status = "skipped"
            outcome.detail = "the site has no production capacity set (capacity_kw = 0)"
            return None
        cap = site.capacity_kw  # kW over one hour = kWh
        for h in hours:
            v = h.consumption_kwh - cap
            why = (
                f"consumption {h.consumption_kwh:.1f} kWh in the hour from {h.ts:%H:%M} exceeds "
                f"the installed capacity ({cap:.0f} kW x 1 h) by {v:.1f} kWh"
            )
            obs.append(Obs(_epoch(h.ts), _three_state(v, p.min_deficit_kwh, recover), v, why))
        return "over_capacity", cap + p.min_deficit_kwh, obs
    for h in hours:
        v = h.consumption_kwh - h.production_kwh
        why = (
            f"consumption {h.consumption_kwh:.1f} kWh against production "
            f"{h.production_kwh:.1f} kWh in the hour from {h.ts:%H:%M}: {v:.1f} kWh short"
        )
        obs.append(Obs(_epoch(h.ts), _three_state(v, p.min_deficit_kwh, recover), v, why))
    return "deficit", p.min_deficit_kwh, obs


def _threshold_obs(
    rule: EffectiveRule, hours: list[Hour], outcome: RuleOutcome
) -> tuple[str, float, list[Obs]] | None:
    p: ThresholdParams = rule.typed()
    if p.above_kwh is None:
        outcome.status = "skipped"
        outcome.detail = "no above_kwh set for this site (set it in a site override)"
        return None
    recover = p.above_kwh if p.recovery_below_kwh is None else p.recovery_below_kwh
    obs = []
    for h in hours:
        v = {
            "consumption": h.consumption_kwh,
            "production": h.production_kwh,
            "deficit": h.consumption_kwh - h.production_kwh,
        }[p.metric]
        why = f"{p.metric} {v:.1f} kWh in the hour from {h.ts:%H:%M} is above {p.above_kwh:g} kWh"
        obs.append(Obs(_epoch(h.ts), _three_state(v, p.above_kwh, recover), v, why))
    return f"{p.metric}_above", p.above_kwh, obs


@lru_cache(maxsize=256)
def _holidays(country: str, year: int) -> frozenset[date]:
    try:
        return frozenset(holidays.country_holidays(country, years=year))
    except NotImplementedError:  # a country the package does not know: no public holidays
        return frozenset()


def hourly_series(hours: list[Hour], country: str | None) -> HourlySeries:
    """The detector's view of ingest's hourly buckets (local hour and day type of each)."""
    local_hour, daytype = [], []
    for h in hours:
        day = h.ts.date()  # ingest gives ts in the site's offset: this is the local date
        weekday = day.weekday()
        if weekday == 6 or (country and day in _holidays(country, day.year)):
            daytype.append(2)
        else:
            daytype.append(1 if weekday == 5 else 0)
        local_hour.append(h.ts.hour)
    return HourlySeries(
        ts=np.array([_epoch(h.ts) for h in hours], dtype=np.int64),
        value=np.array([h.consumption_kwh for h in hours], dtype=np.float64),
        local_hour=np.array(local_hour, dtype=np.int64),
        daytype=np.array(daytype, dtype=np.int64),
    )


def _anomaly_obs(
    rule: EffectiveRule, site: Site, hours: list[Hour], judge_from: datetime
) -> dict[str, list[Obs]]:
    p: AnomalyRuleParams = rule.typed()
    series = hourly_series(hours, site.country_code)
    verdicts = {v.ts: v for v in detect(series, p.detector_params(), _epoch(judge_from))}
    out: dict[str, list[Obs]] = {"spike": [], "drop": [], "stuck": []}
    for t in series.ts[series.ts >= _epoch(judge_from)].tolist():
        v = verdicts.get(t)
        for kind, obs in out.items():
            if v is not None and v.kind == kind:
                # Severity of the excursion: how far from normal, whichever the direction.
                size = abs(v.value - v.expected) if v.expected is not None else v.score
                extra = {"detector": v.detector, "value_kwh": round(v.value, 3), **v.extra}
                if v.expected is not None:
                    extra["expected_kwh"] = round(v.expected, 3)
                obs.append(Obs(t, FIRE, size, v.why, extra))
            else:
                obs.append(Obs(t, CLEAR, 0.0))
    return out


_TITLES = {
    "deficit": "Consumption above production at {site}",
    "over_capacity": "Consumption above installed capacity at {site}",
    "spike": "Consumption spike at {site}",
    "drop": "Consumption drop at {site}",
    "stuck": "Meter stuck at {site}",
}


def _title(rule: EffectiveRule, key: str, site: str) -> str:
    if key in _TITLES:
        return _TITLES[key].format(site=site)
    if key.endswith("_above"):
        return f"{key.removesuffix('_above').capitalize()} above threshold at {site}"
    if key.startswith("forecast:"):
        return f"Deficit forecast at {site} on {key.removeprefix('forecast:')}"
    if key.startswith("equipment:"):
        return f"Failure risk of {key.removeprefix('equipment:')} at {site}"
    return f"{rule.name} at {site}"


def _evaluate_hourly(
    session: Session,
    settings: AlertsSettings,
    rule: EffectiveRule,
    site: Site,
    hours: list[Hour],
    judge_from: datetime,
    outcome: RuleOutcome,
) -> None:
    judged = [h for h in hours if h.ts >= judge_from]
    by_key: dict[str, tuple[float | None, list[Obs]]] = {}
    if rule.kind == "deficit":
        got = _deficit_obs(rule, site, judged, outcome)
        if got:
            by_key[got[0]] = (got[1], got[2])
    elif rule.kind == "threshold":
        got = _threshold_obs(rule, judged, outcome)
        if got:
            by_key[got[0]] = (got[1], got[2])
    else:
        # The detector's thresholds are in the details; peak_value is kWh away from normal.
        for key, obs in _anomaly_obs(rule, site, hours, judge_from).items():
            by_key[key] = (None, obs)
    if outcome.status == "skipped":
        return
    if not judged:
        outcome.detail = "no readings in the evaluated range"
    existing = _incidents(session, rule, site.code, judge_from)
    episodes: list[tuple[Episode, float | None]] = []
    for key, (threshold, obs) in by_key.items():
        barriers = [
            _epoch(i.resolved_at)
            for i in existing
            if i.condition_key == key
            and i.resolved_at is not None
            and i.resolved_by != SYSTEM
            and i.resolved_at >= judge_from
        ]
        found = run_episodes(key, obs, rule.pending_h, rule.recovery_h, barriers)
        episodes.extend((e, threshold) for e in found)
    _reconcile(session, settings, rule, site.code, episodes, existing, judge_from, outcome)


def _incidents(session: Session, rule: EffectiveRule, site: str, since: datetime) -> list[Incident]:
    """This rule's incidents at the site that are active or touch the evaluated span."""
    horizon = since - timedelta(seconds=rule.recovery_s + HOUR_S)
    return list(
        session.scalars(
            select(Incident)
            .where(
                Incident.rule_id == rule.id,
                Incident.site == site,
                or_(Incident.status != "resolved", Incident.last_seen_at >= horizon),
            )
            .order_by(Incident.first_seen_at)
            .with_for_update()
        )
    )


def _matches(inc: Incident, ep: Episode, recovery_s: int) -> bool:
    if inc.condition_key != ep.key:
        return False
    slack = recovery_s + HOUR_S
    if _epoch(inc.first_seen_at) > ep.last + slack or _epoch(inc.last_seen_at) + slack < ep.first:
        return False
    # An episode after a person's resolution is a new incident, not the resolved one.
    manual = inc.resolved_at is not None and inc.resolved_by != SYSTEM
    return not (manual and ep.first >= _epoch(inc.resolved_at))  # type: ignore[arg-type]


def _details(rule: EffectiveRule, ep: Episode) -> dict[str, Any]:
    return {
        "rule": rule.name,
        "why": ep.why,
        "hours_firing": ep.hours,
        "pending_s": rule.pending_s,
        "recovery_s": rule.recovery_s,
        **ep.extra,
    }


def _reconcile(
    session: Session,
    settings: AlertsSettings,
    rule: EffectiveRule,
    site: str,
    episodes: list[tuple[Episode, float | None]],
    existing: list[Incident],
    judge_from: datetime,
    outcome: RuleOutcome,
) -> None:
    episodes.sort(key=lambda pair: pair[0].first)
    matched: dict[int, Incident] = {}
    used: set[int] = set()
    for n, (ep, _) in enumerate(episodes):
        for inc in existing:
            if inc.id not in used and _matches(inc, ep, rule.recovery_s):
                matched[n] = inc
                used.add(inc.id)
                break
    # Active incidents the data no longer shows (readings corrected), or left behind by a
    # new episode of their condition (no data for longer than the look-back): resolved
    # first, so the new incident can open (one active incident per condition).
    renewed = {ep.key for n, (ep, _) in enumerate(episodes) if n not in matched}
    for inc in existing:
        if inc.id in used or inc.status == "resolved":
            continue
        if inc.first_seen_at >= judge_from:
            reason = "the condition is no longer in the data"
        elif inc.condition_key in renewed:
            reason = "superseded: the data has a gap longer than the look-back since last seen"
        else:
            continue
        _auto_resolve(session, settings, inc, now(), reason)
        outcome.resolved += 1
    for n, (ep, threshold) in enumerate(episodes):
        if n in matched:
            _update(session, settings, rule, matched[n], ep, outcome)
        else:
            _open(session, settings, rule, site, ep, threshold, outcome)
    if any(ep.ended_at is None and not ep.cut for ep, _ in episodes):
        outcome.status = "firing"


def _unit(kind: str, key: str) -> str:
    if kind == "equipment_risk":
        return "probability"
    return "hours" if key == "stuck" else "kWh"


def _open(
    session: Session,
    settings: AlertsSettings,
    rule: EffectiveRule,
    site: str,
    ep: Episode,
    threshold: float | None,
    outcome: RuleOutcome,
) -> None:
    inc = Incident(
        rule_id=rule.id,
        site=site,
        condition_key=ep.key,
        kind=rule.kind,
        severity=rule.severity,
        status="open",
        title=_title(rule, ep.key, site),
        details=_details(rule, ep),
        first_seen_at=_dt(ep.first),
        last_seen_at=_dt(ep.last),
        peak_value=round(ep.peak, 6),
        peak_at=_dt(ep.peak_at),
        threshold=threshold,
        unit=_unit(rule.kind, ep.key),
    )
    session.add(inc)
    session.flush()
    _audit(session, "opened", inc.id, {"rule": rule.name, "why": ep.why})
    enqueue(session, settings, inc, "opened")
    outcome.opened += 1
    if ep.ended_at is not None:
        _auto_resolve(session, settings, inc, _dt(ep.ended_at), "the condition cleared")
        outcome.resolved += 1


def _update(
    session: Session,
    settings: AlertsSettings,
    rule: EffectiveRule,
    inc: Incident,
    ep: Episode,
    outcome: RuleOutcome,
) -> None:
    changes: dict[str, Any] = {}
    if _dt(ep.last) > inc.last_seen_at:
        changes["last_seen_at"] = (inc.last_seen_at, _dt(ep.last))
        inc.last_seen_at = _dt(ep.last)
    if _dt(ep.first) < inc.first_seen_at:
        changes["first_seen_at"] = (inc.first_seen_at, _dt(ep.first))
        inc.first_seen_at = _dt(ep.first)
    if ep.peak > inc.peak_value + 1e-6:
        changes["peak_value"] = (inc.peak_value, round(ep.peak, 6))
        inc.peak_value, inc.peak_at = round(ep.peak, 6), _dt(ep.peak_at)
        inc.details = _details(rule, ep)
    if changes:
        inc.updated_at = now()
        _audit(session, "updated", inc.id, {"changes": changes})
        outcome.updated += 1
    if ep.cut:
        return  # a person resolved it; the data after that is another incident's
    if ep.ended_at is not None and inc.status != "resolved":
        _auto_resolve(session, settings, inc, _dt(ep.ended_at), "the condition cleared")
        outcome.resolved += 1
    elif ep.ended_at is None and inc.status == "resolved" and inc.resolved_by == SYSTEM:
        # Late data shows the condition never cleared: the same incident is active again.
        inc.status, inc.resolved_at, inc.resolved_by, inc.resolve_comment = "open", None, None, None
        inc.updated_at = now()
        session.flush()
        _audit(session, "reopened", inc.id, {"why": ep.why})
        enqueue(session, settings, inc, "opened")
        outcome.opened += 1


def _auto_resolve(
    session: Session, settings: AlertsSettings, inc: Incident, at: datetime, reason: str
) -> None:
    inc.status, inc.resolved_by, inc.resolved_at = "resolved", SYSTEM, at
    inc.resolve_comment = reason
    inc.updated_at = now()
    session.flush()
    _audit(session, "resolved", inc.id, {"reason": reason, "at": at})
    enqueue(session, settings, inc, "resolved")


# --- snapshot rules (forecast service) -------------------------------------------------------


@dataclass(frozen=True)
class SnapshotObs:
    state: str
    value: float
    first: datetime
    last: datetime
    threshold: float | None
    why: str
    extra: dict[str, Any] = field(default_factory=dict)


def _forecast_deficit_obs(
    rule: EffectiveRule, site: Site, points: list[dict[str, Any]]
) -> dict[str, SnapshotObs]:
    p: ForecastDeficitParams = rule.typed()
    current = now()
    by_day: dict[str, list[tuple[datetime, float]]] = {}
    for pt in points:
        ts: datetime = pt["ts"]
        if ts < _floor_hour(current) or pt.get("consumption_kwh") is None:
            continue
        produced = pt.get("production_kwh")
        supply = float(produced) if produced is not None else site.capacity_kw
        deficit = float(pt["consumption_kwh"]) - supply
        by_day.setdefault(ts.date().isoformat(), []).append((ts, deficit))
    has_production = any(pt.get("production_kwh") is not None for pt in points)
    against = "forecast production" if has_production else "installed capacity"
    out: dict[str, SnapshotObs] = {}
    for day, values in by_day.items():
        short = [(t, d) for t, d in values if d > p.min_deficit_kwh]
        total = sum(d for _, d in short)
        if len(short) >= rule.pending_h:
            state = FIRE
        elif not short:
            state = CLEAR
        else:
            state = HOLD
        first = short[0][0] if short else values[0][0]
        last = short[-1][0] if short else values[-1][0]
        why = (
            f"the latest forecast has {len(short)} hour(s) on {day} where consumption exceeds "
            f"{against}, {total:.1f} kWh short in all"
        )
        out[f"forecast:{day}"] = SnapshotObs(
            state, total, first, last, p.min_deficit_kwh, why, {"deficit_hours": len(short)}
        )
    return out


def _risk_obs(rule: EffectiveRule, items: list[dict[str, Any]]) -> dict[str, SnapshotObs]:
    p: EquipmentRiskParams = rule.typed()
    recover = p.min_probability - 0.2 if p.recovery_probability is None else p.recovery_probability
    out: dict[str, SnapshotObs] = {}
    for item in items:
        prob = item["probability"]
        at = _parse_time(item.get("computed_at")) or _floor_hour(now())
        factors = item.get("factors") or []
        names = [f.get("name", str(f)) if isinstance(f, dict) else str(f) for f in factors[:3]]
        state = FIRE if prob >= p.min_probability else CLEAR if prob < recover else HOLD
        horizon = item.get("horizon_days")
        why = (
            f"failure probability {prob:.0%}"
            + (f" within {horizon} days" if horizon else "")
            + f" (threshold {p.min_probability:.0%})"
            + (f"; top factors: {', '.join(names)}" if names else "")
        )
        out[f"equipment:{item['equipment']}"] = SnapshotObs(
            state, prob, at, at, p.min_probability, why, {"factors": factors[:5]}
        )
    return out


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _evaluate_snapshot(
    session: Session,
    settings: AlertsSettings,
    sources: Sources,
    rule: EffectiveRule,
    site: Site,
    outcome: RuleOutcome,
) -> None:
    rule.typed()  # bad parameters: an error status before any call
    if rule.kind == "forecast_deficit":
        points = sources.latest_forecast(site.code)
        if isinstance(points, Unavailable):
            outcome.status, outcome.detail = "skipped", points.reason
            return
        observed = _forecast_deficit_obs(rule, site, points)
    else:
        items = sources.equipment_risk(site.code)
        if isinstance(items, Unavailable):
            outcome.status, outcome.detail = "skipped", items.reason
            return
        observed = _risk_obs(rule, items)
    active = {
        i.condition_key: i
        for i in session.scalars(
            select(Incident)
            .where(Incident.rule_id == rule.id, Incident.site == site.code)
            .where(Incident.status != "resolved")
            .with_for_update()
        )
    }
    for key, inc in active.items():
        o = observed.get(key)
        if o is None or o.state == CLEAR:
            reason = "no longer forecast" if o is not None else "no longer reported"
            _auto_resolve(session, settings, inc, now(), reason)
            outcome.resolved += 1
    for key, o in observed.items():
        if o.state != FIRE:
            continue
        outcome.status = "firing"
        current = active.get(key)
        ep = Episode(key, _epoch(o.first), _epoch(o.last), o.value, _epoch(o.last), o.why,
                     o.extra, hours=1)  # fmt: skip
        if current is None:
            _open(session, settings, rule, site.code, ep, o.threshold, outcome)
            continue
        inc = current
        changes: dict[str, Any] = {}
        if o.last > inc.last_seen_at:
            changes["last_seen_at"] = (inc.last_seen_at, o.last)
            inc.last_seen_at = o.last
        if abs(o.value - inc.peak_value) > 1e-6 and o.value > inc.peak_value:
            changes["peak_value"] = (inc.peak_value, o.value)
            inc.peak_value, inc.peak_at = o.value, o.last
            inc.details = _details(rule, ep)
        if changes:
            inc.updated_at = now()
            _audit(session, "updated", inc.id, {"changes": changes})
            outcome.updated += 1
