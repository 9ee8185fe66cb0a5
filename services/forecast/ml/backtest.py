"""Rolling-origin day-ahead backtest, its metrics, feature importances and the promotion rule.

For each origin day D of the last ``days`` local days, the forecast is made exactly as in
production: features from data known at D's issue time (D-1, 12:00 local), a model trained on
hours measured by then. Retraining for every origin would cost ``days`` trainings, so the model
is retrained every ``retrain_every_days`` (7: weekly) on data measured by the issue time of the
first day of its block and then predicts each day of the block: the features of later days
still use everything known at *their* issue times, only the model weights are up to 6 days old,
as they would be with a weekly retraining schedule in production.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from services.forecast.ml.features import (
    DEFAULT_ISSUE_HOUR,
    HOUR,
    build_features,
    feature_columns,
    issue_time,
    local_dates,
    regular_hourly,
    target_hours,
)
from services.forecast.ml.models import DayAheadModel, ModelParams, fit_day_ahead, seasonal_naive
from services.forecast.ml.pipeline import (
    DEFAULT_TRAIN_WINDOW_DAYS,
    FEATURE_LOOKBACK,
    MIN_HISTORY_DAYS,
    InsufficientHistory,
    history_days,
)

DEFAULT_BACKTEST_DAYS = 56


@dataclass(frozen=True)
class BacktestMetrics:
    """Accuracy of the model and of both seasonal-naive baselines over the same hours."""

    n_days: int
    n_hours: int
    mape: float  # percent, over hours whose actual is at least 1 % of the mean actual
    rmse: float
    mae: float
    mase: float  # MAE / in-sample MAE of the 1-day seasonal naive on the training history
    rmse_naive_1d: float
    rmse_naive_7d: float
    mape_naive_1d: float
    mape_naive_7d: float
    skill_vs_naive_1d: float  # 1 - rmse / rmse_naive_1d
    skill_vs_naive_7d: float
    skill_vs_best_naive: float
    interval_coverage: float  # share of actuals inside [lower, upper]
    interval_nominal: float
    mean_interval_width: float

    def as_dict(self) -> dict[str, float]:
        """Plain dict for storage (JSON; NaN stays NaN, the caller decides)."""
        return asdict(self)


@dataclass
class BacktestResult:
    """Metrics, the per-hour forecasts behind them, importances and durations."""

    metrics: BacktestMetrics
    hours: pd.DataFrame  # actual, forecast, lower, upper, naive_1d, naive_7d, target_date
    feature_importances: dict[str, float]  # RMSE increase when the feature is permuted
    params: ModelParams
    target_weather: bool
    train_s: list[float] = field(default_factory=list)  # one per (weekly) training
    predict_s: list[float] = field(default_factory=list)  # one per forecast day
    last_model: DayAheadModel | None = None

    @property
    def train_s_mean(self) -> float:
        """Mean seconds of one training."""
        return float(np.mean(self.train_s)) if self.train_s else math.nan

    @property
    def predict_s_mean(self) -> float:
        """Mean seconds to predict one day (features already built)."""
        return float(np.mean(self.predict_s)) if self.predict_s else math.nan


def _rmse(err: np.ndarray) -> float:
    return float(np.sqrt(np.mean(err**2))) if len(err) else math.nan


def _mape(actual: np.ndarray, pred: np.ndarray) -> float:
    # Hours near zero (a solar site at night) would make a percentage meaningless.
    if not len(actual):
        return math.nan
    ok = (np.abs(actual) >= 0.01 * np.mean(np.abs(actual))) & (actual != 0)
    if not ok.any():
        return math.nan
    return float(100 * np.mean(np.abs(pred[ok] - actual[ok]) / np.abs(actual[ok])))


def _skill(rmse: float, base: float) -> float:
    return 1.0 - rmse / base if base > 0 else math.nan


def compute_metrics(hours: pd.DataFrame, mase_scale: float, interval: float) -> BacktestMetrics:
    """Metrics over the hours where the actual, the forecast and both baselines exist."""
    cols = ["actual", "forecast", "naive_1d", "naive_7d"]
    h = hours.dropna(subset=cols)
    y = h["actual"].to_numpy()
    err = h["forecast"].to_numpy() - y
    rmse = _rmse(err)
    r1 = _rmse(h["naive_1d"].to_numpy() - y)
    r7 = _rmse(h["naive_7d"].to_numpy() - y)
    mae = float(np.mean(np.abs(err))) if len(err) else math.nan
    inside = (h["actual"] >= h["lower"]) & (h["actual"] <= h["upper"])
    return BacktestMetrics(
        n_days=int(h["target_date"].nunique()) if len(h) else 0,
        n_hours=len(h),
        mape=_mape(y, h["forecast"].to_numpy()),
        rmse=rmse,
        mae=mae,
        mase=mae / mase_scale if mase_scale > 0 else math.nan,
        rmse_naive_1d=r1,
        rmse_naive_7d=r7,
        mape_naive_1d=_mape(y, h["naive_1d"].to_numpy()),
        mape_naive_7d=_mape(y, h["naive_7d"].to_numpy()),
        skill_vs_naive_1d=_skill(rmse, r1),
        skill_vs_naive_7d=_skill(rmse, r7),
        skill_vs_best_naive=_skill(rmse, min(r1, r7)),
        interval_coverage=float(inside.mean()) if len(h) else math.nan,
        interval_nominal=interval,
        mean_interval_width=float((h["upper"] - h["lower"]).mean()) if len(h) else math.nan,
    )


def should_promote(metrics: BacktestMetrics) -> bool:
    """Serve the model only if its backtest RMSE beats the better seasonal naive."""
    best = min(metrics.rmse_naive_1d, metrics.rmse_naive_7d)
    return bool(
        metrics.n_hours > 0 and math.isfinite(metrics.rmse) and math.isfinite(best)
        and metrics.rmse < best
    )  # fmt: skip


def best_naive_days(metrics: BacktestMetrics) -> int:
    """1 or 7: the seasonal naive to serve when the model is not promoted."""
    return 1 if metrics.rmse_naive_1d < metrics.rmse_naive_7d else 7


def promotion_reason(metrics: BacktestMetrics) -> str:
    """A sentence for operators: why the model is (not) served."""
    best = min(metrics.rmse_naive_1d, metrics.rmse_naive_7d)
    if should_promote(metrics):
        return f"model RMSE {metrics.rmse:.4g} beats the best seasonal naive ({best:.4g})"
    if metrics.n_hours == 0 or not math.isfinite(metrics.rmse):
        return "no backtest hours to judge the model on: the seasonal naive is served"
    return (
        f"model RMSE {metrics.rmse:.4g} does not beat the best seasonal naive ({best:.4g}): "
        "the seasonal naive is served"
    )


def _last_full_day(grid: pd.Series, tz: str) -> date:
    last = grid.dropna().index[-1]
    day = local_dates(pd.DatetimeIndex([last]), tz)[0].date()
    return day if target_hours(day, tz)[-1] <= last else day - timedelta(days=1)


def backtest(
    target: pd.Series,
    weather: pd.DataFrame | pd.Series | None,
    tz: str,
    country: str | None,
    *,
    days: int = DEFAULT_BACKTEST_DAYS,
    retrain_every_days: int = 7,
    target_weather: bool = True,
    params: ModelParams | None = None,
    train_window_days: int = DEFAULT_TRAIN_WINDOW_DAYS,
    issue_hour: int = DEFAULT_ISSUE_HOUR,
    importance_repeats: int = 3,
) -> BacktestResult:
    """Rolling-origin day-ahead backtest over the last ``days`` complete local days.

    ``target_weather=True`` lets the model use the target day's weather as given (a measured
    series then stands in for a perfect forecast); ``False`` restricts it to weather known up
    to the day before. Shortens the backtest when the history is short; raises
    ``InsufficientHistory`` when not even one day can be tested after ``MIN_HISTORY_DAYS``.
    """
    params = params or ModelParams()
    grid = regular_hourly(target)
    if grid.dropna().empty:
        raise InsufficientHistory(0.0, MIN_HISTORY_DAYS)
    end_day = _last_full_day(grid, tz)
    first_day = local_dates(pd.DatetimeIndex([grid.dropna().index[0]]), tz)[0].date()
    days = min(days, (end_day - first_day).days + 1 - MIN_HISTORY_DAYS)
    if days < 1:
        raise InsufficientHistory(history_days(grid), MIN_HISTORY_DAYS + 1)
    start_day = end_day - timedelta(days=days - 1)

    # One leak-free feature frame for every hour used for training or testing.
    first_cutoff = issue_time(start_day, tz, issue_hour)
    window_start = first_cutoff - pd.Timedelta(days=train_window_days)
    grid = grid[grid.index >= window_start - FEATURE_LOOKBACK]
    end = target_hours(end_day, tz)[-1] + HOUR
    grid = grid[grid.index < end]
    index = grid.index[grid.index >= window_start]
    frame = build_features(grid, weather, tz, country, index, issue_hour=issue_hour)
    columns = feature_columns(frame, target_weather=target_weather)
    known_days = history_days(grid[(grid.index + HOUR) <= first_cutoff])
    if known_days < MIN_HISTORY_DAYS:  # gaps: 14 calendar days but fewer measured
        raise InsufficientHistory(known_days, MIN_HISTORY_DAYS)

    naive_1d = seasonal_naive(grid, index, tz, 1)
    mase_rows = (index + HOUR) <= first_cutoff
    in_sample = np.abs(grid.reindex(index).to_numpy() - naive_1d)[mase_rows]
    mase_scale = float(np.nanmean(in_sample)) if np.isfinite(in_sample).any() else math.nan

    result_parts: list[pd.DataFrame] = []
    blocks: list[tuple[DayAheadModel, pd.DataFrame, np.ndarray]] = []
    train_s: list[float] = []
    predict_s: list[float] = []
    model: DayAheadModel | None = None
    for offset in range(0, days, retrain_every_days):
        block_start = start_day + timedelta(days=offset)
        cutoff = issue_time(block_start, tz, issue_hour)
        rows = ((index + HOUR) <= cutoff) & (index >= cutoff - pd.Timedelta(days=train_window_days))
        t0 = time.perf_counter()
        model = fit_day_ahead(
            frame[rows], grid, columns, params=params, target_weather=target_weather
        )
        train_s.append(time.perf_counter() - t0)
        block_frames = []
        for d in range(offset, min(offset + retrain_every_days, days)):
            day = start_day + timedelta(days=d)
            hours = target_hours(day, tz)
            x = frame.reindex(hours)
            t0 = time.perf_counter()
            pred = model.predict(x)
            predict_s.append(time.perf_counter() - t0)
            pred["target_date"] = day
            block_frames.append(pred)
        block = pd.concat(block_frames)
        result_parts.append(block)
        blocks.append((model, frame.reindex(block.index), grid.reindex(block.index).to_numpy()))

    hours_df = pd.concat(result_parts)
    hours_df["actual"] = grid.reindex(hours_df.index).to_numpy()
    hours_df["naive_1d"] = seasonal_naive(grid, hours_df.index, tz, 1)
    hours_df["naive_7d"] = seasonal_naive(grid, hours_df.index, tz, 7)
    hours_df = hours_df[
        ["target_date", "actual", "forecast", "lower", "upper", "naive_1d", "naive_7d"]
    ]
    return BacktestResult(
        metrics=compute_metrics(hours_df, mase_scale, params.interval),
        hours=hours_df,
        feature_importances=permutation_importances(
            blocks, columns, repeats=importance_repeats, seed=params.seed
        ),
        params=params,
        target_weather=target_weather,
        train_s=train_s,
        predict_s=predict_s,
        last_model=model,
    )


def permutation_importances(
    blocks: list[tuple[DayAheadModel, pd.DataFrame, np.ndarray]],
    columns: list[str],
    *,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """Out-of-sample permutation importance: RMSE increase when one feature is shuffled.

    Each backtest block is scored by the model that forecast it (never trained on it); a
    feature is shuffled within each block. Sorted, largest first.
    """
    if repeats < 1 or not blocks:
        return {}
    rng = np.random.default_rng(seed)
    sq_base = 0.0
    sq_perm = np.zeros((len(columns), repeats))
    n = 0
    for model, x, y in blocks:
        ok = np.isfinite(y)
        x, y = x[ok], y[ok]
        if len(y) == 0:
            continue
        n += len(y)
        sq_base += float(np.sum((model.predict_point(x) - y) ** 2))
        # One prediction call per block: every (feature, repeat) permutation stacked together.
        copies = []
        for col in columns:
            for _ in range(repeats):
                xc = x.copy()
                xc[col] = xc[col].to_numpy()[rng.permutation(len(xc))]
                copies.append(xc)
        pred = model.predict_point(pd.concat(copies, ignore_index=True))
        err = (pred.reshape(len(columns), repeats, len(y)) - y) ** 2
        sq_perm += err.sum(axis=2)
    if n == 0:
        return {}
    base = math.sqrt(sq_base / n)
    gain = (np.sqrt(sq_perm / n) - base).mean(axis=1)
    order = np.argsort(-gain)
    return {columns[i]: float(gain[i]) for i in order}
