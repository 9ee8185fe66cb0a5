"""Feature frame: local calendar on DST days, holidays, and nothing known after issue time."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from services.forecast.ml.features import (
    KNOWN_WEATHER_COLUMNS,
    build_features,
    issue_time,
    target_hours,
)
from tests.forecast.ml.synthetic import synthetic_site

TZ = "Europe/Paris"


@pytest.fixture(scope="module")
def site() -> tuple[pd.Series, pd.DataFrame]:
    # 2025-10-01 .. 2026-04-30 covers both DST changes (2025-10-26 and 2026-03-29).
    return synthetic_site(start=date(2025, 10, 1), days=211)


@pytest.mark.parametrize(
    ("day", "hours", "local_hours"),
    [
        (date(2026, 3, 29), 23, [0, 1, *range(3, 24)]),
        (date(2025, 10, 26), 25, [0, 1, 2, 2, *range(3, 24)]),
        (date(2026, 3, 30), 24, list(range(24))),
    ],
)
def test_build_features_dst_day_has_the_local_days_hours(
    site: tuple[pd.Series, pd.DataFrame], day: date, hours: int, local_hours: list[int]
) -> None:
    # Arrange
    load, weather = site
    index = target_hours(day, TZ)

    # Act
    frame = build_features(load, weather, TZ, "FR", index)

    # Assert
    assert len(frame) == hours
    assert frame["hour"].tolist() == local_hours
    assert frame.index[0] == pd.Timestamp(day).tz_localize(TZ).tz_convert("UTC")
    assert frame["lag_1d"].notna().all()
    assert frame["lag_7d"].notna().all()


def test_build_features_lag_is_same_local_hour_across_dst(
    site: tuple[pd.Series, pd.DataFrame],
) -> None:
    # Arrange: the 23-hour spring day: its afternoon is 23 h after the same hour on D-1.
    load, weather = site
    day = date(2026, 3, 29)
    index = target_hours(day, TZ)

    # Act
    frame = build_features(load, weather, TZ, "FR", index)

    # Assert: 18:00 local on D is compared with 18:00 local on D-1, not with 24 h earlier.
    at = pd.Timestamp("2026-03-29 18:00").tz_localize(TZ).tz_convert("UTC")
    before = pd.Timestamp("2026-03-28 18:00").tz_localize(TZ).tz_convert("UTC")
    assert at - before == pd.Timedelta(hours=23)
    assert frame.loc[at, "lag_1d"] == pytest.approx(load[before])


@pytest.mark.parametrize(
    ("day", "holiday", "before", "after"),
    [
        (date(2026, 7, 14), 1, 0, 0),
        (date(2026, 7, 13), 0, 1, 0),
        (date(2026, 7, 15), 0, 0, 1),
        (date(2026, 12, 25), 1, 0, 0),
        (date(2026, 12, 24), 0, 1, 0),
        (date(2026, 7, 16), 0, 0, 0),
    ],
)
def test_build_features_flags_french_public_holidays(
    day: date, holiday: int, before: int, after: int
) -> None:
    # Arrange
    load, weather = synthetic_site(start=date(2026, 6, 1), days=220)
    index = target_hours(day, TZ)

    # Act
    frame = build_features(load, weather, TZ, "FR", index)

    # Assert: the flags hold for every hour of the local day, midnight included.
    assert frame["is_holiday"].unique().tolist() == [holiday]
    assert frame["is_day_before_holiday"].unique().tolist() == [before]
    assert frame["is_day_after_holiday"].unique().tolist() == [after]
    assert frame["is_off_day"].unique().tolist() == [int(holiday or day.weekday() >= 5)]


@pytest.mark.parametrize("country", [None, "XX"])
def test_build_features_without_known_country_has_no_holidays(country: str | None) -> None:
    # Arrange
    load, weather = synthetic_site(start=date(2026, 7, 1), days=30)
    index = target_hours(date(2026, 7, 14), TZ)

    # Act
    frame = build_features(load, weather, TZ, country, index)

    # Assert
    assert frame["is_holiday"].sum() == 0
    assert len(frame) == 24


@pytest.mark.parametrize("issue_hour", [24, 12])
def test_build_features_ignores_everything_after_issue_time(
    site: tuple[pd.Series, pd.DataFrame], issue_hour: int
) -> None:
    # Arrange: the 23-hour DST day, features from the true series and from one whose values
    # after the issue time (load) and after the target day (weather) are garbage.
    load, weather = site
    day = date(2026, 3, 29)
    index = target_hours(day, TZ)
    issued = issue_time(day, TZ, issue_hour)
    perturbed_load = load.copy()
    late = (load.index + pd.Timedelta(hours=1)) > issued
    perturbed_load[late] = np.random.default_rng(1).uniform(0, 1e6, late.sum())
    perturbed_weather = weather.copy()
    perturbed_weather.loc[weather.index > index[-1], "temperature_c"] = 55.0

    # Act
    honest = build_features(load, weather, TZ, "FR", index, issue_hour=issue_hour)
    leaky = build_features(
        perturbed_load, perturbed_weather, TZ, "FR", index, issue_hour=issue_hour
    )

    # Assert
    assert late.sum() > 24  # the perturbation really reaches into D-1 and D
    pd.testing.assert_frame_equal(honest, leaky)


def test_build_features_known_weather_ignores_the_target_days_weather(
    site: tuple[pd.Series, pd.DataFrame],
) -> None:
    # Arrange: a model without a weather forecast must not see D's temperature at all.
    load, weather = site
    index = target_hours(date(2026, 2, 10), TZ)
    changed = weather.copy()
    changed.loc[changed.index >= index[0], "temperature_c"] += 20.0

    # Act
    before = build_features(load, weather, TZ, "FR", index)
    after = build_features(load, changed, TZ, "FR", index)

    # Assert
    known = [c for c in KNOWN_WEATHER_COLUMNS if before[c].notna().any()]
    assert known
    pd.testing.assert_frame_equal(before[known], after[known])
    assert not before["temp"].equals(after["temp"])  # the target-weather columns do see it


def test_build_features_noon_issue_hides_previous_afternoon(
    site: tuple[pd.Series, pd.DataFrame],
) -> None:
    # Arrange
    load, weather = site
    index = target_hours(date(2026, 2, 10), TZ)

    # Act
    frame = build_features(load, weather, TZ, "FR", index, issue_hour=12)

    # Assert: D-1 is known until 12:00 local only; D-2 always.
    assert frame.loc[frame["hour"] < 12, "lag_1d"].notna().all()
    assert frame.loc[frame["hour"] >= 12, "lag_1d"].isna().all()
    assert frame["lag_2d"].notna().all()


def test_build_features_rejects_naive_timestamps() -> None:
    # Arrange
    naive = pd.Series([1.0, 2.0], index=pd.date_range("2026-01-01", periods=2, freq="h"))

    # Act / Assert
    with pytest.raises(ValueError, match="timezone-aware"):
        build_features(naive, None, TZ, "FR")


@pytest.mark.parametrize(("day", "hours"), [(date(2025, 9, 7), 23), (date(2025, 4, 5), 25)])
def test_target_hours_where_dst_switches_at_midnight(day: date, hours: int) -> None:
    # Arrange: Santiago skips 00:00-01:00 on 2025-09-07 and repeats 23:00 on 2025-04-05.
    tz = "America/Santiago"

    # Act
    index = target_hours(day, tz)
    issued = issue_time(day, tz)

    # Assert: the day starts at its first real instant, which is also when D-1 ended.
    assert len(index) == hours
    assert issued == index[0]
    assert index[0].tz_convert(tz).date() == day
    assert (index[-1] + pd.Timedelta(hours=1)).tz_convert(tz).date() > day


def test_build_features_rejects_sub_hourly_readings() -> None:
    # Arrange: 15-minute readings would be three quarters lost if put on an hourly grid.
    index = pd.date_range("2026-01-01", periods=8, freq="15min", tz="UTC")
    quarter_hourly = pd.Series(1.0, index=index)

    # Act / Assert
    with pytest.raises(ValueError, match="sum energy to hours"):
        build_features(quarter_hourly, None, TZ, "FR")


def test_build_features_averages_sub_hourly_weather() -> None:
    # Arrange: hourly load, temperature every 15 minutes (0, 1, 2, 3 within each hour).
    load, _ = synthetic_site(start=date(2026, 1, 1), days=20)
    index = pd.date_range(load.index[0], load.index[-1], freq="15min")
    temperature = pd.Series(np.tile([0.0, 1.0, 2.0, 3.0], len(index) // 4 + 1)[: len(index)],
                            index=index, name="temperature_c")  # fmt: skip

    # Act
    frame = build_features(load, temperature, TZ, "FR", target_hours(date(2026, 1, 15), TZ))

    # Assert
    assert frame["temp"].tolist() == [1.5] * 24
