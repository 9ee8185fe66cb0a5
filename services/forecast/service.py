"""The forecast service's work: training runs per site, issued forecasts, maintenance scoring
(the API's reads are in ``reads``). The ML itself is ``services.forecast.ml`` (pure functions);
this module fetches the data from ingest, calls it, and stores what it returns.

Each training run is written in short transactions (started, then finished) so a run in
progress is visible, and a crash leaves a "failed" run with its reason rather than nothing.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import joblib
import numpy as np
import pandas as pd
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from services.common.errors import BadInput, NotFound
from services.forecast import ml
from services.forecast.config import ForecastSettings
from services.forecast.data import IngestReader, SiteInfo
from services.forecast.metrics import BACKTEST_MAPE, TRAINING_DURATION
from services.forecast.ml import maintenance as mx
from services.forecast.ml.features import target_hours
from services.forecast.ml.pipeline import has_target_weather, history_days
from services.forecast.models import (
    Forecast,
    ForecastPoint,
    MaintenancePrediction,
    ModelArtifact,
    ModelRun,
)

log = logging.getLogger("spe.forecast")

Sessions = sessionmaker[Session]
Progress = Callable[[float, str], None]
HOUR = pd.Timedelta(hours=1)
# A model is trained on at least 3 weeks and judged on at least 1 week of rolling-origin
# backtest before it may be served; the ML's own floor (14 days) leaves too few rows for its
# calibration split on the first backtest block.
TRAIN_MIN_DAYS = 21
BACKTEST_MIN_DAYS = 7
MIN_MODEL_DAYS = TRAIN_MIN_DAYS + BACKTEST_MIN_DAYS + 1
# Hours of history the features look back beyond the training window (lag 14 d + margin).
LOOKBACK_DAYS = 16


def _noop(_: float, __: str) -> None:
    return None


def utcnow() -> datetime:
    """The current instant, UTC."""
    return datetime.now(UTC)


def json_safe(value: Any) -> Any:
    """The value with NaN / infinities as None and numpy scalars as Python ones (for JSONB)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def finite(x: Any) -> float | None:
    """The value as a float, or None when missing, NaN or infinite."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def dump_model(model: object) -> bytes:
    """A fitted model as joblib bytes."""
    buf = io.BytesIO()
    joblib.dump(model, buf, compress=3)
    return buf.getvalue()


def load_model(content: bytes) -> Any:
    """A model back from joblib bytes (written by this service only: trusted)."""
    return joblib.load(io.BytesIO(content))


# --- issue plan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuePlan:
    """Which local day is forecast, and the information cut-off (the issue time)."""

    target_date: date
    issue_hour: int
    issued_at: pd.Timestamp


def plan_issue(site: SiteInfo, target_date: date | None, now: datetime) -> IssuePlan:
    """Tomorrow (site-local) by default, issued now; a past or today's date is issued as the
    ML's backtest would have (the day before at its default issue hour), never with data
    measured after that."""
    tz = ZoneInfo(site.timezone)
    local_now = now.astimezone(tz)
    tomorrow = local_now.date() + timedelta(days=1)
    target = target_date or tomorrow
    if target > tomorrow:
        raise BadInput(
            f"target_date {target} is after tomorrow ({tomorrow}, {site.code}'s local day): "
            "a day-ahead forecast reaches one day ahead"
        )
    # Issued now for tomorrow: the lags the model may use are those measured by this hour.
    hour = local_now.hour if target == tomorrow else ml.DEFAULT_ISSUE_HOUR
    return IssuePlan(target, hour, ml.issue_time(target, site.timezone, hour))


# --- one training run ------------------------------------------------------------------------


@dataclass
class RunOutcome:
    """What one training run did, for the job's results and the caller."""

    kind: str
    run_id: int
    status: str
    served: str | None
    forecast_id: int | None
    message: str
    duration_s: float
    metrics: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The few fields a job keeps per run."""
        keys = ("mape", "rmse", "skill_vs_best_naive", "interval_coverage")
        return {
            "run_id": self.run_id,
            "status": self.status,
            "served": self.served,
            "forecast_id": self.forecast_id,
            "message": self.message,
            "duration_s": round(self.duration_s, 3),
            **{k: self.metrics.get(k) for k in keys if k in self.metrics},
        }


@dataclass
class _Trained:
    status: str = "failed"
    promoted: bool = False
    reason: str = ""
    message: str = ""
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    importances: dict[str, Any] = field(default_factory=dict)
    model: ml.DayAheadModel | None = None
    model_forecast: ml.Forecast | None = None
    baseline: ml.Forecast | None = None


def _start_run(
    sessions: Sessions,
    site: str | None,
    kind: str,
    algorithm: str,
    parameters: dict[str, Any],
    job_id: int | None,
) -> int:
    with sessions.begin() as s:
        run = ModelRun(
            site=site,
            kind=kind,
            algorithm=algorithm,
            parameters=json_safe(parameters),
            status="running",
            job_id=job_id,
        )
        s.add(run)
        s.flush()
        return run.id


def _store_artifact(s: Session, run_id: int, model: object) -> None:
    content = dump_model(model)
    s.add(
        ModelArtifact(
            model_run_id=run_id,
            content=content,
            size_bytes=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
        )
    )


def prune_artifacts(s: Session, site: str | None, kind: str, keep: int) -> int:
    """Delete the artifacts of a site's runs of ``kind`` beyond the newest ``keep`` (0: none)."""
    if keep <= 0:
        return 0
    older = (
        select(ModelArtifact.model_run_id)
        .join(ModelRun, ModelRun.id == ModelArtifact.model_run_id)
        .where(ModelRun.kind == kind, ModelRun.site.is_not_distinct_from(site))
        .order_by(ModelArtifact.model_run_id.desc())
        .offset(keep)
    )
    ids = list(s.scalars(older))
    if ids:
        s.execute(delete(ModelArtifact).where(ModelArtifact.model_run_id.in_(ids)))
    return len(ids)


