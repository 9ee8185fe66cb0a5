"""Seeded synthetic sites for the forecasting tests: load driven by the local clock and weather."""

from __future__ import annotations

from datetime import date

import holidays
import numpy as np
import pandas as pd

from services.forecast.ml.models import ModelParams

# Small, quick boosters: the tests check behaviour, not the last percent of accuracy.
FAST = ModelParams(max_iter=80, learning_rate=0.12, max_leaf_nodes=15, calibration_days=14)


def synthetic_temperature(index: pd.DatetimeIndex, tz: str, seed: int) -> pd.Series:
    """Hourly °C: season, daily cycle, and multi-day weather anomalies (an AR(1) process)."""
    rng = np.random.default_rng(seed)
    local = index.tz_convert(tz)
    season = 12 - 9 * np.cos(2 * np.pi * (local.day_of_year.to_numpy() - 15) / 365.25)
    daily = 4 * np.sin(2 * np.pi * (local.hour.to_numpy() - 9) / 24)
    anomaly = np.zeros(len(index))
    shocks = rng.normal(0, 0.45, len(index))
    for i in range(1, len(index)):
        anomaly[i] = 0.99 * anomaly[i - 1] + shocks[i]  # fronts last days, not hours
    return pd.Series(season + daily + anomaly, index=index, name="temperature_c")


def synthetic_load(
    temperature: pd.Series, tz: str, country: str | None, seed: int, noise_kwh: float = 2.0
) -> pd.Series:
    """Hourly kWh: a local-clock daily profile, quieter weekends and holidays, heating/cooling."""
    rng = np.random.default_rng(seed + 1)
    local = temperature.index.tz_convert(tz)
    hour = local.hour.to_numpy()
    profile = 0.75 + 0.35 * np.exp(-((hour - 19) ** 2) / 8) + 0.25 * ((hour >= 8) & (hour <= 18))
    days = local.tz_localize(None).normalize()
    years = range(int(days.year.min()), int(days.year.max()) + 1)
    hol = pd.DatetimeIndex(
        [pd.Timestamp(d) for d in holidays.country_holidays(country, years=years)]
        if country
        else []
    )
    off = (local.day_of_week.to_numpy() >= 5) | days.isin(hol)
    temp = temperature.to_numpy()
    load = (
        100 * profile * np.where(off, 0.8, 1.0)
        + 3.0 * np.maximum(15 - temp, 0)
        + 4.0 * np.maximum(temp - 22, 0)
        + rng.normal(0, noise_kwh, len(temp))
    )
    return pd.Series(load, index=temperature.index, name="consumption_kwh")


def synthetic_site(
    start: date = date(2025, 10, 1),
    days: int = 150,
    tz: str = "Europe/Paris",
    country: str | None = "FR",
    seed: int = 0,
) -> tuple[pd.Series, pd.DataFrame]:
    """(load, weather) for ``days`` local days from ``start``: the inputs a site has."""
    first = pd.Timestamp(start).tz_localize(tz).tz_convert("UTC")
    last = pd.Timestamp(start + pd.Timedelta(days=days)).tz_localize(tz).tz_convert("UTC")
    index = pd.date_range(first, last, freq="h", inclusive="left")
    temp = synthetic_temperature(index, tz, seed)
    return synthetic_load(temp, tz, country, seed), temp.to_frame()


def synthetic_solar(
    days: int = 90, tz: str = "Europe/Paris", seed: int = 0
) -> tuple[pd.Series, pd.DataFrame]:
    """(production, weather with irradiance) of a small PV plant: zero at night."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-04-01").tz_localize(tz).tz_convert("UTC")
    index = pd.date_range(start, periods=days * 24, freq="h")
    hour = index.tz_convert(tz).hour.to_numpy()
    clear = np.clip(np.sin(np.pi * (hour - 6) / 14), 0, None) * 900
    cloud = np.clip(rng.normal(0.7, 0.25, days).repeat(24), 0.05, 1.0)
    irradiance = clear * cloud
    production = np.clip(irradiance * 0.08 + rng.normal(0, 1.0, len(index)), 0, None)
    production[clear == 0] = 0.0
    weather = pd.DataFrame({"temperature_c": 15.0, "irradiance_w_m2": irradiance}, index=index)
    return pd.Series(production, index=index, name="production_kwh"), weather
