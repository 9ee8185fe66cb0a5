"""Forecast HTTP API (``/v1``, a token on every route): forecasts, forecast versus actual,
model runs, retraining jobs, maintenance risk."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Path, Query, Request, Response, status
from sqlalchemy import select

from services.common.auth import ReaderDep, WriterDep
from services.common.db import SessionDep
from services.common.errors import BadInput
from services.common.query_time import QueryTime
from services.forecast import reads, service
from services.forecast.data import IngestReader
from services.forecast.jobs import JobNotFound, enqueue
from services.forecast.models import Job
from services.forecast.schemas import (
    ForecastOut,
    JobOut,
    JobPage,
    ModelRunOut,
    ModelRunPage,
    RetrainIn,
    RiskOut,
    VsActualOut,
)

router = APIRouter(prefix="/v1")
SiteCode = Annotated[str, Path(max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
SiteQuery = Annotated[str | None, Query(max_length=32, description="site code")]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
BeforeId = Annotated[
    int | None, Query(ge=1, le=2**63 - 1, description="next_before_id of the previous page")
]
MAX_VS_ACTUAL_DAYS = 93
EARLIEST_YEAR, LATEST_YEAR = 1990, 2199


def _reader(request: Request) -> IngestReader:
    reader: IngestReader = request.app.state.reader
    return reader


# --- forecasts -------------------------------------------------------------------------------


@router.get(
    "/sites/{code}/forecast/latest",
    response_model=ForecastOut,
    tags=["forecasts"],
    summary="The site's latest issued day-ahead forecast, with interval, baseline and run",
)
def latest_forecast(code: SiteCode, session: SessionDep, _: ReaderDep) -> dict[str, Any]:
    """Hourly points of the latest issue (404 ForecastNotFound when none yet)."""
    return reads.latest_forecast(session, code)


@router.get(
    "/sites/{code}/forecast/vs-actual",
    response_model=VsActualOut,
    tags=["forecasts"],
    summary="Forecast as issued the day before, against the measured values",
)
def forecast_vs_actual(
    code: SiteCode,
    request: Request,
    session: SessionDep,
    _: ReaderDep,
    start: Annotated[QueryTime, Query(description="range start, with a timezone")],
    end: Annotated[QueryTime, Query(description="range end, exclusive, with a timezone")],
    kind: Literal["load", "production"] = "load",
) -> dict[str, Any]:
    """Each hour's forecast from the last issue made before its local day began."""
    # Years, not instants: an offset on 0001-01-01 would overflow the conversion to UTC.
    if start.year < EARLIEST_YEAR or end.year > LATEST_YEAR:
        raise BadInput(f"query.start: give dates between {EARLIEST_YEAR} and {LATEST_YEAR}")
    if end <= start:
        raise BadInput("query.end: end must be after start")
    if end - start > timedelta(days=MAX_VS_ACTUAL_DAYS):
        raise BadInput(f"query.end: the range is over {MAX_VS_ACTUAL_DAYS} days; shorten it")
    return reads.vs_actual(session, _reader(request), code, start, end, kind)


# --- model runs ------------------------------------------------------------------------------


@router.get(
    "/model-runs",
    response_model=ModelRunPage,
    tags=["model runs"],
    summary="Model runs, newest first (keyset pagination)",
)
def list_model_runs(
    session: SessionDep,
    _: ReaderDep,
    site: SiteQuery = None,
    kind: Literal["load", "production", "maintenance"] | None = None,
    status_: Annotated[
        Literal["running", "succeeded", "failed"] | None, Query(alias="status")
    ] = None,
    limit: Limit = 50,
    before_id: BeforeId = None,
) -> dict[str, Any]:
    """Runs with their metrics (parameters and importances: GET /v1/model-runs/{id})."""
    runs, next_id = reads.list_runs(
        session, site=site, kind=kind, status=status_, limit=limit, before_id=before_id
    )
    return {"items": [reads.run_out(r, full=False) for r in runs], "next_before_id": next_id}


