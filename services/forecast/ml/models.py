"""Day-ahead models: gradient boosting with a split-conformal 80 % interval, and seasonal naive.

Point forecast: ``HistGradientBoostingRegressor`` (squared error) on the features of
``features.py``. The target and every load-valued feature are divided by the site's recent level
(the mean of the 168 hours known at issue time), so the trees learn shapes and ratios, not
absolute values: trees cannot extrapolate, and a site whose load grows or shrinks would otherwise
be capped at the range seen in training. Multiplied back after prediction.

Interval: split conformal on the point model's residuals. A probe booster, identical but
trained without the last ``calibration_days`` of the window, forecasts those held-out days; the
finite-sample alpha/2 and 1 - alpha/2 quantiles of its (level-scaled, signed) residuals become
the offsets of the bounds around the final model's forecast. The residuals are out of sample and
at least as stale as the final model's will be, so coverage is honest (if anything slightly
conservative); level scaling makes the width follow the site's size and season.
Conformalised quantile regression (quantile-loss boosters) was tried first: its boosters are
trained before the calibration window and so are *older* when they forecast than when they were
checked, and it covered 71 % on the synthetic tests and 73 % on GEFCom without temperature.
Everything is seeded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from services.forecast.ml.features import HOUR, LOAD_COLUMNS, WallClock, regular_hourly

ALGORITHM = "hist_gradient_boosting+split_conformal"
LEVEL_COLUMN = "mean_168h_at_issue"
ANCHOR_COLUMN = "lag_latest"
SPREAD_COLUMN = "naive_rmse_7d"


@dataclass(frozen=True)
class ModelParams:
    """Hyper-parameters of a day-ahead model (stored with each model run)."""

    max_iter: int = 300
    learning_rate: float = 0.06
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 20
    l2_regularization: float = 1.0
    max_bins: int = 255
    interval: float = 0.8
    calibration_days: int = 28
    scale_by_level: bool = True
    # "naive": learn the deviation from the latest same-hour value known at issue (the
    # seasonal naive), so the trees model corrections, not the whole curve; "none": the level.
    anchor: str = "naive"
    # Older hours weigh less (weight halves every this many days); None: all hours alike.
    recency_halflife_days: float | None = None
    seed: int = 0
    # OpenMP threads per fit/predict. One: on a shared machine, libgomp's spinning threads
    # oversubscribed by other processes made a 1 s fit take 30 s; one thread never degrades so.
    threads: int = 1

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for storage (JSON)."""
        return dict(self.__dict__)


