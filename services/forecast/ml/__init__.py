"""The forecast service's ML core: plain pandas / scikit-learn, no web or database imports.

features -> models -> backtest / pipeline. Everything takes an hourly measured series (UTC
index), optional weather, the site's IANA timezone and country code, and returns dataclasses or
DataFrames; the service stores them (model runs, forecasts) and schedules the work.
"""

from services.forecast.ml.backtest import (
    BacktestMetrics,
    BacktestResult,
    backtest,
    best_naive_days,
    promotion_reason,
    should_promote,
)
from services.forecast.ml.features import DEFAULT_ISSUE_HOUR, issue_time, target_hours
from services.forecast.ml.models import ALGORITHM, DayAheadModel, ModelParams
from services.forecast.ml.pipeline import (
    MIN_HISTORY_DAYS,
    Forecast,
    InsufficientHistory,
    baseline_forecast,
    forecast_day,
    train,
    train_and_forecast,
)

__all__ = [
    "ALGORITHM",
    "DEFAULT_ISSUE_HOUR",
    "MIN_HISTORY_DAYS",
    "BacktestMetrics",
    "BacktestResult",
    "DayAheadModel",
    "Forecast",
    "InsufficientHistory",
    "ModelParams",
    "backtest",
    "baseline_forecast",
    "best_naive_days",
    "forecast_day",
    "issue_time",
    "promotion_reason",
    "should_promote",
    "target_hours",
    "train",
    "train_and_forecast",
]
