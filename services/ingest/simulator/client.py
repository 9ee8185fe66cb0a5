"""Post simulated data through the ingest HTTP API, like any other client (httpx, JSON batches)."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import httpx

from services.common.http import ServiceAuth
from services.ingest.config import IngestSettings
from services.ingest.simulator.catalog import equipment_specs, site_specs
from services.ingest.simulator.model import (
    HOUR_S,
    EquipmentSpec,
    Simulation,
    SiteSpec,
    check_interval,
    simulate,
)

BATCH_ROWS = 10_000
DEMO_SITES = 3
DEMO_DAYS = 90
DEMO_SEED = 42
SOURCE = "simulated"
Echo = Callable[[str], None]


class SimulatorError(RuntimeError):
    """The ingest API refused or could not take the simulated data."""


class BearerAuth(httpx.Auth):
    """A fixed bearer token (SPE_TOKEN)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def client_auth(env: Mapping[str, str] | None = None) -> httpx.Auth:
    """SPE_TOKEN if set, else service tokens minted with the SECRET_KEY of ``env`` / .env."""
    env = os.environ if env is None else env
    if env.get("SPE_TOKEN"):
        return BearerAuth(env["SPE_TOKEN"])
    # Only keys present in env are passed, so a SECRET_KEY set in .env is still honoured.
    keys = ("SECRET_KEY", "JWT_ISSUER", "JWT_AUDIENCE")
    overrides: dict[str, Any] = {k.lower(): env[k] for k in keys if env.get(k)}
    settings = IngestSettings(**overrides)
    return ServiceAuth(settings, "simulator")


@dataclass
class Totals:
    """What the API did with the rows of one kind."""

    sent: int = 0
    accepted: int = 0
    quarantined: int = 0


@dataclass
class Report:
    """Counts of one backfill or live step, by kind of row."""

    sites_created: int = 0
    equipment_created: int = 0
    totals: dict[str, Totals] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, kind: str, totals: Totals) -> None:
        mine = self.totals.setdefault(kind, Totals())
        mine.sent += totals.sent
        mine.accepted += totals.accepted
        mine.quarantined += totals.quarantined

    def summary(self) -> str:
        parts = [f"{t.accepted} {kind}" for kind, t in self.totals.items()]
        bad = sum(t.quarantined for t in self.totals.values())
        return ", ".join(parts) + (f"; {bad} quarantined" if bad else "")


class IngestClient:
    """Minimal client of the ingest write API: create-if-missing, batched upserts, retries."""

    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth,
        *,
        timeout_s: float = 60.0,
        batch_rows: int = BATCH_ROWS,
        echo: Echo = print,
        http: httpx.Client | None = None,
    ) -> None:
        # ``http``: an existing client to send through (tests pass the app's TestClient).
        self._owns_http = http is None
        self.http = http or httpx.Client(
            base_url=base_url.rstrip("/"), timeout=httpx.Timeout(timeout_s, connect=5.0)
        )
        self.auth = auth
        self.batch_rows = min(batch_rows, BATCH_ROWS)
        self.echo = echo

    def __enter__(self) -> IngestClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owns_http:
            self.http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        # Writes are idempotent upserts, so a batch lost to a dropped connection or a 503 is
        # simply sent again.
        for attempt in range(3):
            try:
                response = self.http.request(method, path, auth=self.auth, **kwargs)
            except httpx.TransportError as exc:
                if attempt == 2:
                    raise SimulatorError(f"{method} {path}: {exc!r}") from exc
            else:
                if response.status_code != 503 or attempt == 2:
                    return response
            time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def list_sites(self) -> list[dict[str, Any]]:
        """Every site the API knows."""
        response = self._request("GET", "/v1/sites")
        _raise_for(response)
        return list(response.json())

    def list_equipment(self) -> list[dict[str, Any]]:
        """Every piece of equipment the API knows."""
        response = self._request("GET", "/v1/equipment")
        _raise_for(response)
        return list(response.json())

    def create(self, path: str, body: dict[str, Any]) -> bool:
        """POST a site or equipment; True if created, False if it already existed (409)."""
        response = self._request("POST", path, json=body)
        if response.status_code == 409:
            return False
        _raise_for(response)
        return True

    def post_rows(self, path: str, rows: Sequence[dict[str, Any]]) -> Totals:
        """POST rows in batches of at most ``batch_rows``; report what was stored."""
        totals = Totals()
        for i in range(0, len(rows), self.batch_rows):
            batch = rows[i : i + self.batch_rows]
            response = self._request("POST", path, json=list(batch))
            _raise_for(response)
            result = response.json()
            totals.sent += len(batch)
            totals.accepted += int(result.get("accepted", len(batch)))
            totals.quarantined += int(result.get("quarantined", 0))
            for rejected in result.get("rejected", [])[:3]:
                self.echo(f"  {path}: row {i + rejected['row']} quarantined: {rejected['reason']}")
        return totals


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
        detail = f"{body.get('error')}: {body.get('detail')}"
    except ValueError:
        detail = response.text[:300]
    raise SimulatorError(
        f"{response.request.method} {response.request.url.path} -> {response.status_code} {detail}"
    )


