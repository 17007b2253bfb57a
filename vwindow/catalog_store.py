"""The service catalog in the database: rows ↔ ``CatalogItem``, import, export, search.

``service_items`` rows hold the whole catalog entry; ``item_of`` turns a row back into
a validated ``CatalogItem`` (a row from before migration 0007 has only material names,
which become rules keyed ``m1``, ``m2`` …). ``upsert_items`` is the import: every item
validated first, then inserted or updated by code in one transaction, audited; items
not in the file stay as they are (cases point at them). ``CatalogIndex`` keeps one
``CatalogSearch`` over the stored items and rebuilds it after an import.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pydantic
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from vwindow import audit
from vwindow.catalog import CatalogFormatError, CatalogItem, default_synonyms
from vwindow.catalog_search import CatalogSearch, SearchHit
from vwindow.db import Database
from vwindow.models import ServiceItem

logger = logging.getLogger(__name__)


def item_of(row: ServiceItem) -> CatalogItem:
    """The catalog entry a row holds."""
    rules = list(row.material_rules or [])
    if not rules and row.required_materials:
        rules = [{"key": f"m{n}", "name": name}
                 for n, name in enumerate(row.required_materials, start=1)]
    try:
        return CatalogItem.model_validate({
            "code": row.code, "name": row.name, "department": row.department,
            "category": row.category, "questions": list(row.questions or []),
            "required_materials": rules, "instant_approval": bool(row.instant_approval),
            "aliases": list(row.aliases or []), "keywords": list(row.keywords or []),
        })
    except pydantic.ValidationError as err:
        # Only a hand-edited database gets here: say which item, not a 500 without a name.
        raise CatalogFormatError(f"service item {row.code!r} in the database is not a valid "
                                 f"catalog entry: {err.errors()[0]['msg']}",
                                 field="code") from err


def fill_row(row: ServiceItem, item: CatalogItem) -> None:
    """Write ``item`` into ``row`` (new or existing)."""
    data = item.model_dump(mode="json", exclude_none=True)
    row.code = item.code
    row.name = item.name
    row.department = item.department
    row.category = item.category
    row.questions = data["questions"]
    row.material_rules = data["required_materials"]
    row.required_materials = [m.name for m in item.required_materials]
    row.instant_approval = item.instant_approval
    row.aliases = list(item.aliases)
    row.keywords = list(item.keywords)


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    unchanged: int


async def upsert_items(s: AsyncSession, items: Sequence[CatalogItem], actor: str,
                       *, overwrite: bool = True) -> ImportResult:
    """Insert or update ``items`` by code within session ``s``.

    With ``overwrite=False`` an existing row is only filled in when it has no material
    rules yet (the demo seed must not undo a county's own edits).
    """
    codes = [i.code for i in items]
    if len(set(codes)) != len(codes):
        raise CatalogFormatError("the catalog lists a code twice", field="code")
    existing = {r.code: r for r in (await s.scalars(
        select(ServiceItem).where(ServiceItem.code.in_(codes)))).all()} if codes else {}
    created = updated = unchanged = 0
    for item in items:
        row = existing.get(item.code)
        if row is None:
            row = ServiceItem()
            fill_row(row, item)
            s.add(row)
            created += 1
        elif (overwrite or not row.material_rules) and item_of(row) != item:
            fill_row(row, item)
            updated += 1
        else:
            unchanged += 1
    if created or updated:
        await audit.append(s, actor=actor, action="catalog.imported",
                           detail={"created": created, "updated": updated,
                                   "unchanged": unchanged})
    logger.info("catalog import: %d created, %d updated, %d unchanged", created, updated,
                unchanged)
    return ImportResult(created, updated, unchanged)


async def stored_items(db: Database) -> list[CatalogItem]:
    async with db.session() as s:
        rows = (await s.scalars(select(ServiceItem).order_by(ServiceItem.code))).all()
        return [item_of(r) for r in rows]


class CatalogIndex:
    """One colloquial search over the stored catalog, built on first use.

    Building cuts every item's text with jieba (tens of milliseconds for the shipped
    catalog), so it runs in a worker thread, once; ``invalidate`` after an import.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._search: CatalogSearch | None = None
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._search = None

    async def search_index(self) -> CatalogSearch:
        async with self._lock:
            if self._search is None:
                items = await stored_items(self.db)
                self._search = await asyncio.to_thread(CatalogSearch, items,
                                                       default_synonyms())
            return self._search

    async def search(self, query: str, limit: int = 8) -> list[tuple[SearchHit, CatalogItem]]:
        """The best items for ``query`` with their catalog entries, best first."""
        index = await self.search_index()
        by_code = {i.code: i for i in index.items}
        hits = await asyncio.to_thread(index.search, query, limit)
        return [(hit, by_code[hit.code]) for hit in hits]
