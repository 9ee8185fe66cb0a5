"""Production entry points: train and forecast a local day, the baseline, production sites."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from services.forecast.ml.backtest import backtest
from services.forecast.ml.features import target_hours
from services.forecast.ml.models import ALGORITHM
from services.forecast.ml.pipeline import (
    InsufficientHistory,
    baseline_forecast,
    train_and_forecast,
)
from tests.forecast.ml.synthetic import FAST, synthetic_site, synthetic_solar

TZ = "Europe/Paris"
FALL_BACK_DAY = date(2025, 10, 26)  # 25 hours in Paris


@pytest.fixture(scope="module")
def autumn() -> tuple[pd.Series, pd.DataFrame]:
    # Load measured until the end of 2025-10-27; weather (forecast) to the same point.
    return synthetic_site(start=date(2025, 8, 1), days=88, seed=2)


def test_train_and_forecast_covers_every_hour_of_a_25_hour_day(
    autumn: tuple[pd.Series, pd.DataFrame],
) -> None:
    # Arrange
    load, weather = autumn

    # Act
    result = train_and_forecast(load, weather, TZ, "FR", FALL_BACK_DAY, params=FAST)

    # Assert
    hours = result.hours
    assert len(hours) == 25
    assert hours.index.equals(target_hours(FALL_BACK_DAY, TZ))
    assert result.method == ALGORITHM
    assert result.target_weather
    assert result.issued_at == pd.Timestamp("2025-10-26 00:00").tz_localize(TZ)
    assert ((hours["lower"] <= hours["forecast"]) & (hours["forecast"] <= hours["upper"])).all()
    assert hours[["naive_1d", "naive_7d"]].notna().all().all()
    assert result.timings["train_s"] > 0
    actual = load.reindex(hours.index)
    assert np.mean(np.abs(hours["forecast"] - actual) / actual) < 0.1


def test_train_and_forecast_ignores_data_measured_after_issue_time(
    autumn: tuple[pd.Series, pd.DataFrame],
) -> None:
    # Arrange: the same call with and without the target day's (and later) actuals.
    load, weather = autumn
    issued = pd.Timestamp(FALL_BACK_DAY).tz_localize(TZ)
    known_only = load[load.index < issued]

    # Act
    with_future = train_and_forecast(load, weather, TZ, "FR", FALL_BACK_DAY, params=FAST)
    without = train_and_forecast(known_only, weather, TZ, "FR", FALL_BACK_DAY, params=FAST)

    # Assert
    pd.testing.assert_frame_equal(with_future.hours, without.hours)


def test_train_and_forecast_without_weather_forecast_uses_a_model_without_it(
    autumn: tuple[pd.Series, pd.DataFrame],
) -> None:
    # Arrange: weather known only until the day before.
    load, weather = autumn
    past_weather = weather[weather.index < target_hours(FALL_BACK_DAY, TZ)[0]]

    # Act
    result = train_and_forecast(load, past_weather, TZ, "FR", FALL_BACK_DAY, params=FAST)

    # Assert
    assert not result.target_weather
    assert "no weather forecast" in result.message
    assert result.model is not None
    assert "temp" not in result.model.columns
    assert "temp_d1_mean" in result.model.columns
    assert result.hours["forecast"].notna().all()


def test_train_and_forecast_with_too_little_history_raises_a_clear_error() -> None:
    # Arrange: 10 days of a new site.
    load, weather = synthetic_site(start=date(2026, 1, 1), days=11)

    # Act / Assert
    with pytest.raises(InsufficientHistory) as err:
        train_and_forecast(load, weather, TZ, "FR", date(2026, 1, 11), params=FAST)
    assert err.value.days_available == pytest.approx(10.0)
    assert err.value.days_needed == 14
    assert "seasonal-naive baseline is served" in str(err.value)


def test_baseline_forecast_serves_same_hour_last_week_for_a_new_site() -> None:
    # Arrange: 10 days of history (a weekly naive exists); the interval needs >= 48 pairs.
    load, _ = synthetic_site(start=date(2026, 1, 1), days=11)
    day = date(2026, 1, 11)

    # Act
    result = baseline_forecast(load, TZ, day, naive_days=7, reason="too little history")

    # Assert
    hours = target_hours(day, TZ)
    expected = load.reindex(hours - pd.Timedelta(days=7)).to_numpy()
    np.testing.assert_allclose(result.hours["forecast"].to_numpy(), expected)
    assert result.method == "seasonal_naive_7d"
    assert result.message == "too little history"
    assert (result.hours["lower"] <= result.hours["forecast"]).all()
    assert (result.hours["forecast"] <= result.hours["upper"]).all()


def test_baseline_forecast_with_two_days_uses_the_latest_known_day() -> None:
    # Arrange
    load, _ = synthetic_site(start=date(2026, 1, 1), days=2)
    day = date(2026, 1, 3)

    # Act
    result = baseline_forecast(load, TZ, day)

    # Assert: no week-old value exists, so yesterday's same hour is served; too few errors
    # to size an interval yet.
    hours = target_hours(day, TZ)
    expected = load.reindex(hours - pd.Timedelta(days=1)).to_numpy()
    np.testing.assert_allclose(result.hours["forecast"].to_numpy(), expected)
    assert result.hours["lower"].isna().all()


def test_backtest_of_a_solar_production_series_stays_non_negative_and_beats_naive() -> None:
    # Arrange: production is zero at night and follows irradiance by day.
    production, weather = synthetic_solar(days=60)

    # Act
    res = backtest(production, weather, TZ, None, days=14, params=FAST, importance_repeats=1)

    # Assert
    hours = res.hours
    night = weather["irradiance_w_m2"].reindex(hours.index) == 0
    assert night.any()
    assert (hours["lower"] >= 0).all()
    assert hours.loc[night, "forecast"].max() < 1.0
    assert np.isfinite(res.metrics.mape)  # night hours are left out of the percentage
    assert res.metrics.skill_vs_best_naive > 0.3
    assert any(name.startswith("irradiance") for name in list(res.feature_importances)[:3])


def test_train_and_forecast_uses_an_irradiance_forecast_for_a_solar_site() -> None:
    # Arrange: weather with irradiance for the target day (its temperature column is constant).
    production, weather = synthetic_solar(days=40)
    day = date(2026, 5, 10)

    # Act
    result = train_and_forecast(production, weather, TZ, None, day, params=FAST)

    # Assert
    assert result.target_weather
    assert result.model is not None
    assert "irradiance" in result.model.columns
    assert (result.hours["lower"] >= 0).all()
