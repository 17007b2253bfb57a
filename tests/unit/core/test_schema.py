"""The Alembic migrations produce exactly the schema the models declare, on both databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Connection, Index

from tests.conftest import pg_database
from vwindow.db import Database
from vwindow.models import Base


def _expression_index(obj: Any) -> bool:
    return isinstance(obj, Index) and any(
        not isinstance(e, Column) for e in obj.expressions)


def _include(obj: Any, name: str | None, type_: str, reflected: bool,
             compare_to: Any) -> bool:
    """SQLite reflects an index on an expression (``priority DESC``) as one on the bare
    column, so alembic cannot compare it there (PostgreSQL's comparison covers it, and
    ``test_sqlite_waiting_index`` reads SQLite's own definition)."""
    return not (type_ == "index" and name in _EXPRESSION_INDEXES)


_EXPRESSION_INDEXES = {index.name for table in Base.metadata.tables.values()
                       for index in table.indexes if _expression_index(index)}


def _differences(connection: Connection) -> list[Any]:
    opts: dict[str, Any] = {"compare_type": True}
    if connection.dialect.name == "sqlite":
        opts["include_object"] = _include
    context = MigrationContext.configure(connection, opts=opts)
    return list(compare_metadata(context, Base.metadata))


async def _diff(url: str) -> list[Any]:
    db = Database(url)
    await db.start()
    try:
        async with db.engine.connect() as conn:
            return await conn.run_sync(_differences)
    finally:
        await db.stop()


async def test_sqlite_schema_matches_models(tmp_path: Path) -> None:
    assert await _diff(f"sqlite+aiosqlite:///{tmp_path / 'schema.db'}") == []


@pytest.mark.postgres
async def test_postgres_schema_matches_models(pg_server: Any) -> None:
    assert await _diff(pg_database(pg_server)) == []


async def test_sqlite_waiting_index(tmp_path: Path) -> None:
    """The routing pass's index is there on SQLite as declared: serving order, and only
    the waiting calls."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'schema.db'}")
    await db.start()
    try:
        async with db.engine.connect() as conn:
            sql = (await conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'ix_calls_waiting'")).scalar_one()
    finally:
        await db.stop()
    assert "priority DESC, queued_at, id" in sql and "WHERE status = 'queued'" in sql
