"""Date-range exports for supervisors: calls and cases (and the per-agent and
per-township summaries of :mod:`vwindow.stats`) as CSV or XLSX.

CSV is UTF-8 with a byte-order mark, so Excel opens the Chinese text as such; XLSX is
written by openpyxl in write-only mode. Rows are read from the database in pages of
:data:`PAGE_ROWS`, each in its own short transaction, so a large export never holds the
(single, on SQLite) database connection while a slow client downloads.

Times are local to the office (``Asia/Shanghai``) and without zone, as Excel wants them.
Headers are Chinese (``lang="zh-CN"``) or English (``lang="en"``); the ``key`` of each
column below is its English name.

Calls (one row per call queued in the range, in the order they arrived):
call_id, case_number, service_code, service, township, kiosk, status, queued_at,
answered_at, ended_at, wait_s (queued → answered), handle_s (answered → ended),
agent (the agent who has the call last), ended_by, dialect, callback, stars (the
kiosk's rating), travel_km and travel_hours (the round trip to the county seat an
answered call saved).

Cases (one row per case opened in the range): case_number, created_at, status,
service_code, service, department, township, kiosk, agent (assigned), calls,
answered_calls, materials, stars (mean rating of its calls), id_checked (an ID card
was read and its number checks), applicant (张*明) and id_number (3401**********1234,
always masked) of the latest ID-card read.

Personal data: the citizen's own words (rating comments), addresses and birth dates
stay out of the exports. The applicant's name is masked unless the exporting role's
``[privacy]`` entry (``vwindow.permissions``; by default supervisors) shows it in full;
a masked column's Chinese header says so (``申请人(脱敏)``). The ID number is always
masked.
Cells that a spreadsheet would read as a formula (``=``, ``+``, ``-``, ``@`` first) are
written as plain text.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel
from sqlalchemy import case, func, select

from vwindow.db import Database
from vwindow.errors import VWindowError
from vwindow.models import (
    Call,
    CallStatus,
    Case,
    IdRead,
    Kiosk,
    Material,
    Rating,
    ServiceItem,
    Township,
    User,
)
from vwindow.permissions import MASKED, Disclosure, PersonalField
from vwindow.stats import Period

if TYPE_CHECKING:
    from openpyxl.worksheet._write_only import WriteOnlyWorksheet

logger = logging.getLogger(__name__)

PAGE_ROWS: Final = 1000
XLSX_MAX_ROWS: Final = 1_000_000
"""Excel shows at most 1,048,576 rows; a bigger export is refused, not cut short."""

Lang = Literal["zh-CN", "en"]
Cell = str | int | float | bool | datetime | None
Page = list[list[Cell]]


class ReportTooLargeError(VWindowError):
    code = "report_too_large"
    http_status = 413


@dataclass(frozen=True)
class Column:
    key: str
    zh: str
    width: int = 12
    """Width in the XLSX sheet, in characters."""
    personal: PersonalField | None = None
    """The personal field the column holds, masked or not by the reader's role."""

    def title(self, lang: Lang, shown: Disclosure = MASKED) -> str:
        if lang != "zh-CN":
            return self.key
        if self.personal is not None and not shown.shows(self.personal):
            return f"{self.zh}(脱敏)"
        return self.zh


