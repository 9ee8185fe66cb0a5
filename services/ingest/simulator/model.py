"""Pure generation of simulated site data (numpy only: no web, no database).

Every random draw is a pure function of ``(seed, stream, absolute time slot)``: a counter-based
Philox generator is advanced to the slot, so any time window yields exactly the values a longer
window holds for the same instants. Backfill in chunks, then ``live`` from the last hour, and
re-running a backfill all agree value for value (and re-posting is an idempotent upsert).

Timestamps are int64 epoch seconds in UTC; the load shape is applied on the site's local
clock (zoneinfo), so the morning ramp stays at 08:00 local across DST changes.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

import holidays
import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Profile = Literal["office", "industrial", "depot", "pumping"]
EquipmentKind = Literal["pump", "locomotive", "compressor", "transformer", "turbine", "other"]

EPOCH_S = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp())
HOUR_S = 3600
DAY_S = 86_400
HEATING_BASE_C = 15.0
COOLING_BASE_C = 22.0
LOAD_NOISE_SIGMA = 0.04
PV_PERFORMANCE_RATIO = 0.85


class SimulationError(ValueError):
    """The simulation was asked for something it cannot generate (bad window or interval)."""


# --- site and equipment descriptions ---------------------------------------------------------


@dataclass(frozen=True)
class SiteSpec:
    """A simulated site: what the API stores about it plus the knobs of its load and climate."""

    code: str
    name: str
    timezone: str
    country_code: str
    latitude: float
    longitude: float
    capacity_kw: float  # installed production (PV + firm), as stored on the site
    base_load_kw: float  # workday peak load at a mild temperature
    profile: Profile
    solar_share: float = 1.0  # share of capacity that is PV; the rest is firm (hydro, CHP)
    mean_temp_c: float = 12.5
    seasonal_amp_c: float = 8.5
    diurnal_amp_c: float = 4.5
    heating_per_c: float = 0.03  # extra load per °C below HEATING_BASE_C (share of the shape)
    cooling_per_c: float = 0.04  # extra load per °C above COOLING_BASE_C
    cloudiness: float = 0.0  # shifts the cloud cover: > 0 cloudier, < 0 sunnier


@dataclass(frozen=True)
class EquipmentSpec:
    """A simulated piece of equipment at a site."""

    code: str
    site: str
    name: str
    kind: EquipmentKind


@dataclass(frozen=True)
class Nominal:
    """Healthy sensor values at full duty; None means the kind has no such sensor."""

    flow_m3h: float | None
    pressure_bar: float | None
    vibration_mm_s: float
    temperature_c: float


NOMINALS: dict[str, Nominal] = {
    "pump": Nominal(120.0, 6.0, 2.2, 45.0),
    "compressor": Nominal(600.0, 8.0, 3.0, 75.0),
    "locomotive": Nominal(None, 5.0, 4.5, 70.0),
    "transformer": Nominal(None, None, 0.8, 55.0),
    "turbine": Nominal(2000.0, 12.0, 3.5, 90.0),
    "other": Nominal(50.0, 3.0, 2.0, 40.0),
}

# Load shapes (share of base load) by local hour, for workday / Saturday / Sunday-or-holiday.
_PROFILES: dict[str, tuple[list[float], list[float], list[float]]] = {
    "office": (
        [0.30] * 6
        + [0.40, 0.65, 0.90, 1.0, 1.0, 1.0, 0.92, 0.95, 1.0, 1.0, 1.0, 0.92, 0.75]
        + [0.55, 0.42, 0.33, 0.32, 0.31],
        [0.30] * 9 + [0.36] * 9 + [0.31] * 6,
        [0.28] * 24,
    ),
    "industrial": (
        [0.55] * 6 + [0.85] + [1.0] * 7 + [0.97] * 8 + [0.70, 0.58],
        [0.50] * 6 + [0.80] * 8 + [0.55] * 10,
        [0.45] * 24,
    ),
    "depot": (
        [0.75] * 5 + [0.90, 1.0, 1.0, 1.0] + [0.80] * 7 + [0.95] * 4 + [0.85] * 4,
        [0.68] * 5 + [0.81, 0.9, 0.9, 0.9] + [0.72] * 7 + [0.85] * 4 + [0.76] * 4,
        [0.60] * 5 + [0.72, 0.8, 0.8, 0.8] + [0.64] * 7 + [0.76] * 4 + [0.68] * 4,
    ),
    "pumping": (
        [0.55] * 6 + [0.95, 1.0, 1.0, 0.95] + [0.80] * 8 + [0.95] * 4 + [0.65] * 2,
        [0.55] * 7 + [0.85, 0.95, 0.95, 0.9] + [0.80] * 7 + [0.92] * 4 + [0.65] * 2,
        [0.55] * 8 + [0.85, 0.95, 0.95, 0.9] + [0.78] * 6 + [0.90] * 4 + [0.65] * 2,
    ),
}
PROFILE_SHAPES: dict[str, Floats] = {
    name: np.array(shapes, dtype=np.float64) for name, shapes in _PROFILES.items()
}
assert all(s.shape == (3, 24) for s in PROFILE_SHAPES.values())


# --- counter-based randomness ----------------------------------------------------------------


def _key(seed: int, stream: str) -> int:
    digest = hashlib.blake2b(f"{seed}/{stream}".encode(), digest_size=16).digest()
    return int.from_bytes(digest, "little")


def uniforms(seed: int, stream: str, first: int, count: int, width: int = 4) -> Floats:
    """``(count, width)`` uniforms in [0, 1) for slots ``first .. first+count-1`` of a stream.

    Slot k always gets the same values whatever window asks for it: Philox is a counter-based
    generator, advanced straight to the slot (one counter step = 4 draws).
    """
    if width % 4:
        raise ValueError("width must be a multiple of 4")
    if first < 0:
        raise SimulationError("the simulator generates data from 2000-01-01 on")
    bitgen = np.random.Philox(key=_key(seed, stream))
    bitgen.advance(first * (width // 4))
    return np.random.Generator(bitgen).random((max(count, 0), width))


def normals(seed: int, stream: str, first: int, count: int) -> Floats:
    """One standard normal per slot (Box-Muller on the slot's uniforms)."""
    u = uniforms(seed, stream, first, count)
    return np.sqrt(-2.0 * np.log1p(-u[:, 0])) * np.cos(2.0 * np.pi * u[:, 1])


def smooth_noise(seed: int, stream: str, ts: Ints, period_s: int) -> Floats:
    """Noise varying smoothly over about ``period_s`` (cosine-interpolated normal knots)."""
    if ts.size == 0:
        return np.zeros(0)
    pos = (ts - EPOCH_S) / period_s
    k = np.floor(pos).astype(np.int64)
    first = int(k.min())
    knots = normals(seed, stream, first, int(k.max()) - first + 2)
    w = (1.0 - np.cos(np.pi * (pos - k))) / 2.0
    return knots[k - first] * (1.0 - w) + knots[k - first + 1] * w


def _hour_index(ts: Ints) -> Ints:
    return (ts - EPOCH_S) // HOUR_S


def slot_noise(seed: int, stream: str, ts: Ints, step_s: int = HOUR_S) -> Floats:
    """Independent standard normal per time slot of ``step_s`` (per clock hour by default)."""
    if ts.size == 0:
        return np.zeros(0)
    slots = (ts - EPOCH_S) // step_s
    first = int(slots.min())
    return normals(seed, stream, first, int(slots.max()) - first + 1)[slots - first]


# --- time grids and calendars ----------------------------------------------------------------


def to_epoch(at: datetime) -> int:
    """Epoch seconds of an aware datetime."""
    if at.tzinfo is None:
        raise SimulationError("datetimes must be timezone-aware")
    return int(at.timestamp())


def time_grid(start_s: int, end_s: int, step_s: int) -> Ints:
    """Starts of the ``step_s`` intervals lying wholly inside [start, end), grid-aligned."""
    first = -(-start_s // step_s) * step_s
    last = (end_s // step_s) * step_s  # exclusive: an interval starting here ends after end
    return np.arange(first, last, step_s, dtype=np.int64)


def sample_grid(start_s: int, end_s: int, step_s: int) -> Ints:
    """Grid-aligned instants in [start, end): when hourly samples (weather, telemetry) fall."""
    return np.arange(-(-start_s // step_s) * step_s, end_s, step_s, dtype=np.int64)


def check_interval(interval_s: int) -> None:
    """Readings intervals must divide the hour so anomalies and hours line up."""
    if not 60 <= interval_s <= HOUR_S or HOUR_S % interval_s:
        raise SimulationError("interval_s must divide 3600 and be at least 60 (e.g. 900, 3600)")


@lru_cache(maxsize=64)
def _holidays(country: str, year: int) -> frozenset[object]:
    try:
        return frozenset(holidays.country_holidays(country, years=year))
    except NotImplementedError:  # a country the holidays package does not know: no holidays
        return frozenset()


def local_calendar(ts: Ints, timezone: str, country: str) -> tuple[Floats, NDArray[np.int8]]:
    """Local fractional hour and day type (0 workday, 1 Saturday, 2 Sunday/holiday) per instant."""
    tz = ZoneInfo(timezone)
    hour = np.empty(ts.size)
    daytype = np.empty(ts.size, dtype=np.int8)
    for i, t in enumerate(ts.tolist()):
        local = datetime.fromtimestamp(t, tz)
        hour[i] = local.hour + local.minute / 60 + local.second / 3600
        weekday = local.weekday()
        if weekday == 6 or local.date() in _holidays(country, local.year):
            daytype[i] = 2
        else:
            daytype[i] = 1 if weekday == 5 else 0
    return hour, daytype


def load_shape(profile: str, hour: Floats, daytype: NDArray[np.int8]) -> Floats:
    """Share of the base load at each local hour, linearly interpolated between hour centres."""
    shapes = PROFILE_SHAPES[profile]
    x = hour - 0.5
    lo = np.floor(x).astype(np.int64)
    w = x - lo
    return shapes[daytype, lo % 24] * (1 - w) + shapes[daytype, (lo + 1) % 24] * w


# --- weather ---------------------------------------------------------------------------------


def _day_of_year(ts: Ints) -> Floats:
    dt = ts.astype("datetime64[s]")
    return (dt - dt.astype("datetime64[Y]")).astype(np.float64) / DAY_S


def sun_elevation_sin(ts: Ints | Floats, latitude: float, longitude: float) -> Floats:
    """Sine of the sun's elevation at each instant (Cooper declination, equation of time)."""
    t = np.asarray(ts, dtype=np.float64)
    doy = _day_of_year(np.floor(t).astype(np.int64)) + 1.0
    decl = np.radians(23.44) * np.sin(2 * np.pi * (284 + doy) / 365.0)
    b = 2 * np.pi * (doy - 81) / 364.0
    eot_min = 9.87 * np.sin(2 * b) - 7.53 * np.cos(b) - 1.5 * np.sin(b)
    solar_h = (t % DAY_S) / HOUR_S + longitude / 15.0 + eot_min / 60.0
    hour_angle = np.radians(15.0 * (solar_h - 12.0))
    lat = math.radians(latitude)
    return np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)


def clear_sky_ghi(sin_elev: Floats) -> Floats:
    """Clear-sky global horizontal irradiance, W/m² (Haurwitz)."""
    s = np.clip(sin_elev, 1e-6, None)
    return np.where(sin_elev > 0, 1098.0 * s * np.exp(-0.057 / s), 0.0)


def cloud_cover(site: SiteSpec, seed: int, ts: Ints) -> Floats:
    """Cloud cover fraction in [0, 1], persistent over hours to days."""
    z = (
        1.3 * smooth_noise(seed, f"{site.code}/cloud-synoptic", ts, 36 * HOUR_S)
        + 0.7 * smooth_noise(seed, f"{site.code}/cloud-local", ts, 6 * HOUR_S)
        + site.cloudiness
    )
    return 1.0 / (1.0 + np.exp(-1.6 * z))


def irradiance(site: SiteSpec, seed: int, start: Ints, length_s: int) -> Floats:
    """Mean global horizontal irradiance (W/m²) over intervals [start, start + length_s)."""
    sub = 4  # sub-samples so sunrise and sunset hours get their partial sun
    offsets = (np.arange(sub) + 0.5) * length_s / sub
    t = start[:, None] + offsets[None, :]
    clear = clear_sky_ghi(sun_elevation_sin(t, site.latitude, site.longitude)).mean(axis=1)
    cloud = cloud_cover(site, seed, start + length_s // 2)
    return clear * (1.0 - 0.75 * cloud**3.4)  # Kasten-Czeplak cloud attenuation


def temperature(site: SiteSpec, seed: int, ts: Ints) -> Floats:
    """Air temperature (°C): seasonal + diurnal cycle + persistent weather + hourly noise."""
    coldest_doy = 20.0 if site.latitude >= 0 else 202.0
    seasonal = site.mean_temp_c - site.seasonal_amp_c * np.cos(
        2 * np.pi * (_day_of_year(ts) - coldest_doy) / 365.25
    )
    solar_h = (ts % DAY_S) / HOUR_S + site.longitude / 15.0
    clouds = cloud_cover(site, seed, ts)
    # Cloudy days swing less between night and afternoon (peak ~15 h solar time).
    diurnal = site.diurnal_amp_c * (1 - 0.5 * clouds) * np.cos(2 * np.pi * (solar_h - 15) / 24)
    weather = 2.8 * smooth_noise(seed, f"{site.code}/temp-synoptic", ts, 4 * DAY_S)
    weather += 1.2 * smooth_noise(seed, f"{site.code}/temp-daily", ts, DAY_S)
    weather += 0.3 * slot_noise(seed, f"{site.code}/temp-hourly", ts)
    return seasonal + diurnal + weather


def wind_speed(site: SiteSpec, seed: int, ts: Ints) -> Floats:
    """10 m wind speed (m/s), log-normal and gusty."""
    z = 0.45 * smooth_noise(seed, f"{site.code}/wind-synoptic", ts, 12 * HOUR_S)
    z += 0.25 * smooth_noise(seed, f"{site.code}/wind-gust", ts, 3 * HOUR_S)
    return np.clip(3.5 * np.exp(z), 0.0, 40.0)


@dataclass(frozen=True)
class WeatherSeries:
    """Hourly weather at a site; ``ts`` are hour starts, irradiance the mean over the hour."""

    site: str
    ts: Ints
    temperature_c: Floats
    irradiance_w_m2: Floats
    wind_speed_m_s: Floats


def simulate_weather(site: SiteSpec, seed: int, start_s: int, end_s: int) -> WeatherSeries:
    """The simulated hourly weather of a site at the hours in [start, end)."""
    ts = sample_grid(start_s, end_s, HOUR_S)
    return WeatherSeries(
        site=site.code,
        ts=ts,
        temperature_c=temperature(site, seed, ts),
        irradiance_w_m2=irradiance(site, seed, ts, HOUR_S),
        wind_speed_m_s=wind_speed(site, seed, ts),
    )


# --- readings and anomalies ------------------------------------------------------------------


@dataclass(frozen=True)
class Anomaly:
    """An injected meter anomaly over [start_s, end_s); ``magnitude`` is the factor applied,
    or for ``stuck`` the repeated value in kWh."""

    site: str
    kind: Literal["spike", "drop", "stuck"]
    start_s: int
    end_s: int
    magnitude: float


# Mean rate of each anomaly kind per hour, and its duration range in hours.
ANOMALY_RATES: dict[str, float] = {
    "spike": 1 / (10 * 24),
    "drop": 1 / (14 * 24),
    "stuck": 1 / (21 * 24),
}
ANOMALY_HOURS: dict[str, tuple[int, int]] = {"spike": (1, 3), "drop": (1, 4), "stuck": (4, 12)}
ANOMALY_FACTORS: dict[str, tuple[float, float]] = {"spike": (1.6, 3.0), "drop": (0.1, 0.4)}
MAX_ANOMALY_H = max(hi for _, hi in ANOMALY_HOURS.values())


def anomalies(site: SiteSpec, seed: int, start_s: int, end_s: int) -> list[Anomaly]:
    """Anomalies overlapping [start, end) (magnitude of ``stuck`` filled in by the caller).

    A candidate hour is dropped when another candidate occurred in the 12 hours before it: a
    rule that looks only at a fixed past, so anomalies never overlap and never depend on the
    window asked for.
    """
    first_h = (start_s - EPOCH_S) // HOUR_S - 2 * MAX_ANOMALY_H
    last_h = (end_s - 1 - EPOCH_S) // HOUR_S
    u = uniforms(seed, f"{site.code}/anomaly", first_h, last_h - first_h + 1)
    kinds = list(ANOMALY_RATES)
    bounds = np.cumsum([ANOMALY_RATES[k] for k in kinds])
    occurs = u[:, 0] < bounds[-1]
    found: list[Anomaly] = []
    for i in np.flatnonzero(occurs).tolist():
        if i < MAX_ANOMALY_H or occurs[i - MAX_ANOMALY_H : i].any():
            continue
        kind = kinds[int(np.searchsorted(bounds, u[i, 0], side="right"))]
        lo, hi = ANOMALY_HOURS[kind]
        hours = lo + int(u[i, 1] * (hi - lo + 1))
        start = EPOCH_S + (first_h + i) * HOUR_S
        end = start + hours * HOUR_S
        if end <= start_s or start >= end_s:
            continue
        f_lo, f_hi = ANOMALY_FACTORS.get(kind, (0.0, 0.0))
        magnitude = round(f_lo + u[i, 2] * (f_hi - f_lo), 3)
        found.append(Anomaly(site.code, kind, start, end, magnitude))  # type: ignore[arg-type]
    return found


def expected_load_kw(site: SiteSpec, seed: int, ts: Ints, interval_s: int) -> Floats:
    """Mean load (kW) over each interval before meter noise: shape x temperature x drift."""
    mid = ts + interval_s // 2
    hour, daytype = local_calendar(mid, site.timezone, site.country_code)
    shape = load_shape(site.profile, hour, daytype)
    temp = temperature(site, seed, mid)
    thermal = 1.0 + site.heating_per_c * np.clip(HEATING_BASE_C - temp, 0, None)
    thermal += site.cooling_per_c * np.clip(temp - COOLING_BASE_C, 0, None)
    drift = np.exp(0.03 * smooth_noise(seed, f"{site.code}/load-drift", mid, 3 * DAY_S))
    return site.base_load_kw * shape * thermal * drift


def _metered_kwh(site: SiteSpec, seed: int, ts: Ints, interval_s: int) -> Floats:
    kw = expected_load_kw(site, seed, ts, interval_s)
    z = slot_noise(seed, f"{site.code}/load-noise/{interval_s}", ts, interval_s)
    return kw * np.exp(LOAD_NOISE_SIGMA * z - LOAD_NOISE_SIGMA**2 / 2) * interval_s / HOUR_S


def production_kwh(site: SiteSpec, seed: int, ts: Ints, interval_s: int) -> Floats:
    """Energy produced over each interval: PV following the sun and clouds, plus firm output."""
    pv_kw = site.capacity_kw * site.solar_share * PV_PERFORMANCE_RATIO
    solar = pv_kw * irradiance(site, seed, ts, interval_s) / 1000.0
    firm_kw = site.capacity_kw * (1.0 - site.solar_share)
    availability = np.clip(
        0.92 + 0.05 * smooth_noise(seed, f"{site.code}/firm", ts, 2 * DAY_S), 0.7, 1.0
    )
    return (solar + firm_kw * availability) * interval_s / HOUR_S


@dataclass(frozen=True)
class SiteSeries:
    """Readings of one site: interval starts, metered consumption (anomalies included), the
    consumption without anomalies (ground truth), production, and the anomalies injected."""

    site: str
    interval_s: int
    ts: Ints
    consumption_kwh: Floats
    expected_kwh: Floats
    production_kwh: Floats
    anomalies: tuple[Anomaly, ...]


def simulate_readings(
    site: SiteSpec, seed: int, start_s: int, end_s: int, interval_s: int = HOUR_S
) -> SiteSeries:
    """Consumption and production readings of a site over [start, end), with anomalies."""
    check_interval(interval_s)
    ts = time_grid(start_s, end_s, interval_s)
    clean = _metered_kwh(site, seed, ts, interval_s)
    metered = clean.copy()
    injected = []
    for a in anomalies(site, seed, start_s, end_s):
        inside = (ts >= a.start_s) & (ts < a.end_s)
        if a.kind == "stuck":
            # The meter repeats the value it read at the start of the episode.
            value = float(_metered_kwh(site, seed, np.array([a.start_s]), interval_s)[0])
            metered[inside] = value
            a = Anomaly(a.site, a.kind, a.start_s, a.end_s, round(value, 3))
        else:
            metered[inside] = clean[inside] * a.magnitude
        injected.append(a)
    return SiteSeries(
        site=site.code,
        interval_s=interval_s,
        ts=ts,
        consumption_kwh=metered,
        expected_kwh=clean,
        production_kwh=production_kwh(site, seed, ts, interval_s),
        anomalies=tuple(injected),
    )


# --- equipment -------------------------------------------------------------------------------

BLOCK_H = 30 * 24  # each block of 30 days holds at most one degradation and one sudden failure
DEGRADATION_P = 0.55
SUDDEN_FAILURE_P = 0.2
INSPECTION_P = 0.5
MISSING_P = 0.01
_CAUSES = {
    "pump": ("roulement", "garniture mécanique", "cavitation"),
    "compressor": ("roulement", "clapet", "surchauffe moteur"),
    "locomotive": ("moteur de traction", "boîte d'essieu", "compresseur de frein"),
    "transformer": ("isolation", "refroidissement", "traversée"),
    "turbine": ("palier", "aubage", "lubrification"),
    "other": ("roulement", "moteur", "capteur"),
}


@dataclass(frozen=True)
class Episode:
    """A failure and its repair; ``onset_s`` starts the warning ramp (None: sudden failure)."""

    equipment: str
    onset_s: int | None
    failure_s: int
    repaired_s: int
    severity: float  # vibration multiple of nominal reached at failure
    cause: str


@dataclass(frozen=True)
class EquipmentEvent:
    """A maintenance, failure or inspection event, as posted to the API."""

    equipment: str
    ts_s: int
    kind: Literal["maintenance", "failure", "inspection"]
    description: str


def _block_phase_h(eq: EquipmentSpec, seed: int) -> int:
    return int(uniforms(seed, f"{eq.code}/phase", 0, 1)[0, 0] * BLOCK_H)


def equipment_history(
    eq: EquipmentSpec, seed: int, start_s: int, end_s: int
) -> tuple[list[Episode], list[EquipmentEvent]]:
    """Failure episodes touching [start, end) and the events that fall inside it."""
    phase = _block_phase_h(eq, seed)
    h0 = (start_s - EPOCH_S) // HOUR_S
    h1 = (end_s - 1 - EPOCH_S) // HOUR_S
    b0, b1 = (h0 - phase) // BLOCK_H - 1, (h1 - phase) // BLOCK_H
    if b0 < 0:
        b0 = 0
    draws = uniforms(seed, f"{eq.code}/blocks", b0, b1 - b0 + 1, width=12)
    causes = _CAUSES[eq.kind]
    episodes: list[Episode] = []
    inspections: list[int] = []
    for j, u in enumerate(draws):
        block_start = EPOCH_S + ((b0 + j) * BLOCK_H + phase) * HOUR_S
        busy: tuple[int, int] | None = None
        if u[0] < DEGRADATION_P:
            ramp_h = 72 + int(u[1] * 169)  # 3 to 10 days of rising vibration and heat
            down_h = 4 + int(u[3] * 33)
            onset = block_start + (24 + int(u[2] * (BLOCK_H - 48 - ramp_h - down_h))) * HOUR_S
            failure = onset + ramp_h * HOUR_S
            repaired = failure + down_h * HOUR_S
            cause = causes[int(u[7] * len(causes))]
            episodes.append(Episode(eq.code, onset, failure, repaired, 3.0 + 2.0 * u[8], cause))
            busy = (onset - 2 * DAY_S, repaired + DAY_S)
        if u[4] < SUDDEN_FAILURE_P:
            at = block_start + (12 + int(u[5] * (BLOCK_H - 72))) * HOUR_S
            repaired = at + (2 + int(u[6] * 23)) * HOUR_S
            if busy is None or repaired < busy[0] or at > busy[1]:
                cause = causes[int(u[9] * len(causes))]
                episodes.append(Episode(eq.code, None, at, repaired, 1.0, cause))
        if u[10] < INSPECTION_P:
            inspections.append(block_start + (6 + int(u[11] * (BLOCK_H - 12))) * HOUR_S)
    episodes.sort(key=lambda e: e.failure_s)
    events: list[EquipmentEvent] = []
    for e in episodes:
        warned = "après dérive des vibrations et de la température" if e.onset_s else "sans signe"
        events.append(
            EquipmentEvent(eq.code, e.failure_s, "failure", f"Panne {e.cause} ({warned})")
        )
        events.append(
            EquipmentEvent(
                eq.code, e.repaired_s, "maintenance", f"Réparation {e.cause}, remise en service"
            )
        )
    for at in inspections:
        if not any(e.failure_s <= at < e.repaired_s for e in episodes):
            events.append(EquipmentEvent(eq.code, at, "inspection", "Inspection de routine"))
    inside = [ev for ev in events if start_s <= ev.ts_s < end_s]
    touching = [
        e for e in episodes if (e.onset_s or e.failure_s) < end_s and e.repaired_s > start_s
    ]
    return touching, sorted(inside, key=lambda ev: (ev.ts_s, ev.kind))


@dataclass(frozen=True)
class TelemetrySeries:
    """Hourly sensor samples of one piece of equipment; NaN = the sensor sent nothing."""

    equipment: str
    ts: Ints
    flow_m3h: Floats
    pressure_bar: Floats
    vibration_mm_s: Floats
    temperature_c: Floats


def simulate_telemetry(
    eq: EquipmentSpec, site: SiteSpec, seed: int, start_s: int, end_s: int
) -> tuple[TelemetrySeries, list[EquipmentEvent], list[Episode]]:
    """Hourly telemetry of one piece of equipment over [start, end), its events and episodes."""
    ts = sample_grid(start_s, end_s, HOUR_S)
    nominal = NOMINALS[eq.kind]
    episodes, events = equipment_history(eq, seed, start_s, end_s)
    hour, daytype = local_calendar(ts + HOUR_S // 2, site.timezone, site.country_code)
    duty = load_shape(site.profile, hour, daytype)  # equipment works harder when the site does
    ambient = temperature(site, seed, ts)
    n = ts.size
    z = [slot_noise(seed, f"{eq.code}/noise-{k}", ts) for k in range(4)]

    flow = (nominal.flow_m3h or np.nan) * (0.5 + 0.5 * duty) * (1 + 0.03 * z[0])
    pressure = (nominal.pressure_bar or np.nan) * (0.85 + 0.15 * duty) * (1 + 0.02 * z[1])
    vibration = nominal.vibration_mm_s * (0.8 + 0.2 * duty) * np.exp(0.08 * z[2])
    temp = nominal.temperature_c * (0.7 + 0.3 * duty) + 0.3 * (ambient - 20) + 1.0 * z[3]
    for e in episodes:
        if e.onset_s is not None:
            p = np.clip((ts - e.onset_s) / (e.failure_s - e.onset_s), 0, 1)
            ramp = np.where((ts >= e.onset_s) & (ts < e.failure_s), p, 0.0)
            vibration = vibration + nominal.vibration_mm_s * (e.severity - 1) * ramp**2
            temp = temp + (12 + 5 * e.severity) * ramp**1.5
        down = (ts >= e.failure_s) & (ts < e.repaired_s)
        flow = np.where(down, 0.0, flow)
        pressure = np.where(down, 0.0, pressure)
        vibration = np.where(down, 0.1 * np.exp(0.2 * z[2]), vibration)
        temp = np.where(down, ambient + 2.0 + 0.5 * z[3], temp)

    # Sensors drop out now and then; a sample always keeps at least its temperature.
    missing = np.zeros((n, 4), dtype=bool)
    if n:
        h = _hour_index(ts)
        missing = uniforms(seed, f"{eq.code}/missing", int(h[0]), n) < MISSING_P
        missing[missing.all(axis=1), 3] = False
    columns = [flow, pressure, np.clip(vibration, 0, 60), np.clip(temp, -50, 200)]
    flow, pressure, vibration, temp = (
        np.where(missing[:, k], np.nan, np.asarray(c, dtype=np.float64))
        for k, c in enumerate(columns)
    )
    series = TelemetrySeries(eq.code, ts, flow, pressure, vibration, temp)
    return series, events, episodes


# --- everything at once ----------------------------------------------------------------------


@dataclass(frozen=True)
class Simulation:
    """All simulated data over one window."""

    start_s: int
    end_s: int
    readings: list[SiteSeries]
    weather: list[WeatherSeries]
    telemetry: list[TelemetrySeries]
    events: list[EquipmentEvent]
    episodes: list[Episode]

    @property
    def anomalies(self) -> list[Anomaly]:
        return [a for r in self.readings for a in r.anomalies]


def simulate(
    sites: list[SiteSpec],
    equipment: list[EquipmentSpec],
    start: datetime,
    end: datetime,
    *,
    seed: int,
    interval_s: int = HOUR_S,
) -> Simulation:
    """Simulate readings, weather, telemetry and events of the sites over [start, end)."""
    start_s, end_s = to_epoch(start), to_epoch(end)
    if end_s <= start_s:
        raise SimulationError("end must be after start")
    by_code = {s.code: s for s in sites}
    telemetry, events, episodes = [], [], []
    for eq in equipment:
        series, evs, eps = simulate_telemetry(eq, by_code[eq.site], seed, start_s, end_s)
        telemetry.append(series)
        events.extend(evs)
        episodes.extend(eps)
    return Simulation(
        start_s=start_s,
        end_s=end_s,
        readings=[simulate_readings(s, seed, start_s, end_s, interval_s) for s in sites],
        weather=[simulate_weather(s, seed, start_s, end_s) for s in sites],
        telemetry=telemetry,
        events=events,
        episodes=episodes,
    )
