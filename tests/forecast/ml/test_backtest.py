"""Rolling-origin backtest: skill over seasonal naive, honest intervals, promotion, determinism."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from services.forecast.ml.backtest import (
    BacktestMetrics,
    BacktestResult,
    backtest,
    best_naive_days,
    promotion_reason,
    should_promote,
)
from services.forecast.ml.pipeline import InsufficientHistory
from tests.forecast.ml.synthetic import FAST, synthetic_site

TZ = "Europe/Paris"
GEFCOM = (
    Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "gefcom2012_total_hourly.csv"
)


@pytest.fixture(scope="module")
def result() -> BacktestResult:
    load, weather = synthetic_site(start=date(2025, 10, 1), days=150, seed=3)
    return backtest(load, weather, TZ, "FR", days=28, params=FAST)


def test_backtest_model_beats_seasonal_naive_on_temperature_driven_load(
    result: BacktestResult,
) -> None:
    # Assert: weather fronts move the load; only the model knows tomorrow's temperature.
    m = result.metrics
    assert m.n_days == 28
    assert m.skill_vs_best_naive > 0.3
    assert m.rmse < min(m.rmse_naive_1d, m.rmse_naive_7d)
    assert 0 < m.mase < 1
    assert should_promote(m)


def test_backtest_interval_covers_about_80_percent(result: BacktestResult) -> None:
    # Assert: CQR is calibrated on held-out days, so coverage is near nominal out of sample.
    assert 0.72 <= result.metrics.interval_coverage <= 0.9
    assert (result.hours["lower"] <= result.hours["forecast"]).all()
    assert (result.hours["forecast"] <= result.hours["upper"]).all()


def test_backtest_reports_importances_and_durations(result: BacktestResult) -> None:
    # Assert: temperature drives the synthetic load, so a temperature feature ranks high.
    top = list(result.feature_importances)[:5]
    assert any(name.startswith(("temp", "hdd", "cdd")) for name in top)
    assert len(result.train_s) == 4  # 28 days, retrained weekly
    assert len(result.predict_s) == 28
    assert all(s > 0 for s in result.train_s)


def test_backtest_covers_dst_day_hours() -> None:
    # Arrange: the backtest window contains the 23-hour day 2026-03-29.
    load, weather = synthetic_site(start=date(2026, 1, 15), days=80, seed=1)

    # Act
    res = backtest(load, weather, TZ, "FR", days=7, params=FAST, importance_repeats=0)

    # Assert
    per_day = res.hours.groupby("target_date").size()
    assert per_day[date(2026, 3, 29)] == 23
    assert res.metrics.n_hours == 7 * 24 - 1


def test_backtest_without_target_weather_still_runs_and_is_worse(result: BacktestResult) -> None:
    # Arrange
    load, weather = synthetic_site(start=date(2025, 10, 1), days=150, seed=3)

    # Act
    blind = backtest(load, weather, TZ, "FR", days=28, params=FAST, target_weather=False)

    # Assert: no feature of the target day's weather was used, and it shows.
    assert not any(c.startswith(("temp_day", "temp_roll")) for c in blind.feature_importances)
    assert blind.metrics.rmse > result.metrics.rmse


def test_backtest_too_little_history_raises() -> None:
    # Arrange: 12 days of data cannot train (14 are needed) and test.
    load, weather = synthetic_site(start=date(2026, 1, 1), days=12)

    # Act / Assert
    with pytest.raises(InsufficientHistory, match="at least 1[45] days"):
        backtest(load, weather, TZ, "FR", days=7, params=FAST)


def test_backtest_shortens_to_the_history_available() -> None:
    # Arrange: 20 days: 14 to learn from, 6 to test.
    load, weather = synthetic_site(start=date(2026, 1, 1), days=20)

    # Act
    res = backtest(load, weather, TZ, "FR", days=56, params=FAST, importance_repeats=0)

    # Assert
    assert res.metrics.n_days == 6


def test_backtest_is_deterministic_with_a_seed() -> None:
    # Arrange
    load, weather = synthetic_site(start=date(2026, 1, 1), days=40, seed=5)

    # Act
    first = backtest(load, weather, TZ, "FR", days=7, params=FAST, importance_repeats=1)
    second = backtest(load, weather, TZ, "FR", days=7, params=FAST, importance_repeats=1)

    # Assert
    pd.testing.assert_frame_equal(first.hours, second.hours)
    assert first.metrics == second.metrics
    assert first.feature_importances == second.feature_importances


def _metrics(rmse: float, naive_1d: float, naive_7d: float) -> BacktestMetrics:
    return BacktestMetrics(
        n_days=56, n_hours=1344, mape=5.0, rmse=rmse, mae=rmse * 0.8, mase=0.7,
        rmse_naive_1d=naive_1d, rmse_naive_7d=naive_7d, mape_naive_1d=6.0, mape_naive_7d=7.0,
        skill_vs_naive_1d=1 - rmse / naive_1d, skill_vs_naive_7d=1 - rmse / naive_7d,
        skill_vs_best_naive=1 - rmse / min(naive_1d, naive_7d), interval_coverage=0.8,
        interval_nominal=0.8, mean_interval_width=10.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("rmse", "naive_1d", "naive_7d", "promote"),
    [
        (9.0, 10.0, 12.0, True),
        (11.0, 10.0, 12.0, False),  # beats the weekly naive only: not enough
        (11.0, 12.0, 10.0, False),  # beats the daily naive only: not enough
        (10.0, 10.0, 12.0, False),  # a tie is not better
        (math.nan, 10.0, 12.0, False),
    ],
)
def test_should_promote_only_when_beating_the_better_seasonal_naive(
    rmse: float, naive_1d: float, naive_7d: float, promote: bool
) -> None:
    # Arrange
    metrics = _metrics(rmse, naive_1d, naive_7d)

    # Act / Assert
    assert should_promote(metrics) is promote
    assert ("does not beat" in promotion_reason(metrics) or math.isnan(rmse)) is not promote


def test_should_promote_refuses_an_empty_backtest() -> None:
    # Arrange
    metrics = replace(_metrics(9.0, 10.0, 12.0), n_hours=0)

    # Act / Assert
    assert not should_promote(metrics)
    assert "no backtest hours" in promotion_reason(metrics)


@pytest.mark.skipif(not GEFCOM.exists(), reason=f"real data file absent: {GEFCOM}")
def test_backtest_on_real_gefcom_load_beats_seasonal_naive() -> None:
    # Arrange: the real utility (UTC, US holidays), a 7-day backtest on a one-year window.
    raw = pd.read_csv(GEFCOM, parse_dates=["timestamp"]).set_index("timestamp")
    load = raw["load"] / 1000.0
    weather = raw[["temperature"]].rename(columns={"temperature": "temperature_c"})

    # Act
    res = backtest(
        load, weather, "UTC", "US", days=7, params=FAST, train_window_days=365,
        importance_repeats=0,
    )  # fmt: skip

    # Assert
    m = res.metrics
    assert m.n_days == 7
    assert m.skill_vs_best_naive > 0.1
    assert m.mape < 8.0
    assert 0.5 <= m.interval_coverage <= 1.0


@pytest.mark.parametrize(("naive_1d", "naive_7d", "days"), [(10.0, 12.0, 1), (12.0, 10.0, 7)])
def test_best_naive_days_names_the_baseline_to_serve(
    naive_1d: float, naive_7d: float, days: int
) -> None:
    # Arrange
    metrics = _metrics(11.0, naive_1d, naive_7d)

    # Act / Assert
    assert best_naive_days(metrics) == days


def test_backtest_of_an_all_zero_series_does_not_promote() -> None:
    # Arrange: a site that has never consumed anything (a meter installed ahead of use).
    load, weather = synthetic_site(start=date(2026, 1, 1), days=30)
    zeros = load * 0.0

    # Act
    res = backtest(zeros, weather, TZ, "FR", days=7, params=FAST, importance_repeats=1)

    # Assert: no crash, no percentage of zero, and nothing to beat.
    assert res.metrics.rmse == 0.0
    assert math.isnan(res.metrics.mape)
    assert not should_promote(res.metrics)