CALL_COLUMNS: Final = (
    Column("call_id", "呼叫编号", 10), Column("case_number", "案件编号", 20),
    Column("service_code", "事项编码"), Column("service", "办理事项", 30),
    Column("township", "乡镇"), Column("kiosk", "终端", 24), Column("status", "状态", 10),
    Column("queued_at", "排队时间", 20), Column("answered_at", "接听时间", 20),
    Column("ended_at", "结束时间", 20), Column("wait_s", "等待(秒)", 10),
    Column("handle_s", "通话(秒)", 10), Column("agent", "坐席", 20),
    Column("ended_by", "结束方", 10), Column("dialect", "方言", 10),
    Column("callback", "回拨", 8), Column("stars", "评价(星)", 10),
    Column("travel_km", "节省往返里程(公里)", 14), Column("travel_hours", "节省往返时间(小时)", 14),
)
CASE_COLUMNS: Final = (
    Column("case_number", "案件编号", 20), Column("created_at", "受理时间", 20),
    Column("status", "状态", 10), Column("service_code", "事项编码"),
    Column("service", "办理事项", 30), Column("department", "办理部门", 16),
    Column("township", "乡镇"), Column("kiosk", "终端", 24), Column("agent", "坐席", 20),
    Column("calls", "呼叫次数", 10), Column("answered_calls", "接通次数", 10),
    Column("materials", "材料数", 10), Column("stars", "平均评价(星)", 12),
    Column("id_checked", "身份证已核验", 12), Column("applicant", "申请人", 14, "name"),
    Column("id_number", "身份证号", 22, "id_number"),
)
AGENT_COLUMNS: Final = (
    Column("agent_id", "坐席编号", 10), Column("username", "账号"), Column("name", "坐席", 20),
    Column("level", "层级", 8), Column("answered", "接听数", 10),
    Column("answered_within", "及时接听数", 10), Column("asa_s", "平均应答(秒)", 12),
    Column("handled", "办结通话数", 10), Column("aht_s", "平均通话(秒)", 12),
    Column("talk_hours", "通话总时长(小时)", 14), Column("ratings", "评价数", 10),
    Column("csat_avg", "平均评价(星)", 12), Column("csat_top_pct", "满意率(4-5星,%)", 14),
    Column("travel_km", "节省往返里程(公里)", 14), Column("travel_hours", "节省往返时间(小时)", 14),
)
TOWNSHIP_COLUMNS: Final = (
    Column("code", "乡镇编码", 10), Column("name", "乡镇"), Column("county", "县区"),
    Column("distance_km", "距县城(公里)", 12), Column("travel_minutes", "单程用时(分钟)", 12),
    Column("offered", "呼入数", 10), Column("answered", "接听数", 10),
    Column("abandoned", "放弃数", 10), Column("waiting", "等待中", 10),
    Column("service_level_pct", "服务水平(%)", 12), Column("asa_s", "平均应答(秒)", 12),
    Column("aht_s", "平均通话(秒)", 12), Column("ratings", "评价数", 10),
    Column("csat_avg", "平均评价(星)", 12), Column("csat_top_pct", "满意率(4-5星,%)", 14),
    Column("travel_km", "节省往返里程(公里)", 14), Column("travel_hours", "节省往返时间(小时)", 14),
)

_STATUS_ZH: Final = {"queued": "排队中", "live": "通话中", "ended": "已结束",
                     "cancelled": "已放弃", "received": "已受理", "in_progress": "办理中",
                     "booked": "已预约", "completed": "已办结"}
_ENDED_BY_ZH: Final = {"agent": "坐席", "kiosk": "群众", "system": "系统"}
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def headers(columns: Sequence[Column], lang: Lang, shown: Disclosure = MASKED) -> list[str]:
    return [c.title(lang, shown) for c in columns]


def _word(table: dict[str, str], value: str | None, lang: Lang) -> str:
    if value is None:
        return ""
    return table.get(value, value) if lang == "zh-CN" else value


def _local(value: datetime | None, tz: tzinfo) -> datetime | None:
    """Local wall time without zone, whole seconds (what a spreadsheet shows)."""
    if value is None:
        return None
    return value.astimezone(tz).replace(tzinfo=None, microsecond=0)


def _secs(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds(), 1)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# -- rows --------------------------------------------------------------------------------


async def count_calls(db: Database, p: Period) -> int:
    async with db.session() as s:
        return int(await s.scalar(select(func.count(Call.id)).where(
            Call.queued_at >= p.start, Call.queued_at < p.end)) or 0)


async def count_cases(db: Database, p: Period) -> int:
    async with db.session() as s:
        return int(await s.scalar(select(func.count(Case.id)).where(
            Case.created_at >= p.start, Case.created_at < p.end)) or 0)


