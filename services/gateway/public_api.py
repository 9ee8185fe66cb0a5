"""The public ``/api/v1`` routes that an internal service answers, declared one by one.

Each route is explicit (not a catch-all) so the OpenAPI document lists what integrators may
call, with its role, parameters and an example body. The gateway authenticates, checks the
role, then forwards query string and body unchanged; the internal service's status and JSON
body (including its error shape) come back as they are.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from services.common.db import SessionDep
from services.common.openapi import ErrorOut
from services.gateway.authn import Caller, client_addr, require
from services.gateway.config import GatewaySettings
from services.gateway.proxy import cached_read, forward
from services.gateway.service import audit

CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_RANGE = (
    ("start", "first instant, ISO 8601 with offset (e.g. 2026-01-01T00:00:00+01:00)"),
    ("end", "end instant, exclusive, ISO 8601 with offset"),
)
_SOURCE = ("source", "real | simulated | import (default: all)")


@dataclass(frozen=True)
class Route:
    """A public route and the internal one that answers it.

    ``upstream`` may name path parameters (``{code}``, ``{incident_id}``) and required query
    parameters (``{site}`` of ``/alerts/histogram``): both are filled from the request.
    Path parameters named ``*_id`` are positive integers, the others are codes.
    """

    method: str
    path: str
    upstream: str
    role: str
    summary: str
    tag: str
    service: str = "ingest"
    query: tuple[tuple[str, str], ...] = ()
    required: tuple[str, ...] = ()  # query parameters that must be given
    body: str | None = None  # "object" | "array" | "multipart"
    example: Any = None
    response_example: Any = None
    action: str | None = None  # audit action: every write is recorded
    target: str | None = None  # what the audit entry is about: "site", "incident"...
    status_code: int = 200
    cache: bool = False  # an idempotent cockpit read: micro-cached, with an ETag (readcache)


_SITE = {
    "code": "LYON1",
    "name": "Lyon depot",
    "timezone": "Europe/Paris",
    "country_code": "FR",
    "capacity_kw": 250.0,
    "latitude": 45.76,
    "longitude": 4.84,
}
_READING = {
    "site": "LYON1",
    "ts": "2026-01-15T10:00:00+01:00",
    "consumption_kwh": 42.5,
    "production_kwh": 12.0,
    "interval_s": 3600,
    "source": "real",
}
_TELEMETRY = {
    "equipment": "PUMP-01",
    "ts": "2026-01-15T10:00:00+01:00",
    "flow_m3h": 120.0,
    "pressure_bar": 4.2,
    "vibration_mm_s": 2.1,
    "temperature_c": 55.0,
}
_WEATHER = {
    "site": "LYON1",
    "ts": "2026-01-15T10:00:00+01:00",
    "temperature_c": 6.5,
    "irradiance_w_m2": 310.0,
    "wind_speed_m_s": 3.2,
    "is_forecast": False,
}
_EVENT = {
    "equipment": "PUMP-01",
    "ts": "2026-01-15T10:00:00+01:00",
    "kind": "maintenance",
    "description": "bearing replaced",
}
_LABEL = {
    "site": "LYON1",
    "kind": "spike",
    "start_ts": "2026-01-15T10:00:00+01:00",
    "end_ts": "2026-01-15T11:00:00+01:00",
    "magnitude": 3.0,
}


_BALANCE = {
    "site": "LYON1", "source": None, "timezone": "Europe/Paris",
    "start": "2026-01-01T00:00:00+01:00", "end": "2026-02-01T00:00:00+01:00",
    "consumed_kwh": 31250.5, "produced_kwh": 9120.25, "coverage_rate": 0.291846,
    "deficit_kwh": 22410.75, "deficit_hours": 612,
    "peak_deficit_hour": "2026-01-12T18:00:00+01:00", "peak_deficit_kwh": 88.5,
    "n_readings": 744, "first_ts": "2026-01-01T00:00:00+01:00",
    "last_ts": "2026-01-31T23:00:00+01:00",
}  # fmt: skip
_READINGS = {
    "site": "LYON1", "resolution": "hour", "source": None, "timezone": "Europe/Paris",
    "start": "2026-01-15T00:00:00+01:00", "end": "2026-01-15T02:00:00+01:00",
    "items": [
        {"ts": "2026-01-15T00:00:00+01:00", "consumption_kwh": 40.2, "production_kwh": 0.0,
         "balance_kwh": -40.2, "n_readings": 1},
        {"ts": "2026-01-15T01:00:00+01:00", "consumption_kwh": 38.9, "production_kwh": 0.0,
         "balance_kwh": -38.9, "n_readings": 1},
    ],
}  # fmt: skip
_INCIDENT = {
    "id": 42, "rule_id": 1, "site": "LYON1", "condition_key": "deficit", "kind": "deficit",
    "severity": "warning", "status": "acknowledged",
    "title": "LYON1: consumption above production for 3 h",
    "details": {"why": "consumption exceeded production by 61.2 kWh over 3 hours"},
    "first_seen_at": "2026-01-15T16:00:00Z", "last_seen_at": "2026-01-15T18:00:00Z",
    "peak_value": 24.8, "peak_at": "2026-01-15T17:00:00Z", "threshold": 0.0, "unit": "kWh",
    "assignee": None, "acknowledged_by": "alice", "acknowledged_at": "2026-01-15T18:05:00Z",
    "ack_comment": "load shedding requested", "resolved_by": None, "resolved_at": None,
    "resolve_comment": None, "feedback": None, "feedback_comment": None, "feedback_by": None,
    "feedback_at": None, "created_at": "2026-01-15T18:00:02Z",
    "updated_at": "2026-01-15T18:05:00Z",
}  # fmt: skip
_INCIDENT_DETAIL = {
    **_INCIDENT,
    "audit": [
        {"id": 7, "at": "2026-01-15T18:00:02Z", "actor": "system", "action": "opened",
         "entity": "incident", "entity_id": "42", "details": {}},
        {"id": 9, "at": "2026-01-15T18:05:00Z", "actor": "alice", "action": "acknowledged",
         "entity": "incident", "entity_id": "42",
         "details": {"comment": "load shedding requested"}},
    ],
    "notifications": [],
}  # fmt: skip
_RULE_IN = {
    "name": "night-deficit-lyon", "kind": "threshold", "severity": "critical",
    "sites": ["LYON1"], "params": {"metric": "deficit", "above_kwh": 50.0},
    "pending_s": 3600, "recovery_s": 3600, "enabled": True,
    "description": "Deficit above 50 kWh in an hour for an hour",
}  # fmt: skip
_RULE = {
    "id": 6, **_RULE_IN, "created_by": "admin", "created_at": "2026-01-15T09:00:00Z",
    "updated_at": "2026-01-15T09:00:00Z", "overrides": [],
}  # fmt: skip
_SILENCE_IN = {
    "site": "LYON1", "rule_id": None, "weekdays": [5, 6], "start_time": "00:00",
    "end_time": "23:59", "timezone": "Europe/Paris", "comment": "depot closed at weekends",
}  # fmt: skip
_HISTOGRAM = {
    "site": "LYON1", "timezone": "Europe/Paris", "start": "2026-01-01T00:00:00+01:00",
    "end": "2026-01-03T00:00:00+01:00", "source": None, "hours": 48, "deficit_hours": 30,
    "deficit_kwh": 812.4,
    "by_hour": [{"hour": 18, "deficit_hours": 2, "deficit_kwh": 61.0, "hours": 2}],
    "by_day": [{"date": "2026-01-01", "deficit_hours": 15, "deficit_kwh": 401.2, "hours": 24}],
}  # fmt: skip
_DELIVERY_PAGE = {
    "items": [
        {"id": 12, "channel": "webhook", "status": "retrying", "attempts": 3,
         "next_attempt_at": "2026-01-15T18:10:00Z",
         "last_error": "DeliveryError: webhook answered HTTP 502", "n_notifications": 2,
         "created_at": "2026-01-15T18:00:30Z", "delivered_at": None, "incident_ids": [41, 42]},
    ],
    "next_before_id": None,
}  # fmt: skip
_INCIDENT_ID = ("incident_id", "")
_PAGING = (
    ("limit", "page size, 1 to 1000 (default 100)"),
    ("before_id", "next_before_id of the previous page"),
)


def _incident_action(verb: str, summary: str, example: dict[str, Any]) -> Route:
    return Route(
        "POST", f"/incidents/{{incident_id}}/{verb}", f"/v1/incidents/{{incident_id}}/{verb}",
        "operator", summary, "incidents", service="alerts", body="object", example=example,
        response_example=_INCIDENT, action=f"incident.{verb}", target="incident",
    )  # fmt: skip


def _series_writes(kind: str, noun: str, example: dict[str, Any]) -> list[Route]:
    return [
        Route("POST", f"/{kind}", f"/v1/{kind}", "operator", f"Send one {noun}", "writes",
              body="object", example=example, action=f"{kind}.write", status_code=201),
        Route("POST", f"/{kind}/batch", f"/v1/{kind}/batch", "operator",
              f"Send {noun}s as a JSON array (good rows stored, bad rows quarantined)",
              "writes", body="array", example=[example], action=f"{kind}.batch"),
        Route("POST", f"/{kind}/import", f"/v1/{kind}/import", "operator",
              f"Import {noun}s from a .csv or .xlsx file (multipart field 'file')", "writes",
              body="multipart", action=f"{kind}.import"),
    ]  # fmt: skip


ROUTES: list[Route] = [
    Route("GET", "/sites", "/v1/sites", "viewer", "List sites", "sites",
          response_example=[{**_SITE, "created_at": "2026-01-01T00:00:00Z"}]),
    Route("POST", "/sites", "/v1/sites", "admin", "Create a site", "sites", body="object",
          example=_SITE, action="site.create", target="site", status_code=201),
    Route("GET", "/sites/{code}", "/v1/sites/{code}", "viewer", "One site", "sites"),
    Route("PATCH", "/sites/{code}", "/v1/sites/{code}", "admin", "Change a site", "sites",
          body="object", example={"name": "Lyon main depot", "capacity_kw": 300.0},
          action="site.update", target="site"),
    Route("GET", "/sites/{code}/readings", "/v1/sites/{code}/readings", "viewer",
          "A site's readings over a range, aggregated by resolution", "sites",
          query=(*_RANGE, ("resolution", "raw | hour | day | week | month"), _SOURCE),
          response_example=_READINGS, cache=True),
    Route("GET", "/sites/{code}/balance", "/v1/sites/{code}/balance", "viewer",
          "Consumed, produced, coverage rate and deficit of a site over a range", "sites",
          query=(*_RANGE, _SOURCE), response_example=_BALANCE, cache=True),
    Route("GET", "/sites/{code}/weather", "/v1/sites/{code}/weather", "viewer",
          "Weather at a site over a range", "sites", query=(*_RANGE, _SOURCE), cache=True),
    Route("GET", "/equipment", "/v1/equipment", "viewer", "List equipment", "equipment",
          query=(("site", "only this site's equipment"),)),
    Route("POST", "/equipment", "/v1/equipment", "admin", "Register equipment at a site",
          "equipment", body="object", action="equipment.create", target="equipment",
          example={"code": "PUMP-01", "site": "LYON1", "name": "Main pump", "kind": "pump"},
          status_code=201),
    Route("GET", "/equipment/{code}/telemetry", "/v1/equipment/{code}/telemetry", "viewer",
          "An equipment's telemetry over a range", "equipment",
          query=(*_RANGE, ("resolution", "raw | hour | day"), _SOURCE)),
    Route("GET", "/equipment/{code}/events", "/v1/equipment/{code}/events", "viewer",
          "An equipment's maintenance, failure and inspection events over a range", "equipment",
          query=_RANGE),
    *_series_writes("readings", "reading", _READING),
    *_series_writes("telemetry", "telemetry sample", _TELEMETRY),
    *_series_writes("weather", "weather observation", _WEATHER),
    Route("POST", "/equipment-events", "/v1/equipment-events", "operator",
          "Record a maintenance, failure or inspection event", "writes", body="object",
          example=_EVENT, action="equipment_events.write", status_code=201),
    Route("POST", "/equipment-events/batch", "/v1/equipment-events/batch", "operator",
          "Record equipment events as a JSON array", "writes", body="array", example=[_EVENT],
          action="equipment_events.batch"),
    Route("POST", "/anomaly-labels/batch", "/v1/anomaly-labels/batch", "operator",
          "Label known anomalies (JSON array)", "writes", body="array", example=[_LABEL],
          action="anomaly_labels.batch"),
    Route("GET", "/anomaly-labels", "/v1/anomaly-labels", "viewer", "Labelled anomalies",
          "writes", query=(("site", "site code"), *_RANGE, ("limit", "at most (default 1000)"))),
    Route("GET", "/quarantine", "/v1/quarantine", "viewer",
          "Rejected rows with their reason, newest first (keyset pagination)", "quarantine",
          query=(("kind", "reading | telemetry | weather | ..."),
                 ("limit", "page size, 1 to 1000 (default 100)"),
                 ("before_id", "next_before_id of the previous page"))),
]  # fmt: skip

ALERT_ROUTES: list[Route] = [
    Route("GET", "/incidents", "/v1/incidents", "viewer",
          "Incidents, newest first, filtered (keyset pagination)", "incidents", service="alerts",
          query=(("site", "site code"), ("severity", "critical | warning"),
                 ("status", "open | acknowledged | resolved"),
                 ("active", "true: open or acknowledged; false: resolved"),
                 ("kind", "deficit | threshold | forecast_deficit | anomaly | equipment_risk"),
                 ("start", "incidents still active at or after this instant"),
                 ("end", "incidents that began before this instant"), *_PAGING),
          response_example={"items": [_INCIDENT], "next_before_id": 41}),
    Route("GET", "/incidents/{incident_id}", "/v1/incidents/{incident_id}", "viewer",
          "One incident with its audit trail and notifications", "incidents", service="alerts",
          response_example=_INCIDENT_DETAIL),
    _incident_action("acknowledge", "Acknowledge an open incident (open → acknowledged)",
                     {"comment": "load shedding requested"}),
    _incident_action("resolve", "Resolve an incident (later data opens a new one)",
                     {"comment": "generator back online"}),
    _incident_action("feedback", "Say whether the incident was a true or a false positive",
                     {"true_positive": False, "comment": "planned maintenance, not a deficit"}),
    _incident_action("assign", "Set (or clear with null) who is in charge of an incident",
                     {"assignee": "bob"}),
    Route("GET", "/alerts/histogram", "/v1/sites/{site}/deficit-histogram", "viewer",
          "Hours in deficit at a site by local hour of day and by day", "alerts",
          service="alerts", query=(("site", "site code"), *_RANGE, _SOURCE),
          required=("site", "start", "end"), response_example=_HISTOGRAM, cache=True),
    Route("GET", "/alerts/audit", "/v1/audit", "viewer",
          "Changes to incidents, rules, silences and deliveries, newest first", "alerts",
          service="alerts",
          query=(("entity", "incident | rule | silence | delivery"),
                 ("entity_id", "the entity's id"), *_PAGING)),
    Route("GET", "/alert-rules", "/v1/rules", "viewer", "Alert rules with their site overrides",
          "alert rules", service="alerts", response_example=[_RULE]),
    Route("GET", "/alert-rules/{rule_id}", "/v1/rules/{rule_id}", "viewer", "One alert rule",
          "alert rules", service="alerts", response_example=_RULE),
    Route("POST", "/alert-rules", "/v1/rules", "admin",
          "Add an alert rule (every site when sites is null)", "alert rules", service="alerts",
          body="object", example=_RULE_IN, response_example=_RULE, action="alert_rule.create",
          target="alert_rule", status_code=201),
    Route("PATCH", "/alert-rules/{rule_id}", "/v1/rules/{rule_id}", "admin",
          "Change an alert rule (params are replaced whole)", "alert rules", service="alerts",
          body="object", example={"severity": "warning", "enabled": False},
          response_example=_RULE, action="alert_rule.update", target="alert_rule"),
    Route("DELETE", "/alert-rules/{rule_id}", "/v1/rules/{rule_id}", "admin",
          "Delete an alert rule that never raised an incident (else disable it)", "alert rules",
          service="alerts", action="alert_rule.delete", target="alert_rule", status_code=204),
    Route("PUT", "/alert-rules/{rule_id}/overrides/{site}", "/v1/rules/{rule_id}/overrides/{site}",
          "admin", "Set what one site changes in a rule", "alert rules", service="alerts",
          body="object", example={"params": {"above_kwh": 80.0}, "severity": "warning"},
          action="alert_rule.override_set", target="alert_rule"),
    Route("DELETE", "/alert-rules/{rule_id}/overrides/{site}",
          "/v1/rules/{rule_id}/overrides/{site}", "admin", "Remove a site's override of a rule",
          "alert rules", service="alerts", action="alert_rule.override_delete",
          target="alert_rule", status_code=204),
    Route("GET", "/sites/{code}/alert-rules", "/v1/sites/{code}/rules", "viewer",
          "The alert rules as they apply to one site, with their last evaluation", "alert rules",
          service="alerts"),
    Route("GET", "/silences", "/v1/silences", "viewer", "Notification silences, newest first",
          "silences", service="alerts",
          query=(("include_expired", "true: also ended ones"), ("site", "site code"))),
    Route("POST", "/silences", "/v1/silences", "operator",
          "Silence notifications: one-off (starts_at → ends_at) or recurring (weekdays, times)",
          "silences", service="alerts", body="object", example=_SILENCE_IN,
          action="silence.create", target="silence", status_code=201),
    Route("DELETE", "/silences/{silence_id}", "/v1/silences/{silence_id}", "operator",
          "End a silence now (kept for the record)", "silences", service="alerts",
          action="silence.expire", target="silence", status_code=204),
    Route("GET", "/alert-deliveries", "/v1/deliveries", "viewer",
          "Alert notification deliveries and their state, newest first (keyset pagination)",
          "alert deliveries", service="alerts",
          query=(("status", "pending | retrying | delivered | failed"),
                 ("channel", "log | webhook | email"), ("incident_id", "only this incident's"),
                 *_PAGING),
          response_example=_DELIVERY_PAGE),
    Route("POST", "/alert-deliveries/{delivery_id}/retry", "/v1/deliveries/{delivery_id}/retry",
          "operator", "Send a failed alert delivery again now", "alert deliveries",
          service="alerts", action="alert_delivery.retry", target="alert_delivery"),
]  # fmt: skip

_MODEL_RUN = {
    "id": 118, "site": "LYON1", "kind": "load",
    "algorithm": "hist_gradient_boosting+split_conformal", "status": "succeeded",
    "promoted": True, "promotion_reason": "model RMSE 17.2 beats the best seasonal naive (24.12)",
    "served_method": "hist_gradient_boosting+split_conformal", "served": "model",
    "metrics": {"mape": 8.1, "rmse": 17.2, "mase": 0.41, "rmse_naive_1d": 65.96,
                "rmse_naive_7d": 24.12, "skill_vs_naive_1d": 0.74, "skill_vs_naive_7d": 0.29,
                "skill_vs_best_naive": 0.29, "interval_coverage": 0.82, "n_hours": 1344},
    "duration_s": 6.4, "train_start": "2024-11-23T00:00:00Z", "train_end": "2026-11-23T14:00:00Z",
    "message": "", "error": None, "job_id": 31, "created_at": "2026-11-23T14:05:00Z",
    "finished_at": "2026-11-23T14:05:06Z",
}  # fmt: skip
_FORECAST = {
    "site": "LYON1", "timezone": "Europe/Paris", "target_date": "2026-11-24",
    "forecast_id": 402, "run_id": 118, "created_at": "2026-11-23T14:05:06Z",
    "issued_at": "2026-11-23T14:00:00+01:00", "served": "model",
    "method": "hist_gradient_boosting+split_conformal", "message": "",
    "model_run": _MODEL_RUN, "production": None,
    "points": [
        {"ts": "2026-11-24T00:00:00+01:00", "consumption_kwh": 41.2, "consumption_lo": 37.9,
         "consumption_hi": 44.8, "lower_kwh": 37.9, "upper_kwh": 44.8, "baseline_kwh": 39.5,
         "model_kwh": 41.2},
    ],
}  # fmt: skip
_JOB = {
    "id": 31, "kind": "retrain", "site": "LYON1", "target_date": None, "status": "running",
    "progress": 0.4, "message": "LYON1: load: backtest", "error": None, "results": {},
    "requested_by": "alice", "worker": "forecast-1:12:140", "created_at": "2026-11-23T14:05:00Z",
    "started_at": "2026-11-23T14:05:00Z", "heartbeat_at": "2026-11-23T14:05:03Z",
    "finished_at": None,
}  # fmt: skip
_RISK = {
    "items": [
        {"equipment": "LYON1-PMP1", "site": "LYON1", "name": "Main pump", "kind": "pump",
         "probability": 0.83, "status": "ok", "horizon_days": 7,
         "computed_at": "2026-11-23T02:00:00Z", "model_run_id": 120, "rule_alert": False,
         "message": "",
         "factors": [{"name": "vibration rising +2.1 mm/s over 72 h", "weight": 0.21,
                      "value": 2.1, "key": "vibration_trend"}]},
    ],
    "unscored": [],
}  # fmt: skip

# The forecast service's routes (names as the web UI calls them: /forecast/jobs for jobs).
FORECAST_ROUTES: list[Route] = [
    Route("GET", "/sites/{code}/forecast", "/v1/sites/{code}/forecast/latest", "viewer",
          "A site's latest day-ahead forecast: hourly points with 80 % interval and the "
          "seasonal-naive baseline, the model run, and whether the baseline is served",
          "forecasts", service="forecast", response_example=_FORECAST, cache=True),
    Route("GET", "/sites/{code}/forecast/vs-actual", "/v1/sites/{code}/forecast/vs-actual",
          "viewer", "Forecast as issued the day before versus measured, hour by hour", "forecasts",
          service="forecast", query=(*_RANGE, ("kind", "load | production (default load)")),
          required=("start", "end"), cache=True),
    Route("GET", "/model-runs", "/v1/model-runs", "viewer",
          "Model runs with their backtest metrics, newest first (keyset pagination)",
          "forecasts", service="forecast",
          query=(("site", "site code"), ("kind", "load | production | maintenance"),
                 ("status", "running | succeeded | failed"), *_PAGING),
          response_example={"items": [_MODEL_RUN], "next_before_id": None}),
    Route("GET", "/model-runs/{run_id}", "/v1/model-runs/{run_id}", "viewer",
          "One model run: parameters, metrics, feature importances", "forecasts",
          service="forecast"),
    Route("POST", "/forecast/jobs", "/v1/jobs/retrain", "operator",
          "Regenerate: retrain one site (every site and maintenance when site is null); 202 "
          "a new job, 200 the job already active for the site", "forecasts", service="forecast",
          body="object", example={"site": "LYON1"}, response_example=_JOB,
          action="forecast.retrain", target="forecast_job", status_code=202),
    Route("GET", "/forecast/jobs", "/v1/jobs", "viewer",
          "Retraining jobs, newest first (keyset pagination)", "forecasts", service="forecast",
          query=(("site", "site code"), ("status", "queued | running | succeeded | failed"),
                 *_PAGING)),
    Route("GET", "/forecast/jobs/{job_id}", "/v1/jobs/{job_id}", "viewer",
          "One retraining job: status, progress (0 to 1), message, results", "forecasts",
          service="forecast", response_example=_JOB),
    Route("POST", "/maintenance/jobs", "/v1/jobs/maintenance", "operator",
          "Score every equipment's failure risk now (no forecast retraining); 202 a new job, "
          "200 the one already active", "maintenance", service="forecast",
          response_example={**_JOB, "kind": "maintenance", "site": None},
          action="maintenance.rescore", target="forecast_job", status_code=202),
    Route("GET", "/maintenance/risk", "/v1/maintenance/risk", "viewer",
          "Equipment ranked by failure probability within 7 days, with the top factors",
          "maintenance", service="forecast",
          query=(("site", "site code (default: every site)"),), response_example=_RISK),
]  # fmt: skip

PUBLIC_ROUTES: list[Route] = [*ROUTES, *ALERT_ROUTES, *FORECAST_ROUTES]
PUBLIC_PREFIX = "/api/v1"

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "missing, invalid, expired or revoked credentials"},
    403: {"model": ErrorOut, "description": "the caller's role or token scope does not allow it"},
    422: {"model": ErrorOut, "description": "invalid input (the internal service says which)"},
    503: {
        "model": ErrorOut,
        "description": "the internal service is down or slow; see Retry-After",
    },
}


def _request_body(route: Route) -> dict[str, Any]:
    if route.body == "multipart":
        schema = {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {
                    "type": "string",
                    "format": "binary",
                    "description": ".csv or .xlsx, header row first",
                }
            },
        }
        return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}
    schema = (
        {"type": "array", "items": {"type": "object"}}
        if route.body == "array"
        else {"type": "object"}
    )
    return {
        "required": True,
        "content": {"application/json": {"schema": schema, "example": route.example}},
    }


def _endpoint(route: Route) -> Callable[..., Awaitable[Response]]:
    """An endpoint with a real signature (path and query params, role) for the OpenAPI doc."""
    path_params = re.findall(r"{(\w+)}", route.path)
    upstream_params = re.findall(r"{(\w+)}", route.upstream)

    async def endpoint(request: Request, session: Any, caller: Caller, **params: Any) -> Response:
        settings: GatewaySettings = request.app.state.settings
        upstream_path = route.upstream.format(
            **{p: quote(str(params[p]), safe="") for p in upstream_params}
        )
        # Finish the authentication lookup's transaction now: no pooled connection should sit
        # idle in a transaction while the internal service works (an import can take minutes).
        if session.in_transaction():
            await run_in_threadpool(session.commit)
        if route.cache:
            site = params.get("code") or params.get("site")
            return await cached_read(request, caller, route.service, upstream_path, site)
        forwarded = await forward(
            request,
            caller,
            service=route.service,
            path=upstream_path,
            timeout_s=settings.import_timeout_s if route.body == "multipart" else None,
        )
        if route.method != "GET":
            # Whatever it did, a write drops the cached reads of the site it names (all of
            # them when it names none): this process never serves data from before it.
            written = params.get("code") if route.path.startswith("/sites/{code}") else None
            request.app.state.read_cache.invalidate(written)
        if route.action is not None:
            summary = forwarded.summary()
            key = params[path_params[0]] if path_params else None
            key = key or summary.get("code") or summary.get("id")
            target = f"{route.target}:{key}" if route.target and key else None
            if len(path_params) > 1:  # e.g. a rule's override for one site
                target = f"{target}/{path_params[1]}:{params[path_params[1]]}"
            audit(
                session,
                actor=caller.actor,
                action=route.action,
                target=target,
                detail={"status": forwarded.status_code, **summary},
                client_addr=client_addr(request),
            )
        return forwarded.response

    kw = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("request", kw, annotation=Request),
        inspect.Parameter("session", kw, annotation=SessionDep),
        inspect.Parameter("caller", kw, annotation=Annotated[Caller, Depends(require(route.role))]),
    ]
    code_param = Annotated[str, Path(max_length=64, pattern=CODE_PATTERN)]
    id_param = Annotated[int, Path(ge=1, le=2**63 - 1)]
    for name in path_params:
        annotation = id_param if name.endswith("_id") else code_param
        parameters.append(inspect.Parameter(name, kw, annotation=annotation))
    for name, description in route.query:
        if name in route.required:
            pattern = CODE_PATTERN if name in upstream_params else None
            query = Query(description=description, max_length=64, pattern=pattern)
            parameters.append(inspect.Parameter(name, kw, annotation=Annotated[str, query]))
        else:
            query_param = Annotated[str | None, Query(description=description)]
            parameters.append(inspect.Parameter(name, kw, annotation=query_param, default=None))
    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    endpoint.__name__ = re.sub(r"\W+", "_", f"{route.method}_{route.path}").strip("_").lower()
    endpoint.__doc__ = f"{route.summary}. Role: {route.role}."
    return endpoint


def _upstream_errors(route: Route) -> dict[int | str, dict[str, Any]]:
    """What the internal service may answer besides success, passed on as it is."""
    errors: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorOut, "description": "the site (or other entity) named does not exist"}
    }
    if route.method != "GET":
        errors[409] = {"model": ErrorOut, "description": "conflicts with existing data"}
    if route.body is not None:
        errors[400] = {"model": ErrorOut, "description": "the body is not JSON / not a form"}
        errors[413] = {"model": ErrorOut, "description": "over the row or size limit"}
        errors[415] = {"model": ErrorOut, "description": "wrong Content-Type or file type"}
    if route.status_code == 202:
        errors[200] = {"description": "a job of that kind is already active: that job"}
    return errors


def _responses(route: Route) -> dict[int | str, dict[str, Any]]:
    responses = _upstream_errors(route)
    if route.status_code == 204:
        return responses | {204: {"description": "done; no body"}}
    if route.response_example is None:
        return responses
    content = {"application/json": {"example": route.response_example}}
    ok = {"description": "the internal service's answer", "content": content}
    return responses | {route.status_code: ok}


def build_router(routes: list[Route] = PUBLIC_ROUTES) -> APIRouter:
    """The router of every proxied public route."""
    router = APIRouter(prefix=PUBLIC_PREFIX, responses=_ERRORS)
    for route in routes:
        router.add_api_route(
            route.path,
            _endpoint(route),
            methods=[route.method],
            summary=route.summary,
            tags=[route.tag],
            status_code=route.status_code,
            response_class=Response,
            responses=_responses(route),
            openapi_extra={"requestBody": _request_body(route)} if route.body else None,
        )
    return router
