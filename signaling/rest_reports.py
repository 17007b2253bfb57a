"""REST ``/api/v1`` for supervisors' figures and reports: today's figures, the queue over
a day, satisfaction by week, per-agent and per-township summaries, and the CSV/XLSX
exports of calls and cases.

Dates are local days in the office's timezone (``Asia/Shanghai``), ``YYYY-MM-DD``; a
range is ``from``..``to``, both included. Downloads need the bearer token like every
other route (the page fetches them and saves the blob): a token never goes in a URL.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import date
from typing import Final, Literal

from aiohttp import web
from pydantic import BaseModel

from signaling.rest import _allow, _principal
from signaling.services import SERVICES
from vwindow import audit, reports, stats
from vwindow.auth import Principal
from vwindow.errors import ValidationError
from vwindow.models import Role
from vwindow.permissions import MASKED, Disclosure, disclosure
from vwindow.reports import Column, Lang, Page

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()

SUPERVISORS: Final = (Role.SUPERVISOR,)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_INT = re.compile(r"[0-9]{1,6}")
_CHUNK = 64 * 1024


def _date(request: web.Request, name: str, default: date | None = None) -> date:
    raw = request.query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ValidationError(f"{name} is required (a date, YYYY-MM-DD)", field=name)
        return default
    try:
        if not _DATE.fullmatch(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError as err:
        raise ValidationError(f"{name} must be a date YYYY-MM-DD, got {raw[:20]!r}",
                              field=name) from err


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not _INT.fullmatch(raw) or not low <= int(raw) <= high:
        raise ValidationError(f"{name} must be a whole number {low}..{high}, got {raw[:20]!r}",
                              field=name)
    return int(raw)


def _choice(request: web.Request, name: str, choices: Sequence[str], default: str) -> str:
    raw = request.query.get(name) or default
    if raw not in choices:
        raise ValidationError(f"{name} must be one of {', '.join(choices)}, got {raw[:20]!r}",
                              field=name)
    return raw


def _lang(request: web.Request) -> Lang:
    return "en" if _choice(request, "lang", ("zh-CN", "en"), "zh-CN") == "en" else "zh-CN"


def _range(request: web.Request) -> stats.Period:
    return stats.period(_date(request, "from"), _date(request, "to"))


def _service_level(request: web.Request) -> int:
    return _int(request, "service_level_s", 20, 1, 3600)


# -- figures -----------------------------------------------------------------------------

_allow("GET", "/api/v1/stats/today", SUPERVISORS)


@routes.get("/api/v1/stats/today")
async def today_figures(request: web.Request) -> web.Response:
    """Today's figures (or another day's, with ``date``)."""
    _principal(request, SUPERVISORS)
    db = request.app[SERVICES].db
    day = _date(request, "date", stats.today())
    figures = await stats.day_figures(db, day, service_level_s=_service_level(request))
    return web.json_response(figures.model_dump(mode="json"))


_allow("GET", "/api/v1/stats/queue-over-day", SUPERVISORS)


@routes.get("/api/v1/stats/queue-over-day")
async def queue_over_day(request: web.Request) -> web.Response:
    _principal(request, SUPERVISORS)
    db = request.app[SERVICES].db
    day = _date(request, "date", stats.today())
    bucket = _int(request, "bucket_minutes", 15, 1, 1440)
    series = await stats.queue_over_day(db, day, bucket)
    return web.json_response(series.model_dump(mode="json"))


_allow("GET", "/api/v1/stats/csat-weeks", SUPERVISORS)


@routes.get("/api/v1/stats/csat-weeks")
async def csat_weeks(request: web.Request) -> web.Response:
    _principal(request, SUPERVISORS)
    db = request.app[SERVICES].db
    weeks = _int(request, "weeks", 8, 1, stats.MAX_WEEKS)
    until = _date(request, "until", stats.today())
    rows = await stats.csat_by_week(db, weeks, until)
    return web.json_response({"weeks": [w.model_dump(mode="json") for w in rows]})


# -- downloads -------------------------------------------------------------------------


def _attachment(name: str, p: stats.Period, ext: str) -> str:
    return f'attachment; filename="{name}_{p.first.isoformat()}_{p.last.isoformat()}.{ext}"'


async def _send_csv(request: web.Request, filename: str, columns: Sequence[Column],
                    pages: AsyncIterator[Page], lang: Lang,
                    shown: Disclosure = MASKED) -> web.StreamResponse:
    chunks = reports.csv_chunks(columns, pages, lang, shown)
    # The header and the first page before the status line: a failing query is still
    # an error reply, not a download cut short.
    head = [await anext(chunks), await anext(chunks, b"")]
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8", "Content-Disposition": filename,
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
    await response.prepare(request)
    try:
        for chunk in head:
            await response.write(chunk)
        async for chunk in chunks:
            await response.write(chunk)
    except ConnectionResetError:
        logger.info("CSV export %s: the client went away", filename)
        return response
    except Exception:
        # Too late for an error reply: cut the connection, so the download fails
        # visibly instead of ending as a short but well-formed file.
        logger.exception("CSV export %s failed while streaming", filename)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


async def _send_xlsx(request: web.Request, filename: str, columns: Sequence[Column],
                     pages: AsyncIterator[Page], title: str, lang: Lang,
                     shown: Disclosure = MASKED) -> web.StreamResponse:
    async with reports.xlsx_file(columns, pages, title, lang, shown=shown) as path:
        size = (await asyncio.to_thread(path.stat)).st_size
        response = web.StreamResponse(headers={
            "Content-Type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "Content-Disposition": filename, "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff"})
        response.content_length = size
        await response.prepare(request)
        with path.open("rb") as f:
            while chunk := await asyncio.to_thread(f.read, _CHUNK):
                await response.write(chunk)
        await response.write_eof()
        return response


async def _record(request: web.Request, principal: Principal, name: str, p: stats.Period,
                  fmt: str, unmasked: Sequence[str]) -> None:
    """Exports of case and call lists leave a trace in the audit log, naming the personal
    fields the exporter's role got in full (``unmasked``, usually empty)."""
    async with request.app[SERVICES].db.session() as s:
        await audit.append(s, actor=principal.key, action="report.exported",
                           detail={"report": name, "from": p.first.isoformat(),
                                   "to": p.last.isoformat(), "format": fmt,
                                   "unmasked": list(unmasked)})
    logger.info("report %s %s..%s (%s) exported by %s%s", name, p.first, p.last, fmt,
                principal.key, f" with unmasked {', '.join(unmasked)}" if unmasked else "")