def _weather_known(weather: pd.DataFrame, issued: pd.Timestamp) -> pd.DataFrame | None:
    """Measured weather before the issue time plus weather forecasts: what was known."""
    if weather.empty:
        return None
    keep = (weather.index < issued) | weather["is_forecast"].astype(bool)
    known = weather.loc[keep, ["temperature_c", "irradiance_w_m2"]]
    return known if known.notna().any().any() else None


def _local_span_days(series: pd.Series, tz: str) -> int:
    days = series.index.tz_convert(tz).normalize()
    return int((days.max() - days.min()).days) + 1


def _fit(
    settings: ForecastSettings,
    site: SiteInfo,
    series: pd.Series,
    weather: pd.DataFrame | None,
    plan: IssuePlan,
    progress: Progress,
) -> _Trained:
    """Backtest, promote or not, forecast: every failure becomes a reason, never a raise."""
    out = _Trained()
    tz, country = site.timezone, site.country_code
    params = (
        ml.ModelParams(max_iter=settings.forecast_max_iter)
        if settings.forecast_max_iter
        else ml.ModelParams()
    )
    hours = target_hours(plan.target_date, tz)
    use_weather = has_target_weather(weather, hours)
    naive_days: int | None = None
    try:
        bt_days = min(
            settings.forecast_backtest_days, _local_span_days(series, tz) - TRAIN_MIN_DAYS - 1
        )
        if bt_days < BACKTEST_MIN_DAYS:
            raise ml.InsufficientHistory(history_days(series), MIN_MODEL_DAYS)
        progress(0.1, "backtest")
        bt = ml.backtest(
            series,
            weather,
            tz,
            country,
            days=bt_days,
            retrain_every_days=settings.forecast_retrain_every_days,
            target_weather=use_weather,
            params=params,
            train_window_days=settings.forecast_history_days,
            issue_hour=plan.issue_hour,
            importance_repeats=settings.forecast_importance_repeats,
        )
        m = bt.metrics
        out.metrics = {
            **m.as_dict(),
            "backtest_days": bt_days,
            "target_weather": use_weather,
            "backtest_trainings": len(bt.train_s),
            "backtest_train_s_mean": bt.train_s_mean,
            "predict_s_mean": bt.predict_s_mean,
        }
        out.importances = bt.feature_importances
        out.promoted = ml.should_promote(m)
        out.reason = ml.promotion_reason(m)
        naive_days = ml.best_naive_days(m)
        progress(0.75, "training the model to serve" if out.promoted else "forecasting")
        if out.promoted:
            t0 = time.perf_counter()
            out.model = ml.train(
                series,
                weather,
                tz,
                country,
                plan.issued_at,
                target_weather=use_weather,
                params=params,
                train_window_days=settings.forecast_history_days,
                issue_hour=plan.issue_hour,
            )
            out.metrics["final_train_s"] = time.perf_counter() - t0
        else:
            # Kept and forecast with for comparison, not served: the model that was judged.
            out.model = bt.last_model
        if out.model is not None:
            out.model_forecast = ml.forecast_day(
                out.model, series, weather, tz, country, plan.target_date,
                issue_hour=plan.issue_hour,
            )  # fmt: skip
            out.metrics["n_train_rows"] = out.model.n_rows
        out.status = "succeeded"
        if not use_weather:
            out.message = "no weather forecast for the target day: the model does without it"
    except ml.InsufficientHistory as exc:
        out.error = str(exc)
        out.reason = f"too little history: {exc}"
    except Exception as exc:  # an ML failure must not stop the job: the baseline is served
        log.exception("training %s failed", site.code)
        out.error = f"{type(exc).__name__}: {exc}"
        out.reason = f"training failed ({out.error}): the seasonal-naive baseline is served"
        out.promoted, out.model, out.model_forecast = False, None, None
    try:
        out.baseline = ml.baseline_forecast(
            series, tz, plan.target_date, naive_days=naive_days,
            issue_hour=plan.issue_hour, reason=out.reason,
        )  # fmt: skip
    except Exception as exc:
        log.exception("baseline forecast of %s failed", site.code)
        out.message = f"no baseline forecast either ({type(exc).__name__}: {exc})"
    return out


