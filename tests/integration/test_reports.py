"""Supervisors' figures and reports over REST on a real server: who may read them, how
bad parameters are named, and CSV/XLSX exports read back as a spreadsheet user would."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import select, update

from tests.conftest import Server
from tests.unit.core.test_stats import DAY, World, add_the_day, make_world
from vwindow.models import AuditEntry, Call, IdRead, Kiosk, Material

ROUTES = ("/api/v1/stats/today", "/api/v1/stats/queue-over-day", "/api/v1/stats/csat-weeks",
          "/api/v1/reports/calls.csv?from=2025-03-10&to=2025-03-10",
          "/api/v1/reports/calls.xlsx?from=2025-03-10&to=2025-03-10",
          "/api/v1/reports/cases.csv?from=2025-03-10&to=2025-03-10",
          "/api/v1/reports/cases.xlsx?from=2025-03-10&to=2025-03-10",
          "/api/v1/reports/agents?from=2025-03-10&to=2025-03-10",
          "/api/v1/reports/townships?from=2025-03-10&to=2025-03-10")
RANGE = f"from={DAY.isoformat()}&to={DAY.isoformat()}"


async def _get(server: Server, path: str, token: str | None) -> tuple[int, bytes, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with server.http.get(server.url + path, headers=headers) as r:
        return r.status, await r.read(), r.headers


async def _json(server: Server, path: str, token: str) -> Any:
    async with server.http.get(server.url + path,
                               headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def _world(server: Server) -> World:
    w = await make_world(server.services.db)
    await add_the_day(w)
    return w


async def test_only_supervisors_read_figures_and_reports(server: Server) -> None:
    agent = await server.login("agent1")
    kiosk = await server.kiosk_token()
    boss = await server.login("super1")
    for path in ROUTES:
        for token in (None, agent, kiosk):
            status, body, _ = await _get(server, path, token)
            assert status == 401, (path, status, body)
        status, body, _ = await _get(server, path, boss)
        assert status == 200, (path, body)


@pytest.mark.parametrize(("path", "field"), [
    ("/api/v1/stats/today?date=2025-3-10", "date"),
    ("/api/v1/stats/today?date=2025-02-30", "date"),
    ("/api/v1/stats/today?service_level_s=0", "service_level_s"),
    ("/api/v1/stats/queue-over-day?date=yesterday", "date"),
    ("/api/v1/stats/queue-over-day?bucket_minutes=7", "bucket_minutes"),
    ("/api/v1/stats/csat-weeks?weeks=0", "weeks"),
    ("/api/v1/stats/csat-weeks?until=2025/03/10", "until"),
    ("/api/v1/reports/calls.csv?to=2025-03-10", "from"),
    ("/api/v1/reports/calls.csv?from=2025-03-10", "to"),
    ("/api/v1/reports/calls.xlsx?from=2025-03-10&to=2025-03-09", "to"),
    ("/api/v1/reports/cases.csv?from=2024-01-01&to=2025-01-01", "to"),
    ("/api/v1/reports/cases.csv?from=2025-03-10&to=2025-03-10&lang=fr", "lang"),
    ("/api/v1/reports/agents?from=2025-03-10&to=2025-03-10&format=pdf", "format"),
    ("/api/v1/reports/townships?from=20250310&to=2025-03-10", "from"),
])
async def test_bad_parameters_are_named(server: Server, path: str, field: str) -> None:
    status, body, _ = await _get(server, path, await server.login("super1"))
    assert status == 400, body
    error = json.loads(body)["error"]
    assert error["field"] == field, error


async def test_a_year_is_the_longest_range(server: Server) -> None:
    boss = await server.login("super1")
    status, body, _ = await _get(server, "/api/v1/reports/calls.csv?from=2024-01-01&to=2024-12-31",
                                 boss)
    assert status == 200
    status, body, _ = await _get(server, "/api/v1/reports/calls.csv?from=2024-01-01&to=2025-01-01",
                                 boss)
    assert status == 400 and b"366" in body


async def test_figures_over_rest(server: Server) -> None:
    await _world(server)
    boss = await server.login("super1")
    f = await _json(server, f"/api/v1/stats/today?date={DAY.isoformat()}", boss)
    assert (f["offered"], f["answered"], f["abandoned"], f["waiting"]) == (7, 5, 1, 1)
    assert f["service_level_pct"] == pytest.approx(50.0)
    assert f["travel_km"] == pytest.approx(556.0)
    assert f["timezone"] == "Asia/Shanghai" and f["date"] == DAY.isoformat()
    strict = await _json(server, f"/api/v1/stats/today?date={DAY.isoformat()}"
                                 "&service_level_s=10", boss)
    assert strict["answered_within"] == 2
    series = await _json(server, f"/api/v1/stats/queue-over-day?date={DAY.isoformat()}"
                                 "&bucket_minutes=60", boss)
    assert len(series["buckets"]) == 24
    nine = series["buckets"][9]
    assert (nine["peak"], nine["answered"]) == (2, 3)
    weeks = await _json(server, f"/api/v1/stats/csat-weeks?weeks=2&until={DAY.isoformat()}",
                        boss)
    assert [(w["week_start"], w["ratings"]) for w in weeks["weeks"]] == [
        ("2025-03-03", 1), ("2025-03-10", 3)]
    # Today (nothing happened yet on this server): zeros, not errors.
    today = await _json(server, "/api/v1/stats/today", boss)
    assert today["offered"] == 0 and today["service_level_pct"] is None


def _csv_rows(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf"), body[:10]  # BOM: Excel reads UTF-8
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_calls_export_round_trip(server: Server) -> None:
    await _world(server)
    boss = await server.login("super1")
    status, body, headers = await _get(server, f"/api/v1/reports/calls.csv?{RANGE}", boss)
    assert status == 200
    assert headers["Content-Type"].startswith("text/csv")
    assert 'filename="calls_2025-03-10_2025-03-10.csv"' in headers["Content-Disposition"]
    rows = _csv_rows(body)
    head, data = rows[0], rows[1:]
    assert head[:3] == ["呼叫编号", "案件编号", "事项编码"] and "节省往返里程(公里)" in head
    assert len(data) == 7
    col = {name: i for i, name in enumerate(head)}
    first = data[0]
    assert first[col["排队时间"]] == "2025-03-10 09:00:00"
    assert first[col["接听时间"]] == "2025-03-10 09:00:10"
    assert float(first[col["等待(秒)"]]) == 10.0
    assert float(first[col["通话(秒)"]]) == 600.0
    assert (first[col["状态"]], first[col["坐席"]], first[col["评价(星)"]]) == ("已结束", "王芳",
                                                                              "5")
    assert float(first[col["节省往返里程(公里)"]]) == 124.0
    abandoned = data[3]
    assert (abandoned[col["状态"]], abandoned[col["接听时间"]]) == ("已放弃", "")
    assert float(abandoned[col["节省往返里程(公里)"]]) == 0.0

    status, body, headers = await _get(server, f"/api/v1/reports/calls.xlsx?{RANGE}&lang=en",
                                       boss)
    assert status == 200
    assert headers["Content-Type"].startswith("application/vnd.openxmlformats")
    book = load_workbook(io.BytesIO(body), read_only=True)
    sheet = book["calls"]
    xrows = list(sheet.iter_rows(values_only=True))
    assert xrows[0][:4] == ("call_id", "case_number", "service_code", "service")
    assert len(xrows) == 8
    xcol = {name: i for i, name in enumerate(xrows[0])}
    assert xrows[1][xcol["queued_at"]] == datetime(2025, 3, 10, 9, 0, 0)
    assert xrows[1][xcol["status"]] == "ended" and xrows[1][xcol["stars"]] == 5
    assert xrows[1][xcol["travel_hours"]] == pytest.approx(3.17)
    assert xrows[4][xcol["status"]] == "cancelled"


async def test_cases_export_masks_id_reads(server: Server) -> None:
    w = await _world(server)
    number = "34010419900307123X"
    async with server.services.db.session() as s:
        call = (await s.scalars(select(Call).where(Call.kiosk_id == w.kiosk_a)
                                .order_by(Call.id))).first()
        assert call is not None
        s.add(IdRead(case_id=call.case_id, call_id=call.id, card_type="resident",
                     name="张三丰", gender="男", nation="汉", birth_date="1990-03-07",
                     address="安徽省黄山市黄山区汤口镇某村", number=number, number_valid=True,
                     authority="黄山区公安局", valid_from="2020-01-01", valid_to="2040-01-01",
                     created_by="kiosk:1"))
        s.add(Material(case_id=call.case_id, call_id=call.id, sha256="0" * 64, size=1,
                       content_type="image/jpeg", filename="id.jpg", source="upload",
                       created_by="kiosk:1"))
    boss = await server.login("super1")
    status, body, _ = await _get(server, f"/api/v1/reports/cases.csv?{RANGE}", boss)
    assert status == 200
    rows = _csv_rows(body)
    col = {name: i for i, name in enumerate(rows[0])}
    assert len(rows) == 1 + 7  # one case per call in these data
    first = rows[1]
    # Supervisors get the applicant's name (the [privacy] default), never the number.
    assert (first[col["申请人"]], first[col["身份证号(脱敏)"]]) == ("张三丰",
                                                              "3401**********123X")
    assert (first[col["身份证已核验"]], first[col["材料数"]], first[col["呼叫次数"]]) == (
        "1", "1", "1")
    assert first[col["平均评价(星)"]] == "5.0"
    text = body.decode("utf-8-sig")
    for secret in (number, "汤口镇某村", "1990-03-07"):
        assert secret not in text
    status, body, _ = await _get(server, f"/api/v1/reports/cases.xlsx?{RANGE}", boss)
    assert status == 200
    sheet = load_workbook(io.BytesIO(body), read_only=True)["案件明细"]
    values = [v for row in sheet.iter_rows(values_only=True) for v in row]
    assert "3401**********123X" in values and number not in values
    # Each export of a case or call list is in the audit log.
    async with server.services.db.session() as s:
        exported = (await s.scalars(select(AuditEntry).where(
            AuditEntry.action == "report.exported"))).all()
    assert [(e.detail["report"], e.detail["format"], e.detail["unmasked"])
            for e in exported] == [("cases", "csv", ["name"]), ("cases", "xlsx", ["name"])]


async def test_spreadsheet_formulas_stay_text(server: Server) -> None:
    w = await _world(server)
    async with server.services.db.session() as s:
        await s.execute(update(Kiosk).where(Kiosk.id == w.kiosk_a)
                        .values(name="=HYPERLINK(\"http://x\")"))
    boss = await server.login("super1")
    _, body, _ = await _get(server, f"/api/v1/reports/calls.csv?{RANGE}", boss)
    rows = _csv_rows(body)
    assert rows[1][rows[0].index("终端")] == "'=HYPERLINK(\"http://x\")"
    _, body, _ = await _get(server, f"/api/v1/reports/calls.xlsx?{RANGE}", boss)
    sheet = load_workbook(io.BytesIO(body))["通话明细"]
    cell = sheet.cell(row=2, column=6)
    assert (cell.value, cell.data_type) == ("=HYPERLINK(\"http://x\")", "s")


async def test_summaries(server: Server) -> None:
    await _world(server)
    boss = await server.login("super1")
    agents = await _json(server, f"/api/v1/reports/agents?{RANGE}", boss)
    assert [(a["name"], a["answered"]) for a in agents["rows"]] == [("李强", 3), ("王芳", 2)]
    towns = await _json(server, f"/api/v1/reports/townships?{RANGE}", boss)
    by_name = {t["name"]: t for t in towns["rows"]}
    assert by_name["甲镇"]["travel_km"] == pytest.approx(496.0)
    assert by_name["汤口镇"]["offered"] == 0  # the demo township: listed, no calls
    status, body, headers = await _get(server, f"/api/v1/reports/townships?{RANGE}&format=csv",
                                       boss)
    assert status == 200 and "townships_2025-03-10" in headers["Content-Disposition"]
    rows = _csv_rows(body)
    col = {name: i for i, name in enumerate(rows[0])}
    jia = next(r for r in rows[1:] if r[col["乡镇"]] == "甲镇")
    assert (jia[col["呼入数"]], jia[col["服务水平(%)"]], jia[col["节省往返里程(公里)"]]) == (
        "5", "75.0", "496.0")
    status, body, _ = await _get(server, f"/api/v1/reports/agents?{RANGE}&format=xlsx&lang=en",
                                 boss)
    sheet = load_workbook(io.BytesIO(body), read_only=True)["agents"]
    xrows = list(sheet.iter_rows(values_only=True))
    assert xrows[0][2] == "name" and xrows[1][2] == "李强" and xrows[1][4] == 3


async def test_an_empty_range_has_only_headers(server: Server) -> None:
    boss = await server.login("super1")
    day = (DAY - timedelta(days=400)).isoformat()
    _, body, _ = await _get(server, f"/api/v1/reports/calls.csv?from={day}&to={day}", boss)
    assert len(_csv_rows(body)) == 1
    _, body, _ = await _get(server, f"/api/v1/reports/cases.xlsx?from={day}&to={day}", boss)
    sheet = load_workbook(io.BytesIO(body), read_only=True)["案件明细"]
    assert len(list(sheet.iter_rows(values_only=True))) == 1
