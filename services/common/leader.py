"""One leader among all the processes of a service: a PostgreSQL session advisory lock.

A schedule that must run once per period however many workers and replicas run it (the
alerts evaluation pass) asks ``LeaderLock.acquire()`` before each pass. The first process to
ask holds the lock on a connection of its own for as long as it lives; the others get False
and skip the pass. When the holder stops or dies its connection closes, PostgreSQL releases
the lock, and the next process to ask becomes the leader: no lease to expire, no clock.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from services.common.settings import to_sqlalchemy_url

log = logging.getLogger("spe.leader")


def _libpq_url(url: str) -> str:
    return to_sqlalchemy_url(url).replace("postgresql+psycopg://", "postgresql://", 1)


class LeaderLock:
    """``acquire()`` is True in the one process holding lock ``name`` (checked each call)."""

    def __init__(self, database_url: str, name: str) -> None:
        self.url = _libpq_url(database_url)
        self.name = name
        self.conn: psycopg.Connection[Any] | None = None

    def acquire(self) -> bool:
        """Whether this process leads: keeps the lock if held (and alive), else tries for it."""
        if self.conn is not None:
            try:
                self.conn.execute("SELECT 1")
                return True
            except psycopg.Error:  # the connection died, and the lock with it
                log.warning("lost the %s leader lock; trying again", self.name)
                self.release()
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        try:
            row = conn.execute(
                "SELECT pg_try_advisory_lock(hashtext('spe.leader'), hashtext(%s))", (self.name,)
            ).fetchone()
        except BaseException:
            conn.close()
            raise
        if row is not None and row[0]:
            self.conn = conn
            log.info("leading %s", self.name)
            return True
        conn.close()
        return False

    def release(self) -> None:
        """Give the lock up (closing its connection releases it)."""
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None
