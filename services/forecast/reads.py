"""What the forecast API reads: model runs, issued forecasts (latest, and as issued versus
actual), maintenance predictions; shaped as the API and the alerts contract want them."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.common.errors import NotFound
from services.forecast.data import IngestReader
from services.forecast.ml.features import target_hours
from services.forecast.models import Forecast, ForecastPoint, MaintenancePrediction, ModelRun
from services.forecast.service import finite


class ForecastNotFound(NotFound):
    """No forecast has been issued for the site yet."""


class ModelRunNotFound(NotFound):
    """No model run with this id."""


class PredictionsNotFound(NotFound):
    """No maintenance run has scored the equipment yet."""


def _local(ts: datetime, tz: ZoneInfo) -> str:
    return ts.astimezone(tz).isoformat()


def run_out(run: ModelRun, *, full: bool = True) -> dict[str, Any]:
    """A model run as the API shows it."""
    out: dict[str, Any] = {
        "id": run.id,
        "site": run.site,
        "kind": run.kind,
        "algorithm": run.algorithm,
        "status": run.status,
        "promoted": run.promoted,
        "promotion_reason": run.promotion_reason,
        "served_method": run.served_method,
        "served": (None if run.served_method is None else "model" if run.promoted else "baseline"),
        "metrics": run.metrics,
        "duration_s": run.duration_s,
        "train_start": run.train_start,
        "train_end": run.train_end,
        "message": run.message,
        "error": run.error,
        "job_id": run.job_id,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
    }
    if full:
        out["parameters"] = run.parameters
        out["feature_importances"] = run.feature_importances
    return out


def get_run(session: Session, run_id: int) -> ModelRun:
    """One model run, or ModelRunNotFound."""
    run = session.get(ModelRun, run_id)
    if run is None:
        raise ModelRunNotFound(f"no model run with id {run_id}")
    return run


def list_runs(
    session: Session,
    *,
    site: str | None,
    kind: str | None,
    status: str | None,
    limit: int,
    before_id: int | None,
) -> tuple[list[ModelRun], int | None]:
    """Model runs newest first, one keyset page, and the ``before_id`` of the next page."""
    query = select(ModelRun).order_by(ModelRun.id.desc()).limit(limit + 1)
    if site is not None:
        query = query.where(ModelRun.site == site)
    if kind is not None:
        query = query.where(ModelRun.kind == kind)
    if status is not None:
        query = query.where(ModelRun.status == status)
    if before_id is not None:
        query = query.where(ModelRun.id < before_id)
    runs = list(session.scalars(query))
    more = len(runs) > limit
    runs = runs[:limit]
    return runs, runs[-1].id if more else None


def _latest_issue(session: Session, site: str, kind: str) -> Forecast | None:
    return session.scalars(
        select(Forecast)
        .where(Forecast.site == site, Forecast.kind == kind)
        .order_by(Forecast.id.desc())
        .limit(1)
    ).first()


def _points_of(session: Session, forecast_id: int) -> list[ForecastPoint]:
    return list(
        session.scalars(
            select(ForecastPoint)
            .where(ForecastPoint.forecast_id == forecast_id)
            .order_by(ForecastPoint.ts)
        )
    )


def latest_forecast(session: Session, site: str) -> dict[str, Any]:
    """The site's latest issued load forecast (and production for the same day), in the shape
    of docs/alerts.md's contract plus what the UI shows (baseline, run and its metrics)."""
    load = _latest_issue(session, site, "load")
    if load is None:
        raise ForecastNotFound(
            f"no forecast issued for site {site!r} yet; start one with POST /v1/jobs/retrain"
        )
    tz = ZoneInfo(load.timezone)
    production = session.scalars(
        select(Forecast)
        .where(
            Forecast.site == site,
            Forecast.kind == "production",
            Forecast.target_date == load.target_date,
        )
        .order_by(Forecast.id.desc())
        .limit(1)
    ).first()
    prod_points = {p.ts: p for p in _points_of(session, production.id)} if production else {}
    points = []
    for p in _points_of(session, load.id):
        point: dict[str, Any] = {
            "ts": _local(p.ts, tz),
            "consumption_kwh": p.yhat,
            "consumption_lo": p.lower,
            "consumption_hi": p.upper,
            "lower_kwh": p.lower,
            "upper_kwh": p.upper,
            "baseline_kwh": p.baseline_yhat,
            "model_kwh": p.model_yhat,
        }
        pp = prod_points.get(p.ts)
        if pp is not None:
            point |= {
                "production_kwh": pp.yhat,
                "production_lo": pp.lower,
                "production_hi": pp.upper,
            }
        points.append(point)
    run = get_run(session, load.model_run_id)
    return {
        "site": site,
        "timezone": load.timezone,
        "target_date": load.target_date.isoformat(),
        "forecast_id": load.id,
        "run_id": load.model_run_id,
        "created_at": load.created_at,
        "issued_at": load.issued_at,
        "served": load.served,
        "method": load.method,
        "message": load.message,
        "model_run": run_out(run, full=False),
        "production": (
            None
            if production is None
            else {
                "forecast_id": production.id,
                "run_id": production.model_run_id,
                "served": production.served,
                "method": production.method,
                "message": production.message,
            }
        ),
        "points": points,
    }


