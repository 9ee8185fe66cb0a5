"""Statistical anomaly detectors on an hourly consumption series (numpy / scikit-learn only).

Two detectors, each judging every hour from the hours *before* it only, so a verdict never
changes when later data arrives (evaluation stays idempotent as history grows):

* ``seasonal``: the hour against the median of the same local hour on the same kind of day
  (workday, Saturday, Sunday or public holiday) over the previous ``history_days``. The
  log-ratio residual is scaled by the median absolute deviation (MAD) of the residuals of the
  same trailing window: a robust z-score. A spike needs a large ratio *and* a large z, so a
  noisy site needs a bigger excursion than a steady one before it alerts.
* ``isolation_forest``: an IsolationForest fitted on the trailing window's (residual, change
  of residual from the previous hour, position in the day) points; the hour alerts when it is
  isolated in fewer splits than the forest's ``contamination`` share of the window.

A stuck meter (the same reading repeated for ``stuck_hours`` hours or more) is found by
looking for exact repeats: a live meter's noise never repeats to the Wh. The hours of a stuck
run are not judged for spikes or drops, whose excursion there is the frozen value's, not the
site's.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Kind = Literal["spike", "drop", "stuck"]
Detector = Literal["seasonal", "isolation_forest", "both"]
DAYTYPE_NAMES = ("workdays", "Saturdays", "Sundays and holidays")
HOUR_S = 3600
MAD_TO_SIGMA = 1.4826
# A floor on the residual scale: on a perfectly steady series a 3 % wobble is not an anomaly.
MIN_SIGMA = 0.03
Floats = NDArray[np.float64]


@dataclass(frozen=True)
class AnomalyParams:
    """Knobs of the anomaly rule (its ``params``); the defaults are tuned on the simulator."""

    detector: Detector = "seasonal"
    history_days: int = 28
    min_references: int = 3
    z_threshold: float = 4.0
    spike_ratio: float = 1.45
    drop_ratio: float = 0.7
    stuck_hours: int = 3
    contamination: float = 0.01


@dataclass(frozen=True)
class HourlySeries:
    """One site's hourly consumption with its local calendar (arrays of equal length)."""

    ts: NDArray[np.int64]  # epoch seconds (UTC) of the hour starts, ascending
    value: NDArray[np.float64]  # kWh in the hour
    local_hour: NDArray[np.int64]
    daytype: NDArray[np.int64]  # 0 workday, 1 Saturday, 2 Sunday or public holiday


@dataclass(frozen=True)
class Verdict:
    """An anomalous hour: what kind, which detector said so and why."""

    ts: int
    kind: Kind
    value: float
    expected: float | None
    detector: str
    score: float
    why: str
    extra: dict[str, float] = field(default_factory=dict)


def _stuck_runs(value: NDArray[np.float64], min_len: int) -> list[tuple[int, int]]:
    """[i, j) index runs of at least ``min_len`` equal non-zero readings."""
    runs: list[tuple[int, int]] = []
    i, n = 0, len(value)
    while i < n:
        j = i + 1
        while j < n and value[j] > 0 and abs(value[j] - value[i]) <= 1e-9 * max(1.0, value[i]):
            j += 1
        if j - i >= min_len and value[i] > 0:
            runs.append((i, j))
        i = j
    return runs


