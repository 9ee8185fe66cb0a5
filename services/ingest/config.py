"""Ingest settings."""

from __future__ import annotations

from pydantic import Field

from services.common.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    """Ingest knobs on top of the shared settings."""

    ingest_max_batch_rows: int = 50_000
    ingest_max_upload_mb: int = 200
    # Best-effort notification of the alerts service after a write commits (empty: off).
    ingest_notify_alerts: bool = True
    # Raw readings and telemetry whose hour is older than this many days are dropped once
    # rolled up (hourly roll-ups are kept for ever, so every total stays), and writes that old
    # are refused; 0 (default) keeps raw data for ever. Opt-in: a default would refuse imports
    # of older history on installs that never asked for retention.
    ingest_raw_retention_days: int = Field(default=0, ge=0, le=36_600)
    # How often the roll-up / retention job runs (seconds); 0: not in this process.
    ingest_rollup_interval_s: float = Field(default=60.0, ge=0)
    openmeteo_forecast_url: str = "https://api.open-meteo.com/v1/forecast"
    openmeteo_archive_url: str = "https://archive-api.open-meteo.com/v1/archive"
    # Open-Meteo answers in well under a second; past this the fetch fails with a 502.
    openmeteo_timeout_s: float = 10.0
    openmeteo_forecast_days: int = Field(default=7, ge=1, le=16)
    # One archive fetch spans at most this many days (a year of hours is ~9,000 rows).
    openmeteo_max_archive_days: int = Field(default=366, ge=1, le=3660)
