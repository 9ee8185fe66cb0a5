"""Production entry points: train on a site's history, forecast one local day, or the baseline.

All functions are pure: pandas in, dataclasses / DataFrames out, no I/O. The same code serves
consumption and production (solar): pass whichever measured series is the target.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from services.forecast.ml.features import (
    DEFAULT_ISSUE_HOUR,
    HOUR,
    WEATHER_VARIABLES,
    build_features,
    feature_columns,
    issue_time,
    local_dates,
    regular_hourly,
    target_hours,
)
from services.forecast.ml.models import (
    ALGORITHM,
    DayAheadModel,
    ModelParams,
    fit_day_ahead,
    seasonal_naive,
)

MIN_HISTORY_DAYS = 14
DEFAULT_TRAIN_WINDOW_DAYS = 730
# Longest look-back of any feature (lag 14 d) plus a day: history needed before a training row.
FEATURE_LOOKBACK = pd.Timedelta(days=16)
# A weather forecast is "present" for the target day when it covers this share of its hours.
TARGET_WEATHER_MIN_SHARE = 0.9


class InsufficientHistory(ValueError):
    """Too little measured history to train a model; serve the seasonal-naive baseline instead."""

    def __init__(self, days_available: float, days_needed: int) -> None:
        self.days_available = days_available
        self.days_needed = days_needed
        super().__init__(
            f"only {days_available:.1f} days of measurements before the issue time; "
            f"a forecast model needs at least {days_needed} days, so the seasonal-naive "
            "baseline is served until then"
        )


@dataclass
class Forecast:
    """One issued day-ahead forecast: every hour of the local target day, with its interval."""

    target_date: date
    issued_at: pd.Timestamp
    method: str
    # Index: UTC hour starts of the local day. Columns: forecast, lower, upper, and the two
    # seasonal-naive baselines as known at issue time (naive_1d is NaN for the hours of D-1 that
    # had not been measured yet when the forecast was issued).
    hours: pd.DataFrame
    target_weather: bool
    model: DayAheadModel | None = None
    message: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def measured_until(series: pd.Series, cutoff: pd.Timestamp) -> pd.Series:
    """The measured values whose interval ended by ``cutoff`` (what is known at issue time)."""
    s = regular_hourly(series)
    return s[(s.index + HOUR) <= cutoff].dropna()


def history_days(series: pd.Series) -> float:
    """Measured history in days (hours with a value / 24)."""
    return float(series.notna().sum()) / 24.0


def has_target_weather(weather: pd.DataFrame | pd.Series | None, hours: pd.DatetimeIndex) -> bool:
    """Whether some weather variable covers the target day's hours well enough to use it."""
    if weather is None:
        return False
    frame = weather.to_frame("temperature_c") if isinstance(weather, pd.Series) else weather
    index = pd.DatetimeIndex(frame.index).tz_convert("UTC")
    for name in WEATHER_VARIABLES:
        if name in frame:
            present = index[frame[name].notna().to_numpy()]
            if np.mean(hours.isin(present)) >= TARGET_WEATHER_MIN_SHARE:
                return True
    return False


def train(
    history: pd.Series,
    weather: pd.DataFrame | pd.Series | None,
    tz: str,
    country: str | None,
    cutoff: pd.Timestamp,
    *,
    target_weather: bool = True,
    params: ModelParams | None = None,
    train_window_days: int = DEFAULT_TRAIN_WINDOW_DAYS,
    issue_hour: int = DEFAULT_ISSUE_HOUR,
) -> DayAheadModel:
    """Fit a model on the hours measured by ``cutoff`` (within the training window)."""
    known = measured_until(history, cutoff)
    days = history_days(known)
    if days < MIN_HISTORY_DAYS:
        raise InsufficientHistory(days, MIN_HISTORY_DAYS)
    start = cutoff - pd.Timedelta(days=train_window_days)
    grid = regular_hourly(known[known.index >= start - FEATURE_LOOKBACK])
    rows = grid.index[(grid.index >= start) & grid.notna().to_numpy()]
    frame = build_features(grid, weather, tz, country, rows, issue_hour=issue_hour)
    columns = feature_columns(frame, target_weather=target_weather)
    return fit_day_ahead(frame, grid, columns, params=params, target_weather=target_weather)


def forecast_day(
    model: DayAheadModel,
    history: pd.Series,
    weather: pd.DataFrame | pd.Series | None,
    tz: str,
    country: str | None,
    target_date: date,
    *,
    issue_hour: int = DEFAULT_ISSUE_HOUR,
) -> Forecast:
    """Forecast local day ``target_date`` with a fitted model, from data known at issue time."""
    issued = issue_time(target_date, tz, issue_hour)
    hours = target_hours(target_date, tz)
    known = measured_until(history, issued)
    recent = known[known.index >= issued - FEATURE_LOOKBACK]
    frame = build_features(recent, weather, tz, country, hours, issue_hour=issue_hour)
    out = model.predict(frame)
    out = out.join(_baselines(known, hours, tz))
    return Forecast(
        target_date=target_date,
        issued_at=issued,
        method=ALGORITHM,
        hours=out,
        target_weather=model.target_weather,
        model=model,
    )