@router.get(
    "/model-runs/{run_id}",
    response_model=ModelRunOut,
    tags=["model runs"],
    summary="One model run: parameters, metrics, feature importances",
)
def read_model_run(
    run_id: Annotated[int, Path(ge=1, le=2**63 - 1)], session: SessionDep, _: ReaderDep
) -> dict[str, Any]:
    return reads.run_out(reads.get_run(session, run_id))


# --- jobs ------------------------------------------------------------------------------------


@router.post(
    "/jobs/retrain",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["jobs"],
    summary="Retrain one site (or every site and maintenance): 202 a new job, 200 the one "
    "already queued or running for it",
    responses={
        200: {"model": JobOut, "description": "a job for this site is already active"},
        404: {"description": "no such site"},
    },
)
def start_retrain(
    body: RetrainIn,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    session: SessionDep,
    principal: WriterDep,
) -> Job:
    """Queue a retraining; the worker runs it in a background thread."""
    if body.site is not None:
        site = _reader(request).site(body.site)  # 404 SiteNotFound, 503 when ingest is down
        if body.target_date is not None:
            service.plan_issue(site, body.target_date, service.utcnow())  # 422 if too far
    job, created = enqueue(
        session,
        site=body.site,
        target_date=body.target_date,
        requested_by=principal.subject,
        stale_s=request.app.state.settings.forecast_job_stale_s,
    )
    _after_enqueue(request, response, background, created)
    return job


@router.post(
    "/jobs/maintenance",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["jobs"],
    summary="Score every equipment's failure risk now (no forecast retraining): 202 a new job, "
    "200 the one already queued or running",
    responses={200: {"model": JobOut, "description": "a maintenance job is already active"}},
)
def start_maintenance(
    request: Request,
    response: Response,
    background: BackgroundTasks,
    session: SessionDep,
    principal: WriterDep,
) -> Job:
    """Queue a maintenance scoring; the worker runs it in a background thread."""
    job, created = enqueue(
        session,
        site=None,
        target_date=None,
        requested_by=principal.subject,
        stale_s=request.app.state.settings.forecast_job_stale_s,
        kind="maintenance",
    )
    _after_enqueue(request, response, background, created)
    return job


def _after_enqueue(
    request: Request, response: Response, background: BackgroundTasks, created: bool
) -> None:
    if created:
        # After the response, hence after the commit: the worker must see the job.
        worker = getattr(request.app.state, "worker", None)
        if worker is not None:
            background.add_task(worker.wake)
    else:
        response.status_code = status.HTTP_200_OK


@router.get(
    "/jobs", response_model=JobPage, tags=["jobs"], summary="Jobs, newest first (keyset pages)"
)
def list_jobs(
    session: SessionDep,
    _: ReaderDep,
    site: SiteQuery = None,
    status_: Annotated[
        Literal["queued", "running", "succeeded", "failed"] | None, Query(alias="status")
    ] = None,
    limit: Limit = 50,
    before_id: BeforeId = None,
) -> dict[str, Any]:
    query = select(Job).order_by(Job.id.desc()).limit(limit + 1)
    if site is not None:
        query = query.where(Job.site == site)
    if status_ is not None:
        query = query.where(Job.status == status_)
    if before_id is not None:
        query = query.where(Job.id < before_id)
    jobs = list(session.scalars(query))
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return {"items": jobs, "next_before_id": jobs[-1].id if more else None}


@router.get("/jobs/{job_id}", response_model=JobOut, tags=["jobs"], summary="One job")
def read_job(
    job_id: Annotated[int, Path(ge=1, le=2**63 - 1)], session: SessionDep, _: ReaderDep
) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise JobNotFound(f"no job with id {job_id}")
    return job


# --- maintenance -----------------------------------------------------------------------------


@router.get(
    "/maintenance/risk",
    response_model=RiskOut,
    tags=["maintenance"],
    summary="Equipment ranked by failure probability, with the top contributing factors",
)
def maintenance_risk(session: SessionDep, _: ReaderDep, site: SiteQuery = None) -> dict[str, Any]:
    """The latest maintenance run's predictions (every site unless ``site`` is given); 404
    PredictionsNotFound before the first run has scored anything."""
    return reads.risk_out(reads.latest_predictions(session, site))
