"""Forecast settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from services.common.settings import ServiceSettings


class ForecastSettings(ServiceSettings):
    """Forecast knobs on top of the shared settings."""

    # Nightly retraining of every site (and maintenance scoring) at this hour, UTC.
    forecast_schedule_enabled: bool = True
    forecast_nightly_hour: int = Field(default=2, ge=0, le=23)
    # The job worker polls the queue this often (0: no worker; tests run jobs themselves). A
    # job whose heartbeat is older than FORECAST_JOB_STALE_S lost its worker: it is failed.
    forecast_job_poll_s: float = Field(default=5.0, ge=0)
    forecast_job_stale_s: float = Field(default=900.0, gt=0)
    # Training data: hourly history read from ingest (days), the rolling-origin backtest
    # (days, model retrained every N days inside it), permutation-importance repeats, and the
    # boosting iterations (0: the ML module's default).
    forecast_history_days: int = Field(default=730, ge=30, le=1080)  # ingest reads <= 1098 d
    forecast_backtest_days: int = Field(default=56, ge=7, le=366)
    forecast_retrain_every_days: int = Field(default=7, ge=1, le=56)
    forecast_importance_repeats: int = Field(default=3, ge=0, le=10)
    forecast_max_iter: int = Field(default=0, ge=0, le=5000)
    # A site whose last measurement is older than this gets no new forecast (stale data).
    forecast_stale_data_days: int = Field(default=7, ge=1, le=366)
    # Which readings to learn from ("": ingest's precedence, real > import > simulated).
    forecast_readings_source: Literal["", "real", "simulated", "import"] = ""
    # Read timeout of the (large) history reads from ingest, seconds.
    forecast_ingest_timeout_s: float = Field(default=60.0, gt=0)
    # Model artifacts (~0.5 MB each) kept per site and kind, newest first (0: all); older runs
    # keep their metrics, only the bytes go.
    forecast_keep_artifacts: int = Field(default=60, ge=0)
    # Telemetry and events the failure model learns from, days back.
    forecast_maintenance_history_days: int = Field(default=365, ge=14, le=1098)
