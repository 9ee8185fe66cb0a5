"""Simulated equipment fleets for the predictive-maintenance tests and bench.

Uses the simulator's pure generation functions (no HTTP, no database) and shapes the result
like the forecast service will read it from ingest: one telemetry frame, one event frame, one
equipment frame, plus the simulator's ground-truth episodes (onset of the warning ramp).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from services.ingest.simulator.catalog import equipment_specs, site_specs
from services.ingest.simulator.model import simulate_telemetry, to_epoch

FLEET_START = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Fleet:
    """Telemetry, events and equipment of a simulated fleet, with its failure episodes."""

    telemetry: pd.DataFrame  # equipment_code, ts, flow_m3h, pressure_bar, vibration_mm_s, ...
    events: pd.DataFrame  # equipment_code, ts, kind, description
    equipment: pd.DataFrame  # equipment_code, site, kind, name
    episodes: pd.DataFrame  # equipment_code, onset, failure, repaired, sudden
    start: pd.Timestamp
    end: pd.Timestamp


def _utc(seconds: np.ndarray | list[int]) -> pd.DatetimeIndex:
    return pd.to_datetime(np.asarray(seconds, dtype=np.int64), unit="s", utc=True)


def simulated_fleet(sites: int, days: int, seed: int, start: datetime = FLEET_START) -> Fleet:
    """The first ``sites`` catalogue sites and their equipment over ``days`` days (seeded)."""
    site_list = site_specs(sites)
    by_code = {s.code: s for s in site_list}
    specs = equipment_specs(site_list)
    end = start + timedelta(days=days)
    frames: list[pd.DataFrame] = []
    events: list[dict[str, object]] = []
    episodes: list[dict[str, object]] = []
    for eq in specs:
        series, evs, eps = simulate_telemetry(
            eq, by_code[eq.site], seed, to_epoch(start), to_epoch(end)
        )
        frames.append(
            pd.DataFrame(
                {
                    "equipment_code": eq.code,
                    "ts": _utc(series.ts),
                    "flow_m3h": series.flow_m3h,
                    "pressure_bar": series.pressure_bar,
                    "vibration_mm_s": series.vibration_mm_s,
                    "temperature_c": series.temperature_c,
                }
            )
        )
        events.extend(
            {
                "equipment_code": ev.equipment,
                "ts": ev.ts_s,
                "kind": ev.kind,
                "description": ev.description,
            }
            for ev in evs
        )
        episodes.extend(
            {
                "equipment_code": ep.equipment,
                "onset": ep.onset_s or ep.failure_s,
                "failure": ep.failure_s,
                "repaired": ep.repaired_s,
                "sudden": ep.onset_s is None,
            }
            for ep in eps
        )
    event_frame = pd.DataFrame(events, columns=["equipment_code", "ts", "kind", "description"])
    event_frame["ts"] = _utc(event_frame["ts"].to_numpy())
    episode_frame = pd.DataFrame(
        episodes, columns=["equipment_code", "onset", "failure", "repaired", "sudden"]
    )
    for column in ("onset", "failure", "repaired"):
        episode_frame[column] = _utc(episode_frame[column].to_numpy())
    equipment = pd.DataFrame(
        {
            "equipment_code": [e.code for e in specs],
            "site": [e.site for e in specs],
            "kind": [e.kind for e in specs],
            "name": [e.name for e in specs],
        }
    )
    return Fleet(
        telemetry=pd.concat(frames, ignore_index=True),
        events=event_frame,
        equipment=equipment,
        episodes=episode_frame,
        start=pd.Timestamp(start),
        end=pd.Timestamp(end),
    )
