"""Predictive maintenance, data side: telemetry quality, daily features, failure labels.

Plain pandas / numpy: frames in, frames out, no I/O. The frames are shaped like ingest's tables:

- telemetry: ``equipment_code`` (or ``equipment``), ``ts``, ``flow_m3h``, ``pressure_bar``,
  ``vibration_mm_s``, ``temperature_c`` (any sensor may be null);
- events: ``equipment_code`` (or ``equipment``), ``ts``, ``kind`` (maintenance / failure /
  inspection);
- equipment: ``equipment_code`` (or ``code``), ``kind`` (pump, compressor, ...).

Timestamps are UTC (naive ones are read as UTC). A feature row "as of T" only uses samples
taken before T, so it can be computed the same way in training and in production.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

HOUR = pd.Timedelta(hours=1)


@dataclass(frozen=True)
class Sensor:
    """A telemetry column, its name in words and its unit."""

    column: str
    name: str
    unit: str
    ratio: bool  # deviation from baseline as a ratio (size-free) rather than a difference


SENSORS: tuple[Sensor, ...] = (
    Sensor("vibration_mm_s", "vibration", "mm/s", ratio=True),
    # °C is not a ratio scale: a temperature deviation is a difference in °C.
    Sensor("temperature_c", "temperature", "°C", ratio=False),
    Sensor("pressure_bar", "pressure", "bar", ratio=True),
    Sensor("flow_m3h", "flow", "m³/h", ratio=True),
)
SENSOR_COLUMNS = tuple(s.column for s in SENSORS)
KINDS = ("pump", "compressor", "locomotive", "transformer", "turbine", "other")

Range = tuple[float, float] | None
# Values outside these are physically absurd for the kind (a broken sensor, a unit error), not
# a machine in trouble: a failing pump reaches 10-20 mm/s, not 45. None = the kind has no such
# sensor. Unknown kinds use "other", which is as wide as ingest's own bounds.
PHYSICAL_RANGES: dict[str, dict[str, Range]] = {
    "pump": {
        "vibration_mm_s": (0.0, 45.0),
        "temperature_c": (-40.0, 150.0),
        "pressure_bar": (0.0, 60.0),
        "flow_m3h": (0.0, 2_000.0),
    },
    "compressor": {
        "vibration_mm_s": (0.0, 45.0),
        "temperature_c": (-40.0, 180.0),
        "pressure_bar": (0.0, 60.0),
        "flow_m3h": (0.0, 10_000.0),
    },
    "locomotive": {
        "vibration_mm_s": (0.0, 60.0),
        "temperature_c": (-40.0, 180.0),
        "pressure_bar": (0.0, 30.0),
        "flow_m3h": None,
    },
    "transformer": {
        "vibration_mm_s": (0.0, 20.0),
        "temperature_c": (-40.0, 150.0),
        "pressure_bar": None,
        "flow_m3h": None,
    },
    "turbine": {
        "vibration_mm_s": (0.0, 45.0),
        "temperature_c": (-40.0, 250.0),
        "pressure_bar": (0.0, 150.0),
        "flow_m3h": (0.0, 50_000.0),
    },
    "other": {
        "vibration_mm_s": (0.0, 100.0),
        "temperature_c": (-60.0, 250.0),
        "pressure_bar": (0.0, 1_000.0),
        "flow_m3h": (0.0, 100_000.0),
    },
}

# A sensor repeating the exact same non-zero value this long is stuck, not steady: real
# readings carry noise. Zero is exempt: a stopped pump's flow is legitimately 0 for hours.
FROZEN_MIN_SAMPLES = 4
FROZEN_MIN_SPAN = pd.Timedelta(hours=6)

# Quality reasons, as reported in TelemetryQuality.excluded.
BAD_TIMESTAMP = "bad_timestamp"
UNKNOWN_EQUIPMENT = "unknown_equipment"
DUPLICATE = "duplicate"
MISSING = "missing"
OUT_OF_RANGE = "out_of_range"
NOT_FITTED = "not_fitted"
FROZEN = "frozen"
GAP_HOURS = "gap_hours"
ALL_SENSORS = "*"

# Windows, in hours of the regular hourly grid the features are computed on.
WINDOWS = {"24h": 24, "72h": 72, "7d": 168}
BASELINE_H = 28 * 24  # the equipment's usual level: median over 4 weeks ...
BASELINE_LAG_H = 7 * 24  # ... ending a week back, so a ramp of up to 7 days is not in it
BASELINE_MIN_H = 72
LOOKBACK_H = BASELINE_H + BASELINE_LAG_H + 24
LOOKBACK_DAYS = -(-LOOKBACK_H // 24)  # telemetry a score needs before its as_of
HOUR_NS = 3_600_000_000_000
# Fewer valid hours of vibration or temperature than this in the last 24 h: no probability.
MIN_HOURS_24H = 12
# The operator's rule (on raw samples): alert when one sample has both above these.
RULE_VIBRATION_MM_S = 7.0
RULE_TEMPERATURE_C = 85.0
_BASELINE_FLOOR = 1e-3  # a ratio to a baseline this close to 0 means nothing


def feature_names() -> list[str]:
    """Model input columns, in a fixed order."""
    names: list[str] = []
    for s in SENSORS:
        names += [f"{s.name}_mean_24h", f"{s.name}_max_24h", f"{s.name}_std_24h"]
        names += [f"{s.name}_delta_{w}" for w in WINDOWS]
        names += [f"{s.name}_dev_mean_24h", f"{s.name}_dev_max_24h"]
        if s.ratio:  # for temperature the trend is already a difference in °C
            names += [f"{s.name}_dev_delta_72h", f"{s.name}_dev_delta_7d"]
    names.append("days_since_maintenance")
    names += [f"kind_{k}" for k in KINDS]
    return names


FEATURES = feature_names()


# --- frame normalisation ------------------------------------------------------------------


def utc(values: Iterable[object] | pd.Series) -> pd.DatetimeIndex:
    """Timestamps as a UTC DatetimeIndex (naive ones read as UTC, unparsable ones NaT)."""
    return pd.DatetimeIndex(pd.to_datetime(pd.Series(values), utc=True, errors="coerce"))


def as_utc(at: object) -> pd.Timestamp:
    """One timezone-aware instant in UTC; a naive one is refused (its zone is unknowable)."""
    ts = pd.Timestamp(at)  # type: ignore[arg-type]
    if ts.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    return ts.tz_convert("UTC")


def _with_code(frame: pd.DataFrame, alias: str) -> pd.DataFrame:
    if "equipment_code" not in frame.columns and alias in frame.columns:
        frame = frame.rename(columns={alias: "equipment_code"})
    if "equipment_code" not in frame.columns:
        raise ValueError("the frame needs an equipment_code column")
    return frame


def equipment_kinds(equipment: pd.DataFrame) -> dict[str, str]:
    """Equipment code -> kind known to the model (unknown kinds count as "other")."""
    frame = _with_code(equipment, "code")
    kinds = frame["kind"] if "kind" in frame.columns else pd.Series("other", index=frame.index)
    return {
        str(code): (str(kind) if kind in KINDS else "other")
        for code, kind in zip(frame["equipment_code"], kinds, strict=True)
    }


def normalise_events(events: pd.DataFrame | None) -> pd.DataFrame:
    """Events with equipment_code, UTC ts and kind, sorted; rows without a time dropped."""
    if events is None or events.empty:
        return pd.DataFrame(
            {
                "equipment_code": pd.Series(dtype=str),
                "ts": pd.DatetimeIndex([], tz="UTC"),
                "kind": pd.Series(dtype=str),
            }
        )
    frame = _with_code(events, "equipment")
    out = pd.DataFrame(
        {
            "equipment_code": frame["equipment_code"].astype(str).to_numpy(),
            "ts": utc(frame["ts"]),
            "kind": frame["kind"].astype(str).to_numpy(),
        }
    )
    return out.dropna(subset=["ts"]).sort_values(["equipment_code", "ts"], ignore_index=True)


# --- telemetry quality --------------------------------------------------------------------


@dataclass(frozen=True)
class TelemetryQuality:
    """Telemetry fit for features, and what was excluded from it and why.

    ``clean``: equipment_code, ts (UTC) and the four sensors, sorted, one row per sample;
    an excluded value is NaN, a row left with no value is dropped. ``excluded``:
    equipment_code, reason, sensor ("*" for a whole row), n.
    """

    clean: pd.DataFrame
    excluded: pd.DataFrame

    def counts(self) -> dict[str, dict[str, int]]:
        """Excluded counts per equipment per reason (all sensors summed)."""
        out: dict[str, dict[str, int]] = {}
        grouped = self.excluded.groupby(["equipment_code", "reason"])["n"].sum()
        for (code, reason), n in grouped.items():  # type: ignore[misc]
            out.setdefault(str(code), {})[str(reason)] = int(n)
        return out


def _tally(tallies: list[pd.DataFrame], codes: pd.Series, reason: str, sensor: str) -> None:
    if len(codes):
        counted = codes.value_counts().rename_axis("equipment_code").reset_index(name="n")
        counted["reason"], counted["sensor"] = reason, sensor
        tallies.append(counted)


def _frozen(codes: pd.Series, ts: pd.Series, values: pd.Series) -> pd.Series:
    """True for valid samples in a run of one repeated non-zero value (a stuck sensor)."""
    valid = values.notna()
    v, c, t = values[valid], codes[valid], ts[valid]
    run = ((v != v.shift()) | (c != c.shift())).cumsum()
    size = v.groupby(run).transform("size")
    span = t.groupby(run).transform("max") - t.groupby(run).transform("min")
    stuck = (size >= FROZEN_MIN_SAMPLES) & (span >= FROZEN_MIN_SPAN) & (v != 0)
    return stuck.reindex(values.index, fill_value=False)


def check_telemetry(
    telemetry: pd.DataFrame,
    equipment: pd.DataFrame,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> TelemetryQuality:
    """Flag and exclude absurd, frozen, duplicate and orphan telemetry; count gaps.

    Only samples in [start, end) are checked and kept (the others are not counted).
    """
    kinds = equipment_kinds(equipment)
    tallies: list[pd.DataFrame] = []
    frame = _with_code(telemetry, "equipment") if len(telemetry.columns) else telemetry
    data = pd.DataFrame(
        {
            "equipment_code": frame.get("equipment_code", pd.Series(dtype=str)).astype(str),
            "ts": pd.Series(
                utc(frame["ts"] if "ts" in frame else pd.Series(pd.NaT, index=frame.index)),
                index=frame.index,
            ),
        },
        index=frame.index,
    )
    for column in SENSOR_COLUMNS:
        raw = frame[column] if column in frame else pd.Series(np.nan, index=frame.index)
        data[column] = pd.to_numeric(raw, errors="coerce").astype(np.float64)
    data = data.reset_index(drop=True)

    _tally(tallies, data.loc[data["ts"].isna(), "equipment_code"], BAD_TIMESTAMP, ALL_SENSORS)
    data = data[data["ts"].notna()]
    if start is not None:
        data = data[data["ts"] >= start]
    if end is not None:
        data = data[data["ts"] < end]
    orphan = ~data["equipment_code"].isin(kinds.keys())
    _tally(tallies, data.loc[orphan, "equipment_code"], UNKNOWN_EQUIPMENT, ALL_SENSORS)
    data = data[~orphan].sort_values(["equipment_code", "ts"], kind="stable")
    repeated = data.duplicated(["equipment_code", "ts"], keep="last")  # last write wins
    _tally(tallies, data.loc[repeated, "equipment_code"], DUPLICATE, ALL_SENSORS)
    data = data[~repeated].reset_index(drop=True)

    row_code, codes = pd.factorize(data["equipment_code"])
    for column in SENSOR_COLUMNS:
        bounds = np.array(
            [PHYSICAL_RANGES[kinds[c]][column] or (np.nan, np.nan) for c in codes] or [(0, 0)],
            dtype=np.float64,
        )
        lo, hi = bounds[row_code, 0], bounds[row_code, 1]
        fitted = pd.Series(~np.isnan(lo), index=data.index)
        v = data[column]
        present = v.notna()
        not_fitted = present & ~fitted
        absurd = present & fitted & (~np.isfinite(v) | (v < lo) | (v > hi))
        _tally(tallies, data.loc[fitted & ~present, "equipment_code"], MISSING, column)
        _tally(tallies, data.loc[not_fitted, "equipment_code"], NOT_FITTED, column)
        _tally(tallies, data.loc[absurd, "equipment_code"], OUT_OF_RANGE, column)
        v = v.mask(not_fitted | absurd)
        stuck = _frozen(data["equipment_code"], data["ts"], v)
        _tally(tallies, data.loc[stuck, "equipment_code"], FROZEN, column)
        data[column] = v.mask(stuck)

    # Gaps: clock hours with no sample at all between an equipment's first and last sample.
    hours = data.assign(hour=data["ts"].dt.floor("h")).groupby("equipment_code")["hour"]
    span_h = (hours.max() - hours.min()) / HOUR + 1
    gaps = (span_h - hours.nunique()).astype(int)
    gaps = gaps[gaps > 0]
    if len(gaps):
        tallies.append(
            pd.DataFrame(
                {
                    "equipment_code": gaps.index,
                    "n": gaps.to_numpy(),
                    "reason": GAP_HOURS,
                    "sensor": ALL_SENSORS,
                }
            )
        )

    clean = data.dropna(subset=list(SENSOR_COLUMNS), how="all").reset_index(drop=True)
    columns = ["equipment_code", "reason", "sensor", "n"]
    excluded = (
        pd.concat(tallies, ignore_index=True)[columns]
        if tallies
        else pd.DataFrame({c: pd.Series(dtype=int if c == "n" else str) for c in columns})
    )
    excluded = excluded.sort_values(columns[:3], ignore_index=True)
    excluded["n"] = excluded["n"].astype(int)
    return TelemetryQuality(clean=clean, excluded=excluded)


# --- features -----------------------------------------------------------------------------


def _rolling_sum(a: np.ndarray, window: int) -> np.ndarray:
    c = np.concatenate([[0.0], np.cumsum(a)])
    idx = np.arange(1, a.size + 1)
    return c[idx] - c[np.maximum(idx - window, 0)]


def _delta(x: np.ndarray, t: np.ndarray, window: int) -> np.ndarray:
    """Least-squares slope over the trailing window times its length: the change it shows.

    A quarter of the window must hold values; a slope through a few points is noise.
    """
    valid = ~np.isnan(x)
    m = valid.astype(np.float64)
    xv = np.where(valid, x, 0.0)
    s0, s1, s2 = (_rolling_sum(m * t**p, window) for p in (0, 1, 2))
    sx, stx = _rolling_sum(xv, window), _rolling_sum(xv * t, window)
    denom = s0 * s2 - s1 * s1
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (s0 * stx - s1 * sx) / denom
    slope[(s0 < window / 4) | (denom <= 0)] = np.nan
    return slope * window


def _deviation(value: np.ndarray, baseline: np.ndarray, ratio: bool) -> np.ndarray:
    if not ratio:
        return value - baseline
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(baseline > _BASELINE_FLOOR, value / baseline - 1.0, np.nan)


def _equipment_features(rows: pd.DataFrame, times: np.ndarray) -> dict[str, np.ndarray]:
    """Feature and info columns of one equipment at each of ``times`` (UTC hours since the
    epoch); empty when it has no sample in the look-back."""
    out: dict[str, np.ndarray] = {}
    sample_h = _ns(rows["ts"]) // HOUR_NS
    start = max(int(sample_h.min()), int(times.min()) - LOOKBACK_H)
    size = int(times.max()) - start  # grid hours start .. as_of - 1
    keep = (sample_h >= start) & (sample_h < start + size)
    if size <= 0 or not keep.any():
        return out
    slot = sample_h[keep] - start
    # The row "as of T" reads the grid at the hour before T: samples taken before T only.
    at = times - 1 - start
    ok = at >= 0
    pick = np.where(ok, at, 0)

    def sample(a: np.ndarray) -> np.ndarray:
        return np.where(ok, a[pick], np.nan)

    values = {c: rows[c].to_numpy(dtype=np.float64)[keep] for c in SENSOR_COLUMNS}
    t = np.arange(size, dtype=np.float64)
    for s in SENSORS:
        v = values[s.column]
        valid = ~np.isnan(v)
        n_hour = np.bincount(slot[valid], minlength=size).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.bincount(slot[valid], weights=v[valid], minlength=size) / n_hour
        series = pd.Series(x)
        count = _rolling_sum((n_hour > 0).astype(np.float64), 24)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = _rolling_sum(np.nan_to_num(x), 24) / count
        maximum = series.rolling(24, min_periods=1).max().to_numpy()
        std = series.rolling(24, min_periods=3).std().to_numpy()
        baseline = (
            series.rolling(BASELINE_H, min_periods=BASELINE_MIN_H)
            .median()
            .shift(BASELINE_LAG_H)
            .to_numpy()
        )
        out[f"n_{s.name}_24h"] = sample(count)
        out[f"{s.name}_baseline"] = sample(baseline)
        out[f"{s.name}_mean_24h"] = sample(mean)
        out[f"{s.name}_max_24h"] = sample(maximum)
        out[f"{s.name}_std_24h"] = sample(std)
        out[f"{s.name}_dev_mean_24h"] = sample(_deviation(mean, baseline, s.ratio))
        out[f"{s.name}_dev_max_24h"] = sample(_deviation(maximum, baseline, s.ratio))
        for label, w in WINDOWS.items():
            delta = _delta(x, t, w)
            out[f"{s.name}_delta_{label}"] = sample(delta)
            if s.ratio and label != "24h":
                with np.errstate(divide="ignore", invalid="ignore"):
                    rel = np.where(baseline > _BASELINE_FLOOR, delta / baseline, np.nan)
                out[f"{s.name}_dev_delta_{label}"] = sample(rel)
    vib, temp = values["vibration_mm_s"], values["temperature_c"]
    with np.errstate(invalid="ignore"):
        alarm = (vib > RULE_VIBRATION_MM_S) & (temp > RULE_TEMPERATURE_C)
    alarm_hour = (np.bincount(slot[alarm], minlength=size) > 0).astype(np.float64)
    out["rule_alert"] = sample((_rolling_sum(alarm_hour, 24) > 0).astype(np.float64))
    return out


def daily_features(
    clean: pd.DataFrame,
    equipment: pd.DataFrame,
    times: Iterable[object] | pd.DatetimeIndex,
    events: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per (equipment_code, as_of): model features plus info columns.

    Info columns: ``n_<sensor>_24h`` (valid hours), ``<sensor>_baseline``, ``rule_alert``
    (the operator's rule fired in the last 24 h), ``enough_data`` and ``kind``. An equipment
    with no usable telemetry gets NaN features and ``enough_data`` False, never an error.
    """
    kinds = equipment_kinds(equipment)
    as_of = pd.DatetimeIndex(utc(list(times))).dropna().floor("h").unique().sort_values()
    as_h = _ns(as_of) // HOUR_NS
    maintenance = normalise_events(events)
    maintenance = maintenance[maintenance["kind"] == "maintenance"]
    by_code = dict(tuple(clean.groupby("equipment_code"))) if len(clean) else {}
    done_by_code = dict(tuple(maintenance.groupby("equipment_code")))
    info = [f"n_{s.name}_24h" for s in SENSORS] + [f"{s.name}_baseline" for s in SENSORS]
    columns = [c for c in FEATURES if not c.startswith("kind_")] + info + ["rule_alert"]
    n = len(as_of)
    data: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    for code in kinds:
        computed = _equipment_features(by_code[code], as_h) if code in by_code and n else {}
        done = done_by_code.get(code)
        if done is not None and n:
            stamps = pd.DatetimeIndex(done["ts"])
            last = stamps.searchsorted(as_of, side="left") - 1  # maintenance strictly before
            since = (as_of - stamps[np.maximum(last, 0)]) / pd.Timedelta(days=1)
            computed["days_since_maintenance"] = np.where(last >= 0, since, np.nan)
        for column in columns:
            data[column].append(computed.get(column, np.full(n, np.nan)))
    index = pd.MultiIndex.from_product([list(kinds), as_of], names=["equipment_code", "as_of"])
    frame = pd.DataFrame(
        {c: np.concatenate(v) if v else np.zeros(0) for c, v in data.items()}, index=index
    )
    kind = np.repeat(np.array(list(kinds.values()), dtype=object), n)
    for k in KINDS:
        frame[f"kind_{k}"] = (kind == k).astype(np.float64)
    frame["kind"] = kind
    frame["enough_data"] = (frame["n_vibration_24h"] >= MIN_HOURS_24H) & (
        frame["n_temperature_24h"] >= MIN_HOURS_24H
    )
    return frame


