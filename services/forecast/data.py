"""What the forecast service learns from, read from ingest over HTTP (never from its schema):
sites, hourly readings, weather, equipment, telemetry and equipment events.

Everything comes back as pandas objects indexed or stamped in UTC, shaped as the ML module
takes them (``services.forecast.ml``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pandas as pd

from services.common.errors import BadInput, NotFound, ServiceUnavailable
from services.common.http import ServiceAuth
from services.forecast.config import ForecastSettings

SENSORS = ("flow_m3h", "pressure_bar", "vibration_mm_s", "temperature_c")


class SiteNotFound(NotFound):
    """The site code is unknown to ingest."""


class IngestUnavailable(ServiceUnavailable):
    """Ingest did not answer, or answered with an error this service cannot act on."""


@dataclass(frozen=True)
class SiteInfo:
    """What training needs to know about a site."""

    code: str
    timezone: str
    country_code: str | None
    capacity_kw: float


def _iso(at: datetime | pd.Timestamp) -> str:
    return pd.Timestamp(at).tz_convert(UTC).isoformat().replace("+00:00", "Z")


def _detail(r: httpx.Response) -> tuple[str, str]:
    try:
        body = r.json()
        return str(body.get("error", "")), str(body.get("detail", r.text[:200]))
    except ValueError:
        return "", r.text[:200]


class IngestReader:
    """Blocking client of ingest's read API for training and scoring (used in worker threads)."""

    def __init__(self, settings: ForecastSettings, http: httpx.Client | None = None) -> None:
        timeout = httpx.Timeout(
            settings.forecast_ingest_timeout_s, connect=min(2.0, settings.http_timeout_s)
        )
        self.http = http or httpx.Client(
            base_url=settings.ingest_url, timeout=timeout, auth=ServiceAuth(settings, "forecast")
        )

    def close(self) -> None:
        self.http.close()

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        try:
            r = self.http.get(path, params=params)
        except httpx.TimeoutException:
            raise IngestUnavailable("the ingest service did not answer in time") from None
        except httpx.TransportError as exc:
            raise IngestUnavailable(f"the ingest service is not reachable ({exc!r})") from None
        if r.status_code == 404:
            error, detail = _detail(r)
            raise (SiteNotFound if error == "SiteNotFound" else NotFound)(detail)
        if r.status_code == 422:
            raise BadInput(f"ingest refused the read of {path}: {_detail(r)[1]}")
        if r.status_code >= 400:
            raise IngestUnavailable(f"ingest answered {r.status_code} to {path}: {_detail(r)[1]}")
        return r.json()

    # --- sites and energy --------------------------------------------------------------------

    def sites(self) -> list[SiteInfo]:
        """Every site ingest knows, by code."""
        return [_site(s) for s in self._get("/v1/sites")]

    def site(self, code: str) -> SiteInfo:
        """One site, or SiteNotFound."""
        return _site(self._get(f"/v1/sites/{quote(code, safe='')}"))

    def hourly(
        self, code: str, start: datetime | pd.Timestamp, end: datetime | pd.Timestamp, source: str
    ) -> pd.DataFrame:
        """Hourly consumption and production (kWh) of [start, end), UTC index, gaps absent."""
        params = {"start": _iso(start), "end": _iso(end), "resolution": "hour"}
        if source:
            params["source"] = source
        body = self._get(f"/v1/sites/{quote(code, safe='')}/readings", params)
        items = body["items"]
        if not items:
            return pd.DataFrame(
                {"consumption_kwh": [], "production_kwh": [], "n_readings": []},
                index=pd.DatetimeIndex([], tz="UTC"),
                dtype="float64",
            )
        frame = pd.DataFrame(items)
        frame.index = pd.DatetimeIndex(pd.to_datetime(frame["ts"], utc=True))
        frame = frame[["consumption_kwh", "production_kwh", "n_readings"]].astype("float64")
        # The newest hour may still be filling (sub-hourly meters): drop trailing hours that
        # hold fewer readings than the site's usual count.
        usual = float(frame["n_readings"].median())
        while len(frame) and frame["n_readings"].iloc[-1] < usual:
            frame = frame.iloc[:-1]
        return frame.sort_index()

    def weather(
        self, code: str, start: datetime | pd.Timestamp, end: datetime | pd.Timestamp
    ) -> pd.DataFrame:
        """Hourly weather of [start, end): temperature_c, irradiance_w_m2, is_forecast (UTC)."""
        body = self._get(
            f"/v1/sites/{quote(code, safe='')}/weather",
            {"start": _iso(start), "end": _iso(end)},
        )
        items = body["items"]
        columns = ["temperature_c", "irradiance_w_m2", "is_forecast"]
        if not items:
            return pd.DataFrame(columns=columns, index=pd.DatetimeIndex([], tz="UTC"))
        frame = pd.DataFrame(items)
        frame.index = pd.DatetimeIndex(pd.to_datetime(frame["ts"], utc=True))
        out = frame[["temperature_c", "irradiance_w_m2"]].astype("float64")
        out["is_forecast"] = frame["is_forecast"].astype(bool)
        return out[~out.index.duplicated(keep="last")].sort_index()

    # --- equipment -------------------------------------------------------------------------

    def equipment(self) -> pd.DataFrame:
        """Every piece of equipment: equipment_code, site, kind, name."""
        items = self._get("/v1/equipment")
        frame = pd.DataFrame(items, columns=["code", "site", "kind", "name"])
        return frame.rename(columns={"code": "equipment_code"})

    def telemetry(
        self, code: str, start: datetime | pd.Timestamp, end: datetime | pd.Timestamp
    ) -> pd.DataFrame:
        """Raw telemetry samples of one piece of equipment in [start, end)."""
        body = self._get(
            f"/v1/equipment/{quote(code, safe='')}/telemetry",
            {"start": _iso(start), "end": _iso(end), "resolution": "raw"},
        )
        frame = pd.DataFrame(body["items"], columns=["ts", *SENSORS])
        frame.insert(0, "equipment_code", code)
        return frame

    def events(
        self, code: str, start: datetime | pd.Timestamp, end: datetime | pd.Timestamp
    ) -> pd.DataFrame:
        """Maintenance / failure / inspection events of one piece of equipment in [start, end):
        equipment_code, ts, kind (an unknown code is NotFound)."""
        body = self._get(
            f"/v1/equipment/{quote(code, safe='')}/events",
            {"start": _iso(start), "end": _iso(end)},
        )
        frame = pd.DataFrame(body["items"], columns=["ts", "kind"])
        frame.insert(0, "equipment_code", code)
        return frame


def _site(body: dict[str, Any]) -> SiteInfo:
    return SiteInfo(
        code=str(body["code"]),
        timezone=str(body["timezone"]),
        country_code=body.get("country_code"),
        capacity_kw=float(body.get("capacity_kw") or 0.0),
    )
