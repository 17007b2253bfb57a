"""Case lifecycle, material pre-check and the catalog over REST, on a real server."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from sqlalchemy import select, update

from signaling.client import ClientError
from tests.conftest import Server
from tests.helpers import answered_call, wait_for
from vwindow.audit import verify_chain
from vwindow.catalog import CSV_COLUMNS, default_items
from vwindow.errors import NotFoundError, ValidationError
from vwindow.models import AuditEntry, Kiosk

JPEG = b"\xff\xd8\xff\xe0" + b"case flow test page " * 8


async def call(server: Server, method: str, path: str, token: str | None, *,
               status: int, **kwargs: Any) -> Any:
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with server.http.request(method, f"{server.url}/api/v1{path}", headers=headers,
                                   **kwargs) as r:
        body = await r.read()
        assert r.status == status, body.decode(errors="replace")
        if r.content_type == "application/json":
            return json.loads(body)
        return body


async def upload(server: Server, token: str, case_id: int, call_id: int, filename: str,
                 data: bytes = JPEG) -> dict[str, Any]:
    result: dict[str, Any] = await call(
        server, "POST", f"/cases/{case_id}/materials?call_id={call_id}&filename={filename}",
        token, status=201, data=data, headers={"Content-Type": "image/jpeg"})
    return result


async def test_checklist_transitions_and_audit(server: Server) -> None:
    kiosk, staff, call_id, case_id = await answered_call(server, "SB-001")
    agent = await server.login("agent1")
    other = await server.login("agent2")
    boss = await server.login("super1")
    kiosk_token = await server.kiosk_token()
    try:
        flow = await call(server, "GET", f"/cases/{case_id}/flow", agent, status=200)
        assert flow["status"] == "in_progress"
        assert set(flow["allowed"]) == {"dispatched", "completed", "returned", "rejected"}
        assert flow["checklist"]["missing"] == ["id_card", "photo"]
        assert flow["checklist"]["unanswered"] == ["applicant", "mobility"]
        assert [q["key"] for q in flow["questions"]] == ["applicant", "mobility"]
        assert flow["sla"]["rule_set"] == "default"
        assert {m["key"] for m in flow["sla"]["milestones"]} == {"first_response", "result"}
        # The kiosk may look, but moves nothing; another agent neither.
        seen = await call(server, "GET", f"/cases/{case_id}/flow", kiosk_token, status=200)
        assert seen["allowed"] == []
        # (A token of the wrong role is refused as not meant for the route: 401.)
        await call(server, "POST", f"/cases/{case_id}/transitions", kiosk_token, status=401,
                   json={"to": "completed"})
        await call(server, "POST", f"/cases/{case_id}/transitions", other, status=403,
                   json={"to": "completed"})
        await call(server, "GET", f"/cases/{case_id}/flow", other, status=403)
        await call(server, "POST", f"/cases/{case_id}/transitions", None, status=401,
                   json={"to": "completed"})

        # Bad input is named.
        bad = await call(server, "POST", f"/cases/{case_id}/transitions", agent, status=400,
                         json={"to": "finished"})
        assert bad["error"]["field"] == "to"
        bad = await call(server, "POST", f"/cases/{case_id}/transitions", agent, status=400,
                         json={"to": "completed", "colour": "red"})
        assert "colour" in bad["error"]["field"]
        await call(server, "POST", "/cases/abc/transitions", agent, status=400,
                   json={"to": "completed"})
        await call(server, "POST", "/cases/999999/transitions", agent, status=404,
                   json={"to": "completed"})
        wrong = await call(server, "POST", f"/cases/{case_id}/transitions", agent,
                           status=409, json={"to": "received"})
        assert wrong["error"]["code"] == "transition_not_allowed"
        assert "'in_progress' to 'received'" in wrong["error"]["message"]
        bad = await call(server, "PUT", f"/cases/{case_id}/answers", agent, status=400,
                         json={"answers": {"applicant": "邻居"}})
        assert bad["error"]["field"] == "applicant"

        # Completing is refused while materials are missing.
        refused = await call(server, "POST", f"/cases/{case_id}/transitions", agent,
                             status=409, json={"to": "completed"})
        assert refused["error"]["code"] == "materials_missing"
        assert refused["error"]["missing"] == ["id_card", "photo"]

        flow = await call(server, "PUT", f"/cases/{case_id}/answers", agent, status=200,
                          json={"answers": {"applicant": "本人", "mobility": "能到场或视频"}})
        assert flow["checklist"]["unanswered"] == []
        # A page named like the material ticks it; the agent's push arrives as usual.
        page = await upload(server, agent, case_id, call_id, "居民身份证.jpg")
        await wait_for(staff, "case.material")
        flow = await call(server, "GET", f"/cases/{case_id}/flow", agent, status=200)
        entry = next(e for e in flow["checklist"]["entries"] if e["key"] == "id_card")
        assert entry["satisfied"] and entry["satisfied_by"][0]["id"] == page["id"]
        assert flow["checklist"]["missing"] == ["photo"]
        # The agent tags a second material as the photo.
        photo = await upload(server, agent, case_id, call_id, "材料2.jpg",
                             JPEG + b"second")
        bad = await call(server, "POST", f"/materials/{photo['id']}/tag", agent, status=400,
                         json={"material_type": "passport"})
        assert bad["error"]["field"] == "material_type"
        await call(server, "POST", f"/materials/{photo['id']}/tag", other, status=403,
                   json={"material_type": "photo"})
        await call(server, "POST", f"/materials/{photo['id']}/tag", kiosk_token, status=401,
                   json={"material_type": "photo"})
        flow = await call(server, "POST", f"/materials/{photo['id']}/tag", agent, status=200,
                          json={"material_type": "photo"})
        assert flow["checklist"]["complete"] is True
        done = await call(server, "POST", f"/cases/{case_id}/transitions", agent, status=200,
                          json={"to": "completed", "reason": "材料齐全，当场办结"})
        assert done["status"] == "completed" and done["allowed"] == []
        assert {m["key"]: m["state"] for m in done["sla"]["milestones"]}["result"] == "met"
        again = await call(server, "POST", f"/cases/{case_id}/transitions", boss, status=409,
                           json={"to": "in_progress"})
        assert again["error"]["code"] == "transition_not_allowed"

        async with server.services.db.session() as s:
            rows = (await s.scalars(select(AuditEntry).where(
                AuditEntry.case_id == case_id).order_by(AuditEntry.id))).all()
            actions = [r.action for r in rows]
            assert {"case.answers", "material.tagged", "case.transition"} <= set(actions)
            last = rows[-1]
            assert (last.action, last.detail["from"], last.detail["to"]) == (
                "case.transition", "in_progress", "completed")
            assert last.actor.startswith("agent:")
            assert (await verify_chain(s)).ok
            await s.execute(update(AuditEntry).where(AuditEntry.id == last.id).values(
                detail={**last.detail, "reason": "改过的理由"}))
        async with server.services.db.session() as s:
            report = await verify_chain(s)
            assert not report.ok and report.first_bad_id == last.id
    finally:
        await kiosk.close()
        await staff.close()


async def test_return_for_material_pauses_until_it_arrives(server: Server) -> None:
    kiosk, staff, call_id, case_id = await answered_call(server, "SB-002")
    agent = await server.login("agent1")
    boss = await server.login("super1")
    try:
        bad = await call(server, "POST", f"/cases/{case_id}/transitions", agent, status=400,
                         json={"to": "returned"})
        assert bad["error"]["field"] == "reason"
        flow = await call(server, "POST", f"/cases/{case_id}/transitions", agent, status=200,
                          json={"to": "returned", "reason": "请补充户口簿"})
        assert flow["status"] == "returned" and flow["paused"]
        assert flow["outcome_note"] == "请补充户口簿"
        result = next(m for m in flow["sla"]["milestones"] if m["key"] == "result")
        assert result["paused"]
        await upload(server, agent, case_id, call_id, "户口本.jpg")
        flow = await call(server, "GET", f"/cases/{case_id}/flow", agent, status=200)
        assert flow["status"] == "in_progress" and not flow["paused"]
        assert "hukou" not in flow["checklist"]["missing"]
        # The back office: dispatch, then only a supervisor may take it up.
        await call(server, "POST", f"/cases/{case_id}/transitions", agent, status=200,
                   json={"to": "dispatched"})
        denied = await call(server, "POST", f"/cases/{case_id}/transitions", agent,
                            status=403, json={"to": "in_progress"})
        assert denied["error"]["code"] == "transition_forbidden"
        flow = await call(server, "POST", f"/cases/{case_id}/transitions", boss, status=200,
                          json={"to": "rejected", "reason": "不符合参保条件"})
        assert flow["status"] == "rejected"
    finally:
        await kiosk.close()
        await staff.close()


async def test_a_later_call_continues_the_case(server: Server) -> None:
    kiosk, staff, call_id, case_id = await answered_call(server, "SB-002")
    agent = await server.login("agent1")
    kiosk_token = await server.kiosk_token()
    try:
        await call(server, "POST", f"/cases/{case_id}/transitions", agent, status=200,
                   json={"to": "returned", "reason": "请补充户口簿"})
        await staff.request("call.end", call_id=call_id)
        cases = server.services.cases
        number = (await cases.case_view(case_id)).number
        async with server.services.db.session() as s:
            kiosk_id = (await s.scalars(select(Kiosk.id))).one()
        with pytest.raises(ValidationError) as other_item:
            await cases.start_call(kiosk_id, "SB-001", case_number=number)
        assert other_item.value.field == "service_code"
        with pytest.raises(NotFoundError):
            await cases.start_call(kiosk_id, "SB-002", case_number="VW20200101-000000")
        later = await cases.start_call(kiosk_id, "SB-002", case_number=number.lower())
        assert later.case_id == case_id and later.call_id != call_id
        assert later.case_number == number
        # The kiosk may add to the case during the later call (a material ends the pause).
        await upload(server, kiosk_token, case_id, later.call_id, "户口本.jpg")
        flow = await call(server, "GET", f"/cases/{case_id}/flow", agent, status=200)
        assert flow["status"] == "in_progress"
    finally:
        await kiosk.close()
        await staff.close()


async def test_catalog_search_export_import(server: Server) -> None:
    kiosk = await server.kiosk_token()
    agent = await server.login("agent1")
    boss = await server.login("super1")
    found = await call(server, "GET", "/catalog/search?q=我想开个小超市要办啥", kiosk,
                       status=200)
    assert found["hits"] and found["hits"][0]["code"].startswith("SC")
    assert {"code", "name", "department", "category", "instant_approval",
            "score"} <= set(found["hits"][0])
    pension = await call(server, "GET", "/catalog/search?q=领养老金的刷脸认证&limit=3",
                         agent, status=200)
    assert pension["hits"][0]["code"] == "SB-001" and len(pension["hits"]) <= 3
    assert (await call(server, "GET", "/catalog/search?q=", kiosk, status=200))["hits"] == []
    await call(server, "GET", "/catalog/search?q=" + "很" * 101, kiosk, status=400)
    await call(server, "GET", "/catalog/search?q=x&limit=0", kiosk, status=400)
    await call(server, "GET", "/catalog/search?q=x", None, status=401)

    await call(server, "GET", "/catalog/export.json", agent, status=401)
    await call(server, "GET", "/catalog/export.csv", kiosk, status=401)
    exported = await call(server, "GET", "/catalog/export.json", boss, status=200)
    assert len(exported) == len(default_items())
    raw = await call(server, "GET", "/catalog/export.csv", boss, status=200)
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == len(exported) + 1

    # A CSV with a bad row is refused whole, naming the row and column.
    rows.append(["ZZ-9", "新事项", "县民政局", "civil_affairs", "maybe", "[]", "[]", "[]",
                 "[]"])
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    bad = await call(server, "POST", "/catalog/import", boss, status=400,
                     data=text.getvalue().encode(), headers={"Content-Type": "text/csv"})
    assert "instant_approval" in bad["error"]["message"]
    assert f"row {len(rows)}" in bad["error"]["message"]
    await call(server, "POST", "/catalog/import", agent, status=401, json=[])
    await call(server, "POST", "/catalog/import", boss, status=400, data=b"[",
               headers={"Content-Type": "application/json"})
    await call(server, "POST", "/catalog/import", boss, status=400, data=b"code",
               headers={"Content-Type": "text/plain"})
    # A good import: one new item, one renamed; search sees both at once.
    new = {"code": "ZZ-001", "name": "古树名木迁移审批", "department": "县林业局",
           "category": "forestry", "aliases": ["挪老树"], "keywords": ["古树"],
           "required_materials": [{"key": "id_card", "name": "居民身份证"}]}
    changed = {**exported[0], "aliases": [*exported[0]["aliases"], "测试别名甲乙"]}
    counts = await call(server, "POST", "/catalog/import", boss, status=200,
                        json=[new, changed])
    assert counts == {"items": 2, "created": 1, "updated": 1, "unchanged": 0}
    again = await call(server, "POST", "/catalog/import", boss, status=200,
                       json=[new, changed])
    assert again["unchanged"] == 2
    hits = (await call(server, "GET", "/catalog/search?q=挪老树", kiosk, status=200))["hits"]
    assert hits[0]["code"] == "ZZ-001"
    catalog = await call(server, "GET", "/catalog", kiosk, status=200)
    assert "ZZ-001" in {i["code"] for i in catalog}


async def test_a_later_call_continues_the_case_by_its_number(server: Server) -> None:
    kiosk, agent, call_id, case_id = await answered_call(server)
    number = (await server.services.cases.call_view(call_id)).case_number
    await agent.request("call.end", call_id=call_id)
    await wait_for(kiosk, "call.ended")
    again = await kiosk.request("call.start", service_code="SB-001", case_number=number)
    assert again["call"]["case_id"] == case_id and again["call"]["call_id"] != call_id
    await kiosk.request("call.cancel", call_id=again["call"]["call_id"])
    for bad in ("NOPE-000000", "../etc"):
        with pytest.raises(ClientError) as err:
            await kiosk.request("call.start", service_code="SB-001", case_number=bad)
        assert err.value.code in ("not_found", "invalid_message"), err.value.code
    for c in (kiosk, agent):
        await c.close()