def data_message(row: pd.Series) -> str:
    """Why a row has no probability, in words an operator can act on."""
    vib, temp = row.get("n_vibration_24h"), row.get("n_temperature_24h")
    if pd.isna(vib) and pd.isna(temp):
        return "insufficient data: no usable telemetry in the last 24 h"
    return (
        f"insufficient data: {0 if pd.isna(vib) else int(vib)} h of vibration and "
        f"{0 if pd.isna(temp) else int(temp)} h of temperature in the last 24 h "
        f"({MIN_HOURS_24H} h of each needed)"
    )


# --- labels -------------------------------------------------------------------------------


def failure_labels(
    index: pd.MultiIndex, events: pd.DataFrame | None, horizon: pd.Timedelta
) -> pd.DataFrame:
    """Per (equipment_code, as_of): ``label`` (a failure in (as_of, as_of + horizon]) and
    ``down`` (as_of falls between a failure and the maintenance that ends it: excluded).

    A failure with no maintenance after it keeps the equipment "down" for one horizon.
    """
    evs = normalise_events(events)
    failures = dict(tuple(evs[evs["kind"] == "failure"].groupby("equipment_code")))
    repairs = dict(tuple(evs[evs["kind"] == "maintenance"].groupby("equipment_code")))
    label = np.zeros(len(index), dtype=np.int64)
    down = np.zeros(len(index), dtype=bool)
    codes = index.get_level_values("equipment_code")
    times = _ns(index.get_level_values("as_of"))
    h = int(horizon / pd.Timedelta(nanoseconds=1))
    for code in codes.unique():
        if code not in failures:
            continue
        where = np.flatnonzero(codes == code)
        t = times[where]
        f = _ns(failures[code]["ts"])
        m = _ns(repairs[code]["ts"]) if code in repairs else np.zeros(0, dtype=np.int64)
        nxt = np.searchsorted(f, t, side="right")  # first failure after as_of
        label[where] = (nxt < f.size) & (f[np.minimum(nxt, f.size - 1)] <= t + h)
        failed_at = f[np.maximum(nxt - 1, 0)]  # last failure at or before as_of
        k = np.searchsorted(m, failed_at, side="left")  # first maintenance after it
        repaired_at = np.where(
            k < m.size, m[np.minimum(k, max(m.size - 1, 0))] if m.size else 0, failed_at + h
        )
        down[where] = (nxt > 0) & (t < repaired_at)
    return pd.DataFrame({"label": label, "down": down}, index=index)


def _ns(values: object) -> np.ndarray:
    """UTC instants as int64 nanoseconds (pandas 3 may hold them in other units)."""
    return pd.DatetimeIndex(values).as_unit("ns").asi8  # type: ignore[arg-type]