def forecasts_as_issued(
    session: Session, site: str, kind: str, start: datetime, end: datetime
) -> list[tuple[Forecast, ForecastPoint]]:
    """For each hour of [start, end): the point of the last forecast issued before its local
    day began (what operators saw the day before), with its issue."""
    # Candidate issues: every forecast of the days the range touches (two days of margin for
    # time zones), reduced per target day to the latest issued before that day's start.
    issues = list(
        session.scalars(
            select(Forecast)
            .where(
                Forecast.site == site,
                Forecast.kind == kind,
                Forecast.target_date >= (start - timedelta(days=2)).date(),
                Forecast.target_date <= (end + timedelta(days=2)).date(),
            )
            .order_by(Forecast.target_date, Forecast.issued_at, Forecast.id)
        )
    )
    chosen: dict[date, Forecast] = {}
    for fc in issues:
        day_start = target_hours(fc.target_date, fc.timezone)[0]
        if pd.Timestamp(fc.issued_at) <= day_start:
            chosen[fc.target_date] = fc  # ordered: the last one kept is the latest issued
    if not chosen:
        return []
    by_id = {fc.id: fc for fc in chosen.values()}
    points = session.scalars(
        select(ForecastPoint)
        .where(
            ForecastPoint.forecast_id.in_(list(by_id)),
            ForecastPoint.ts >= start,
            ForecastPoint.ts < end,
        )
        .order_by(ForecastPoint.ts)
    )
    return [(by_id[p.forecast_id], p) for p in points]


def vs_actual(
    session: Session,
    reader: IngestReader,
    site: str,
    start: datetime,
    end: datetime,
    kind: str,
) -> dict[str, Any]:
    """Forecast as issued against what was measured, hour by hour, with the errors of both
    the forecast and the baseline over the hours that have both."""
    info = reader.site(site)
    tz = ZoneInfo(info.timezone)
    issued = forecasts_as_issued(session, site, kind, start, end)
    actual = reader.hourly(site, start, end, "")
    column = "consumption_kwh" if kind == "load" else "production_kwh"
    measured = actual[column] if len(actual) else pd.Series(dtype="float64")
    items = []
    pairs: list[tuple[float, float, float | None, float | None, float | None]] = []
    for fc, p in issued:
        value = measured.get(pd.Timestamp(p.ts))
        actual_kwh = finite(value)
        items.append(
            {
                "ts": _local(p.ts, tz),
                "actual_kwh": actual_kwh,
                "forecast_kwh": p.yhat,
                "lower_kwh": p.lower,
                "upper_kwh": p.upper,
                "baseline_kwh": p.baseline_yhat,
                "model_kwh": p.model_yhat,
                "served": fc.served,
                "issued_at": fc.issued_at,
                "model_run_id": fc.model_run_id,
            }
        )
        if actual_kwh is not None and p.yhat is not None:
            pairs.append((actual_kwh, p.yhat, p.baseline_yhat, p.lower, p.upper))
    return {
        "site": site,
        "kind": kind,
        "timezone": info.timezone,
        "start": start.astimezone(tz).isoformat(),
        "end": end.astimezone(tz).isoformat(),
        "summary": _errors(pairs),
        "items": items,
    }