# --- rows as the API takes them --------------------------------------------------------------


class _Iso:
    """Epoch seconds -> ISO 8601 UTC, memoised (sites and equipment share timestamps)."""

    def __init__(self) -> None:
        self.cache: dict[int, str] = {}

    def __call__(self, t: int) -> str:
        text = self.cache.get(t)
        if text is None:
            text = self.cache[t] = datetime.fromtimestamp(t, UTC).isoformat()
        return text


def _num(x: float, digits: int = 3) -> float | None:
    return None if math.isnan(x) else round(float(x), digits)


def site_body(site: SiteSpec) -> dict[str, Any]:
    """POST /v1/sites body of a simulated site."""
    return {
        "code": site.code,
        "name": site.name,
        "timezone": site.timezone,
        "country_code": site.country_code,
        "capacity_kw": site.capacity_kw,
        "latitude": site.latitude,
        "longitude": site.longitude,
    }


def equipment_body(eq: EquipmentSpec) -> dict[str, Any]:
    """POST /v1/equipment body of a simulated piece of equipment."""
    return {"code": eq.code, "site": eq.site, "name": eq.name, "kind": eq.kind}


def simulation_rows(sim: Simulation) -> dict[str, list[dict[str, Any]]]:
    """The simulation as JSON rows per batch endpoint, in the order they should be posted."""
    iso = _Iso()
    weather = [
        {
            "site": w.site,
            "ts": iso(t),
            "temperature_c": _num(temp, 2),
            "irradiance_w_m2": _num(ghi, 1),
            "wind_speed_m_s": _num(wind, 2),
            "is_forecast": False,
            "source": SOURCE,
        }
        for w in sim.weather
        for t, temp, ghi, wind in zip(
            w.ts.tolist(),
            w.temperature_c.tolist(),
            w.irradiance_w_m2.tolist(),
            w.wind_speed_m_s.tolist(),
            strict=True,
        )
    ]
    readings = [
        {
            "site": r.site,
            "ts": iso(t),
            "consumption_kwh": _num(c),
            "production_kwh": _num(p),
            "interval_s": r.interval_s,
            "source": SOURCE,
        }
        for r in sim.readings
        for t, c, p in zip(
            r.ts.tolist(), r.consumption_kwh.tolist(), r.production_kwh.tolist(), strict=True
        )
    ]
    telemetry = [
        {
            "equipment": s.equipment,
            "ts": iso(t),
            "flow_m3h": _num(f, 2),
            "pressure_bar": _num(p),
            "vibration_mm_s": _num(v),
            "temperature_c": _num(c, 2),
            "source": SOURCE,
        }
        for s in sim.telemetry
        for t, f, p, v, c in zip(
            s.ts.tolist(),
            s.flow_m3h.tolist(),
            s.pressure_bar.tolist(),
            s.vibration_mm_s.tolist(),
            s.temperature_c.tolist(),
            strict=True,
        )
    ]
    events = [
        {
            "equipment": e.equipment,
            "ts": iso(e.ts_s),
            "kind": e.kind,
            "description": e.description,
            "source": SOURCE,
        }
        for e in sim.events
    ]
    labels = [
        {
            "site": a.site,
            "kind": a.kind,
            "start_ts": iso(a.start_s),
            "end_ts": iso(a.end_s),
            "magnitude": a.magnitude,
            "source": SOURCE,
        }
        for a in sim.anomalies
    ]
    return {
        "/v1/weather/batch": weather,
        "/v1/readings/batch": readings,
        "/v1/telemetry/batch": telemetry,
        "/v1/equipment-events/batch": events,
        "/v1/anomaly-labels/batch": labels,
    }


_KIND = {
    "/v1/weather/batch": "weather",
    "/v1/readings/batch": "readings",
    "/v1/telemetry/batch": "telemetry",
    "/v1/equipment-events/batch": "events",
    "/v1/anomaly-labels/batch": "anomaly labels",
}


# --- backfill, live, demo seeding ------------------------------------------------------------


def current_hour(now: datetime | None = None, interval_s: int = HOUR_S) -> datetime:
    """``now`` (default: the clock) floored to the interval: the end of the last complete one."""
    now = now or datetime.now(UTC)
    t = int(now.timestamp())
    return datetime.fromtimestamp(t - t % interval_s, UTC)


def ensure_catalog(
    client: IngestClient, sites: Sequence[SiteSpec], equipment: Sequence[EquipmentSpec]
) -> tuple[int, int]:
    """Create the sites and equipment the API does not have yet; return how many were new."""
    # Ask first so a re-run sends no doomed POST; a 409 from a concurrent run is still fine.
    have_sites = {s["code"] for s in client.list_sites()}
    have_equipment = {e["code"] for e in client.list_equipment()} if equipment else set()
    new_sites = sum(
        client.create("/v1/sites", site_body(s)) for s in sites if s.code not in have_sites
    )
    new_equipment = sum(
        client.create("/v1/equipment", equipment_body(e))
        for e in equipment
        if e.code not in have_equipment
    )
    return new_sites, new_equipment


