"""Appointments (预约办): window slots at service halls, bookings, look-up by code.

A booking takes one place in a slot with a conditional ``UPDATE … SET booked = booked + 1
WHERE booked < capacity`` (and a CHECK constraint behind it), and a case holds at most
one standing booking (a unique column that is NULL once cancelled), so double booking
is impossible even with two agents and two nodes booking at once. The booking code is
what the citizen shows at the hall; the hall looks it up and sees the case's materials.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vwindow import audit
from vwindow.auth import Principal
from vwindow.cases import Cases, material_view, service_item
from vwindow.db import Database
from vwindow.errors import ConflictError, InvalidStateError, NotFoundError, ValidationError
from vwindow.models import (
    Appointment,
    AppointmentSlot,
    Case,
    CaseStatus,
    Material,
    ServiceItem,
    utcnow,
)
from vwindow.views import MaterialView, ServiceRef

logger = logging.getLogger(__name__)

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read out over a counter
CODE_LENGTH = 8


class SlotView(BaseModel):
    id: int
    hall: str
    service: ServiceRef | None
    starts_at: datetime
    ends_at: datetime
    capacity: int
    booked: int
    free: int


class AppointmentView(BaseModel):
    code: str
    status: str
    case_id: int
    case_number: str
    service: ServiceRef
    slot: SlotView
    materials: list[MaterialView]
    created_at: datetime


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(raw: str) -> str:
    code = raw.strip().upper().replace("-", "").replace(" ", "")
    if len(code) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in code):
        raise ValidationError(f"{raw[:20]!r} is not a booking code (8 letters and digits)",
                              field="code")
    return code


async def _slot_view(s: AsyncSession, slot: AppointmentSlot) -> SlotView:
    item = await s.get(ServiceItem, slot.service_item_id) if slot.service_item_id else None
    return SlotView(id=slot.id, hall=slot.hall,
                    service=ServiceRef(code=item.code, name=item.name) if item else None,
                    starts_at=slot.starts_at, ends_at=slot.ends_at, capacity=slot.capacity,
                    booked=slot.booked, free=slot.capacity - slot.booked)


class Appointments:
    def __init__(self, db: Database, cases: Cases) -> None:
        self.db = db
        self.cases = cases

    async def slots(self, service_code: str | None = None, *, days: int = 14,
                    free_only: bool = True) -> list[SlotView]:
        """Slots from now on for ``service_code`` (and those open to any item)."""
        now = utcnow()
        async with self.db.session() as s:
            query = select(AppointmentSlot).where(
                AppointmentSlot.starts_at > now,
                AppointmentSlot.starts_at < now + timedelta(days=days))
            if service_code is not None:
                item = await service_item(s, service_code, "service")
                query = query.where((AppointmentSlot.service_item_id == item.id)
                                    | AppointmentSlot.service_item_id.is_(None))
            if free_only:
                query = query.where(AppointmentSlot.booked < AppointmentSlot.capacity)
            slots = (await s.scalars(query.order_by(AppointmentSlot.starts_at,
                                                    AppointmentSlot.id))).all()
            return [await _slot_view(s, slot) for slot in slots]

    async def add_slot(self, principal: Principal, hall: str, starts_at: datetime,
                       ends_at: datetime, capacity: int,
                       service_code: str | None = None) -> SlotView:
        if ends_at <= starts_at:
            raise ValidationError("a slot must end after it starts", field="ends_at")
        if starts_at.tzinfo is None:
            raise ValidationError("give the time with its zone, e.g. 2026-11-23T09:00+08:00",
                                  field="starts_at")
        async with self.db.session() as s:
            item_id = None
            if service_code is not None:
                item_id = (await service_item(s, service_code, "service")).id
            slot = AppointmentSlot(hall=hall, service_item_id=item_id, starts_at=starts_at,
                                   ends_at=ends_at, capacity=capacity, booked=0)
            s.add(slot)
            await s.flush()
            await audit.append(s, actor=principal.key, action="slot.added", case_id=None,
                               detail={"slot_id": slot.id, "hall": hall,
                                       "capacity": capacity})
            return await _slot_view(s, slot)

    async def book(self, principal: Principal, case_id: int, slot_id: int) -> AppointmentView:
        """Book ``case_id`` into ``slot_id``; a full slot or a case already booked refuses."""
        await self.cases.check_case_access(principal, case_id)
        now = utcnow()
        try:
            async with self.db.session() as s:
                slot = await s.get(AppointmentSlot, slot_id)
                if slot is None:
                    raise NotFoundError(f"slot {slot_id} does not exist", field="slot_id")
                case = await s.get_one(Case, case_id)
                if slot.service_item_id not in (None, case.service_item_id):
                    raise ValidationError(f"slot {slot_id} is for another service item",
                                          field="slot_id")
                if slot.starts_at <= now:
                    raise InvalidStateError(f"slot {slot_id} has already begun",
                                            field="slot_id")
                taken = await s.execute(
                    update(AppointmentSlot)
                    .where(AppointmentSlot.id == slot_id,
                           AppointmentSlot.booked < AppointmentSlot.capacity)
                    .values(booked=AppointmentSlot.booked + 1))
                if taken.rowcount != 1:  # type: ignore[attr-defined]
                    raise ConflictError(f"slot {slot_id} is full; choose another time",
                                        field="slot_id")
                appointment = Appointment(code=new_code(), slot_id=slot_id, case_id=case_id,
                                          active_case_id=case_id, status="booked",
                                          created_by=principal.key, created_at=now)
                s.add(appointment)
                await s.flush()
                case.status = CaseStatus.BOOKED
                await audit.append(s, actor=principal.key, action="appointment.booked",
                                   case_id=case_id,
                                   detail={"slot_id": slot_id, "code": appointment.code})
                logger.info("case %s booked into slot %s", case_id, slot_id)
                return await self._view(s, appointment)
        except IntegrityError as err:
            # The case already holds a booking (or, once in 10^12, the code was taken).
            raise ConflictError(f"case {case_id} already has a booking; cancel it first",
                                field="case_id") from err

    @staticmethod
    async def _by_code(s: AsyncSession, raw_code: str, field: str = "code", *,
                       lock: bool = False) -> Appointment:
        """The booking a citizen's code names; errors name ``field``."""
        try:
            code = normalise_code(raw_code)
        except ValidationError as err:
            raise ValidationError(err.message, field=field) from err
        query = select(Appointment).where(Appointment.code == code)
        appointment = (await s.scalars(query.with_for_update() if lock else query)).first()
        if appointment is None:
            raise NotFoundError(f"no booking with code {code}", field=field)
        return appointment

    async def find(self, code: str) -> AppointmentView:
        async with self.db.session() as s:
            return await self._view(s, await self._by_code(s, code))

    async def holds(self, code: str) -> bool:
        """Is ``code`` a standing booking? (Its holder is served first when calling.)"""
        async with self.db.session() as s:
            return (await self._by_code(s, code, "booking_code")).status == "booked"

    async def cancel(self, principal: Principal, code: str) -> AppointmentView:
        async with self.db.session() as s:
            appointment = await self._by_code(s, code, lock=True)
            code = appointment.code
            if appointment.status != "booked":
                raise InvalidStateError(f"booking {code} is {appointment.status}",
                                        field="code")
            appointment.status = "cancelled"
            appointment.active_case_id = None
            await s.execute(update(AppointmentSlot)
                            .where(AppointmentSlot.id == appointment.slot_id)
                            .values(booked=AppointmentSlot.booked - 1))
            case = await s.get_one(Case, appointment.case_id)
            if case.status == CaseStatus.BOOKED:
                case.status = CaseStatus.IN_PROGRESS
            await audit.append(s, actor=principal.key, action="appointment.cancelled",
                               case_id=appointment.case_id, detail={"code": code})
            return await self._view(s, appointment)

    async def _view(self, s: AsyncSession, appointment: Appointment) -> AppointmentView:
        slot = await s.get_one(AppointmentSlot, appointment.slot_id, populate_existing=True)
        case = await s.get_one(Case, appointment.case_id)
        item = await s.get_one(ServiceItem, case.service_item_id)
        materials = (await s.scalars(select(Material).where(
            Material.case_id == case.id).order_by(Material.id))).all()
        return AppointmentView(
            code=appointment.code, status=appointment.status, case_id=case.id,
            case_number=case.number, service=ServiceRef(code=item.code, name=item.name),
            slot=await _slot_view(s, slot), materials=[material_view(m) for m in materials],
            created_at=appointment.created_at)
