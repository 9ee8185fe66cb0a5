"""Day-ahead feature frame: calendar in the site's local time, holidays, issue-time lags, weather.

Issue-time rule (the one thing every feature here obeys): the forecast for local day D is issued
on D-1 at ``issue_hour`` local time. The default, 24, is the end of D-1: every hour of D then
sees lags of at least 24 h, as DESIGN.md asks, and knows what the "same hour yesterday" naive
knows. A feature of an hour of D may use

- a measured value of the target series only if its interval has *ended* by the issue time
  (interval start + 1 h <= issue time). With ``issue_hour=12`` (noon, a market gate closure)
  "same hour on D-1" is known for the hours before noon and NaN after it; D-2 and older are
  always known; the model learns both cases;
- weather up to the end of day D (the weather forecast for D stands in for measurements) for
  the "target weather" columns, and only up to the end of D-1 for the "known weather" columns,
  which are all a model without a weather forecast for D may use.

Lags are taken at the same *local wall-clock* hour k days earlier (people live by the local
clock, so across a DST change "same hour yesterday" is 23 or 25 hours back, not 24); when that
wall-clock hour does not exist (the skipped spring hour) the lag falls back to k x 24 h.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import holidays
import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_ISSUE_HOUR = 24
HOUR = pd.Timedelta(hours=1)
# Degree-day bases (°C): the usual 18 °C heating base, 22 °C for cooling; the trees find the
# site's own balance point from the hourly temperature, these only make the effect readable.
HEATING_BASE_C = 18.0
COOLING_BASE_C = 22.0

CALENDAR_COLUMNS = [
    "hour",
    "weekday",
    "month",
    "doy_sin",
    "doy_cos",
    "is_weekend",
    "is_holiday",
    "is_day_before_holiday",
    "is_day_after_holiday",
    "is_off_day",
    "is_holiday_d7",
]
LAG_DAYS = (1, 2, 3, 7, 8, 14)
# Columns in the unit of the target series (scaled by the recent level in models.py).
LOAD_COLUMNS = [
    *(f"lag_{k}d" for k in LAG_DAYS),
    "same_hour_mean_7d",
    "lag_latest",
    "naive_rmse_7d",
    "lag_1d_week_adjusted",
    "mean_24h_at_issue",
    "mean_168h_at_issue",
    "last_at_issue",
]
# Weather known at issue time (measured up to the end of D-1).
KNOWN_WEATHER_COLUMNS = [
    "temp_d1_same_hour",
    "temp_d1_mean",
    "temp_d1_max",
    "temp_d1_min",
    "temp_last_known",
    "temp_d1_minus_d2",
    "hdd_d1",
    "cdd_d1",
    "irradiance_d1_same_hour",
]
# Weather of the target day itself: a forecast in production, measured in an optimistic backtest.
TARGET_WEATHER_COLUMNS = [
    "temp",
    "temp_day_mean",
    "temp_day_max",
    "temp_day_min",
    "temp_roll_24h",
    "temp_ewm_72h",
    "hdd_day",
    "cdd_day",
    "irradiance",
    "irradiance_day_sum",
]
WEATHER_VARIABLES = ("temperature_c", "irradiance_w_m2")


def regular_hourly(series: pd.Series) -> pd.Series:
    """The series on a gap-free hourly UTC grid: sorted, duplicates dropped, gaps as NaN."""
    s = pd.Series(series, dtype="float64").sort_index()
    if not isinstance(s.index, pd.DatetimeIndex) or s.index.tz is None:
        raise ValueError("the series needs a timezone-aware DatetimeIndex")
    s.index = s.index.tz_convert("UTC")
    s = s[~s.index.duplicated(keep="last")]
    if s.empty:
        return s
    if ((s.index - s.index[0]) % HOUR != pd.Timedelta(0)).any():
        # Silently dropping the :15/:30/:45 readings would under-count energy by 4x.
        raise ValueError(
            "the series has sub-hourly timestamps: sum energy to hours first "
            "(ingest: resolution=hour)"
        )
    grid = pd.date_range(s.index[0], s.index[-1], freq="h")
    return s.reindex(grid)


def _hourly_weather(series: pd.Series) -> pd.Series:
    """A weather variable on an hourly grid; sub-hourly samples are averaged per hour."""
    s = series.dropna()
    if len(s) and ((s.index - s.index[0]) % HOUR != pd.Timedelta(0)).any():
        s = s.groupby(s.index.floor("h")).mean()  # a mean, unlike energy: no reason to refuse
    return regular_hourly(s)


def target_hours(target_date: date, tz: str) -> pd.DatetimeIndex:
    """The UTC start of every hour of local day ``target_date`` (23, 24 or 25 of them)."""
    zone = ZoneInfo(tz)
    # Where DST switches at midnight (America/Santiago) the day starts at the first real instant.
    bounds = [
        pd.Timestamp(d).tz_localize(zone, ambiguous=True, nonexistent="shift_forward")
        for d in (target_date, target_date + timedelta(days=1))
    ]
    return pd.date_range(
        bounds[0].tz_convert("UTC"), bounds[1].tz_convert("UTC"), freq="h", inclusive="left"
    )


def issue_time(target_date: date, tz: str, issue_hour: int = DEFAULT_ISSUE_HOUR) -> pd.Timestamp:
    """When the forecast for ``target_date`` is issued: D-1 at ``issue_hour`` local, in UTC."""
    return _issue_times(pd.DatetimeIndex([pd.Timestamp(target_date)]), tz, issue_hour)[0]


def local_dates(index: pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    """Naive local midnight of the local day each UTC timestamp falls in."""
    return index.tz_convert(tz).tz_localize(None).normalize()


def target_day_start(days: pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    """UTC instant of local midnight starting each naive local day."""
    return _issue_times(days, tz, 24)


def _issue_times(days: pd.DatetimeIndex, tz: str, issue_hour: int) -> pd.DatetimeIndex:
    wall = days - pd.Timedelta(days=1) + pd.Timedelta(hours=issue_hour)
    # A wall time skipped by DST (midnight in America/Santiago) is the instant of the jump,
    # which is when the previous day ends; a repeated one is its first, earlier occurrence:
    # issuing earlier can only hide data, never leak it.
    local = wall.tz_localize(
        tz, ambiguous=np.ones(len(wall), dtype=bool), nonexistent="shift_forward"
    )
    return local.tz_convert("UTC")


def holiday_dates(country: str | None, years: Iterable[int]) -> set[date]:
    """Public holidays of ``country`` (ISO 3166 alpha-2) for ``years``; empty when unknown."""
    if not country:
        return set()
    try:
        return set(holidays.country_holidays(country.upper(), years=sorted(set(years))).keys())
    except NotImplementedError:
        # A site in a country the package does not cover still gets a forecast, without holidays.
        log.warning("no public holiday calendar for country %r; holiday features are 0", country)
        return set()


def _as_weather_frame(weather: pd.DataFrame | pd.Series | None) -> pd.DataFrame:
    if weather is None:
        return pd.DataFrame(columns=list(WEATHER_VARIABLES), dtype="float64")
    if isinstance(weather, pd.Series):
        weather = weather.to_frame("temperature_c")
    frame = pd.DataFrame(index=weather.index)
    for name in WEATHER_VARIABLES:
        frame[name] = weather[name].astype("float64") if name in weather else np.nan
    return frame


class WallClock:
    """Look a series up by local wall-clock time, k days back."""

    def __init__(self, grid: pd.Series, tz: str) -> None:
        self.grid, self.tz = grid, tz
        wall = grid.index.tz_convert(tz).tz_localize(None)
        first = ~wall.duplicated(keep="first")  # the repeated autumn hour: keep its first one
        self.values = pd.Series(grid.to_numpy()[first], index=wall[first])
        self.sources = pd.Series(grid.index[first], index=wall[first])

    def back(self, at: pd.DatetimeIndex, days: int) -> tuple[np.ndarray, pd.DatetimeIndex]:
        """Value and source UTC time at the same local wall-clock hour ``days`` days before."""
        key = at.tz_convert(self.tz).tz_localize(None) - pd.Timedelta(days=days)
        values = self.values.reindex(key).to_numpy().copy()
        src = self.sources.reindex(key)
        # The skipped spring hour has no wall-clock twin: fall back to exactly days x 24 h.
        missing = src.isna().to_numpy()
        if missing.any():
            fallback = at[missing] - pd.Timedelta(days=days)
            src[missing] = fallback
            values[missing] = self.grid.reindex(fallback).to_numpy()
        return values, pd.DatetimeIndex(src).tz_convert("UTC")


def _value_before(grid: pd.Series, cutoff: pd.DatetimeIndex) -> np.ndarray:
    """For each cutoff, the grid value of the last interval that ended by it (NaN if none)."""
    pos = grid.index.searchsorted(cutoff - HOUR, side="right") - 1
    out = np.full(len(cutoff), np.nan)
    ok = pos >= 0
    out[ok] = grid.to_numpy()[pos[ok]]
    return out


def calendar_features(index: pd.DatetimeIndex, tz: str, country: str | None) -> pd.DataFrame:
    """Local-time calendar and public-holiday flags for each UTC timestamp of ``index``."""
    local = index.tz_convert(tz)
    day = local.tz_localize(None).normalize()
    years = range(int(day.year.min()) - 1, int(day.year.max()) + 2) if len(day) else []
    hol = pd.DatetimeIndex(sorted(pd.Timestamp(d) for d in holiday_dates(country, years)))
    is_hol = day.isin(hol)
    weekday = local.day_of_week.to_numpy()
    doy = local.day_of_year.to_numpy()
    angle = 2 * np.pi * (doy - 1) / 365.25
    frame = pd.DataFrame(
        {
            "hour": local.hour.to_numpy(),
            "weekday": weekday,
            "month": local.month.to_numpy(),
            "doy_sin": np.sin(angle),
            "doy_cos": np.cos(angle),
            "is_weekend": (weekday >= 5).astype(np.int8),
            "is_holiday": is_hol.astype(np.int8),
            "is_day_before_holiday": (day + pd.Timedelta(days=1)).isin(hol).astype(np.int8),
            "is_day_after_holiday": (day - pd.Timedelta(days=1)).isin(hol).astype(np.int8),
            "is_holiday_d7": (day - pd.Timedelta(days=7)).isin(hol).astype(np.int8),
        },
        index=index,
    )
    frame["is_off_day"] = ((frame["is_weekend"] == 1) | (frame["is_holiday"] == 1)).astype(np.int8)
    return frame[CALENDAR_COLUMNS]


def _load_features(
    grid: pd.Series, index: pd.DatetimeIndex, tz: str, issue: pd.DatetimeIndex
) -> pd.DataFrame:
    clock = WallClock(grid, tz)
    lags: dict[int, np.ndarray] = {}
    for k in sorted({*LAG_DAYS, *range(1, 9)}):  # 1..8: the week of day-to-day moves
        values, src = clock.back(index, k)
        lags[k] = np.where((src + HOUR) <= issue, values, np.nan)  # unknown at issue: NaN
    out = {f"lag_{k}d": lags[k] for k in LAG_DAYS}
    # The most recent same-hour value known at issue: the seasonal naive as it can be issued.
    latest = lags[1].copy()
    for k in range(2, 8):
        latest = np.where(np.isfinite(latest), latest, lags[k])
    out["lag_latest"] = latest
    week = np.vstack([lags[k] for k in range(1, 8)])
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN column -> NaN, meant
        out["same_hour_mean_7d"] = np.nanmean(week, axis=0)
        # How much this hour has moved from day to day lately (known at issue): the spread of
        # the daily naive, blended with all hours' for stability. Sizes the interval.
        moves = np.vstack([lags[k] - lags[k + 1] for k in range(1, 8)])
        same_hour = np.nanmean(moves**2, axis=0)
        all_hours = (grid - grid.shift(24)).pow(2).rolling(168, min_periods=48).mean()
        out["naive_rmse_7d"] = np.sqrt(0.5 * same_hour + 0.5 * _value_before(all_hours, issue))
        # Yesterday's value moved by last week's change between the same two weekdays: a
        # naive forecast that already knows Monday differs from Sunday.
        # (Only where last week's value is positive: a solar site's night is 0/0.)
        ratio = np.where(lags[8] > 0, lags[7] / np.where(lags[8] > 0, lags[8], 1.0), np.nan)
        out["lag_1d_week_adjusted"] = lags[1] * ratio
    # Rolling means over the hours that ended by the issue time (min_periods tolerates gaps).
    out["mean_24h_at_issue"] = _value_before(grid.rolling(24, min_periods=12).mean(), issue)
    out["mean_168h_at_issue"] = _value_before(grid.rolling(168, min_periods=84).mean(), issue)
    out["last_at_issue"] = _value_before(grid, issue)
    return pd.DataFrame(out, index=index)[LOAD_COLUMNS]


def _weather_features(weather: pd.DataFrame, index: pd.DatetimeIndex, tz: str) -> pd.DataFrame:
    out = pd.DataFrame(
        index=index, columns=KNOWN_WEATHER_COLUMNS + TARGET_WEATHER_COLUMNS, dtype="float64"
    )
    if weather.empty or len(index) == 0:
        return out
    day = local_dates(index, tz)
    temp = _hourly_weather(weather["temperature_c"])
    if not temp.empty:
        # Daily statistics per local day, so a DST day's 23 or 25 hours all count.
        tday = local_dates(temp.index, tz)
        daily = temp.groupby(tday).agg(["mean", "max", "min"])
        today = daily.reindex(day)
        yesterday = daily.reindex(day - pd.Timedelta(days=1))
        values, _ = WallClock(temp, tz).back(index, 1)
        out["temp_d1_same_hour"] = values
        out["temp_d1_mean"] = yesterday["mean"].to_numpy()
        out["temp_d1_max"] = yesterday["max"].to_numpy()
        out["temp_d1_min"] = yesterday["min"].to_numpy()
        before = daily.reindex(day - pd.Timedelta(days=2))
        out["temp_d1_minus_d2"] = out["temp_d1_mean"] - before["mean"].to_numpy()
        # The latest temperature before D starts: weather persists, even without a forecast.
        out["temp_last_known"] = _value_before(temp, target_day_start(pd.DatetimeIndex(day), tz))
        out["hdd_d1"] = np.maximum(HEATING_BASE_C - out["temp_d1_mean"], 0)
        out["cdd_d1"] = np.maximum(out["temp_d1_mean"] - COOLING_BASE_C, 0)
        out["temp"] = temp.reindex(index).to_numpy()
        out["temp_day_mean"] = today["mean"].to_numpy()
        out["temp_day_max"] = today["max"].to_numpy()
        out["temp_day_min"] = today["min"].to_numpy()
        # Trailing windows end at the hour itself: they only reach into D-1 and D, never later.
        out["temp_roll_24h"] = temp.rolling(24, min_periods=12).mean().reindex(index).to_numpy()
        # Buildings store heat: a 3-day exponential memory of temperature.
        ewm = temp.ewm(halflife=72, ignore_na=True, min_periods=24).mean()
        out["temp_ewm_72h"] = ewm.reindex(index).to_numpy()
        out["hdd_day"] = np.maximum(HEATING_BASE_C - out["temp_day_mean"], 0)
        out["cdd_day"] = np.maximum(out["temp_day_mean"] - COOLING_BASE_C, 0)
    irr = _hourly_weather(weather["irradiance_w_m2"])
    if not irr.empty:
        iday = local_dates(irr.index, tz)
        out["irradiance"] = irr.reindex(index).to_numpy()
        out["irradiance_day_sum"] = irr.groupby(iday).sum(min_count=1).reindex(day).to_numpy()
        values, _ = WallClock(irr, tz).back(index, 1)
        out["irradiance_d1_same_hour"] = values
    return out


def build_features(
    target: pd.Series,
    weather: pd.DataFrame | pd.Series | None,
    tz: str,
    country: str | None,
    index: pd.DatetimeIndex | None = None,
    *,
    issue_hour: int = DEFAULT_ISSUE_HOUR,
) -> pd.DataFrame:
    """Feature frame for the UTC hours of ``index`` (default: the target's hours), leak-free.

    ``target`` is the hourly measured series (UTC index; consumption or production); ``weather``
    a frame with ``temperature_c`` and/or ``irradiance_w_m2`` (or a temperature Series), measured
    for the past and forecast for the target day. Only values known at each row's issue time
    are used (see the module docstring); weather columns with no data are NaN.
    """
    if not 0 <= issue_hour <= 24:
        raise ValueError("issue_hour must lie between 0 and 24 (24 = midnight starting D)")
    grid = regular_hourly(target)
    if index is None:
        index = grid.index
    index = pd.DatetimeIndex(index).tz_convert("UTC")
    if grid.empty:
        grid = pd.Series(np.nan, index=index[:1], dtype="float64")
    # Data after the last needed issue time can never be used: trim it (faster, and safer).
    days = local_dates(index, tz)
    issue = _issue_times(days, tz, issue_hour)
    weather_frame = _as_weather_frame(weather)
    cal = calendar_features(index, tz, country)
    lags = _load_features(grid, index, tz, issue)
    wx = _weather_features(_clip_weather(weather_frame, index, tz), index, tz)
    return pd.concat([cal, lags, wx], axis=1)


def _clip_weather(weather: pd.DataFrame, index: pd.DatetimeIndex, tz: str) -> pd.DataFrame:
    """Weather up to the end of the last target day: later values are never a feature."""
    if weather.empty or len(index) == 0:
        return weather
    w = weather.copy()
    w.index = pd.DatetimeIndex(w.index).tz_convert("UTC")
    last_day = local_dates(index[-1:], tz)[0].date()
    end = target_hours(last_day, tz)[-1] + HOUR
    return w[w.index < end]


def known_weather_only(
    weather: pd.DataFrame | pd.Series | None, before: pd.Timestamp
) -> pd.DataFrame | pd.Series | None:
    """Weather strictly before ``before`` (the start of D): what a run without a forecast has."""
    if weather is None:
        return None
    return weather[pd.DatetimeIndex(weather.index).tz_convert("UTC") < before]


def feature_columns(frame: pd.DataFrame, *, target_weather: bool) -> list[str]:
    """Columns a model uses: calendar and lags always; weather columns that hold any data."""
    # The day-to-day spread sizes the interval; as a model input it made the backtests worse.
    cols = CALENDAR_COLUMNS + [c for c in LOAD_COLUMNS if c != "naive_rmse_7d"]
    weather_cols = KNOWN_WEATHER_COLUMNS + (TARGET_WEATHER_COLUMNS if target_weather else [])
    cols += [c for c in weather_cols if c in frame and frame[c].notna().any()]
    return cols
