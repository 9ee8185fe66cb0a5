"""Ingest domain lookups shared by the write and read paths."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.common.errors import NotFound
from services.ingest.models import Equipment, Site


class SiteNotFound(NotFound):
    pass


class EquipmentNotFound(NotFound):
    pass


def get_site(session: Session, code: str) -> Site:
    """The site with this code, or SiteNotFound."""
    site = session.scalar(select(Site).where(Site.code == code))
    if site is None:
        raise SiteNotFound(f"no site with code {code!r}; list sites with GET /v1/sites")
    return site


def get_equipment(session: Session, code: str) -> Equipment:
    """The equipment with this code, or EquipmentNotFound."""
    equipment = session.scalar(select(Equipment).where(Equipment.code == code))
    if equipment is None:
        raise EquipmentNotFound(f"no equipment with code {code!r}")
    return equipment