def _points(served: ml.Forecast, t: _Trained) -> list[dict[str, Any]]:
    base = t.baseline.hours["forecast"] if t.baseline is not None else None
    model = t.model_forecast.hours["forecast"] if t.model_forecast is not None else None
    rows = []
    for ts, row in served.hours.iterrows():
        rows.append(
            {
                "ts": pd.Timestamp(ts).to_pydatetime(),
                "yhat": finite(row["forecast"]),
                "lower": finite(row.get("lower")),
                "upper": finite(row.get("upper")),
                "baseline_yhat": finite(base.get(ts)) if base is not None else None,
                "model_yhat": finite(model.get(ts)) if model is not None else None,
            }
        )
    return rows


def train_kind(
    sessions: Sessions,
    settings: ForecastSettings,
    site: SiteInfo,
    kind: str,
    series: pd.Series,
    weather: pd.DataFrame | None,
    plan: IssuePlan,
    *,
    job_id: int | None = None,
    progress: Progress = _noop,
) -> RunOutcome:
    """One model run for one series of a site (load or production), then its forecast."""
    started = time.perf_counter()
    parameters = {
        "target_date": plan.target_date,
        "issue_hour": plan.issue_hour,
        "issued_at": plan.issued_at,
        "history_days": settings.forecast_history_days,
        "backtest_days": settings.forecast_backtest_days,
        "retrain_every_days": settings.forecast_retrain_every_days,
        "importance_repeats": settings.forecast_importance_repeats,
        "readings_source": settings.forecast_readings_source or None,
        "model": (
            ml.ModelParams(max_iter=settings.forecast_max_iter)
            if settings.forecast_max_iter
            else ml.ModelParams()
        ).as_dict(),
    }
    run_id = _start_run(sessions, site.code, kind, ml.ALGORITHM, parameters, job_id)
    series = series.dropna()
    stale_before = plan.issued_at - pd.Timedelta(days=settings.forecast_stale_data_days)
    if series.empty or series.index.max() + HOUR < stale_before:
        last = (
            f"the last one is of {series.index.max():%Y-%m-%d %H:%M} UTC"
            if len(series)
            else ("there is none")
        )
        t = _Trained(
            error=(
                f"no {kind} measurement in the {settings.forecast_stale_data_days} days before "
                f"the issue time ({last}): no forecast issued"
            )
        )
        t.reason = t.error or ""
    else:
        t = _fit(settings, site, series, weather, plan, progress)
    served = t.model_forecast if t.promoted else t.baseline
    if served is not None and not served.hours["forecast"].notna().any():
        served = None
        t.message = "; ".join(
            filter(None, [t.message, "the baseline has no value for any hour: nothing issued"])
        )
    duration = time.perf_counter() - started
    metrics = json_safe(t.metrics)
    forecast_id: int | None = None
    with sessions.begin() as s:
        values: dict[str, Any] = {
            "status": t.status,
            "promoted": t.promoted,
            "promotion_reason": t.reason,
            "served_method": served.method if served is not None else None,
            "metrics": metrics,
            "feature_importances": json_safe(t.importances),
            "duration_s": duration,
            "message": t.message,
            "error": t.error,
            "finished_at": func.now(),
        }
        if t.model is not None:
            values["train_start"] = t.model.train_start.to_pydatetime()
            values["train_end"] = t.model.train_end.to_pydatetime()
        s.execute(update(ModelRun).where(ModelRun.id == run_id).values(**values))
        if t.model is not None:
            _store_artifact(s, run_id, t.model)
            prune_artifacts(s, site.code, kind, settings.forecast_keep_artifacts)
        if served is not None:
            fc = Forecast(
                site=site.code,
                kind=kind,
                target_date=plan.target_date,
                timezone=site.timezone,
                issued_at=plan.issued_at.to_pydatetime(),
                model_run_id=run_id,
                served="model" if t.promoted else "baseline",
                method=served.method,
                message=(t.message if t.promoted else t.reason) or "",
            )
            s.add(fc)
            s.flush()
            forecast_id = fc.id
            s.execute(
                insert(ForecastPoint), [{"forecast_id": fc.id, **p} for p in _points(served, t)]
            )
    TRAINING_DURATION.labels(kind).observe(duration)
    mape = finite(t.metrics.get("mape"))
    if mape is not None:
        BACKTEST_MAPE.labels(site.code, kind).set(mape)
    if served is None:
        message = t.error or t.message or "no forecast issued"
    elif t.promoted:
        message = f"model served: {t.reason}"
    else:
        message = f"baseline served: {t.reason}"
    return RunOutcome(
        kind=kind,
        run_id=run_id,
        status=t.status,
        served=("model" if t.promoted else "baseline") if served is not None else None,
        forecast_id=forecast_id,
        message=message,
        duration_s=duration,
        metrics=metrics,
    )


