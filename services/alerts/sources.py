"""What the rules read, over HTTP only: ingest's sites and hourly readings, forecast's outputs.

The forecast service's contract (documented in docs/alerts.md) is small on purpose:

* ``GET {FORECAST_URL}/v1/sites/{code}/forecast/latest`` → ``{"run_id", "created_at",
  "points": [{"ts", "consumption_kwh", "consumption_lo", "consumption_hi",
  "production_kwh"?}]}`` (hourly, aware timestamps; 404: no forecast for the site);
* ``GET {FORECAST_URL}/v1/maintenance/risk?site={code}`` → ``{"items": [{"equipment",
  "site", "probability", "horizon_days"?, "factors"?, "computed_at"?}]}``.

When the forecast service is missing, down, or has nothing yet, the rules that need it are
skipped with a visible reason (:class:`Unavailable`), never an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from services.common.errors import AppError, BadInput, NotFound, ServiceUnavailable
from services.common.http import service_client
from services.common.settings import ServiceSettings


class SiteNotFound(NotFound):
    """The site code is unknown to ingest."""


@dataclass(frozen=True)
class Site:
    code: str
    timezone: str
    country_code: str | None
    capacity_kw: float


@dataclass(frozen=True)
class Hour:
    """One hourly bucket from ingest; ``ts`` aware, in the site's offset."""

    ts: datetime
    consumption_kwh: float
    production_kwh: float
    n_readings: int


@dataclass(frozen=True)
class Unavailable:
    """Why an optional source (the forecast service) gave nothing; the rule is skipped."""

    reason: str


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Sources:
    """Blocking clients of ingest and forecast, shared by the routes and the scheduler."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.ingest = service_client(settings, "alerts", settings.ingest_url)
        self.forecast = service_client(settings, "alerts", settings.forecast_url)

    def close(self) -> None:
        self.ingest.close()
        self.forecast.close()

    # --- ingest (required: a failure is the caller's 404 or a 503) ---------------------------

    def _ingest_get(self, path: str, params: dict[str, str] | None = None) -> Any:
        try:
            r = self.ingest.get(path, params=params)
        except httpx.TimeoutException:
            raise ServiceUnavailable("the ingest service did not answer in time") from None
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"the ingest service is not reachable ({exc!r})") from None
        if r.status_code == 404:
            detail = _detail(r)
            raise SiteNotFound(detail)
        if r.status_code == 422:
            raise BadInput(f"ingest refused the read: {_detail(r)}")
        if r.status_code >= 400:
            raise ServiceUnavailable(f"ingest answered {r.status_code}: {_detail(r)}")
        return r.json()

    def sites(self) -> list[Site]:
        """Every site ingest knows."""
        return [_site(s) for s in self._ingest_get("/v1/sites")]

    def site(self, code: str) -> Site:
        """One site, or SiteNotFound."""
        return _site(self._ingest_get(f"/v1/sites/{quote(code, safe='')}"))

    def hourly(
        self, code: str, start: datetime, end: datetime, source: str | None = None
    ) -> list[Hour]:
        """Hourly buckets of [start, end), local hours of the site."""
        params = {"start": _iso(start), "end": _iso(end), "resolution": "hour"}
        if source:
            params["source"] = source
        body = self._ingest_get(f"/v1/sites/{quote(code, safe='')}/readings", params)
        return [
            Hour(
                ts=_utc(item["ts"]),
                consumption_kwh=float(item["consumption_kwh"] or 0.0),
                production_kwh=float(item["production_kwh"] or 0.0),
                n_readings=int(item["n_readings"]),
            )
            for item in body["items"]
        ]

    # --- forecast (optional: a failure skips the rule) ---------------------------------------

    def _forecast_get(self, path: str, params: dict[str, str] | None = None) -> Any:
        try:
            r = self.forecast.get(path, params=params)
        except httpx.TimeoutException:
            return Unavailable("the forecast service did not answer in time")
        except httpx.TransportError:
            return Unavailable("the forecast service is not reachable")
        if r.status_code == 404:
            return Unavailable("the forecast service has nothing for this site yet (404)")
        if r.status_code >= 400:
            return Unavailable(f"the forecast service answered {r.status_code}")
        try:
            return r.json()
        except ValueError:
            return Unavailable("the forecast service answered something that is not JSON")

    def latest_forecast(self, code: str) -> list[dict[str, Any]] | Unavailable:
        """Points of the site's latest forecast run (ts parsed), or why there are none."""
        body = self._forecast_get(f"/v1/sites/{quote(code, safe='')}/forecast/latest")
        if isinstance(body, Unavailable):
            return body
        try:
            return [{**p, "ts": _utc(p["ts"])} for p in body["points"]]
        except (KeyError, TypeError, ValueError):
            return Unavailable("the forecast answer does not follow the documented contract")

    def equipment_risk(self, code: str) -> list[dict[str, Any]] | Unavailable:
        """Failure probabilities of the site's equipment, or why there are none."""
        body = self._forecast_get("/v1/maintenance/risk", {"site": code})
        if isinstance(body, Unavailable):
            return body
        try:
            items = body["items"]
            return [
                {**i, "probability": float(i["probability"])}
                for i in items
                if i.get("site") in (None, code) and i.get("equipment")
            ]
        except (KeyError, TypeError, ValueError):
            return Unavailable("the risk answer does not follow the documented contract")


def _detail(r: httpx.Response) -> str:
    try:
        return str(r.json().get("detail", r.text[:200]))
    except ValueError:
        return r.text[:200]


def _site(body: dict[str, Any]) -> Site:
    return Site(
        code=body["code"],
        timezone=body["timezone"],
        country_code=body.get("country_code"),
        capacity_kw=float(body.get("capacity_kw") or 0.0),
    )


__all__ = ["AppError", "Hour", "Site", "SiteNotFound", "Sources", "Unavailable"]
