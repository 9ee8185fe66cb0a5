"""Rules as they apply to one site: the rule, its per-site override, and typed parameters.

A rule with ``sites`` NULL applies to every site (a new site is covered from its first
reading); a list makes it a group rule. A per-site override changes only what it sets: its
``params`` are merged key by key over the rule's, its other columns replace the rule's when
not NULL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import any_, literal, or_, select
from sqlalchemy.orm import Session

from services.alerts.detect import AnomalyParams
from services.alerts.models import Rule, RuleOverride
from services.common.errors import BadInput

HOUR_S = 3600


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeficitParams(_Params):
    """Deficit against production (per hour) or against installed capacity (kW x 1 h)."""

    basis: Literal["production", "capacity"] = "production"
    min_deficit_kwh: float = Field(default=0.0, ge=0)
    # Recovery condition: deficit at or below this (default: min_deficit_kwh) for recovery_s.
    recovery_deficit_kwh: float | None = Field(default=None, ge=0)


class ThresholdParams(_Params):
    """A fixed kWh-per-hour ceiling; a rule without ``above_kwh`` for a site is skipped."""

    metric: Literal["consumption", "production", "deficit"] = "consumption"
    above_kwh: float | None = Field(default=None, ge=0)
    recovery_below_kwh: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _recovery_not_above(self) -> ThresholdParams:
        if (
            self.above_kwh is not None
            and self.recovery_below_kwh is not None
            and self.recovery_below_kwh > self.above_kwh
        ):
            raise ValueError("recovery_below_kwh must not exceed above_kwh")
        return self


class ForecastDeficitParams(_Params):
    """Forecast consumption above forecast production (or capacity when none is forecast)."""

    min_deficit_kwh: float = Field(default=0.0, ge=0)


class AnomalyRuleParams(_Params):
    """See services.alerts.detect.AnomalyParams for what each knob does."""

    detector: Literal["seasonal", "isolation_forest", "both"] = "seasonal"
    history_days: int = Field(default=28, ge=7, le=120)
    min_references: int = Field(default=3, ge=1, le=50)
    z_threshold: float = Field(default=4.0, gt=0, le=100)
    spike_ratio: float = Field(default=1.45, gt=1, le=100)
    drop_ratio: float = Field(default=0.7, gt=0, lt=1)
    stuck_hours: int = Field(default=3, ge=2, le=168)
    contamination: float = Field(default=0.01, gt=0, le=0.5)

    def detector_params(self) -> AnomalyParams:
        return AnomalyParams(**self.model_dump())


class EquipmentRiskParams(_Params):
    """Failure probability at or above ``min_probability``; recovers below the lower bound."""

    min_probability: float = Field(default=0.7, gt=0, le=1)
    recovery_probability: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _recovery_below(self) -> EquipmentRiskParams:
        if (
            self.recovery_probability is not None
            and self.recovery_probability > self.min_probability
        ):
            raise ValueError("recovery_probability must not exceed min_probability")
        return self


PARAMS: dict[str, type[_Params]] = {
    "deficit": DeficitParams,
    "threshold": ThresholdParams,
    "forecast_deficit": ForecastDeficitParams,
    "anomaly": AnomalyRuleParams,
    "equipment_risk": EquipmentRiskParams,
}


def parse_params(kind: str, params: dict[str, Any], where: str = "params") -> _Params:
    """Typed parameters of a rule kind, or a 422 naming the parameter and the problem."""
    try:
        return PARAMS[kind].model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in (where, *first["loc"]))
        raise BadInput(f"{loc}: {first['msg']} (rule kind {kind!r})") from None


@dataclass(frozen=True)
class EffectiveRule:
    """A rule with a site's override applied."""

    id: int
    name: str
    kind: str
    severity: str
    params: dict[str, Any]
    pending_s: int
    recovery_s: int
    enabled: bool
    overridden: bool

    @property
    def pending_h(self) -> int:
        """Hours the condition must hold before the incident fires (at least one)."""
        return max(1, math.ceil(self.pending_s / HOUR_S))

    @property
    def recovery_h(self) -> int:
        """Clear hours needed before an incident resolves itself (at least one)."""
        return max(1, math.ceil(self.recovery_s / HOUR_S))

    def typed(self) -> Any:
        return parse_params(self.kind, self.params)


def merge(rule: Rule, override: RuleOverride | None) -> EffectiveRule:
    """The rule as it applies where ``override`` (possibly None) is set."""
    o = override
    return EffectiveRule(
        id=rule.id,
        name=rule.name,
        kind=rule.kind,
        severity=(o.severity if o and o.severity else rule.severity),
        params={**(rule.params or {}), **((o.params or {}) if o else {})},
        pending_s=o.pending_s if o and o.pending_s is not None else rule.pending_s,
        recovery_s=o.recovery_s if o and o.recovery_s is not None else rule.recovery_s,
        enabled=(o.enabled if o and o.enabled is not None else rule.enabled),
        overridden=o is not None,
    )


def rules_for_site(session: Session, site: str) -> list[EffectiveRule]:
    """Every rule that covers ``site`` (enabled or not), with the site's overrides applied."""
    rules = session.scalars(
        select(Rule)
        .where(or_(Rule.sites.is_(None), literal(site) == any_(Rule.sites)))
        .order_by(Rule.id)
    ).all()
    overrides = {
        o.rule_id: o for o in session.scalars(select(RuleOverride).where(RuleOverride.site == site))
    }
    return [merge(r, overrides.get(r.id)) for r in rules]