def forecast_site(
    sessions: Sessions,
    reader: IngestReader,
    settings: ForecastSettings,
    site: SiteInfo,
    *,
    target_date: date | None = None,
    now: datetime | None = None,
    job_id: int | None = None,
    progress: Progress = _noop,
) -> list[RunOutcome]:
    """Fetch a site's history, train, backtest and issue its load (and production) forecast."""
    plan = plan_issue(site, target_date, now or utcnow())
    start = plan.issued_at - pd.Timedelta(days=settings.forecast_history_days + LOOKBACK_DAYS)
    progress(0.0, "reading history")
    frame = reader.hourly(site.code, start, plan.issued_at, settings.forecast_readings_source)
    hours = target_hours(plan.target_date, site.timezone)
    weather = _weather_known(reader.weather(site.code, start, hours[-1] + HOUR), plan.issued_at)
    kinds = ["load"]
    if frame["production_kwh"].gt(0).any():
        kinds.append("production")
    outcomes = []
    for i, kind in enumerate(kinds):
        column = "consumption_kwh" if kind == "load" else "production_kwh"

        def step(share: float, what: str, i: int = i, kind: str = kind) -> None:
            progress((i + share) / len(kinds), f"{kind}: {what}")

        outcomes.append(
            train_kind(
                sessions,
                settings,
                site,
                kind,
                frame[column],
                weather,
                plan,
                job_id=job_id,
                progress=step,
            )  # fmt: skip
        )
    return outcomes


