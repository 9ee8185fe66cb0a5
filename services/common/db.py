"""SQLAlchemy 2 engine and sessions (psycopg 3); only the session dependency commits."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated

import psycopg
from fastapi import Depends, Request
from sqlalchemy import Engine, MetaData, create_engine, exc, text
from sqlalchemy.orm import Session, sessionmaker

from services.common.settings import to_sqlalchemy_url

# Stable constraint names so Alembic autogenerate and hand-written migrations agree.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def schema_metadata(schema: str) -> MetaData:
    """Metadata for a service's tables: its own PostgreSQL schema, the naming convention.

    Each service declares ``class Base(DeclarativeBase): metadata = schema_metadata("x")``
    (a static class, so type checkers see a real base).
    """
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


# SQLSTATE classes meaning "the server is away or overloaded, not your request": connection
# exception (08), insufficient resources (53), operator intervention (57: shutdown, restart,
# cancelled statement).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")


@lru_cache(maxsize=8)
def get_engine(url: str, pool_size: int = 5, connect_timeout_s: int = 5) -> Engine:
    """One pooled engine per database URL per process.

    ``pool_pre_ping`` tests a pooled connection before handing it out, and one that failed
    because the server went away invalidates the whole pool: after a database restart the
    service reconnects by itself. ``connect_timeout`` bounds a connection attempt to an
    unreachable host (libpq's default is to wait for ever).
    """
    return create_engine(
        to_sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size * 2,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": connect_timeout_s},
    )


def is_database_unavailable(error: BaseException | None) -> bool:
    """Whether ``error`` says the database cannot be reached now (retry later), not a bug."""
    if isinstance(error, exc.TimeoutError | exc.DisconnectionError):
        return True  # pool exhausted, or a connection found dead
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        error = error.orig
    if not isinstance(error, psycopg.OperationalError):
        return False
    # No SQLSTATE: the client side failed (connection refused, closed, reset).
    state = error.sqlstate
    return state is None or state[:2] in _UNAVAILABLE_SQLSTATE_CLASSES


class Database:
    """Holds a service's engine and session factory; created once by ``create_app``."""

    def __init__(self, url: str, pool_size: int = 5, connect_timeout_s: int = 5) -> None:
        self.engine = get_engine(url, pool_size, connect_timeout_s)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Iterator[Session]:
        """Yield a session that commits when the request succeeds and rolls back otherwise."""
        with self.sessionmaker() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))


def get_session(request: Request) -> Iterator[Session]:
    """The request's session, from the app's Database; tests override it with a rolled-back one."""
    yield from request.app.state.db.session()


# scope="function": commit runs before the response is sent, so an acknowledged write is stored.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