def seasonal_baseline(
    s: HourlySeries, p: AnomalyParams
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Median of the same local hour and day type over the trailing window, and how many."""
    n = len(s.ts)
    baseline = np.full(n, np.nan)
    count = np.zeros(n, dtype=np.int64)
    horizon = p.history_days * 86_400
    groups: dict[tuple[int, int], list[int]] = {}
    for i in range(n):
        groups.setdefault((int(s.local_hour[i]), int(s.daytype[i])), []).append(i)
    for idx in groups.values():
        times = [int(s.ts[k]) for k in idx]
        for pos, i in enumerate(idx):
            lo = bisect.bisect_left(times, int(s.ts[i]) - horizon)
            refs = s.value[idx[lo:pos]]
            refs = refs[refs > 0]
            count[i] = len(refs)
            if len(refs) >= p.min_references:
                baseline[i] = float(np.median(refs))
    return baseline, count


def _trailing_scale(
    ts: NDArray[np.int64], resid: NDArray[np.float64], horizon: int, first: int
) -> Floats:
    """Per hour from index ``first``: MAD-based sigma of the residuals in the window before it."""
    sigma = np.full(len(ts), np.nan)
    for i in range(first, len(ts)):
        lo = int(np.searchsorted(ts, ts[i] - horizon, side="left"))
        window = resid[lo:i]
        window = window[~np.isnan(window)]
        if len(window) >= 24:
            med = np.median(window)
            sigma[i] = max(MAD_TO_SIGMA * float(np.median(np.abs(window - med))), MIN_SIGMA)
    return sigma


def _fmt_hour(h: int) -> str:
    return f"{h:02d}:00"


def detect(s: HourlySeries, p: AnomalyParams, judge_from: int) -> list[Verdict]:
    """Anomalous hours among those starting at or after ``judge_from`` (epoch s)."""
    n = len(s.ts)
    if n == 0:
        return []
    verdicts: dict[int, Verdict] = {}
    stuck = np.zeros(n, dtype=bool)
    for i, j in _stuck_runs(s.value, p.stuck_hours):
        stuck[i:j] = True
        for k in range(i, j):
            if s.ts[k] >= judge_from:
                verdicts[k] = Verdict(
                    ts=int(s.ts[k]),
                    kind="stuck",
                    value=float(s.value[k]),
                    expected=None,
                    detector="stuck_meter",
                    score=float(j - i),
                    why=(
                        f"the meter read exactly {s.value[i]:.3f} kWh for {j - i} hours in a row "
                        f"from {_fmt_hour(int(s.local_hour[i]))}: a live meter's noise never "
                        "repeats to the Wh"
                    ),
                )
    baseline, count = seasonal_baseline(s, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        resid = np.where(
            (s.value > 0) & (baseline > 0),
            np.log(s.value / baseline),
            np.where(s.value <= 0, -5.0, np.nan),  # a meter at zero: as far down as it goes
        )
    resid = np.where(np.isnan(baseline), np.nan, resid)
    resid_for_scale = np.where(stuck, np.nan, resid)
    first = int(np.searchsorted(s.ts, judge_from, side="left"))
    sigma = _trailing_scale(s.ts, resid_for_scale, p.history_days * 86_400, first)
    judged = (s.ts >= judge_from) & ~stuck & ~np.isnan(resid) & ~np.isnan(sigma)

    if p.detector in ("seasonal", "both"):
        z = resid / sigma
        for i in np.flatnonzero(judged).tolist():
            ratio = math.exp(resid[i]) if resid[i] > -5 else 0.0
            if ratio >= p.spike_ratio and z[i] >= p.z_threshold:
                kind: Kind = "spike"
            elif ratio <= p.drop_ratio and z[i] <= -p.z_threshold:
                kind = "drop"
            else:
                continue
            verdicts[i] = Verdict(
                ts=int(s.ts[i]),
                kind=kind,
                value=float(s.value[i]),
                expected=float(baseline[i]),
                detector="seasonal",
                score=float(z[i]),
                why=(
                    f"{s.value[i]:.1f} kWh is x{ratio:.2f} the median of "
                    f"{_fmt_hour(int(s.local_hour[i]))} on the last {count[i]} "
                    f"{DAYTYPE_NAMES[int(s.daytype[i])]} ({baseline[i]:.1f} kWh); robust "
                    f"z = {z[i]:+.1f} (|z| >= {p.z_threshold:g} and ratio "
                    f"{'>=' if kind == 'spike' else '<='} "
                    f"{p.spike_ratio if kind == 'spike' else p.drop_ratio:g})"
                ),
                extra={"ratio": round(ratio, 4), "z": round(float(z[i]), 2)},
            )
    if p.detector in ("isolation_forest", "both"):
        for i, score in _isolation_forest(s, resid, stuck, judged, p):
            if i in verdicts and verdicts[i].detector == "seasonal":
                v = verdicts[i]
                verdicts[i] = Verdict(
                    v.ts, v.kind, v.value, v.expected, "seasonal+isolation_forest", v.score,
                    v.why + f"; IsolationForest agrees (score {score:+.3f})", v.extra,
                )  # fmt: skip
                continue
            if p.detector == "both":
                continue  # "both" alerts only where the two agree
            kind = "spike" if resid[i] > 0 else "drop"
            ratio = math.exp(resid[i]) if resid[i] > -5 else 0.0
            verdicts[i] = Verdict(
                ts=int(s.ts[i]),
                kind=kind,
                value=float(s.value[i]),
                expected=float(baseline[i]),
                detector="isolation_forest",
                score=score,
                why=(
                    f"IsolationForest score {score:+.3f} < 0 (contamination "
                    f"{p.contamination:g}): {s.value[i]:.1f} kWh, x{ratio:.2f} the seasonal "
                    f"median ({baseline[i]:.1f} kWh), is isolated among the last "
                    f"{p.history_days} days of hours"
                ),
                extra={"ratio": round(ratio, 4)},
            )
    if p.detector == "both":
        verdicts = {
            i: v for i, v in verdicts.items() if v.detector != "seasonal" or v.kind == "stuck"
        }
    return [verdicts[i] for i in sorted(verdicts)]


def _isolation_forest(
    s: HourlySeries,
    resid: Floats,
    stuck: NDArray[np.bool_],
    judged: NDArray[np.bool_],
    p: AnomalyParams,
) -> list[tuple[int, float]]:
    """(index, score) of the judged hours an IsolationForest isolates (score < 0)."""
    from sklearn.ensemble import IsolationForest

    ok = ~np.isnan(resid) & ~stuck
    if ok.sum() < 7 * 24 or not judged.any():
        return []
    prev = np.concatenate(([np.nan], resid[:-1]))
    step = np.where(np.isnan(prev), 0.0, resid - prev)
    angle = 2 * np.pi * s.local_hour / 24
    features = np.column_stack([np.clip(resid, -5, 5), step, np.sin(angle), np.cos(angle)])
    # Fitted on the hours before the first judged one: the model never sees what it judges.
    first = int(np.flatnonzero(judged)[0])
    train = ok.copy()
    train[first:] = False
    if train.sum() < 7 * 24:
        train = ok
    forest = IsolationForest(n_estimators=100, contamination=p.contamination, random_state=0)
    forest.fit(features[train])
    idx = np.flatnonzero(judged)
    scores = forest.decision_function(features[idx])
    return [(int(i), float(sc)) for i, sc in zip(idx, scores, strict=True) if sc < 0]
