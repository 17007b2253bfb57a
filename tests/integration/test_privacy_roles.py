"""What each role sees of a citizen's ID-card read on a real server: in the case view (a
list of the case's reads) and in the cases export, with the default ``[privacy]`` table
and with a configured one; unmasked exports are named in the audit log."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from signaling.services import SERVICES, Services
from tests.conftest import make_config, start_server
from vwindow import reports, stats
from vwindow.models import AuditEntry, Case, IdRead, Kiosk, Role, ServiceItem, User
from vwindow.permissions import PrivacyConfig, disclosure
from vwindow.seed import DEMO

NAME, ADDRESS, NUMBER = "欧阳明华", "安徽省黄山市黄山区汤口镇某村", "34010419900307123X"
BIRTH = "1990-03-07"
# (name, address, birth_date, number) as a list shows them
MASKED = ("欧**华", "安徽省黄山市…", "1990-**-**", "3401**********123X")
ALL_BUT_NUMBER = ("欧阳明华", ADDRESS, BIRTH, "3401**********123X")
DENIED = ("denied", "denied", "denied", "denied")

CONFIGURED = PrivacyConfig.model_validate({
    "unmasked_in_lists": {"agent": ["name", "address", "birth_date"]},
    "unmasked_in_exports": {"agent": ["name"]},  # agents may not export at all: no effect
})


@dataclass
class Office:
    url: str
    services: Services
    http: aiohttp.ClientSession
    case_id: int
    tokens: dict[str, str]

    async def get(self, path: str, role: str) -> tuple[int, bytes]:
        async with self.http.get(self.url + path, headers={
                "Authorization": f"Bearer {self.tokens[role]}"}) as r:
            return r.status, await r.read()


async def _login(http: aiohttp.ClientSession, url: str, path: str,
                 body: dict[str, str]) -> str:
    async with http.post(f"{url}/api/v1/auth/{path}", json=body) as r:
        assert r.status == 200, await r.text()
        token: str = (await r.json())["token"]
        return token


@pytest.fixture(params=["default", "configured"])
async def office(request: pytest.FixtureRequest, db_url: str,
                 tmp_path: Path) -> AsyncIterator[Office]:
    config = make_config(db_url, tmp_path)
    if request.param == "configured":
        config = config.model_copy(update={"privacy": CONFIGURED})
    runner, url = await start_server(config)
    services = runner.app[SERVICES]
    async with services.db.session() as s:
        kiosk = (await s.scalars(select(Kiosk).where(Kiosk.code == DEMO.kiosk_code))).one()
        item = (await s.scalars(select(ServiceItem).order_by(ServiceItem.id))).first()
        agent = (await s.scalars(select(User).where(User.username == "agent1"))).one()
        assert item is not None
        case = Case(number="PR-0001", service_item_id=item.id, kiosk_id=kiosk.id,
                    township_id=kiosk.township_id, status="in_progress",
                    assigned_agent_id=agent.id)
        s.add(case)
        await s.flush()
        s.add(IdRead(case_id=case.id, card_type="resident", name=NAME, gender="男",
                     nation="汉", birth_date=BIRTH, address=ADDRESS, number=NUMBER,
                     number_valid=True, authority="黄山区公安局", valid_from="2020-01-01",
                     valid_to="2040-01-01", created_by="kiosk:1"))
        case_id = case.id
    surveyor, _ = services.tokens.issue(Role.SURVEYOR, "1", "现场踏勘", 600,
                                        extra={"case_id": case_id, "call_id": 1})
    async with aiohttp.ClientSession() as http:
        password = {"password": DEMO.password}
        tokens = {
            "kiosk": await _login(http, url, "kiosk", {"kiosk_code": DEMO.kiosk_code,
                                                       "device_key": DEMO.kiosk_key}),
            "agent": await _login(http, url, "login", {"username": "agent1", **password}),
            "supervisor": await _login(http, url, "login",
                                       {"username": DEMO.supervisor, **password}),
            "surveyor": surveyor,
        }
        try:
            yield Office(url, services, http, case_id, tokens)
        finally:
            await runner.cleanup()


LIST_VIEW = {
    "default": {"kiosk": MASKED, "agent": MASKED, "supervisor": MASKED,
                "surveyor": DENIED},
    "configured": {"kiosk": MASKED, "agent": ALL_BUT_NUMBER, "supervisor": MASKED,
                   "surveyor": DENIED},
}


async def test_what_each_role_sees_in_the_case_view(office: Office,
                                                    request: pytest.FixtureRequest) -> None:
    table = request.node.callspec.params["office"]
    seen: dict[str, tuple[str, str, str, str]] = {}
    for role in ("kiosk", "agent", "supervisor", "surveyor"):
        status, body = await office.get(f"/api/v1/cases/{office.case_id}", role)
        if status != 200:
            assert status in (401, 403) and NAME.encode() not in body
            seen[role] = DENIED
            continue
        (read,) = json.loads(body)["id_reads"]
        seen[role] = (read["name"], read["address"], read["birth_date"],
                      read["number_masked"])
        assert NUMBER.encode() not in body
        if read["birth_date"] != BIRTH:
            assert BIRTH.encode() not in body
    assert seen == LIST_VIEW[table]


async def test_the_reveal_gives_the_agent_on_the_case_the_full_birth_date(
        office: Office) -> None:
    _status, body = await office.get(f"/api/v1/cases/{office.case_id}", "agent")
    (read,) = json.loads(body)["id_reads"]
    async with office.http.post(
            f"{office.url}/api/v1/id-reads/{read['id']}/reveal", json={"reason": "核验"},
            headers={"Authorization": f"Bearer {office.tokens['agent']}"}) as r:
        assert r.status == 200
        assert await r.json() == {"number": NUMBER, "name": NAME, "address": ADDRESS,
                                  "birth_date": BIRTH}


# (applicant, id_number): exports carry no address and no birth date.
MASKED_ROW = (MASKED[0], MASKED[3])
NAME_ROW = (NAME, MASKED[3])
EXPORT: dict[str, dict[Role | str | None, tuple[str, str]]] = {
    "default": {Role.KIOSK: MASKED_ROW, Role.AGENT: MASKED_ROW, Role.SUPERVISOR: NAME_ROW,
                Role.SURVEYOR: MASKED_ROW, "admin": MASKED_ROW, None: MASKED_ROW},
    "configured": {Role.KIOSK: MASKED_ROW, Role.AGENT: NAME_ROW, Role.SUPERVISOR: MASKED_ROW,
                   Role.SURVEYOR: MASKED_ROW, "admin": MASKED_ROW, None: MASKED_ROW},
}


def _applicant(rows: list[list[str]]) -> tuple[str, str]:
    header = rows[0]
    name_col = next(i for i, h in enumerate(header) if h.startswith("申请人"))
    number_col = next(i for i, h in enumerate(header) if h.startswith("身份证号"))
    (row,) = [r for r in rows[1:] if r[0] == "PR-0001"]
    return row[name_col], row[number_col]


async def test_what_each_role_would_get_in_the_cases_export(
        office: Office, request: pytest.FixtureRequest) -> None:
    """The rows the export writes, for each role's entry in the table (only supervisors
    reach the route; the table still decides for any other role)."""
    table = request.node.callspec.params["office"]
    config = office.services.config.privacy
    period = stats.period(stats.today(), stats.today())
    seen: dict[Role | str | None, tuple[str, str]] = {}
    for role in EXPORT[table]:
        shown = disclosure(config, role, "export")
        rows = [r async for page in reports.case_pages(office.services.db, period, "zh-CN",
                                                        shown) for r in page]
        (row,) = [r for r in rows if r[0] == "PR-0001"]
        seen[role] = (str(row[-2]), str(row[-1]))
    assert seen == EXPORT[table]


async def test_supervisor_export_and_its_audit_entry(office: Office,
                                                     request: pytest.FixtureRequest) -> None:
    table = request.node.callspec.params["office"]
    day = stats.today().isoformat()
    path = f"/api/v1/reports/cases.csv?from={day}&to={day}"
    for role in ("kiosk", "agent", "surveyor"):
        status, body = await office.get(path, role)
        assert status == 401 and NAME.encode() not in body
    status, body = await office.get(path, "supervisor")
    assert status == 200
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    status, xlsx = await office.get(path.replace(".csv", ".xlsx"), "supervisor")
    assert status == 200
    sheet = load_workbook(io.BytesIO(xlsx), read_only=True)["案件明细"]
    xrows = [["" if v is None else str(v) for v in r] for r in sheet.iter_rows(values_only=True)]
    async with office.services.db.session() as s:
        entries = (await s.scalars(select(AuditEntry).where(
            AuditEntry.action == "report.exported").order_by(AuditEntry.id))).all()
    if table == "default":
        assert rows[0][-2:] == ["申请人", "身份证号(脱敏)"]
        assert _applicant(rows) == _applicant(xrows) == NAME_ROW
        unmasked = ["name"]
    else:
        assert rows[0][-2:] == ["申请人(脱敏)", "身份证号(脱敏)"]
        assert _applicant(rows) == _applicant(xrows) == MASKED_ROW
        unmasked = []
    assert NUMBER not in body.decode("utf-8-sig")
    assert BIRTH not in body.decode("utf-8-sig")
    assert [(e.actor, e.detail["format"], e.detail["unmasked"]) for e in entries] == [
        (entries[0].actor, "csv", unmasked), (entries[0].actor, "xlsx", unmasked)]
    assert entries[0].actor.startswith("supervisor:")
