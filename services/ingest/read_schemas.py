"""Response schemas of the ingest read path (what the reads return, for OpenAPI and tests).

The large responses (readings, telemetry, weather) are serialised straight from database
rows; these models document their shape and the tests validate responses against them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class ReadingBucket(BaseModel):
    """Energy of one bucket (or one reading at raw resolution), in kWh."""

    ts: datetime = Field(description="start of the bucket, with the site's UTC offset")
    consumption_kwh: float
    production_kwh: float
    balance_kwh: float = Field(description="production_kwh - consumption_kwh")
    n_readings: int = Field(description="readings summed into this bucket")


class ReadingsOut(BaseModel):
    site: str
    timezone: str
    resolution: str
    source: str | None = Field(description="null: one source per interval, by precedence")
    start: datetime
    end: datetime
    items: list[ReadingBucket]


class BalanceOut(BaseModel):
    """Consumption against production over a range, with the hourly deficit figures."""

    site: str
    timezone: str
    source: str | None
    start: datetime
    end: datetime
    consumed_kwh: float
    produced_kwh: float
    coverage_rate: float | None = Field(description="produced / consumed; null if nothing consumed")
    deficit_kwh: float = Field(description="sum over local hours of max(consumed - produced, 0)")
    deficit_hours: int = Field(description="hours where consumption exceeded production")
    peak_deficit_hour: datetime | None = Field(description="hour with the largest deficit")
    peak_deficit_kwh: float | None
    n_readings: int
    first_ts: datetime | None
    last_ts: datetime | None


class TelemetrySample(BaseModel):
    ts: datetime
    source: str
    flow_m3h: float | None
    pressure_bar: float | None
    vibration_mm_s: float | None
    temperature_c: float | None


class TelemetryBucket(BaseModel):
    ts: datetime
    n_samples: int
    flow_m3h_avg: float | None
    flow_m3h_max: float | None
    pressure_bar_avg: float | None
    pressure_bar_max: float | None
    vibration_mm_s_avg: float | None
    vibration_mm_s_max: float | None
    temperature_c_avg: float | None
    temperature_c_max: float | None


class TelemetryOut(BaseModel):
    equipment: str
    timezone: str
    resolution: str
    source: str | None
    start: datetime
    end: datetime
    items: list[TelemetrySample] | list[TelemetryBucket]


class EquipmentEventItem(BaseModel):
    ts: datetime
    kind: str = Field(description="maintenance, failure or inspection")
    description: str
    source: str


class EquipmentEventsOut(BaseModel):
    equipment: str
    timezone: str
    start: datetime
    end: datetime
    items: list[EquipmentEventItem]


class WeatherPoint(BaseModel):
    ts: datetime
    source: str
    temperature_c: float | None
    irradiance_w_m2: float | None
    wind_speed_m_s: float | None
    is_forecast: bool


class WeatherOut(BaseModel):
    site: str
    timezone: str
    source: str | None
    start: datetime
    end: datetime
    items: list[WeatherPoint]


class QuarantineItem(BaseModel):
    id: int
    batch_id: str
    kind: str
    row_number: int
    payload: Any
    reason: str
    received_at: datetime


class QuarantinePage(BaseModel):
    items: list[QuarantineItem]
    next_before_id: int | None = Field(description="before_id of the next page; null: last page")


class AnomalyLabelOut(BaseModel):
    site: str
    kind: str
    start_ts: datetime
    end_ts: datetime
    magnitude: float
    source: str
