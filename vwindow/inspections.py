"""Remote site inspections (远程踏勘): created by the agent for a case during a call, a
checklist per kind of service item, stamped evidence, a conclusion and a report.

An inspection is open from its creation until the agent closes it with a conclusion;
closing produces the PDF report (:mod:`vwindow.inspection_report`), stores it in the
case and writes its SHA-256 to the audit chain. Checklist items are ticked pass / fail /
not applicable, with a note and the evidence that shows it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import func, select

from vwindow import audit
from vwindow.auth import Principal
from vwindow.db import Database
from vwindow.errors import InvalidStateError, NotFoundError, ValidationError
from vwindow.models import (
    Call,
    CallStatus,
    Case,
    Inspection,
    InspectionEvidence,
    Material,
    ServiceItem,
    SurveyorLink,
    utcnow,
)

logger = logging.getLogger(__name__)

ItemState = Literal["pending", "pass", "fail", "na"]


def default_checklists() -> dict[str, list[dict[str, str]]]:
    raw = resources.files("vwindow.catalog_data").joinpath("inspection_checklists.json")
    data: dict[str, list[dict[str, str]]] = json.loads(raw.read_text("utf-8"))
    return data


class EvidenceView(BaseModel):
    id: int
    material_id: int
    annotated_from: int | None
    lat: float | None
    lon: float | None
    accuracy: float | None
    taken_at: datetime
    url: str


class InspectionView(BaseModel):
    id: int
    number: str
    case_id: int
    call_id: int
    status: str
    site_address: str
    site_lat: float | None
    site_lon: float | None
    checklist: list[dict[str, Any]]
    conclusion: str
    created_at: datetime
    closed_at: datetime | None
    report_material_id: int | None
    evidence: list[EvidenceView]


@dataclass(frozen=True, slots=True)
class ReportFacts:
    """Everything the report shows, gathered in one read."""

    inspection: InspectionView
    case_number: str
    service: str
    township: str
    agent_name: str
    participants: list[str]
    evidence_files: list[tuple[EvidenceView, str]]  # (evidence, sha256 of the image)


class Inspections:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.checklists = default_checklists()

    async def _view(self, s: Any, row: Inspection) -> InspectionView:
        ev = (await s.scalars(select(InspectionEvidence).where(
            InspectionEvidence.inspection_id == row.id).order_by(InspectionEvidence.id))).all()
        return InspectionView(
            id=row.id, number=row.number, case_id=row.case_id, call_id=row.call_id,
            status=row.status, site_address=row.site_address, site_lat=row.site_lat,
            site_lon=row.site_lon, checklist=list(row.checklist), conclusion=row.conclusion,
            created_at=row.created_at, closed_at=row.closed_at,
            report_material_id=row.report_material_id,
            evidence=[EvidenceView(id=e.id, material_id=e.material_id,
                                   annotated_from=e.annotated_from, lat=e.lat, lon=e.lon,
                                   accuracy=e.accuracy, taken_at=e.taken_at,
                                   url=f"/api/v1/materials/{e.material_id}/content")
                      for e in ev])

    async def create(self, principal: Principal, case_id: int, call_id: int, *,
                     site_address: str, site_lat: float | None,
                     site_lon: float | None) -> InspectionView:
        if (site_lat is None) != (site_lon is None):
            raise ValidationError("give both site_lat and site_lon, or neither",
                                  field="site_lat")
        async with self.db.session() as s:
            call = await s.get(Call, call_id)
            if call is None or call.case_id != case_id:
                raise ValidationError(f"call {call_id} is not on case {case_id}",
                                      field="call_id")
            if call.status != CallStatus.LIVE:
                raise InvalidStateError(f"call {call_id} is not live")
            case = await s.get_one(Case, case_id)
            item = await s.get_one(ServiceItem, case.service_item_id)
            count = int(await s.scalar(select(func.count()).select_from(Inspection).where(
                Inspection.case_id == case_id)) or 0)
            template = self.checklists.get(item.category) or self.checklists["default"]
            row = Inspection(
                number=f"TK-{case.number}-{count + 1}", case_id=case_id, call_id=call_id,
                created_by=int(principal.subject), site_address=site_address,
                site_lat=site_lat, site_lon=site_lon, status="open", conclusion="",
                checklist=[{"key": t["key"], "text": t["text"], "state": "pending",
                            "note": "", "evidence": []} for t in template])
            s.add(row)
            await s.flush()
            await audit.append(s, actor=principal.key, action="inspection.created",
                               case_id=case_id, detail={"inspection": row.number,
                                                        "call_id": call_id})
            return await self._view(s, row)

    async def link(self, link_id: int, inspection_id: int) -> None:
        async with self.db.session() as s:
            link = await s.get_one(SurveyorLink, link_id)
            link.inspection_id = inspection_id

    async def get(self, inspection_id: int) -> InspectionView:
        async with self.db.session() as s:
            row = await s.get(Inspection, inspection_id)
            if row is None:
                raise NotFoundError(f"inspection {inspection_id} does not exist",
                                    field="inspection_id")
            return await self._view(s, row)

    async def open_for_call(self, call_id: int) -> InspectionView | None:
        async with self.db.session() as s:
            row = (await s.scalars(select(Inspection).where(
                Inspection.call_id == call_id, Inspection.status == "open")
                .order_by(Inspection.id.desc()))).first()
            return await self._view(s, row) if row is not None else None

    async def for_case(self, case_id: int) -> list[InspectionView]:
        async with self.db.session() as s:
            rows = (await s.scalars(select(Inspection).where(Inspection.case_id == case_id)
                                    .order_by(Inspection.id))).all()
            return [await self._view(s, r) for r in rows]

    async def add_evidence(self, inspection_id: int, material_id: int,
                           position: dict[str, Any] | None, *,
                           annotated_from: int | None = None) -> EvidenceView:
        async with self.db.session() as s:
            row = await s.get_one(Inspection, inspection_id)
            if row.status != "open":
                raise InvalidStateError(f"inspection {row.number} is closed")
            ev = InspectionEvidence(
                inspection_id=inspection_id, material_id=material_id,
                annotated_from=annotated_from,
                lat=position.get("lat") if position else None,
                lon=position.get("lon") if position else None,
                accuracy=position.get("accuracy") if position else None)
            s.add(ev)
            await s.flush()
            return EvidenceView(id=ev.id, material_id=material_id,
                                annotated_from=annotated_from, lat=ev.lat, lon=ev.lon,
                                accuracy=ev.accuracy, taken_at=ev.taken_at,
                                url=f"/api/v1/materials/{material_id}/content")

    async def tick(self, principal: Principal, inspection_id: int, key: str,
                   state: ItemState, note: str, evidence: list[int]) -> InspectionView:
        async with self.db.session() as s:
            row = await s.get(Inspection, inspection_id)
            if row is None:
                raise NotFoundError(f"inspection {inspection_id} does not exist",
                                    field="inspection_id")
            if row.status != "open":
                raise InvalidStateError(f"inspection {row.number} is closed")
            known = {e.material_id for e in (await s.scalars(select(InspectionEvidence).where(
                InspectionEvidence.inspection_id == inspection_id))).all()}
            stray = [m for m in evidence if m not in known]
            if stray:
                raise ValidationError(f"material {stray[0]} is not evidence of inspection "
                                      f"{row.number}", field="evidence")
            items = [dict(i) for i in row.checklist]
            target = next((i for i in items if i["key"] == key), None)
            if target is None:
                raise NotFoundError(f"inspection {row.number} has no checklist item {key!r}",
                                    field="key")
            target.update(state=state, note=note, evidence=evidence)
            row.checklist = items
            await audit.append(s, actor=principal.key, action="inspection.item",
                               case_id=row.case_id,
                               detail={"inspection": row.number, "key": key, "state": state})
            return await self._view(s, row)

    async def facts(self, inspection_id: int) -> ReportFacts:
        from vwindow.models import Kiosk, Participant, Township, User

        async with self.db.session() as s:
            row = await s.get_one(Inspection, inspection_id)
            view = await self._view(s, row)
            case = await s.get_one(Case, row.case_id)
            item = await s.get_one(ServiceItem, case.service_item_id)
            kiosk = await s.get_one(Kiosk, case.kiosk_id)
            town = await s.get_one(Township, kiosk.township_id)
            agent = await s.get_one(User, row.created_by)
            people = (await s.scalars(select(Participant).where(
                Participant.call_id == row.call_id).order_by(Participant.id))).all()
            shas: dict[int, str] = {
                row.id: row.sha256 for row in (await s.execute(
                    select(Material.id, Material.sha256).where(
                        Material.id.in_([e.material_id for e in view.evidence])))).all()}
            names: list[str] = []
            for p in people:
                label = f"{p.name}（{p.kind}）"
                if label not in names:
                    names.append(label)
            return ReportFacts(view, case.number, f"{item.code} {item.name}", town.name,
                               agent.display_name, names,
                               [(e, shas[e.material_id]) for e in view.evidence])

    async def close(self, principal: Principal, inspection_id: int, conclusion: str,
                    report_material_id: int, report_sha256: str) -> InspectionView:
        async with self.db.session() as s:
            row = await s.get_one(Inspection, inspection_id)
            if row.status != "open":
                raise InvalidStateError(f"inspection {row.number} is already closed")
            row.status = "closed"
            row.conclusion = conclusion
            row.closed_at = utcnow()
            row.report_material_id = report_material_id
            await audit.append(s, actor=principal.key, action="inspection.report",
                               case_id=row.case_id,
                               detail={"inspection": row.number, "sha256": report_sha256,
                                       "material_id": report_material_id})
            logger.info("case %s: inspection %s closed, report %s…", row.case_id,
                        row.number, report_sha256[:12])
            return await self._view(s, row)