def _detail_export(name: str, fmt: Literal["csv", "xlsx"]
                   ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    export = reports.EXPORTS[name]

    async def handler(request: web.Request) -> web.StreamResponse:
        principal = _principal(request, SUPERVISORS)
        services = request.app[SERVICES]
        db = services.db
        p, lang = _range(request), _lang(request)
        title = export.zh_title if lang == "zh-CN" else name
        shown = disclosure(services.config.privacy, principal.role, "export")
        if fmt == "xlsx":
            await reports.check_xlsx_size(export, db, p)
        await _record(request, principal, name, p, fmt, export.unmasked(shown))
        filename = _attachment(name, p, fmt)
        pages = export.pages(db, p, lang, shown)
        if fmt == "csv":
            return await _send_csv(request, filename, export.columns, pages, lang, shown)
        return await _send_xlsx(request, filename, export.columns, pages, title, lang, shown)

    handler.__name__ = f"export_{name}_{fmt}"
    return handler


for _name in reports.EXPORTS:
    for _fmt in ("csv", "xlsx"):
        _path = f"/api/v1/reports/{_name}.{_fmt}"
        _allow("GET", _path, SUPERVISORS)
        routes.get(_path)(_detail_export(_name, _fmt))


async def _summary(request: web.Request, name: str, zh_title: str, columns: Sequence[Column],
                   lines: Sequence[BaseModel], p: stats.Period) -> web.StreamResponse:
    fmt = _choice(request, "format", ("json", "csv", "xlsx"), "json")
    if fmt == "json":
        return web.json_response({"from": p.first.isoformat(), "to": p.last.isoformat(),
                                  "timezone": str(p.tz),
                                  "rows": [m.model_dump(mode="json") for m in lines]})
    lang = _lang(request)
    filename = _attachment(name, p, fmt)
    pages = reports.model_pages(lines, columns)
    if fmt == "csv":
        return await _send_csv(request, filename, columns, pages, lang)
    return await _send_xlsx(request, filename, columns, pages,
                            zh_title if lang == "zh-CN" else name, lang)


_allow("GET", "/api/v1/reports/agents", SUPERVISORS)


@routes.get("/api/v1/reports/agents")
async def agent_report(request: web.Request) -> web.StreamResponse:
    _principal(request, SUPERVISORS)
    db = request.app[SERVICES].db
    p = _range(request)
    lines = await stats.agent_summaries(db, p, service_level_s=_service_level(request))
    return await _summary(request, "agents", "坐席汇总", reports.AGENT_COLUMNS, lines, p)


_allow("GET", "/api/v1/reports/townships", SUPERVISORS)


@routes.get("/api/v1/reports/townships")
async def township_report(request: web.Request) -> web.StreamResponse:
    _principal(request, SUPERVISORS)
    db = request.app[SERVICES].db
    p = _range(request)
    lines = await stats.township_summaries(db, p, service_level_s=_service_level(request))
    return await _summary(request, "townships", "乡镇汇总", reports.TOWNSHIP_COLUMNS, lines, p)
