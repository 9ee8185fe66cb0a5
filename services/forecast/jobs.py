"""Retraining jobs: queued in the database, run by a worker thread, safe across replicas.

- **One active job per site**: a partial unique index allows one queued-or-running job per
  (kind, site), every-site jobs counting as site ``*``. Asking again while one is active gives
  that job back (HTTP 200, not 202), and an every-site job covers a single site's request.
- **Claiming**: a worker takes the oldest queued job with ``FOR UPDATE SKIP LOCKED``, so two
  replicas never run the same job. Progress and a heartbeat are written as the work goes; a
  running job whose heartbeat is older than ``FORECAST_JOB_STALE_S`` lost its worker (crash,
  kill) and is marked failed, so it cannot block its site forever.
- **Nightly**: at ``FORECAST_NIGHTLY_HOUR`` (UTC) one every-site job retrains every site,
  issues tomorrow's forecasts and scores maintenance. An advisory lock and a "done in the last
  20 hours" check keep replicas from scheduling it twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.common.errors import AppError, NotFound
from services.forecast.config import ForecastSettings
from services.forecast.data import IngestReader
from services.forecast.metrics import JOBS
from services.forecast.models import ACTIVE_JOB_STATUSES, Job
from services.forecast.service import (
    RunOutcome,
    Sessions,
    forecast_site,
    score_maintenance,
)

log = logging.getLogger("spe.forecast.jobs")
# Arbitrary constant: serialises the nightly scheduling of concurrent replicas.
NIGHTLY_LOCK_ID = 0x5BE_F0CA
SCHEDULE = "schedule"


class JobNotFound(NotFound):
    """No job with this id."""


def worker_name() -> str:
    """Who runs a job: host, process and thread (for operators reading a stuck job)."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


# --- queue -----------------------------------------------------------------------------------


def active_job(session: Session, site: str | None, kind: str = "retrain") -> Job | None:
    """The queued-or-running job of ``kind`` that covers ``site`` (its own, or an every-site
    job)."""
    covers = Job.site.is_(None) if site is None else or_(Job.site == site, Job.site.is_(None))
    return session.scalars(
        select(Job)
        .where(Job.kind == kind, Job.status.in_(ACTIVE_JOB_STATUSES), covers)
        .order_by(Job.site.is_(None), Job.id)  # the site's own job first
        .limit(1)
    ).first()


def enqueue(
    session: Session,
    *,
    site: str | None,
    target_date: date | None,
    requested_by: str,
    stale_s: float,
    kind: str = "retrain",
) -> tuple[Job, bool]:
    """A new queued job (True), or the active job already covering the site (False)."""
    reap_stale(session, stale_s)
    existing = active_job(session, site, kind)
    if existing is not None:
        return existing, False
    job = Job(kind=kind, site=site, target_date=target_date, requested_by=requested_by)
    try:
        with session.begin_nested():  # a concurrent twin makes only this savepoint fail
            session.add(job)
            session.flush()
    except IntegrityError:
        existing = active_job(session, site, kind)
        if existing is None:
            raise
        return existing, False
    JOBS.labels("queued").inc()
    return job, True


def reap_stale(session: Session, stale_s: float) -> int:
    """Fail the jobs whose worker died (no heartbeat for ``stale_s``) or that no worker took."""
    limit = func.now() - timedelta(seconds=stale_s)
    lost = session.execute(
        update(Job)
        .where(Job.status == "running", Job.heartbeat_at < limit)
        .values(
            status="failed",
            error=f"no progress for {stale_s:.0f} s: the worker running it stopped "
            "(restart or crash); start it again",
            finished_at=func.now(),
        )
        .returning(Job.id)
    ).all()
    orphaned = session.execute(
        update(Job)
        .where(Job.status == "queued", Job.created_at < limit)
        .values(
            status="failed",
            error=f"no worker took this job within {stale_s:.0f} s "
            "(is FORECAST_JOB_POLL_S 0 on every replica?)",
            finished_at=func.now(),
        )
        .returning(Job.id)
    ).all()
    for _ in [*lost, *orphaned]:
        JOBS.labels("failed").inc()
    return len(lost) + len(orphaned)


