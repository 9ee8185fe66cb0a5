"""Request and response shapes of the forecast API (documented in docs/forecasting.md)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class RetrainIn(BaseModel):
    """Start a retraining: one site, or every site (and maintenance) when ``site`` is null."""

    model_config = ConfigDict(extra="forbid")

    site: str | None = Field(
        default=None, min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    )
    target_date: date | None = Field(
        default=None,
        ge=date(1990, 1, 1),
        description="local day to forecast (default: tomorrow); at most tomorrow",
    )


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: Literal["retrain", "maintenance"]
    site: str | None
    target_date: date | None
    status: Literal["queued", "running", "succeeded", "failed"]
    progress: float = Field(description="0 to 1")
    message: str
    error: str | None
    results: dict[str, Any] = Field(description="per site: the model runs made and what is served")
    requested_by: str
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None


class JobPage(BaseModel):
    items: list[JobOut]
    next_before_id: int | None = Field(description="before_id of the next page; null: last page")


class ModelRunOut(BaseModel):
    id: int
    site: str | None
    kind: Literal["load", "production", "maintenance"]
    algorithm: str
    status: Literal["running", "succeeded", "failed"]
    promoted: bool
    promotion_reason: str
    served_method: str | None
    served: Literal["model", "baseline"] | None
    metrics: dict[str, Any]
    duration_s: float | None
    train_start: datetime | None
    train_end: datetime | None
    message: str
    error: str | None
    job_id: int | None
    created_at: datetime
    finished_at: datetime | None
    parameters: dict[str, Any] | None = None
    feature_importances: dict[str, Any] | None = None


class ModelRunPage(BaseModel):
    items: list[ModelRunOut]
    next_before_id: int | None = Field(description="before_id of the next page; null: last page")


class ForecastPointOut(BaseModel):
    ts: datetime = Field(description="start of the hour, with the site's UTC offset")
    consumption_kwh: float | None = Field(description="the value served (model or baseline)")
    consumption_lo: float | None = Field(description="80 % interval, lower bound")
    consumption_hi: float | None = Field(description="80 % interval, upper bound")
    lower_kwh: float | None
    upper_kwh: float | None
    baseline_kwh: float | None = Field(description="the seasonal-naive baseline")
    model_kwh: float | None = Field(description="the model's value, served or not")
    production_kwh: float | None = None
    production_lo: float | None = None
    production_hi: float | None = None


class ProductionIssue(BaseModel):
    forecast_id: int
    run_id: int
    served: Literal["model", "baseline"]
    method: str
    message: str


class ForecastOut(BaseModel):
    site: str
    timezone: str
    target_date: date
    forecast_id: int
    run_id: int = Field(description="the model run that issued the load forecast")
    created_at: datetime
    issued_at: datetime = Field(description="information cut-off: data measured by then only")
    served: Literal["model", "baseline"]
    method: str
    message: str
    model_run: ModelRunOut
    production: ProductionIssue | None
    points: list[ForecastPointOut]


class VsActualPoint(BaseModel):
    ts: datetime
    actual_kwh: float | None
    forecast_kwh: float | None
    lower_kwh: float | None
    upper_kwh: float | None
    baseline_kwh: float | None
    model_kwh: float | None
    served: Literal["model", "baseline"]
    issued_at: datetime
    model_run_id: int


class VsActualOut(BaseModel):
    site: str
    kind: Literal["load", "production"]
    timezone: str
    start: datetime
    end: datetime
    summary: dict[str, Any] = Field(
        description="hours, mape (percent), rmse, baseline_mape, baseline_rmse, "
        "interval_coverage over the hours with both a forecast and a measurement"
    )
    items: list[VsActualPoint]


class RiskFactor(BaseModel):
    name: str | None = Field(description="the factor in words, with the value behind it")
    weight: float | None = Field(description="contribution to the failure score")
    value: float | None
    key: str | None = Field(description="factor group, e.g. vibration_trend")


class RiskItem(BaseModel):
    equipment: str
    site: str | None
    name: str | None
    kind: str | None
    probability: float = Field(description="failure probability within horizon_days")
    status: str
    horizon_days: int
    computed_at: datetime
    model_run_id: int
    rule_alert: bool = Field(description="vibration > 7 and temperature > 85 in the last 24 h")
    message: str
    factors: list[RiskFactor]


class Unscored(BaseModel):
    equipment: str
    site: str | None
    name: str | None
    kind: str | None
    status: str = Field(description="insufficient data | in failure")
    horizon_days: int
    computed_at: datetime
    model_run_id: int
    rule_alert: bool
    message: str


class RiskOut(BaseModel):
    items: list[RiskItem] = Field(description="scored equipment, highest probability first")
    unscored: list[Unscored] = Field(description="equipment without a probability, and why")
