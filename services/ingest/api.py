"""Ingest HTTP API: sites and equipment here; writes and reads in their own modules."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

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
    for key, value in body.model_dump(exclude_unset=True).items():
        setattr(site, key, value)
    session.flush()
    return site


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


router.include_router(sites)
router.include_router(equipment)
router.include_router(writes.router)
router.include_router(reads.router)
router.include_router(openmeteo.router)
