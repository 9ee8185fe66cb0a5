"""Pure logic: the state machine, the detectors, silences' windows, webhook signatures."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, time, timedelta

import numpy as np

from services.alerts.config import AlertsSettings
from services.alerts.detect import AnomalyParams, HourlySeries, detect
from services.alerts.episodes import CLEAR, FIRE, HOLD, Obs, run_episodes
from services.alerts.models import Silence
from services.alerts.notifier import retry_delay_s, sign
from services.alerts.silences import covers

H = 3600


def _obs(states: str, start: int = 0) -> list[Obs]:
    """'F' fire, '.' clear, 'h' hold, ' ' no data; value = position."""
    code = {"F": FIRE, ".": CLEAR, "h": HOLD}
    return [Obs(start + i * H, code[c], float(i)) for i, c in enumerate(states) if c != " "]


def test_run_episodes_fires_only_after_pending_hours_in_a_row() -> None:
    # Arrange: one lone firing hour, then a run of two.
    obs = _obs("F..FF..")

    # Act
    found = run_episodes("k", obs, pending_h=2, recovery_h=2)

    # Assert: one episode, dated from the first hour of the run that fired.
    assert [(e.first, e.last, e.hours) for e in found] == [(3 * H, 4 * H, 2)]
    assert found[0].ended_at == 7 * H


def test_run_episodes_bridges_short_clear_gaps_with_hysteresis() -> None:
    found = run_episodes("k", _obs("FF.FF.F..."), pending_h=1, recovery_h=2)

    assert len(found) == 1
    assert (found[0].first, found[0].last, found[0].ended_at) == (0, 6 * H, 9 * H)


def test_run_episodes_hold_keeps_incident_but_does_not_count_as_recovery() -> None:
    found = run_episodes("k", _obs("Fh.h.h..."), pending_h=1, recovery_h=2)

    assert len(found) == 1 and found[0].ended_at == 8 * H  # only '..' at the end recovers


def test_run_episodes_missing_hours_break_the_pending_run() -> None:
    assert run_episodes("k", _obs("F F F"), pending_h=2, recovery_h=1) == []


def test_run_episodes_ongoing_episode_has_no_end_and_tracks_peak() -> None:
    found = run_episodes("k", _obs("..FFF."), pending_h=1, recovery_h=3)

    assert len(found) == 1 and found[0].ended_at is None
    assert (found[0].peak, found[0].peak_at) == (4.0, 4 * H)


def test_run_episodes_barrier_cuts_and_requires_pending_again() -> None:
    found = run_episodes("k", _obs("FFFFFF"), pending_h=2, recovery_h=1, barriers=[2 * H + 1])

    assert [(e.first, e.last, e.cut) for e in found] == [(0, 2 * H, True), (3 * H, 5 * H, False)]


def _series(values: np.ndarray, start: datetime = datetime(2026, 1, 5, tzinfo=UTC)) -> HourlySeries:
    ts = np.array([int(start.timestamp()) + i * H for i in range(len(values))], dtype=np.int64)
    days = (ts - ts[0]) // 86400
    return HourlySeries(
        ts=ts,
        value=values.astype(np.float64),
        local_hour=(ts // H) % 24,
        daytype=np.where((days % 7) == 6, 2, np.where((days % 7) == 5, 1, 0)),
    )


def _profile(n_days: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = 100 + 80 * np.sin(np.linspace(0, 2 * np.pi, 24, endpoint=False)) ** 2
    return np.tile(shape, n_days) * np.exp(0.04 * rng.standard_normal(24 * n_days))


def test_detect_finds_spike_drop_and_stuck_and_says_why() -> None:
    # Arrange: five weeks of a noisy daily profile, then three injected anomalies.
    values = _profile(35)
    last_week = 28 * 24
    values[last_week + 30] *= 2.0  # spike
    values[last_week + 80 : last_week + 82] *= 0.2  # drop, 2 h
    values[last_week + 120 : last_week + 126] = values[last_week + 120]  # stuck, 6 h

    # Act
    found = detect(_series(values), AnomalyParams(), judge_from=int(_series(values).ts[last_week]))

    # Assert
    by_kind = {k: [int((v.ts - _series(values).ts[last_week]) // H) for v in found if v.kind == k]
               for k in ("spike", "drop", "stuck")}  # fmt: skip
    assert by_kind == {"spike": [30], "drop": [80, 81], "stuck": list(range(120, 126))}
    spike = next(v for v in found if v.kind == "spike")
    assert spike.detector == "seasonal" and "median" in spike.why and "z =" in spike.why


def test_detect_quiet_series_gives_nothing() -> None:
    values = _profile(35, seed=3)

    found = detect(_series(values), AnomalyParams(), judge_from=int(_series(values).ts[28 * 24]))

    assert found == []


def test_detect_isolation_forest_detector_flags_a_large_spike() -> None:
    values = _profile(35, seed=5)
    values[28 * 24 + 40] *= 3.0
    series = _series(values)

    found = detect(series, AnomalyParams(detector="isolation_forest"), int(series.ts[28 * 24]))

    assert any(v.kind == "spike" and v.ts == series.ts[28 * 24 + 40] for v in found)
    assert all("IsolationForest" in v.why for v in found if v.kind != "stuck")


def _silence(**kw: object) -> Silence:
    values: dict[str, object] = {
        "starts_at": datetime(2026, 1, 1, tzinfo=UTC),
        "ends_at": None,
        "weekdays": None,
        "start_time": None,
        "end_time": None,
        "timezone": "Europe/Paris",
        "expired_at": None,
    }
    return Silence(**(values | kw))


def _paris(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(y, m, d, hh, mm, tzinfo=ZoneInfo("Europe/Paris"))


def test_covers_nightly_window_runs_past_midnight() -> None:
    nightly = _silence(weekdays=list(range(7)), start_time=time(22), end_time=time(6))

    assert covers(nightly, _paris(2026, 3, 4, 23))
    assert covers(nightly, _paris(2026, 3, 5, 5, 59))
    assert not covers(nightly, _paris(2026, 3, 5, 6))
    assert not covers(nightly, _paris(2026, 3, 5, 12))


def test_covers_weekend_whole_days_only() -> None:
    weekend = _silence(weekdays=[5, 6], start_time=time(0), end_time=time(0))

    assert covers(weekend, _paris(2026, 3, 7, 0))  # Saturday
    assert covers(weekend, _paris(2026, 3, 8, 23, 59))  # Sunday
    assert not covers(weekend, _paris(2026, 3, 9, 0))  # Monday


def test_covers_one_off_window_and_expiry() -> None:
    start = datetime(2026, 3, 1, 8, tzinfo=UTC)
    one_off = _silence(starts_at=start, ends_at=start + timedelta(hours=4))
    expired = _silence(starts_at=start, ends_at=start + timedelta(hours=4),
                       expired_at=start + timedelta(hours=1))  # fmt: skip

    assert covers(one_off, start + timedelta(hours=3))
    assert not covers(one_off, start + timedelta(hours=4))
    assert not covers(one_off, start - timedelta(seconds=1))
    assert not covers(expired, start + timedelta(hours=2))


def test_sign_is_hmac_sha256_of_timestamp_and_body() -> None:
    body = b'{"a":1}'

    signature = sign("s3cret", 1700000000, body)

    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"


def test_retry_delay_doubles_up_to_the_cap() -> None:
    settings = AlertsSettings(alerts_retry_base_s=2, alerts_retry_max_delay_s=30)

    assert [retry_delay_s(settings, n) for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]
