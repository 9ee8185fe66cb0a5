"""Ingest HTTP API: sites and equipment here; writes and reads in their own modules."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.common.auth import ReaderDep, WriterDep, require_role
from services.common.db import SessionDep
from services.common.errors import Conflict
from services.ingest import openmeteo, reads, writes
from services.ingest.models import Equipment, Site
from services.ingest.schemas import EquipmentIn, EquipmentOut, SiteIn, SiteOut, SitePatch
from services.ingest.service import get_site

router = APIRouter(prefix="/v1")
sites = APIRouter(prefix="/sites", tags=["sites"])
AdminDep = Annotated[object, Depends(require_role("admin"))]
SiteCode = Annotated[str, Path(max_length=32)]


@sites.get("", response_model=list[SiteOut], summary="List sites")
def list_sites(session: SessionDep, _: ReaderDep) -> list[Site]:
    return list(session.scalars(select(Site).order_by(Site.code)))


@sites.post(
    "",
    response_model=SiteOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a site",
    responses={409: {"description": "a site has that code"}},
)
def create_site(body: SiteIn, session: SessionDep, _: WriterDep) -> Site:
    site = Site(**body.model_dump())
    try:
        # A savepoint, so a duplicate leaves the request's transaction usable.
        with session.begin_nested():
            session.add(site)
    except IntegrityError:
        raise Conflict(f"a site with code {body.code!r} already exists") from None
    return site


@sites.get("/{code}", response_model=SiteOut, summary="One site")
def read_site(code: SiteCode, session: SessionDep, _: ReaderDep) -> Site:
    return get_site(session, code)


@sites.patch("/{code}", response_model=SiteOut, summary="Change a site")
def update_site(code: SiteCode, body: SitePatch, session: SessionDep, _: AdminDep) -> Site:
    site = get_site(session, code)
    changes = body.model_dump(exclude_unset=True)
    if "timezone" in changes and changes["timezone"] != site.timezone:
        _rebucket_readings(session, site)
    for key, value in changes.items():
        setattr(site, key, value)
    session.flush()
    return site


def _rebucket_readings(session: Session, site: Site) -> None:
    """A new zone moves the site's hour buckets: have the roll-ups rebuilt from raw readings.

    Impossible once retention dropped raw readings of the site (their hours exist only as
    roll-ups in the old zone's buckets): refused.
    """
    dropped = session.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM ingest.reading_hourly h, ingest.rollup_state w "
            "WHERE h.site_id = :id AND h.hour < w.raw_horizon)"
        ),
        {"id": site.id},
    ).scalar()
    if dropped:
        raise Conflict(
            f"site {site.code!r} has readings older than the raw-data retention horizon, kept "
            "as hourly roll-ups in its current timezone; its timezone can no longer change"
        )
    # Reads skip the roll-ups from the first reading on until the job has rebuilt them.
    session.execute(
        text(
            "INSERT INTO ingest.rollup_invalidation (site_id, lo, hi) "
            "SELECT :id, min(ts), max(ts) FROM ingest.reading WHERE site_id = :id "
            "HAVING min(ts) IS NOT NULL"
        ),
        {"id": site.id},
    )


equipment = APIRouter(prefix="/equipment", tags=["equipment"])


def _equipment_out(eq: Equipment, site_code: str) -> EquipmentOut:
    return EquipmentOut(
        code=eq.code,
        site=site_code,
        name=eq.name,
        kind=eq.kind,
        installed_on=eq.installed_on,
        created_at=eq.created_at,
    )


@equipment.get("", response_model=list[EquipmentOut], summary="List equipment")
def list_equipment(
    session: SessionDep,
    _: ReaderDep,
    site: Annotated[str | None, Query(max_length=32)] = None,
) -> list[EquipmentOut]:
    query = select(Equipment, Site.code).join(Site).order_by(Equipment.code)
    if site is not None:
        query = query.where(Site.id == get_site(session, site).id)
    return [_equipment_out(eq, code) for eq, code in session.execute(query)]


@equipment.post(
    "",
    response_model=EquipmentOut,
    status_code=status.HTTP_201_CREATED,
    summary="Register equipment at a site",
    responses={
        404: {"description": "no such site"},
        409: {"description": "equipment has that code"},
    },
)
def create_equipment(body: EquipmentIn, session: SessionDep, _: WriterDep) -> EquipmentOut:
    site = get_site(session, body.site)
    eq = Equipment(**body.model_dump(exclude={"site"}), site_id=site.id)
    try:
        with session.begin_nested():
            session.add(eq)
    except IntegrityError:
        raise Conflict(f"equipment with code {body.code!r} already exists") from None
    return _equipment_out(eq, site.code)


# The reads first: FastAPI tries routes in order, ~2 us each, and the cockpit's reads are most
# of the traffic (matching /v1/sites/{code}/readings behind the 26 other routes cost ~66 us).
router.include_router(reads.router)
router.include_router(sites)
router.include_router(equipment)
router.include_router(writes.router)
router.include_router(openmeteo.router)