def post_window(
    client: IngestClient,
    sites: Sequence[SiteSpec],
    equipment: Sequence[EquipmentSpec],
    start: datetime,
    end: datetime,
    *,
    seed: int,
    interval_s: int,
    report: Report,
) -> None:
    """Simulate [start, end) and post every kind of row."""
    sim = simulate(list(sites), list(equipment), start, end, seed=seed, interval_s=interval_s)
    for path, rows in simulation_rows(sim).items():
        if rows:
            report.add(_KIND[path], client.post_rows(path, rows))


def backfill(
    client: IngestClient,
    sites: Sequence[SiteSpec],
    equipment: Sequence[EquipmentSpec],
    *,
    days: float,
    seed: int,
    interval_s: int = HOUR_S,
    end: datetime | None = None,
    chunk_days: int = 15,
) -> Report:
    """Create the sites and equipment, then post ``days`` of history ending at the last hour."""
    check_interval(interval_s)
    started = time.perf_counter()
    # Aligned to the hour and never in the future: every interval posted is complete.
    stop = current_hour(min(end or datetime.now(UTC), datetime.now(UTC)))
    first = stop - timedelta(days=days)
    report = Report()
    report.sites_created, report.equipment_created = ensure_catalog(client, sites, equipment)
    # Chunks bound the memory; they change no value (draws depend on absolute time only).
    cursor = first
    while cursor < stop:
        upto = min(cursor + timedelta(days=chunk_days), stop)
        post_window(
            client, sites, equipment, cursor, upto, seed=seed, interval_s=interval_s, report=report
        )
        cursor = upto
    report.seconds = time.perf_counter() - started
    return report


def run_live(
    client: IngestClient,
    sites: Sequence[SiteSpec],
    equipment: Sequence[EquipmentSpec],
    *,
    seed: int,
    tick_s: float,
    interval_s: int = HOUR_S,
    speedup: float = 1.0,
    start: datetime | None = None,
    stop: threading.Event | None = None,
    max_ticks: int | None = None,
    echo: Echo = print,
) -> Report:
    """Every ``tick_s`` seconds, post the intervals completed since the last post.

    The simulated clock starts at ``start`` (default: the current interval) and runs
    ``speedup`` times faster than the wall clock, but never past real time: the API accepts
    measurements only up to now.
    """
    check_interval(interval_s)
    stop = stop or threading.Event()
    report = Report()
    report.sites_created, report.equipment_created = ensure_catalog(client, sites, equipment)
    cursor = current_hour(start, interval_s)
    sim_origin, wall_origin = cursor, time.monotonic()
    ticks = 0
    while not stop.is_set():
        elapsed = (time.monotonic() - wall_origin) * speedup
        sim_now = min(sim_origin + timedelta(seconds=elapsed), datetime.now(UTC))
        target = current_hour(sim_now, interval_s)
        if target > cursor:
            step = Report()
            post_window(
                client,
                sites,
                equipment,
                cursor,
                target,
                seed=seed,
                interval_s=interval_s,
                report=step,
            )
            for kind, totals in step.totals.items():
                report.add(kind, totals)
            echo(f"{cursor:%Y-%m-%d %H:%M} → {target:%Y-%m-%d %H:%M} UTC: {step.summary()}")
            cursor = target
        ticks += 1
        if max_ticks is not None and ticks >= max_ticks:
            break
        stop.wait(tick_s)
    return report


def seed_demo_if_empty(ingest_url: str, env: dict[str, str]) -> bool:
    """If the ingest API has no site, create the demo sites with 90 days of hourly history.

    True when it seeded them (False: sites already there, or seeding failed and said why).
    """
    try:
        with IngestClient(ingest_url, client_auth(env)) as client:
            if client.list_sites():
                return False
            sites = site_specs(DEMO_SITES)
            equipment = equipment_specs(sites)
            report = backfill(client, sites, equipment, days=DEMO_DAYS, seed=DEMO_SEED)
    except (SimulatorError, httpx.HTTPError) as exc:
        # The platform works without demo data; say why there is none and carry on.
        print(f"demo data not seeded: {exc}")
        return False
    print(
        f"demo data: {len(sites)} sites, {len(equipment)} equipment, {DEMO_DAYS} days "
        f"({report.summary()}) in {report.seconds:.1f} s"
    )
    return True


def request_first_forecasts(forecast_url: str, env: dict[str, str]) -> int | None:
    """Queue an every-site retraining (what the nightly run does); the job id, or None.

    Right after the demo data is seeded, so the predictions and maintenance pages fill in within
    a minute or two instead of after the first nightly run.
    """
    try:
        with httpx.Client(base_url=forecast_url, auth=client_auth(env), timeout=10) as http:
            answer = http.post("/v1/jobs/retrain", json={"site": None})
            answer.raise_for_status()
            job_id = int(answer.json()["id"])
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        print(f"first forecasts not requested: {exc}")
        return None
    print(f"first forecasts: retraining job {job_id} queued (every site, then maintenance)")
    return job_id


def report_dict(report: Report) -> dict[str, Any]:
    """The report as plain data (for --json output)."""
    return asdict(report)