def train_and_forecast(
    history: pd.Series,
    weather: pd.DataFrame | pd.Series | None,
    tz: str,
    country: str | None,
    target_date: date,
    *,
    params: ModelParams | None = None,
    train_window_days: int = DEFAULT_TRAIN_WINDOW_DAYS,
    issue_hour: int = DEFAULT_ISSUE_HOUR,
) -> Forecast:
    """Train on everything known at the issue time of ``target_date`` and forecast that day.

    Uses the target day's weather (a forecast) when it covers the day, otherwise trains a model
    without target-day weather. Raises ``InsufficientHistory`` when there is too little data:
    call ``baseline_forecast`` then.
    """
    issued = issue_time(target_date, tz, issue_hour)
    use_weather = has_target_weather(weather, target_hours(target_date, tz))
    t0 = time.perf_counter()
    model = train(
        history,
        weather,
        tz,
        country,
        issued,
        target_weather=use_weather,
        params=params,
        train_window_days=train_window_days,
        issue_hour=issue_hour,
    )
    t1 = time.perf_counter()
    result = forecast_day(model, history, weather, tz, country, target_date, issue_hour=issue_hour)
    result.timings = {"train_s": t1 - t0, "predict_s": time.perf_counter() - t1}
    if not use_weather:
        result.message = "no weather forecast for the target day: model without it"
    return result


def _baselines(known: pd.Series, hours: pd.DatetimeIndex, tz: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "naive_1d": seasonal_naive(known, hours, tz, 1),
            "naive_7d": seasonal_naive(known, hours, tz, 7),
        },
        index=hours,
    )


def better_naive_days(history: pd.Series, tz: str, *, window_days: int = 28) -> int:
    """1 or 7: the seasonal naive with the lower MAE over the last ``window_days`` of history."""
    s = regular_hourly(history).dropna()
    if s.empty:
        return 7
    recent = s[s.index >= s.index[-1] - pd.Timedelta(days=window_days)]
    errors = {}
    for days in (1, 7):
        err = np.abs(recent.to_numpy() - seasonal_naive(s, recent.index, tz, days))
        errors[days] = float(np.nanmean(err)) if np.isfinite(err).sum() >= 24 else np.inf
    # The weekly naive wins ties and the no-data case: it knows the weekday.
    return 1 if errors[1] < errors[7] else 7


def baseline_forecast(
    history: pd.Series,
    tz: str,
    target_date: date,
    *,
    naive_days: int | None = None,
    interval: float = 0.8,
    issue_hour: int = DEFAULT_ISSUE_HOUR,
    reason: str = "",
) -> Forecast:
    """The seasonal-naive forecast a site gets without a (promoted) model.

    Same hour ``naive_days`` (1 or 7) days earlier, by default whichever has been the better on
    the recent history; where that hour is not known at issue time, the most recent earlier day
    measured at that hour. The interval comes from the empirical quantiles of the baseline's
    relative errors over the last 8 weeks (NaN when the history is too short).
    """
    issued = issue_time(target_date, tz, issue_hour)
    hours = target_hours(target_date, tz)
    known = measured_until(history, issued)
    days = naive_days or better_naive_days(known, tz)
    base = _baselines(known, hours, tz)
    point = seasonal_naive(known, hours, tz, days)
    for k in range(1, 15):  # ``known`` holds only what was measured by the issue time
        gap = ~np.isfinite(point)
        if not gap.any():
            break
        point[gap] = seasonal_naive(known, hours[gap], tz, k)
    lower, upper = _naive_interval(known, tz, point, days, interval)
    out = pd.DataFrame({"forecast": point, "lower": lower, "upper": upper}, index=hours)
    return Forecast(
        target_date=target_date,
        issued_at=issued,
        method=f"seasonal_naive_{days}d",
        hours=out.join(base),
        target_weather=False,
        message=reason,
    )


def _naive_interval(
    known: pd.Series, tz: str, point: np.ndarray, days: int, interval: float
) -> tuple[np.ndarray, np.ndarray]:
    nan = np.full(len(point), np.nan)
    if known.empty:
        return nan, nan
    # Multiplicative errors of the same naive over the last 8 weeks of history.
    recent = known[known.index >= known.index[-1] - pd.Timedelta(days=56)]
    prior = seasonal_naive(known, recent.index, tz, days)
    ok = np.isfinite(prior) & (np.abs(prior) > 0)
    if ok.sum() < 48:
        return nan, nan
    ratio = recent.to_numpy()[ok] / prior[ok]
    lo_q, hi_q = np.quantile(ratio, [(1 - interval) / 2, (1 + interval) / 2])
    lower = np.clip(np.minimum(point * lo_q, point), 0.0, None)
    return lower, np.maximum(point * hi_q, point)


def local_date_range(series: pd.Series, tz: str) -> tuple[date, date]:
    """First and last local day with a measured value."""
    s = series.dropna()
    days = local_dates(pd.DatetimeIndex(s.index), tz)
    return days.min().date(), days.max().date()


def next_day(d: date) -> date:
    """The following calendar day."""
    return d + timedelta(days=1)
