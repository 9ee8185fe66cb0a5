"""Alerts API schemas (requests ``…In`` / ``…Patch``, responses ``…Out``)."""

from __future__ import annotations

import datetime as dt
from datetime import datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)

from services.common.query_time import IsoDatetime

Severity = Literal["critical", "warning"]
RuleKind = Literal["deficit", "threshold", "forecast_deficit", "anomaly", "equipment_risk"]
IncidentStatus = Literal["open", "acknowledged", "resolved"]
SiteCode = Annotated[
    str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
Comment = Annotated[str | None, Field(default=None, max_length=2000)]
_TIMEZONES = frozenset(available_timezones())


def _known_timezone(name: str) -> str:
    if name not in _TIMEZONES:
        raise ValueError(f"unknown IANA timezone {name!r} (e.g. 'Europe/Paris')")
    return name


def _sane_time(value: datetime | None) -> datetime | None:
    # Checked on the wall-clock year so that no arithmetic on it (look-backs) can overflow.
    if value is not None and not 1900 <= value.year <= 2200:
        raise ValueError("must lie between the years 1900 and 2200")
    return value


# Text only: a number is not read as a Unix time (pydantic would take 0 as 1970-01-01).
SaneTime = Annotated[IsoDatetime, AfterValidator(_sane_time)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- evaluation ------------------------------------------------------------------------------


class EvaluateIn(_In):
    site: SiteCode
    start: SaneTime | None = Field(
        default=None, description="start of the new data; default: end - ALERTS_EVAL_LOOKBACK_H"
    )
    end: SaneTime | None = Field(default=None, description="end (exclusive); default: now")


class RuleOutcomeOut(_Out):
    rule_id: int
    name: str
    kind: str
    status: str = Field(description="ok | firing | skipped | disabled | error")
    detail: str
    opened: int
    updated: int
    resolved: int


class EvaluationOut(_Out):
    site: str
    start: datetime
    end: datetime
    judged_from: datetime = Field(description="hours from here on were judged (warm-up included)")
    hours: int = Field(description="hourly buckets read from ingest (look-back included)")
    rules: list[RuleOutcomeOut]
    duration_ms: float


# --- incidents -------------------------------------------------------------------------------


class IncidentOut(_Out):
    id: int
    rule_id: int
    site: str
    condition_key: str
    kind: str
    severity: str
    status: str
    title: str
    details: dict[str, Any]
    first_seen_at: datetime
    last_seen_at: datetime
    peak_value: float
    peak_at: datetime
    threshold: float | None
    unit: str
    assignee: str | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    ack_comment: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolve_comment: str | None
    feedback: bool | None = Field(description="operator verdict: true positive?")
    feedback_comment: str | None
    feedback_by: str | None
    feedback_at: datetime | None
    created_at: datetime
    updated_at: datetime


class IncidentPage(BaseModel):
    items: list[IncidentOut]
    next_before_id: int | None = Field(description="before_id of the next page; null: last page")


class AuditOut(_Out):
    id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    details: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_before_id: int | None


class NotificationOut(_Out):
    id: int
    event: str
    channel: str
    status: str
    reason: str | None
    silence_id: int | None
    delivery_id: int | None
    created_at: datetime


class IncidentDetail(IncidentOut):
    audit: list[AuditOut]
    notifications: list[NotificationOut]


class AcknowledgeIn(_In):
    comment: Comment


class ResolveIn(_In):
    comment: Comment


class FeedbackIn(_In):
    true_positive: StrictBool
    comment: Comment


class AssignIn(_In):
    assignee: str | None = Field(max_length=200, description="null clears the assignee")


# --- rules -----------------------------------------------------------------------------------


class RuleIn(_In):
    name: str = Field(min_length=1, max_length=100)
    kind: RuleKind
    severity: Severity = "warning"
    sites: list[SiteCode] | None = Field(
        default=None, max_length=1000, description="null: every site (new ones included)"
    )
    params: dict[str, Any] = Field(default_factory=dict)
    pending_s: StrictInt = Field(default=0, ge=0, le=7 * 86400)
    recovery_s: StrictInt = Field(default=3600, ge=0, le=7 * 86400)
    enabled: StrictBool = True
    description: str = Field(default="", max_length=2000)


class RulePatch(_In):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    severity: Severity | None = None
    sites: list[SiteCode] | None = Field(default=None, max_length=1000)
    params: dict[str, Any] | None = None
    pending_s: StrictInt | None = Field(default=None, ge=0, le=7 * 86400)
    recovery_s: StrictInt | None = Field(default=None, ge=0, le=7 * 86400)
    enabled: StrictBool | None = None
    description: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _no_null_for_required_columns(self) -> RulePatch:
        # null means "every site" for sites and "none" for params; for the other fields it
        # has no meaning (the column cannot be empty): leave a field out to keep its value.
        for name in sorted(self.model_fields_set - {"sites", "params"}):
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null; leave it out to keep the current value")
        return self


class OverrideIn(_In):
    enabled: StrictBool | None = None
    severity: Severity | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="merged over the rule's")
    pending_s: StrictInt | None = Field(default=None, ge=0, le=7 * 86400)
    recovery_s: StrictInt | None = Field(default=None, ge=0, le=7 * 86400)


class OverrideOut(_Out):
    site: str
    enabled: bool | None
    severity: str | None
    params: dict[str, Any]
    pending_s: int | None
    recovery_s: int | None
    updated_by: str
    updated_at: datetime


class RuleOut(_Out):
    id: int
    name: str
    kind: str
    severity: str
    sites: list[str] | None
    params: dict[str, Any]
    pending_s: int
    recovery_s: int
    enabled: bool
    description: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    overrides: list[OverrideOut] = Field(default_factory=list)


class EffectiveRuleOut(_Out):
    id: int
    name: str
    kind: str
    severity: str
    params: dict[str, Any]
    pending_s: int
    recovery_s: int
    enabled: bool
    overridden: bool
    status: str | None = Field(default=None, description="outcome of the last evaluation")
    status_detail: str | None = None
    evaluated_at: datetime | None = None


# --- silences --------------------------------------------------------------------------------


class SilenceIn(_In):
    site: SiteCode | None = Field(default=None, description="null: every site")
    rule_id: StrictInt | None = Field(
        default=None, ge=1, le=2**31 - 1, description="null: every rule"
    )
    starts_at: SaneTime | None = Field(default=None, description="default: now")
    ends_at: SaneTime | None = Field(
        default=None, description="required for a one-off silence; optional for a recurring one"
    )
    weekdays: list[Annotated[StrictInt, Field(ge=0, le=6)]] | None = Field(
        default=None, min_length=1, max_length=7, description="recurring: local weekdays, 0=Mon"
    )
    start_time: time | None = Field(default=None, description="recurring: local start, 22:00")
    end_time: time | None = Field(
        default=None, description="recurring: local end; <= start runs past midnight"
    )
    timezone: Annotated[str, AfterValidator(_known_timezone)] = "Europe/Paris"
    comment: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _shape(self) -> SilenceIn:
        recurring = (self.weekdays, self.start_time, self.end_time)
        if any(v is not None for v in recurring) and not all(v is not None for v in recurring):
            raise ValueError("a recurring silence needs weekdays, start_time and end_time")
        if self.weekdays is None and self.ends_at is None:
            raise ValueError("a one-off silence needs ends_at (or make it recurring)")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class SilenceOut(_Out):
    id: int
    site: str | None
    rule_id: int | None
    starts_at: datetime
    ends_at: datetime | None
    weekdays: list[int] | None
    start_time: time | None
    end_time: time | None
    timezone: str
    comment: str
    created_by: str
    created_at: datetime
    expired_at: datetime | None
    active_now: bool = False


# --- deliveries ------------------------------------------------------------------------------


class DeliveryOut(_Out):
    id: int
    channel: str
    status: str = Field(description="pending | retrying | delivered | failed")
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    n_notifications: int
    created_at: datetime
    delivered_at: datetime | None
    incident_ids: list[int] = Field(default_factory=list)


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_before_id: int | None


# --- histogram -------------------------------------------------------------------------------


class HourOfDayBin(BaseModel):
    hour: int = Field(ge=0, le=23, description="local hour of day")
    deficit_hours: int
    deficit_kwh: float
    hours: int = Field(description="hours with data at this hour of day")


class DayBin(BaseModel):
    date: dt.date = Field(description="local date")
    deficit_hours: int
    deficit_kwh: float
    hours: int


class HistogramOut(BaseModel):
    site: str
    timezone: str
    start: datetime
    end: datetime
    source: str | None
    hours: int = Field(description="hours with readings in the range")
    deficit_hours: int = Field(description="hours where consumption exceeded production")
    deficit_kwh: float
    by_hour: list[HourOfDayBin]
    by_day: list[DayBin]
