"""The per-condition state machine: pending duration before firing, hysteresis before resolving.

Pure functions over hourly observations. Each hour of a condition is FIRE (the firing
condition holds), CLEAR (the separate recovery condition holds) or HOLD (neither: between the
two thresholds). An episode starts when FIRE held for ``pending_h`` consecutive hours (its
first hour is the first of that run) and ends once CLEAR held for ``recovery_h`` observed
hours in a row; a FIRE in between continues the same episode, so a flapping condition is one
incident. Recomputed from the data each time, the same data always gives the same episodes,
which is what makes evaluation idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

FIRE, CLEAR, HOLD = "fire", "clear", "hold"
HOUR_S = 3600


@dataclass(frozen=True)
class Obs:
    """One hour (``ts`` = epoch seconds of its start) of one condition."""

    ts: int
    state: str
    value: float
    why: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Episode:
    """A run of the condition that fired; ``ended_at`` is set once recovery completed."""

    key: str
    first: int
    last: int
    peak: float
    peak_at: int
    why: str
    extra: dict[str, Any]
    hours: int = 0
    ended_at: int | None = None
    cut: bool = False  # closed by a person's resolution rather than by recovery

    def add(self, o: Obs) -> None:
        self.last = max(self.last, o.ts)
        self.hours += 1
        if o.value > self.peak:
            self.peak, self.peak_at, self.why, self.extra = o.value, o.ts, o.why, o.extra


def run_episodes(
    key: str,
    obs: Sequence[Obs],
    pending_h: int,
    recovery_h: int,
    barriers: Sequence[int] = (),
) -> list[Episode]:
    """Episodes of one condition in ``obs`` (ascending hours).

    ``barriers`` are times a person resolved an incident of this condition: an episode open
    at a barrier is closed there, and hours after it must fire anew (pending again).
    """
    episodes: list[Episode] = []
    current: Episode | None = None
    run: list[Obs] = []
    clear = 0
    pending = sorted(barriers)
    for o in obs:
        while pending and pending[0] <= o.ts:
            barrier = pending.pop(0)
            if current is not None and current.first < barrier:
                current.cut = True
                episodes.append(current)
                current, clear = None, 0
            run = [r for r in run if r.ts >= barrier]
        if o.state == FIRE:
            clear = 0
            if current is not None:
                current.add(o)
                continue
            if run and o.ts - run[-1].ts > HOUR_S:
                run = []  # a gap in the data: "consecutive" starts again
            run.append(o)
            if len(run) >= pending_h:
                current = Episode(key, run[0].ts, run[0].ts, float("-inf"), run[0].ts, "", {})
                for r in run:
                    current.add(r)
                run = []
        elif o.state == CLEAR:
            run = []
            if current is not None:
                clear += 1
                if clear >= recovery_h:
                    current.ended_at = o.ts + HOUR_S
                    episodes.append(current)
                    current, clear = None, 0
        else:  # HOLD: neither fires a new episode nor counts towards recovery
            run = []
            clear = 0
    if current is not None:
        episodes.append(current)
    return episodes
