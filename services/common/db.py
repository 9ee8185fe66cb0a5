"""SQLAlchemy 2 engine and sessions (psycopg 3); only the session dependency commits."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from typing import Annotated, Any, Protocol

import psycopg
from fastapi import Depends, Request
from sqlalchemy import Connection, Engine, MetaData, create_engine, event, exc, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from starlette.concurrency import run_in_threadpool

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

# A pooled connection idle longer than this is pinged before it is handed out.
PING_AFTER_IDLE_S = 1.0


@lru_cache(maxsize=8)
def get_engine(
    url: str, pool_size: int = 5, connect_timeout_s: int = 5, *, autocommit: bool = False
) -> Engine:
    """One pooled engine per database URL (and kind) per process.

    A connection that sat idle is pinged before it is handed out (see
    ``_ping_idle_connections``), and one that failed because the server went away invalidates
    the whole pool: after a database restart the service reconnects by itself.
    ``connect_timeout`` bounds a connection attempt to an unreachable host (libpq's default is
    to wait for ever).

    ``autocommit``: the read pool (``Database.read``). Exactly ``pool_size`` connections and no
    overflow: SQLAlchemy closes an overflow connection as soon as it is handed back while the
    pool is full, so under bursty load an overflowing pool opens and closes PostgreSQL
    connections all the time (measured under bench/gateway.py's 50 clients: one new backend
    per 7 reads, 1.8 ms of PostgreSQL CPU per read, against 0.5 ms with none). Readers hold a
    connection only inside a thread doing nothing else, so waiting for one cannot deadlock;
    one not free within the connect timeout gives the caller a 503.
    """
    options: dict[str, Any] = (
        {"isolation_level": "AUTOCOMMIT", "max_overflow": 0, "pool_timeout": connect_timeout_s}
        if autocommit
        else {"max_overflow": pool_size * 2}
    )
    engine = create_engine(
        to_sqlalchemy_url(url),
        pool_size=pool_size,
        pool_recycle=1800,
        connect_args={"connect_timeout": connect_timeout_s},
        **options,
    )
    _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: Engine) -> None:
    """Check a pooled connection before use only when it sat idle: ``pool_pre_ping`` without
    its cost under load.

    ``pool_pre_ping`` costs a round trip to PostgreSQL on every checkout (measured: ~13 % of a
    read's wall time in ingest under load). A connection handed back a moment ago is as good as
    a ping; one that sat idle (the server may have restarted meanwhile) is pinged, and a dead
    one is swapped for a fresh connection, as with ``pool_pre_ping``. A connection broken
    while in steady use fails its statement instead; SQLAlchemy then recycles the whole pool.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi)
        except Exception as err:  # dead: the pool replaces it and tries again
            raise exc.DisconnectionError(f"pooled connection is dead: {err}") from err


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
    """Holds a service's engines and session factory; created once by ``create_app``."""

    def __init__(
        self, url: str, pool_size: int = 5, connect_timeout_s: int = 5, read_pool_size: int = 8
    ) -> None:
        self.url, self.connect_timeout_s = url, connect_timeout_s
        self.read_pool_size = read_pool_size
        self.engine = get_engine(url, pool_size, connect_timeout_s)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection of the read pool for the block: autocommit, for read-only statements.

        For a hot read route (sync, so the block runs in the route's worker thread): no
        BEGIN / COMMIT round trips and no thread-pool hop to commit, and the connection goes
        back to the pool as the block ends instead of when the response is sent. Each
        statement sees its own snapshot: a read that must be consistent is one statement.
        Session settings made here (``set_config(..., false)``) stay with the pooled
        connection, so every reader sets what it relies on.
        """
        engine = get_engine(self.url, self.read_pool_size, self.connect_timeout_s, autocommit=True)
        with engine.connect() as conn:
            yield conn

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


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request's session, from the app's Database; tests override it with a rolled-back one.

    Async, so a request pays a thread-pool hop only for database work it really did: making a
    session opens no connection, and one that never began a transaction (a read served from a
    cache, a proxied call) has nothing to commit. Commit and rollback, which do I/O, run in the
    thread pool as a sync dependency would.
    """
    session: Session = request.app.state.db.sessionmaker()
    try:
        yield session
        if session.in_transaction():
            await run_in_threadpool(session.commit)
    except BaseException:
        if session.in_transaction():
            await run_in_threadpool(session.rollback)
        raise
    finally:
        if session.in_transaction():  # e.g. cancelled mid-commit: give the connection back
            await run_in_threadpool(session.close)
        else:
            session.close()


# scope="function": commit runs before the response is sent, so an acknowledged write is stored.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


class Reads(Protocol):
    """What a read route needs: ``read()``, a connection for a block (see ``Database.read``)."""

    def read(self) -> AbstractContextManager[Connection]: ...


async def get_reads(request: Request) -> Reads:
    """The app's Database as a ``Reads``; tests override it to read their rolled-back session."""
    db: Database = request.app.state.db
    return db


ReadsDep = Annotated[Reads, Depends(get_reads)]