async def call_pages(db: Database, p: Period, lang: Lang = "zh-CN",
                     shown: Disclosure = MASKED) -> AsyncIterator[Page]:
    """The rows of :data:`CALL_COLUMNS`, a page at a time (no citizen's personal data:
    ``shown`` is taken for the common signature)."""
    after = 0
    while True:
        async with db.session() as s:
            rows = (await s.execute(
                select(Call.id, Case.number, ServiceItem.code, ServiceItem.name,
                       Township.name, Kiosk.name, Call.status, Call.queued_at,
                       Call.answered_at, Call.ended_at, User.display_name, Call.ended_by,
                       Call.dialect, Call.callback, Rating.stars, Township.distance_km,
                       Township.travel_minutes)
                .join(Case, Case.id == Call.case_id)
                .join(ServiceItem, ServiceItem.id == Call.service_item_id)
                .join(Kiosk, Kiosk.id == Call.kiosk_id)
                .join(Township, Township.id == Case.township_id)
                .outerjoin(User, User.id == Call.agent_id)
                .outerjoin(Rating, Rating.call_id == Call.id)
                .where(Call.queued_at >= p.start, Call.queued_at < p.end, Call.id > after)
                .order_by(Call.id).limit(PAGE_ROWS))).all()
        if not rows:
            return
        page: Page = []
        for (call_id, number, code, service, town, kiosk, status, queued, answered, ended,
             agent, ended_by, dialect, callback, stars, km, minutes) in rows:
            saved = answered is not None
            page.append([
                call_id, number, code, service, town, kiosk,
                _word(_STATUS_ZH, status, lang), _local(queued, p.tz),
                _local(answered, p.tz), _local(ended, p.tz), _secs(answered, queued),
                _secs(ended, answered) if status == CallStatus.ENDED else None,
                agent or "", _word(_ENDED_BY_ZH, ended_by, lang), dialect or "",
                bool(callback), stars,
                round(2 * km, 1) if saved else 0.0,
                round(2 * minutes / 60, 2) if saved else 0.0])
        yield page
        after = rows[-1][0]


async def case_pages(db: Database, p: Period, lang: Lang = "zh-CN",
                     shown: Disclosure = MASKED) -> AsyncIterator[Page]:
    """The rows of :data:`CASE_COLUMNS`, a page at a time; the applicant as ``shown``
    lets the exporting role see it."""
    after = 0
    while True:
        async with db.session() as s:
            rows = (await s.execute(
                select(Case.id, Case.number, Case.created_at, Case.status, ServiceItem.code,
                       ServiceItem.name, ServiceItem.department, Township.name, Kiosk.name,
                       User.display_name)
                .join(ServiceItem, ServiceItem.id == Case.service_item_id)
                .join(Kiosk, Kiosk.id == Case.kiosk_id)
                .join(Township, Township.id == Case.township_id)
                .outerjoin(User, User.id == Case.assigned_agent_id)
                .where(Case.created_at >= p.start, Case.created_at < p.end, Case.id > after)
                .order_by(Case.id).limit(PAGE_ROWS))).all()
            if not rows:
                return
            ids = [r[0] for r in rows]
            calls = {case_id: (int(n), int(answered or 0)) for case_id, n, answered in (
                await s.execute(
                    select(Call.case_id, func.count(Call.id),
                           func.sum(case((Call.answered_at.is_not(None), 1), else_=0)))
                    .where(Call.case_id.in_(ids)).group_by(Call.case_id))).all()}
            materials: dict[int, Any] = {case_id: n for case_id, n in (await s.execute(
                select(Material.case_id, func.count(Material.id))
                .where(Material.case_id.in_(ids)).group_by(Material.case_id))).all()}
            stars: dict[int, Any] = {case_id: avg for case_id, avg in (await s.execute(
                select(Rating.case_id, func.avg(Rating.stars))
                .where(Rating.case_id.in_(ids)).group_by(Rating.case_id))).all()}
            # Only the latest read of each case; masked below as ``shown`` says.
            reads: dict[int, tuple[str, str, bool]] = {}
            for case_id, name, number, valid in (await s.execute(
                    select(IdRead.case_id, IdRead.name, IdRead.number, IdRead.number_valid)
                    .where(IdRead.case_id.in_(ids)).order_by(IdRead.id))).all():
                reads[case_id] = (name, number, valid)
        page: Page = []
        for (case_id, number, created, status, code, service, department, town, kiosk,
             agent) in rows:
            n_calls, n_answered = calls.get(case_id, (0, 0))
            read = reads.get(case_id)
            avg = stars.get(case_id)
            page.append([
                number, _local(created, p.tz), _word(_STATUS_ZH, status, lang), code, service,
                department, town, kiosk, agent or "", n_calls, n_answered,
                int(materials.get(case_id, 0)),
                None if avg is None else round(float(avg), 2),
                bool(read and read[2]),
                shown.name(read[0]) if read else "",
                shown.id_number(read[1]) if read else ""])
        yield page
        after = rows[-1][0]