def claim(sessions: Sessions, worker: str, job_id: int | None = None) -> int | None:
    """Mark the oldest queued job (or ``job_id`` if still queued) running; its id, or None.

    ``SKIP LOCKED``: a job another replica is claiming this instant is passed over.
    """
    where = "status = 'queued'" + (" AND id = :id" if job_id is not None else "")
    with sessions.begin() as s:
        row = s.execute(
            text(
                "UPDATE forecast.job SET status = 'running', started_at = now(), "
                "heartbeat_at = now(), worker = :worker, message = 'started' "
                f"WHERE id = (SELECT id FROM forecast.job WHERE {where} "
                "ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id"
            ),
            {"worker": worker, "id": job_id},
        ).first()
    if row is None:
        return None
    JOBS.labels("running").inc()
    return int(row.id)


def _heartbeat(sessions: Sessions, job_id: int, progress: float, message: str) -> None:
    with sessions.begin() as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                progress=func.greatest(Job.progress, min(max(progress, 0.0), 1.0)),
                message=message[:2000],
                heartbeat_at=func.now(),
            )
        )


def _finish(
    sessions: Sessions,
    job_id: int,
    status: str,
    message: str,
    error: str | None,
    results: dict[str, Any],
) -> None:
    values: dict[str, Any] = {
        "status": status,
        "message": message,
        "error": error,
        "results": results,
        "finished_at": func.now(),
        "heartbeat_at": func.now(),
    }
    if status == "succeeded":
        values["progress"] = 1.0
    with sessions.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(**values))
    JOBS.labels(status).inc()


def _requeue(sessions: Sessions, job_id: int) -> None:
    with sessions.begin() as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                status="queued",
                worker=None,
                progress=0.0,
                message="interrupted by a shutdown; queued again",
            )
        )


def _line(code: str, outcome: RunOutcome) -> str:
    return f"{code} {outcome.kind}: {outcome.message}"


def run_job(
    sessions: Sessions,
    reader: IngestReader,
    settings: ForecastSettings,
    job_id: int,
    *,
    now: datetime | None = None,
    stop: threading.Event | None = None,
) -> str:
    """Run a claimed job to its end (or back to the queue on shutdown); its final status."""
    with sessions() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        site_code, target_date, kind = job.site, job.target_date, job.kind
    try:
        if kind == "maintenance":
            sites = []
        elif site_code:
            sites = [reader.site(site_code)]
        else:
            sites = reader.sites()
    except AppError as exc:
        _finish(sessions, job_id, "failed", f"could not list the sites: {exc.detail}",
                exc.detail, {})  # fmt: skip
        return "failed"
    steps = len(sites) + (1 if site_code is None else 0)
    results: dict[str, Any] = {}
    lines: list[str] = []
    failures: list[str] = []
    for i, site in enumerate(sites):
        if stop is not None and stop.is_set():
            _requeue(sessions, job_id)
            return "queued"

        def progress(share: float, what: str, i: int = i, code: str = site.code) -> None:
            _heartbeat(sessions, job_id, (i + share) / steps, f"{code}: {what}")

        try:
            outcomes = forecast_site(
                sessions, reader, settings, site, target_date=target_date, now=now,
                job_id=job_id, progress=progress,
            )  # fmt: skip
        except AppError as exc:
            failures.append(f"{site.code}: {exc.detail}")
            results[site.code] = {"error": exc.detail}
            continue
        except Exception as exc:  # one site's crash must not stop the others
            log.exception("retraining %s failed", site.code)
            failures.append(f"{site.code}: {type(exc).__name__}: {exc}")
            results[site.code] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        results[site.code] = {o.kind: o.summary() for o in outcomes}
        lines += [_line(site.code, o) for o in outcomes]
        if site_code is not None and all(o.forecast_id is None for o in outcomes):
            failures.append(f"{site.code}: no forecast issued")
    if site_code is None:
        if stop is not None and stop.is_set():
            _requeue(sessions, job_id)
            return "queued"

        def progress_m(share: float, what: str) -> None:
            _heartbeat(sessions, job_id, (len(sites) + share) / steps, f"maintenance: {what}")

        try:
            outcome = score_maintenance(
                sessions, reader, settings, now=now, job_id=job_id, progress=progress_m
            )
            results["maintenance"] = outcome.summary()
            lines.append(f"maintenance: {outcome.message}")
        except Exception as exc:
            log.exception("maintenance scoring failed")
            detail = exc.detail if isinstance(exc, AppError) else f"{type(exc).__name__}: {exc}"
            failures.append(f"maintenance: {detail}")
            results["maintenance"] = {"error": detail}
    status = "failed" if failures else "succeeded"
    message = "; ".join(failures + lines) if failures else "; ".join(lines) or "nothing to do"
    _finish(sessions, job_id, status, message[:4000], "; ".join(failures) or None, results)
    return status


