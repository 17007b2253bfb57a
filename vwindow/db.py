"""Database engine, sessions and schema migrations (Alembic, run in-process)."""

from __future__ import annotations

import errno
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from vwindow.errors import ConfigError, StorageError, UnavailableError, VWindowError

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """Make an async engine for a ``sqlite+aiosqlite`` or ``postgresql+asyncpg`` URL."""
    try:
        parsed = make_url(url)
    except Exception as err:
        raise ConfigError(f"database URL {url!r} is not a valid URL", field="db.url") from err
    if parsed.drivername == "sqlite+aiosqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # One connection: SQLite has one writer anyway, and a single connection keeps
        # read-then-write transactions (the audit chain's tail) from racing.
        in_memory = parsed.database in (None, "", ":memory:")
        pool: dict[str, Any] = {} if in_memory else {"pool_size": 1, "max_overflow": 0,
                                                      "pool_timeout": 60}
        engine = create_async_engine(url, echo=echo, **pool)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.drivername == "postgresql+asyncpg":
        return create_async_engine(url, echo=echo, pool_size=10, max_overflow=20)
    raise ConfigError(
        f"database driver {parsed.drivername!r} is not supported; "
        "use sqlite+aiosqlite:///path or postgresql+asyncpg://…",
        field="db.url",
    )


def _alembic_config(connection: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (both SQLite and PostgreSQL)."""

    def run(connection: Connection) -> None:
        command.upgrade(_alembic_config(connection), revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)
    logger.info("database schema at %s", revision)


class Database:
    """Owns the engine and hands out sessions."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = create_engine(url, echo=echo)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._lifeline: AsyncEngine | None = None

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def start(self) -> None:
        await migrate(self.engine)

    async def stop(self) -> None:
        if self._lifeline is not None:
            await self._lifeline.dispose()
            self._lifeline = None
        await self.engine.dispose()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction, committed on success."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def lifeline(self) -> AsyncIterator[AsyncSession]:
        """A session on a connection of its own, for the node's heartbeat: a beat must
        not queue for the pool behind a burst of requests (PostgreSQL; SQLite has one
        connection and one node, so its beat shares it)."""
        if not self.is_postgres:
            async with self.session() as session:
                yield session
            return
        if self._lifeline is None:
            self._lifeline = create_async_engine(self.url, pool_size=1, max_overflow=0,
                                                 pool_pre_ping=True)
        async with AsyncSession(self._lifeline, expire_on_commit=False) as session, \
                session.begin():
            yield session


async def core(session: AsyncSession) -> AsyncConnection:
    """The session's connection, for Core statements on a hot path: they skip the ORM's
    per-statement work (about half of a statement's cost here). Pending ORM changes are
    flushed first, so what the statement reads includes them, as an ORM query's would."""
    await session.flush()
    return await session.connection()


_UNREACHABLE = ("connection refused", "connection reset", "connection is closed",
                "connection was closed", "connection does not exist", "cannot connect now",
                "terminating connection", "server closed the connection",
                "the database system is", "could not connect", "connection lost")


def infrastructure_error(exc: BaseException) -> VWindowError | None:
    """What to tell a user when ``exc`` is the database or the disk failing, else None.

    The database away (refused, reset, shutting down, starting up) is ``unavailable``
    (503, try again shortly); a full disk, under SQLite or the file store, is
    ``storage`` (507). Anything else is a bug and stays an internal error.
    """
    for err in _chain(exc):
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return StorageError.from_os_error("the change was not saved", err)
        text = str(err).lower()
        if "database or disk is full" in text:
            return StorageError.from_os_error("the change was not saved",
                                              OSError(errno.ENOSPC, "disk full"))
        driver = isinstance(err, DBAPIError | OSError) or type(err).__module__.startswith(
            "asyncpg")
        if isinstance(err, ConnectionError) or (
                driver and any(s in text for s in _UNREACHABLE)):
            return UnavailableError("the database cannot be reached right now; nothing "
                                    "was changed. Try again in a minute")
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes and contexts, each once."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        err = pending.pop()
        if err is None or any(err is s for s in seen) or len(seen) > 20:
            continue
        seen.append(err)
        pending += [err.__cause__, err.__context__]
        if isinstance(err, DBAPIError):
            orig = err.orig
            pending.append(orig if isinstance(orig, BaseException) else None)
    return seen
