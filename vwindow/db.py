"""Database engine, sessions and schema migrations (Alembic, run in-process)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from vwindow.errors import ConfigError

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

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def start(self) -> None:
        await migrate(self.engine)

    async def stop(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction, committed on success."""
        async with self.sessions() as session, session.begin():
            yield session