# --- maintenance -----------------------------------------------------------------------------


def equipment_events(
    reader: IngestReader, codes: list[str], start: datetime, end: datetime
) -> pd.DataFrame:
    """Events of the equipment in [start, end), read from ingest's API one code at a time."""
    parts = []
    for code in codes:
        try:
            parts.append(reader.events(code, start, end))
        except NotFound:  # removed since the listing: it has no events to learn from
            log.warning("equipment %s vanished while reading events", code)
    return pd.concat(parts, ignore_index=True) if parts else _no_events()


def _no_events() -> pd.DataFrame:
    return pd.DataFrame({"equipment_code": [], "ts": [], "kind": []})


def _telemetry(
    reader: IngestReader, code: str, start: datetime, as_of: pd.Timestamp
) -> pd.DataFrame:
    """Raw telemetry of [start, as_of); a sensor too chatty for one read (ingest caps a read at
    100,000 samples) gets the scoring look-back only, so it is still scored."""
    try:
        return reader.telemetry(code, start, as_of)
    except BadInput:
        log.warning("too much telemetry for %s in one read: scoring window only", code)
        recent = as_of - pd.Timedelta(days=mx.LOOKBACK_DAYS + 1)
        return reader.telemetry(code, max(pd.Timestamp(start), recent), as_of)


def _excluded_counts(excluded: pd.DataFrame) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    if excluded.empty:
        return out
    grouped = excluded.groupby(["equipment_code", "reason"])["n"].sum()
    for (code, reason), n in grouped.items():  # type: ignore[misc]
        out.setdefault(str(code), {})[str(reason)] = int(n)
    return out