# --- the nightly schedule --------------------------------------------------------------------


def seconds_until(hour: int, now: datetime | None = None) -> float:
    """Seconds from ``now`` to the next ``hour``:00 UTC (a full day if it is that instant)."""
    now = now or datetime.now(UTC)
    at = now.astimezone(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    if at <= now:
        at += timedelta(days=1)
    return (at - now).total_seconds()


def enqueue_nightly(sessions: Sessions, settings: ForecastSettings) -> tuple[int, bool] | None:
    """Queue tonight's every-site job unless a replica already did; (job id, new?) or None."""
    with sessions.begin() as s:
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": NIGHTLY_LOCK_ID})
        done = s.scalar(
            select(Job.id).where(
                Job.requested_by == SCHEDULE, Job.created_at > func.now() - timedelta(hours=20)
            )
        )
        if done is not None:
            return None
        job, created = enqueue(
            s, site=None, target_date=None, requested_by=SCHEDULE,
            stale_s=settings.forecast_job_stale_s,
        )  # fmt: skip
        return job.id, created


def run_nightly(
    sessions: Sessions,
    reader: IngestReader,
    settings: ForecastSettings,
    *,
    now: datetime | None = None,
    wake: threading.Event | None = None,
) -> int | None:
    """Tonight's work: retrain every site, issue tomorrow's forecasts, score maintenance.

    With ``wake`` (a worker is running) the job is queued and the worker woken; otherwise it
    runs here, in the calling thread. Returns the job id (None: already scheduled tonight).
    """
    queued = enqueue_nightly(sessions, settings)
    if queued is None:
        log.info("nightly retraining already scheduled by another replica")
        return None
    job_id, created = queued
    if not created:  # an every-site job requested by someone is already on its way
        return job_id
    if wake is not None:
        wake.set()
        return job_id
    if claim(sessions, worker_name(), job_id) is not None:
        run_job(sessions, reader, settings, job_id, now=now)
    return job_id


class JobWorker:
    """One background thread that claims and runs queued jobs, one at a time.

    One thread per replica on purpose: training is CPU-bound, and more replicas (not more
    threads) is how the work scales out.
    """

    def __init__(
        self,
        sessions: Sessions,
        reader: IngestReader,
        settings: ForecastSettings,
    ) -> None:
        self.sessions, self.reader, self.settings = sessions, reader, settings
        self.wake_event = threading.Event()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="forecast-jobs", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        """Look at the queue now rather than at the next poll."""
        self.wake_event.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the thread to stop after the current site (the job goes back to the queue)."""
        self.stop_event.set()
        self.wake_event.set()
        self.thread.join(timeout_s)

    def run_pending(self) -> int:
        """Run queued jobs until none is left; how many ran."""
        with self.sessions.begin() as s:
            reap_stale(s, self.settings.forecast_job_stale_s)
        ran = 0
        while not self.stop_event.is_set():
            job_id = claim(self.sessions, worker_name())
            if job_id is None:
                break
            run_job(self.sessions, self.reader, self.settings, job_id, stop=self.stop_event)
            ran += 1
        return ran

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.run_pending()
            except Exception:  # the database may be away for a moment: try again later
                log.exception("job worker pass failed")
            self.wake_event.wait(self.settings.forecast_job_poll_s)
            self.wake_event.clear()
