"""Ingest API schemas; the physical bounds every incoming row is checked against live here."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, available_timezones

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)

Source = Literal["real", "simulated", "import"]
Resolution = Literal["raw", "hour", "day", "week", "month"]
EquipmentKind = Literal["pump", "locomotive", "compressor", "transformer", "turbine", "other"]
EventKind = Literal["maintenance", "failure", "inspection"]
AnomalyKind = Literal["spike", "drop", "stuck"]

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
# Meters and sensors report the past; a small allowance covers clock skew.
MEASUREMENT_FUTURE_SLACK = timedelta(hours=2)
# Weather forecasts legitimately reach two weeks ahead.
WEATHER_FUTURE_SLACK = timedelta(days=16)

Code = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
EquipmentCode = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]


def _measured_ts(ts: datetime) -> datetime:
    if ts < EARLIEST or ts > datetime.now(UTC) + MEASUREMENT_FUTURE_SLACK:
        raise ValueError("timestamp must lie between 2000-01-01 and now (measurements only)")
    return ts.astimezone(UTC)


def _weather_ts(ts: datetime) -> datetime:
    if ts < EARLIEST or ts > datetime.now(UTC) + WEATHER_FUTURE_SLACK:
        raise ValueError("timestamp must lie between 2000-01-01 and 16 days from now")
    return ts.astimezone(UTC)


def _known_timezone(name: str) -> str:
    if name not in _TIMEZONES:
        raise ValueError(f"unknown IANA timezone {name!r} (e.g. 'Europe/Paris')")
    return name


_TIMEZONES = frozenset(available_timezones())
MeasuredAt = Annotated[AwareDatetime, AfterValidator(_measured_ts)]
WeatherAt = Annotated[AwareDatetime, AfterValidator(_weather_ts)]
TimezoneName = Annotated[str, AfterValidator(_known_timezone)]


class _In(BaseModel):
    # Strict numbers: `false` or "12" is not an energy value; extra keys are a typo to report.
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)


# --- sites and equipment -------------------------------------------------------------------


class SiteIn(_In):
    code: Code
    name: str = Field(min_length=1, max_length=200)
    timezone: TimezoneName
    country_code: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    capacity_kw: float = Field(default=0.0, ge=0, le=10_000_000)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)


class SitePatch(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: TimezoneName | None = None
    country_code: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    capacity_kw: float | None = Field(default=None, ge=0, le=10_000_000)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)


class SiteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    timezone: str
    country_code: str | None
    capacity_kw: float
    latitude: float | None
    longitude: float | None
    created_at: datetime


class EquipmentIn(_In):
    code: EquipmentCode
    site: Code
    name: str = Field(min_length=1, max_length=200)
    kind: EquipmentKind
    installed_on: date | None = None


class EquipmentOut(BaseModel):
    code: str
    site: str
    name: str
    kind: str
    installed_on: date | None
    created_at: datetime


# --- time series rows ----------------------------------------------------------------------

# 1 GWh in one interval at one site is far beyond any real delivery point: a unit error.
MAX_ENERGY_KWH = 1_000_000.0


class ReadingIn(_In):
    """Energy consumed and produced at a site over the interval that starts at ``ts``."""

    site: Code
    ts: MeasuredAt
    consumption_kwh: float = Field(ge=0, le=MAX_ENERGY_KWH, allow_inf_nan=False)
    production_kwh: float = Field(default=0.0, ge=0, le=MAX_ENERGY_KWH, allow_inf_nan=False)
    interval_s: int = Field(default=3600, ge=60, le=3600)
    source: Source = "real"


class TelemetryIn(_In):
    """One sample of an equipment's sensors; at least one sensor value must be present."""

    equipment: EquipmentCode
    ts: MeasuredAt
    flow_m3h: float | None = Field(default=None, ge=0, le=100_000, allow_inf_nan=False)
    pressure_bar: float | None = Field(default=None, ge=0, le=1_000, allow_inf_nan=False)
    vibration_mm_s: float | None = Field(default=None, ge=0, le=100, allow_inf_nan=False)
    temperature_c: float | None = Field(default=None, ge=-60, le=250, allow_inf_nan=False)
    source: Source = "real"

    @model_validator(mode="after")
    def _some_value(self) -> TelemetryIn:
        if all(
            v is None
            for v in (self.flow_m3h, self.pressure_bar, self.vibration_mm_s, self.temperature_c)
        ):
            raise ValueError("a telemetry row needs at least one sensor value")
        return self


class WeatherIn(_In):
    """Hourly weather at a site: measured, or a forecast when ``is_forecast``."""

    site: Code
    ts: WeatherAt
    temperature_c: float | None = Field(default=None, ge=-90, le=60, allow_inf_nan=False)
    irradiance_w_m2: float | None = Field(default=None, ge=0, le=1_500, allow_inf_nan=False)
    wind_speed_m_s: float | None = Field(default=None, ge=0, le=120, allow_inf_nan=False)
    is_forecast: bool = False
    source: Source = "real"


class EquipmentEventIn(_In):
    equipment: EquipmentCode
    ts: MeasuredAt
    kind: EventKind
    description: str = Field(default="", max_length=2000)
    source: Source = "real"


class AnomalyLabelIn(_In):
    site: Code
    kind: AnomalyKind
    start_ts: AwareDatetime
    end_ts: AwareDatetime
    magnitude: float = Field(default=0.0, allow_inf_nan=False)
    source: Source = "simulated"

    @model_validator(mode="after")
    def _ordered(self) -> AnomalyLabelIn:
        if self.end_ts <= self.start_ts:
            raise ValueError("end_ts must be after start_ts")
        return self


# --- write results -------------------------------------------------------------------------


class RejectedRow(BaseModel):
    """A row that was not stored: its 0-based position in the input and why."""

    row: int
    reason: str


class WriteResult(BaseModel):
    """Outcome of a write: what was stored, what went to quarantine (and why)."""

    # Per site, first and last reading stored; not in the response, read by the alerts notice.
    _spans: dict[str, tuple[datetime, datetime]] = PrivateAttr(default_factory=dict)

    batch_id: str
    received: int
    accepted: int
    quarantined: int
    rejected: list[RejectedRow]
    # The response lists at most 1,000 rejected rows; every one of them is in the quarantine.
    rejected_truncated: int = Field(
        default=0, description="rejected rows left out of `rejected` (all are in quarantine)"
    )
    duplicates: int = Field(
        default=0,
        description="accepted rows whose key came again later in the same input: the last "
        "one was stored",
    )


def zone(name: str) -> ZoneInfo:
    """The ZoneInfo of a validated timezone name."""
    return ZoneInfo(name)
