"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.test_retention import Site, open_site
from vwindow.db import Database
from vwindow.seed import seed_demo
from vwindow.store import FileStore


@pytest.fixture
async def site(db_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    """Demo data and a file store (the retention tests' world: ``open_site``)."""
    db = Database(db_url)
    await db.start()
    store = FileStore(tmp_path / "files")
    await store.start()
    await seed_demo(db)
    try:
        yield await open_site(db, store)
    finally:
        await db.stop()