async def model_pages(models: Sequence[BaseModel], columns: Sequence[Column]
                      ) -> AsyncIterator[Page]:
    """Summary lines (:class:`vwindow.stats.AgentSummary` and the like) as one page."""
    page: Page = []
    for m in models:
        values = m.model_dump()
        page.append([_round(v, 2) if isinstance(v, float) else v
                     for v in (values[c.key] for c in columns)])
    yield page


# -- writers -------------------------------------------------------------------------------


def _text_safe(value: Cell) -> Cell:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


async def csv_chunks(columns: Sequence[Column], pages: AsyncIterator[Page],
                     lang: Lang = "zh-CN", shown: Disclosure = MASKED
                     ) -> AsyncIterator[bytes]:
    """The CSV bytes: a BOM and the header row first, then one chunk per page."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(headers(columns, lang, shown))
    yield ("\ufeff" + buffer.getvalue()).encode()
    async for page in pages:
        buffer.seek(0)
        buffer.truncate()
        for row in page:
            writer.writerow([_csv_cell(v) for v in row])
        yield buffer.getvalue().encode()


def _csv_cell(value: Cell) -> Cell:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "1" if value else "0"
    return _text_safe(value)


def _xlsx_row(ws: WriteOnlyWorksheet, row: list[Cell], text_cell: Any) -> list[Any]:
    out: list[Any] = []
    for value in row:
        if isinstance(value, str) and value.startswith(_FORMULA_START):
            # openpyxl would store it as a formula; as a typed text cell it stays text.
            cell = text_cell(ws, value=value)
            cell.data_type = "s"
            out.append(cell)
        else:
            out.append(value)
    return out


def _append(ws: WriteOnlyWorksheet, page: Page) -> None:
    from openpyxl.cell import WriteOnlyCell  # once per page, not per row

    for row in page:
        ws.append(_xlsx_row(ws, row, WriteOnlyCell))


@asynccontextmanager
async def xlsx_file(columns: Sequence[Column], pages: AsyncIterator[Page], title: str,
                    lang: Lang = "zh-CN", directory: Path | None = None,
                    shown: Disclosure = MASKED) -> AsyncIterator[Path]:
    """An XLSX file of the rows, in a temporary file removed on leaving the block.

    The workbook is filled and saved in a worker thread: a year of calls is seconds of
    CPU that must not stall the event loop.
    """
    # Imported here: ~12 MB of every node's memory, for an export now and then.
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    ws: WriteOnlyWorksheet = wb.create_sheet(title[:31])
    for i, column in enumerate(columns, start=1):
        # Write-only sheets do have column_dimensions; the openpyxl stubs miss it.
        ws.column_dimensions[get_column_letter(i)].width = column.width  # type: ignore[attr-defined]
    ws.freeze_panes = "A2"
    ws.append(headers(columns, lang, shown))
    async for page in pages:
        await asyncio.to_thread(_append, ws, page)
    fd, name = tempfile.mkstemp(prefix="vwindow-report-", suffix=".xlsx", dir=directory)
    os.close(fd)
    path = Path(name)
    try:
        await asyncio.to_thread(wb.save, str(path))
        yield path
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)


PageSource = Callable[[Database, Period, Lang, Disclosure], AsyncIterator[Page]]


@dataclass(frozen=True)
class Export:
    """One kind of export: its columns, where its rows come from, how to count them."""

    name: str
    zh_title: str
    columns: tuple[Column, ...]
    pages: PageSource
    count: Callable[[Database, Period], Any]

    def unmasked(self, shown: Disclosure) -> list[PersonalField]:
        """The personal fields this export writes in full for ``shown`` (for the audit)."""
        return sorted({c.personal for c in self.columns
                       if c.personal is not None and shown.shows(c.personal)})


EXPORTS: Final = {
    "calls": Export("calls", "通话明细", CALL_COLUMNS, call_pages, count_calls),
    "cases": Export("cases", "案件明细", CASE_COLUMNS, case_pages, count_cases),
}


async def check_xlsx_size(export: Export, db: Database, p: Period) -> None:
    rows = int(await export.count(db, p))
    if rows > XLSX_MAX_ROWS:
        raise ReportTooLargeError(
            f"{rows} {export.name} from {p.first.isoformat()} to {p.last.isoformat()} are "
            f"more than a sheet holds ({XLSX_MAX_ROWS}); export a shorter range or CSV",
            field="to")