def _latest_maintenance_model(session: Session) -> tuple[int, Any] | None:
    row = session.execute(
        select(ModelArtifact.model_run_id, ModelArtifact.content)
        .join(ModelRun, ModelRun.id == ModelArtifact.model_run_id)
        .where(ModelRun.kind == "maintenance", ModelRun.status == "succeeded")
        .order_by(ModelRun.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return int(row.model_run_id), load_model(row.content)


def score_maintenance(
    sessions: Sessions,
    reader: IngestReader,
    settings: ForecastSettings,
    *,
    now: datetime | None = None,
    job_id: int | None = None,
    params: mx.MaintenanceParams | None = None,
    progress: Progress = _noop,
) -> RunOutcome:
    """Train the failure model on every equipment's telemetry and events, score every one and
    write the predictions. Without enough failures to learn from, the last good model scores."""
    started = time.perf_counter()
    as_of = pd.Timestamp(now or utcnow()).tz_convert(UTC).floor("h")
    params = params or mx.MaintenanceParams()
    start = (as_of - pd.Timedelta(days=settings.forecast_maintenance_history_days)).to_pydatetime()
    progress(0.0, "reading equipment")
    equipment = reader.equipment()
    codes = [str(c) for c in equipment["equipment_code"]]
    frames = []
    for i, code in enumerate(codes):
        try:
            frames.append(_telemetry(reader, code, start, as_of))
        except NotFound:  # removed since the listing: nothing to score
            log.warning("equipment %s vanished while reading telemetry", code)
        progress(0.4 * (i + 1) / max(len(codes), 1), "reading telemetry")
    telemetry = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["equipment_code", "ts"])
    )
    events = equipment_events(reader, codes, start, as_of.to_pydatetime())
    parameters = {
        **{k: v for k, v in params.__dict__.items()},
        "as_of": as_of,
        "history_days": settings.forecast_maintenance_history_days,
        "equipment": len(codes),
        "telemetry_rows": len(telemetry),
        "events": len(events),
    }
    run_id = _start_run(sessions, None, "maintenance", mx.ALGORITHM, parameters, job_id)
    progress(0.5, "training the failure model")
    status, error, message = "failed", None, ""
    metrics: dict[str, Any] = {}
    importances: dict[str, Any] = {}
    model: Any = None
    trained: mx.MaintenanceModel | None = None
    try:
        if equipment.empty:
            raise mx.InsufficientTrainingData("no equipment registered in ingest")
        trained = mx.train_maintenance_model(telemetry, events, equipment, as_of, params)
        model, status = trained, "succeeded"
        metrics = {
            **(trained.report.as_dict() if trained.report is not None else {}),
            "report_note": trained.report_note,
            "train_days": trained.train_days,
            "positive_days": trained.positive_days,
            "failures": trained.failures,
            "train_s": trained.train_s,
            "excluded": _excluded_counts(trained.excluded),
        }
        importances = trained.importances
    except Exception as exc:  # too few failures, or worse: score with the last good model
        if not isinstance(exc, mx.InsufficientTrainingData):
            log.exception("training the failure model failed")
        error = (
            str(exc)
            if isinstance(exc, mx.InsufficientTrainingData)
            else (f"{type(exc).__name__}: {exc}")
        )
        with sessions() as s:
            previous = _latest_maintenance_model(s)
        if previous is not None:
            model = previous[1]
            message = f"no new model ({error}); scored with the model of run {previous[0]}"
            parameters["scored_with_run"] = previous[0]
        else:
            message = f"no model to score with: {error}"
    progress(0.8, "scoring")
    rows: list[dict[str, Any]] = []
    if model is not None:
        try:
            scored = mx.score(model, telemetry, equipment, as_of, events)
        except Exception as exc:
            log.exception("scoring failed")
            status, error = "failed", f"scoring failed: {type(exc).__name__}: {exc}"
            message = error
            scored = pd.DataFrame(columns=mx.SCORE_COLUMNS)
        info = equipment.set_index("equipment_code")
        for r in scored.to_dict("records"):
            code = str(r["equipment_code"])
            rows.append(
                {
                    "model_run_id": run_id,
                    "equipment": code,
                    "site": str(info.at[code, "site"]) if code in info.index else None,
                    "name": str(info.at[code, "name"]) if code in info.index else None,
                    "kind": str(info.at[code, "kind"]) if code in info.index else None,
                    "as_of": as_of.to_pydatetime(),
                    "horizon_days": params.horizon_days,
                    "probability": finite(r["probability"]),
                    "status": str(r["status"]),
                    "top_factors": json_safe(list(r["top_factors"] or [])),
                    "message": str(r["message"] or ""),
                    "rule_alert": bool(r["rule_alert"]),
                }
            )
    metrics["predictions"] = len(rows)
    metrics["scored"] = sum(1 for r in rows if r["probability"] is not None)
    duration = time.perf_counter() - started
    with sessions.begin() as s:
        s.execute(
            update(ModelRun)
            .where(ModelRun.id == run_id)
            .values(
                status=status,
                promoted=status == "succeeded",
                promotion_reason="the latest failure model is always the one that scores"
                if status == "succeeded"
                else "",
                served_method=mx.ALGORITHM if model is not None else None,
                parameters=json_safe(parameters),
                metrics=json_safe(metrics),
                feature_importances=json_safe(importances),
                duration_s=duration,
                message=message,
                error=error,
                train_start=trained.train_start.to_pydatetime() if trained else None,
                train_end=trained.train_end.to_pydatetime() if trained else None,
                finished_at=func.now(),
            )
        )
        if trained is not None:
            _store_artifact(s, run_id, trained)
            prune_artifacts(s, None, "maintenance", settings.forecast_keep_artifacts)
        if rows:
            s.execute(insert(MaintenancePrediction), rows)
    TRAINING_DURATION.labels("maintenance").observe(duration)
    return RunOutcome(
        kind="maintenance",
        run_id=run_id,
        status=status,
        served="model" if rows else None,
        forecast_id=None,
        message=message or f"{metrics['scored']} of {len(rows)} equipment scored",
        duration_s=duration,
        metrics=json_safe(metrics),
    )