def _errors(
    pairs: list[tuple[float, float, float | None, float | None, float | None]],
) -> dict[str, Any]:
    if not pairs:
        return {"hours": 0}
    y = np.array([p[0] for p in pairs])
    f = np.array([p[1] for p in pairs])
    b = np.array([np.nan if p[2] is None else p[2] for p in pairs])
    lo = np.array([np.nan if p[3] is None else p[3] for p in pairs])
    hi = np.array([np.nan if p[4] is None else p[4] for p in pairs])
    nonzero = np.abs(y) >= 0.01 * max(float(np.mean(np.abs(y))), 1e-9)

    def mape(pred: np.ndarray) -> float | None:
        ok = nonzero & np.isfinite(pred)
        if not ok.any():
            return None
        return finite(100 * np.mean(np.abs(pred[ok] - y[ok]) / np.abs(y[ok])))

    def rmse(pred: np.ndarray) -> float | None:
        ok = np.isfinite(pred)
        return finite(np.sqrt(np.mean((pred[ok] - y[ok]) ** 2))) if ok.any() else None

    has_interval = np.isfinite(lo) & np.isfinite(hi)
    inside = (y >= lo) & (y <= hi)
    return {
        "hours": len(pairs),
        "mape": mape(f),
        "rmse": rmse(f),
        "baseline_mape": mape(b),
        "baseline_rmse": rmse(b),
        "interval_coverage": (finite(inside[has_interval].mean()) if has_interval.any() else None),
    }


def latest_predictions(session: Session, site: str | None) -> list[MaintenancePrediction]:
    """The predictions of the latest maintenance run that wrote any, optionally one site's
    (PredictionsNotFound before the first such run)."""
    latest = session.scalar(select(func.max(MaintenancePrediction.model_run_id)))
    if latest is None:  # like a forecast before its first issue: nothing yet, not "no risk"
        raise PredictionsNotFound(
            "no maintenance predictions yet: they come with the nightly run, an every-site "
            "retraining, or POST /v1/jobs/maintenance"
        )
    query = select(MaintenancePrediction).where(MaintenancePrediction.model_run_id == latest)
    if site is not None:
        query = query.where(MaintenancePrediction.site == site)
    rows = list(session.scalars(query))
    # Highest probability first; unscored ones (no probability) last.
    rows.sort(key=lambda r: (r.probability is None, -(r.probability or 0.0), r.equipment))
    return rows


def risk_out(rows: list[MaintenancePrediction]) -> dict[str, Any]:
    """The risk ranking in docs/alerts.md's shape: scored equipment in ``items`` (a
    probability always), the rest in ``unscored`` with the reason."""
    items, unscored = [], []
    for r in rows:
        base = {
            "equipment": r.equipment,
            "site": r.site,
            "name": r.name,
            "kind": r.kind,
            "status": r.status,
            "horizon_days": r.horizon_days,
            "computed_at": r.as_of,
            "model_run_id": r.model_run_id,
            "rule_alert": r.rule_alert,
            "message": r.message,
        }
        if r.probability is None:
            unscored.append(base)
            continue
        factors = [
            {
                "name": f.get("factor"),
                "weight": f.get("contribution"),
                "value": f.get("value"),
                "key": f.get("feature"),
            }
            for f in r.top_factors
        ]
        items.append({**base, "probability": r.probability, "factors": factors})
    return {"items": items, "unscored": unscored}