@dataclass
class DayAheadModel:
    """A fitted day-ahead model: the point booster and the conformal offsets of its interval."""

    columns: list[str]
    params: ModelParams
    point: HistGradientBoostingRegressor
    # Interval offsets around the point forecast, in units of the recent day-to-day spread
    # (lower <= 0 <= upper): bound = forecast + offset x naive_rmse_7d.
    offset_lower: float
    offset_upper: float
    level_floor: float
    level_fallback: float
    spread_floor: float
    spread_fallback: float
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    n_rows: int
    target_weather: bool
    calibration_hours: int = 0
    calibration_rmse: float = math.nan  # the probe's out-of-sample RMSE
    extra: dict[str, Any] = field(default_factory=dict)

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Forecast with its interval for each row: columns forecast, lower, upper (>= 0)."""
        level, anchor = self._level(features), self._anchor(features)
        x = _scaled(features, self.columns, level, self.params.scale_by_level)
        with threadpool_limits(limits=self.params.threads, user_api="openmp"):
            scaled = self.point.predict(x)
        # Energy is never negative, and the interval must contain its own point forecast.
        raw = anchor + scaled * level
        spread = self._spread(features)
        point = np.maximum(raw, 0.0)
        lower = np.clip(np.minimum(raw + self.offset_lower * spread, point), 0.0, None)
        upper = np.maximum(raw + self.offset_upper * spread, point)
        return pd.DataFrame(
            {"forecast": point, "lower": lower, "upper": upper}, index=features.index
        )

    def predict_point(self, features: pd.DataFrame) -> np.ndarray:
        """The point forecast only."""
        level, anchor = self._level(features), self._anchor(features)
        x = _scaled(features, self.columns, level, self.params.scale_by_level)
        with threadpool_limits(limits=self.params.threads, user_api="openmp"):
            return np.maximum(anchor + self.point.predict(x) * level, 0.0)

    def _spread(self, features: pd.DataFrame) -> np.ndarray:
        spread = features[SPREAD_COLUMN].to_numpy(dtype="float64", copy=True)
        spread[~np.isfinite(spread)] = self.spread_fallback
        return np.maximum(spread, self.spread_floor)

    def _anchor(self, features: pd.DataFrame) -> np.ndarray:
        if self.params.anchor != "naive":
            return np.zeros(len(features))
        anchor = features[ANCHOR_COLUMN].to_numpy(dtype="float64", copy=True)
        gap = ~np.isfinite(anchor)  # a week without data at this hour: the recent level
        anchor[gap] = features[LEVEL_COLUMN].to_numpy(dtype="float64")[gap]
        anchor[~np.isfinite(anchor)] = self.level_fallback
        return anchor

    def _level(self, features: pd.DataFrame) -> np.ndarray:
        if not self.params.scale_by_level:
            return np.ones(len(features))
        level = features[LEVEL_COLUMN].to_numpy(dtype="float64", copy=True)
        level[~np.isfinite(level)] = self.level_fallback
        return np.maximum(level, self.level_floor)


def _scaled(
    features: pd.DataFrame, columns: list[str], level: np.ndarray, scale: bool
) -> pd.DataFrame:
    x = features[columns].astype("float64")
    if scale:
        load_cols = [c for c in columns if c in LOAD_COLUMNS and c != LEVEL_COLUMN]
        x[load_cols] = x[load_cols].to_numpy() / level[:, None]
    return x


def _booster(params: ModelParams, **kwargs: Any) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(
        max_iter=params.max_iter,
        learning_rate=params.learning_rate,
        max_leaf_nodes=params.max_leaf_nodes,
        min_samples_leaf=params.min_samples_leaf,
        l2_regularization=params.l2_regularization,
        max_bins=params.max_bins,
        early_stopping=False,  # fixed iterations: no random validation split, same model each run
        random_state=params.seed,
        **kwargs,
    )


def fit_day_ahead(
    features: pd.DataFrame,
    target: pd.Series,
    columns: list[str],
    *,
    params: ModelParams | None = None,
    target_weather: bool = True,
) -> DayAheadModel:
    """Fit the point model and calibrate its interval on rows where the target is known."""
    params = params or ModelParams()
    y_all = target.reindex(features.index).to_numpy(dtype="float64")
    ok = np.isfinite(y_all)
    feats, y = features[ok], y_all[ok]
    if len(y) < 48:
        raise ValueError(f"only {len(y)} hours with a measured target: cannot fit")
    typical = float(np.median(np.abs(y)))
    # A week of (near) zeros, e.g. a solar site under snow, must not blow the ratios up.
    level_floor = max(0.05 * typical, 1e-6)
    raw_level = feats[LEVEL_COLUMN].to_numpy(dtype="float64")
    finite = raw_level[np.isfinite(raw_level)]
    raw_spread = feats[SPREAD_COLUMN].to_numpy(dtype="float64")
    spread_ok = raw_spread[np.isfinite(raw_spread)]
    spread_fallback = float(np.median(spread_ok)) if len(spread_ok) else max(0.1 * typical, 1e-6)
    # A column with no value in the window (lag 14 d on a 14-day history) cannot be binned.
    columns = [c for c in columns if feats[c].notna().any()]
    model = DayAheadModel(
        columns=columns,
        params=params,
        point=_booster(params),
        offset_lower=0.0,
        offset_upper=0.0,
        level_floor=level_floor,
        level_fallback=float(finite[-1]) if len(finite) else max(typical, level_floor),
        # A flat week (spread ~0) must not collapse the interval to a point.
        spread_floor=max(0.01 * typical, 1e-6),
        spread_fallback=spread_fallback,
        train_start=feats.index[0],
        train_end=feats.index[-1] + HOUR,
        n_rows=len(y),
        target_weather=target_weather,
    )
    level = model._level(feats)
    x = _scaled(feats, model.columns, level, params.scale_by_level)
    ys = (y - model._anchor(feats)) / level
    # Calibration split by time: the last days are forecast by a probe that never saw them.
    cal = min(params.calibration_days * 24, len(ys) // 4)
    probe = _booster(params)
    weight = _recency_weights(feats.index, params.recency_halflife_days)
    with threadpool_limits(limits=params.threads, user_api="openmp"):
        probe.fit(x[:-cal], ys[:-cal], sample_weight=None if weight is None else weight[:-cal])
        # Residuals in energy units, then per unit of the spread known at each issue time.
        residuals = (ys[-cal:] - probe.predict(x[-cal:])) * level[-cal:]
        model.point.fit(x, ys, sample_weight=weight)
    spread = model._spread(feats)[-cal:]
    model.offset_lower, model.offset_upper = conformal_offsets(residuals / spread, params.interval)
    model.calibration_hours = cal
    model.calibration_rmse = float(np.sqrt(np.mean(residuals**2)))
    return model


def _recency_weights(index: pd.DatetimeIndex, halflife_days: float | None) -> np.ndarray | None:
    # None, not ones: with any sample_weight scikit-learn bins features by weighted
    # percentiles, which made a two-year fit 2-3x slower.
    if not halflife_days:
        return None
    age_days = (index[-1] - index).total_seconds().to_numpy() / 86400
    return np.asarray(0.5 ** (age_days / halflife_days))


def conformal_offsets(residuals: np.ndarray, interval: float) -> tuple[float, float]:
    """Split-conformal lower/upper offsets (signed residual quantiles, finite-sample corrected)."""
    n = len(residuals)
    tail = (1 - interval) / 2
    lo_rank = max(math.floor((n + 1) * tail) / n, 0.0)
    hi_rank = min(math.ceil((n + 1) * (1 - tail)) / n, 1.0)
    lower = float(np.quantile(residuals, lo_rank, method="lower"))
    upper = float(np.quantile(residuals, hi_rank, method="higher"))
    return min(lower, 0.0), max(upper, 0.0)


def with_seed(params: ModelParams, seed: int) -> ModelParams:
    """The same parameters with another seed."""
    return replace(params, seed=seed)


# --- baselines -----------------------------------------------------------------------------


def seasonal_naive(series: pd.Series, index: pd.DatetimeIndex, tz: str, days: int) -> np.ndarray:
    """Same local wall-clock hour ``days`` days earlier (NaN where not measured)."""
    grid = regular_hourly(series)
    if grid.empty:
        return np.full(len(index), np.nan)
    values, _ = WallClock(grid, tz).back(pd.DatetimeIndex(index).tz_convert("UTC"), days)
    return values
