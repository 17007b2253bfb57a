"""The Alembic migrations produce exactly the schema the models declare, on both databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from tests.conftest import pg_database
from vwindow.db import Database
from vwindow.models import Base


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
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
