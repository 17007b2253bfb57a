"""Cases and calls: the durable side of a kiosk's call, from queue to rating.

Every method runs in its own transaction and writes the audit log in that same
transaction. Access rules live here too (``check_case_access``), so REST and WebSocket
share them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vwindow import audit, case_flow
from vwindow.auth import Principal
from vwindow.db import Database, core
from vwindow.errors import (
    AuthError,
    ConflictError,
    ForbiddenError,
    InvalidStateError,
    NotFoundError,
    ValidationError,
)
from vwindow.models import (
    Call,
    CallInvitation,
    CallStatus,
    Case,
    CaseNote,
    CaseStatus,
    Kiosk,
    Material,
    Participant,
    Rating,
    Role,
    ServiceItem,
    SurveyorLink,
    Township,
    User,
    utcnow,
)
from vwindow.views import (
    AgentRef,
    CallView,
    CaseView,
    CatalogItem,
    KioskRef,
    MaterialView,
    NoteView,
    ServiceRef,
)

logger = logging.getLogger(__name__)


async def service_item(s: AsyncSession, code: str, field: str) -> ServiceItem:
    """The catalog item with ``code``; NotFoundError naming ``field`` otherwise."""
    item = (await s.scalars(select(ServiceItem).where(ServiceItem.code == code))).first()
    if item is None:
        raise NotFoundError(f"service item {code!r} does not exist", field=field)
    return item


def note_view(n: CaseNote) -> NoteView:
    return NoteView(id=n.id, kind=n.kind, author_name=n.author_name, text=n.text,
                    created_at=n.created_at)


def material_view(m: Material) -> MaterialView:
    return MaterialView(
        id=m.id,
        case_id=m.case_id,
        sha256=m.sha256,
        size=m.size,
        content_type=m.content_type,
        filename=m.filename,
        source=m.source,
        call_id=m.call_id,
        kind=m.kind,
        document=m.document,
        page=m.page,
        created_at=m.created_at,
        url=f"/api/v1/materials/{m.id}/content",
    )


CASE_NUMBER_TRIES = 8
CONNECT_LOOKUPS = 4
"""Connect-time "which call am I in" queries running at once (see ``active_call_for``)."""


async def _new_case_number(s: AsyncSession, now: datetime) -> str:
    """``VW20261121-3FA9C2``: short enough to read off a slip, random so it says nothing.

    Six hex digits give 16.7 M numbers a day; a busy installation (7,000 cases in a day
    in the load benchmark) draws a used one every ~2,400 cases, so a number is checked
    before it is taken (a collision of two calls starting in the same instant with the
    same draw is left to the unique index).
    """
    for _ in range(CASE_NUMBER_TRIES):
        number = f"VW{now:%Y%m%d}-{secrets.token_hex(3).upper()}"
        if await s.scalar(select(Case.id).where(Case.number == number)) is None:
            return number
    return f"VW{now:%Y%m%d}-{secrets.token_hex(5).upper()}"  # a day that full: longer

_LATEST_TRANSFER_NOTE = (
    select(func.max(CaseNote.id))
    .where(CaseNote.call_id == Call.id, CaseNote.kind == "transfer")
    .correlate(Call).scalar_subquery())

_VIEW_QUERY = (
    select(Call.id, Call.case_id, Call.status, Call.queued_at, Call.answered_at,
           Call.agent_id, Call.dialect, Call.priority, Call.callback,
           Case.number, ServiceItem.code.label("item_code"),
           ServiceItem.name.label("item_name"), Kiosk.code.label("kiosk_code"),
           Kiosk.name.label("kiosk_name"), Township.name.label("town_name"),
           User.display_name.label("agent_name"), _LATEST_TRANSFER_NOTE.label("note_id"))
    .join(Case, Case.id == Call.case_id)
    .join(ServiceItem, ServiceItem.id == Call.service_item_id)
    .join(Kiosk, Kiosk.id == Call.kiosk_id)
    .join(Township, Township.id == Kiosk.township_id)
    .outerjoin(User, User.id == Call.agent_id)
    .where(Call.id.in_(bindparam("ids", expanding=True))))
"""Everything a ``CallView`` shows, for a set of calls (built once: no per-call
statement construction)."""


_END = (update(Call).where(Call.id == bindparam("call"), Call.status == CallStatus.LIVE)
        .values(status=CallStatus.ENDED, ended_at=bindparam("now"), ended_by=bindparam("by"))
        .returning(Call.case_id))

_LEFT = (update(Participant)
         .where(Participant.call_id == bindparam("call"), Participant.left_at.is_(None))
         .values(left_at=bindparam("now")))


class Cases:
    """Domain operations on calls and cases over one database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._connect_lookups = asyncio.Semaphore(CONNECT_LOOKUPS)

    # -- views ---------------------------------------------------------------------

    async def view(self, s: AsyncSession, call: Call) -> CallView:
        """The view of ``call`` that clients see, read within session ``s``."""
        return (await self.views(s, [call.id]))[call.id]

    async def views(self, s: AsyncSession, call_ids: Collection[int]) -> dict[int, CallView]:
        """The views of several calls in one round trip (plus one for transfer notes, if
        any call has one): a view is built on every offer, answer and end."""
        if not call_ids:
            return {}
        conn = await core(s)
        rows = (await conn.execute(_VIEW_QUERY, {"ids": list(call_ids)})).all()
        note_ids = [r.note_id for r in rows if r.note_id is not None]
        notes: dict[int, NoteView] = {}
        if note_ids:
            notes = {n.id: note_view(n) for n in (await s.scalars(
                select(CaseNote).where(CaseNote.id.in_(note_ids)))).all()}
        return {r.id: CallView(
            call_id=r.id, case_id=r.case_id, case_number=r.number, status=r.status,
            service=ServiceRef(code=r.item_code, name=r.item_name),
            kiosk=KioskRef(code=r.kiosk_code, name=r.kiosk_name, township=r.town_name),
            queued_at=r.queued_at, answered_at=r.answered_at,
            agent=AgentRef(id=r.agent_id, name=r.agent_name)
            if r.agent_id and r.agent_name is not None else None,
            dialect=r.dialect, priority=r.priority, callback=r.callback,
            transfer_note=notes.get(r.note_id) if r.note_id is not None else None,
        ) for r in rows}

    async def call_view(self, call_id: int) -> CallView:
        async with self.db.session() as s:
            call = await s.get(Call, call_id)
            if call is None:
                raise NotFoundError(f"call {call_id} does not exist", field="call_id")
            return await self.view(s, call)

    async def live_call_of(self, case_id: int) -> int | None:
        """The case's live call, if it has one."""
        async with self.db.session() as s:
            return (await s.scalars(select(Call.id).where(
                Call.case_id == case_id, Call.status == CallStatus.LIVE))).first()

    async def hub_node(self, call_id: int) -> str | None:
        """The node holding the call's room and media hub: a live call's, or a waiting
        call's whose media is connected while it rings (None: neither)."""
        async with self.db.session() as s:
            row = (await s.execute(select(Call.hub_node).where(
                Call.id == call_id,
                Call.status.in_([CallStatus.LIVE, CallStatus.QUEUED])))).first()
            return row[0] if row else None

    async def place_hub(self, call_id: int, node: str) -> str | None:
        """Put a waiting call's media hub on ``node`` unless it has one already; the
        node that has it (another node's, when two placed it at once)."""
        async with self.db.session() as s:
            await s.execute(update(Call).where(
                Call.id == call_id, Call.status == CallStatus.QUEUED,
                Call.hub_node.is_(None)).values(hub_node=node))
            return await s.scalar(select(Call.hub_node).where(Call.id == call_id))

    async def get_call(self, call_id: int) -> Call:
        async with self.db.session() as s:
            call = await s.get(Call, call_id)
        if call is None:
            raise NotFoundError(f"call {call_id} does not exist", field="call_id")
        return call

    async def catalog(self) -> list[CatalogItem]:
        async with self.db.session() as s:
            items = (await s.scalars(select(ServiceItem).order_by(ServiceItem.code))).all()
            return [
                CatalogItem(code=i.code, name=i.name, department=i.department, category=i.category)
                for i in items
            ]

    async def live(self) -> list[CallView]:
        async with self.db.session() as s:
            ids = (await s.scalars(select(Call.id).where(Call.status == CallStatus.LIVE)
                                   .order_by(Call.answered_at))).all()
            views = await self.views(s, ids)
            return [views[i] for i in ids]

    async def active_call_for(self, principal: Principal) -> CallView | None:
        """The live or queued call a kiosk or agent is in, if any.

        Asked on every connect, where the answer is nearly always "none": that case is
        one Core query on a bare connection, no ORM session, and at most
        ``CONNECT_LOOKUPS`` at once: a reconnect storm (a county's kiosks coming back
        after an outage) waits in line for ~1 ms queries instead of opening every
        overflow connection of the pool, and leaves no heap behind (sessions and
        overflow connections made for a burst of 1,000 connects were ~3 KiB of every
        idle socket's share of the node's memory)."""
        query = select(Call.id).where(Call.status.in_([CallStatus.LIVE, CallStatus.QUEUED]))
        if principal.role is Role.KIOSK:
            query = query.where(Call.kiosk_id == int(principal.subject))
        elif principal.role is Role.AGENT:
            query = query.where(Call.agent_id == int(principal.subject),
                                Call.status == CallStatus.LIVE)
        elif principal.role is Role.SURVEYOR and principal.call_id is not None:
            query = query.where(Call.id == principal.call_id, Call.status == CallStatus.LIVE)
        else:
            return None
        async with self._connect_lookups, self.db.engine.connect() as conn:
            call_id = (await conn.execute(query.order_by(Call.id.desc()).limit(1))).scalar()
        if call_id is None:
            return None
        async with self.db.session() as s:
            call = await s.get(Call, call_id)
            # It may have ended in between.
            if call is None or call.status not in (CallStatus.LIVE, CallStatus.QUEUED):
                return None
            return await self.view(s, call)

    # -- access ------------------------------------------------------------------------

    async def check_case_access(self, principal: Principal, case_id: int) -> Case:
        """Raise unless ``principal`` may read and write ``case_id``."""
        async with self.db.session() as s:
            case = await s.get(Case, case_id)
            if case is None:
                raise NotFoundError(f"case {case_id} does not exist", field="case_id")
            if principal.role is Role.SUPERVISOR:
                return case
            if principal.role is Role.KIOSK and case.kiosk_id == int(principal.subject):
                return case
            if principal.role is Role.KIOSK and await self._kiosk_calling_on(
                    s, int(principal.subject), case_id):
                return case
            if principal.role is Role.AGENT:
                agent_id = int(principal.subject)
                if case.assigned_agent_id == agent_id:
                    return case
                # An invited expert: only while the call they joined is live.
                invited = (await s.scalars(select(CallInvitation.id).join(
                    Call, Call.id == CallInvitation.call_id).where(
                    CallInvitation.case_id == case_id, CallInvitation.agent_id == agent_id,
                    CallInvitation.joined_at.is_not(None), Call.status == CallStatus.LIVE,
                ))).first()
                if invited is not None:
                    return case
            if (principal.role is Role.SURVEYOR and principal.case_id == case_id
                    and principal.call_id is not None):
                # A field surveyor's phone: only during the live call it was invited to.
                call = await s.get(Call, principal.call_id)
                if call is not None and call.status == CallStatus.LIVE:
                    return case
        raise ForbiddenError(f"not allowed to use case {case_id}", field="case_id")

    @staticmethod
    async def _kiosk_calling_on(s: AsyncSession, kiosk_id: int, case_id: int) -> bool:
        """A kiosk making a later call on a case another kiosk opened (same township)."""
        return (await s.scalars(select(Call.id).where(
            Call.case_id == case_id, Call.kiosk_id == kiosk_id,
            Call.status.in_([CallStatus.QUEUED, CallStatus.LIVE])))).first() is not None

    async def check_call_member(self, principal: Principal, call_id: int) -> Call:
        """Raise unless ``principal`` belongs in the live ``call_id``."""
        call = await self.get_call(call_id)
        await self.check_case_access(principal, call.case_id)
        if principal.role is Role.SURVEYOR and principal.call_id != call_id:
            raise ForbiddenError(f"not allowed in call {call_id}", field="call_id")
        return call

    # -- calls ---------------------------------------------------------------------

    async def start_call(
        self, kiosk_id: int, service_code: str, dialect: str | None = None, priority: int = 0,
        *, case_number: str | None = None, elderly: bool = False,
    ) -> CallView:
        """Queue a call on a new case, or with ``case_number`` a later call on an open case
        (the citizen back with more material, or asking how it stands)."""
        async with self.db.session() as s:
            item = await service_item(s, service_code, "service_code")
            kiosk = await s.get(Kiosk, kiosk_id)
            if kiosk is None or not kiosk.active:
                raise ForbiddenError(f"kiosk {kiosk_id} is not active")
            busy = (
                await s.scalars(
                    select(Call.id).where(
                        Call.kiosk_id == kiosk_id,
                        Call.status.in_([CallStatus.QUEUED, CallStatus.LIVE]),
                    )
                )
            ).first()
            if busy is not None:
                raise ConflictError(f"kiosk already has call {busy} waiting or live")
            now = utcnow()
            if case_number is not None:
                case = await case_flow.open_case_for_call(s, case_number, kiosk, item)
            else:
                case = Case(
                    number=await _new_case_number(s, now),
                    service_item_id=item.id,
                    kiosk_id=kiosk.id,
                    township_id=kiosk.township_id,
                    status=CaseStatus.RECEIVED,
                    created_at=now,
                )
                s.add(case)
                await s.flush()
            call = Call(
                case_id=case.id,
                kiosk_id=kiosk.id,
                service_item_id=item.id,
                status=CallStatus.QUEUED,
                dialect=dialect,
                queued_at=now,
                category=item.category,
                priority=priority,
                elderly=elderly,
            )
            s.add(call)
            await s.flush()
            await audit.append(
                s,
                actor=f"kiosk:{kiosk.id}",
                action="call.queued",
                case_id=case.id,
                detail={"call_id": call.id, "service": item.code,
                        **({"later_call": True} if case_number is not None else {})},
            )
            logger.info("call %s queued for case %s (%s)", call.id, case.id, item.code)
            return await self.view(s, call)

    async def end_call(self, call_id: int, ended_by: str, actor: str) -> CallView | None:
        """End a live call, and everyone's part in it; None when it was not live (ending
        twice is harmless)."""
        async with self.db.session() as s:
            conn = await s.connection()
            case_id = (await conn.execute(_END, {"call": call_id, "now": utcnow(),
                                                 "by": ended_by})).scalar_one_or_none()
            if case_id is None:
                return None
            await conn.execute(_LEFT, {"call": call_id, "now": utcnow()})
            await audit.append(s, actor=actor, action="call.ended", case_id=case_id,
                               detail={"call_id": call_id, "by": ended_by})
            logger.info("call %s ended by %s", call_id, ended_by)
            return (await self.views(s, [call_id]))[call_id]

    # -- expert invitations ------------------------------------------------------------

    async def require_call_agent(self, principal: Principal, call_id: int) -> Call:
        """Raise unless ``principal`` is the agent who took ``call_id`` (not an expert)."""
        call = await self.check_call_member(principal, call_id)
        if principal.role is not Role.AGENT or call.agent_id != int(principal.subject):
            raise ForbiddenError("only the agent who took the call can do this",
                                 field="call_id")
        return call

    async def invite(self, principal: Principal, call_id: int, username: str) -> User:
        """The agent on ``call_id`` invites another agent; returns the invitee."""
        call = await self.require_call_agent(principal, call_id)
        if call.status != CallStatus.LIVE:
            raise InvalidStateError(f"call {call_id} is {call.status!r}, not live")
        async with self.db.session() as s:
            user = (await s.scalars(select(User).where(User.username == username))).first()
            if user is None or user.role != Role.AGENT or not user.active:
                raise NotFoundError(f"no agent named {username!r}", field="username")
            if user.id == int(principal.subject) or user.id == call.agent_id:
                raise ValidationError("that agent is already on the call", field="username")
            existing = (await s.scalars(select(CallInvitation).where(
                CallInvitation.call_id == call_id, CallInvitation.agent_id == user.id))).first()
            if existing is None:
                s.add(CallInvitation(call_id=call_id, case_id=call.case_id, agent_id=user.id,
                                     invited_by=int(principal.subject)))
                await audit.append(s, actor=principal.key, action="expert.invited",
                                   case_id=call.case_id,
                                   detail={"call_id": call_id, "agent_id": user.id})
            return user

    async def accept_invitation(self, principal: Principal, call_id: int) -> CallView:
        agent_id = int(principal.subject)
        async with self.db.session() as s:
            call = await s.get(Call, call_id)
            if call is None:
                raise NotFoundError(f"call {call_id} does not exist", field="call_id")
            invitation = (await s.scalars(select(CallInvitation).where(
                CallInvitation.call_id == call_id, CallInvitation.agent_id == agent_id))).first()
            if invitation is None:
                raise ForbiddenError(f"you were not invited to call {call_id}", field="call_id")
            if call.status != CallStatus.LIVE:
                raise InvalidStateError(f"call {call_id} has ended")
            if invitation.joined_at is None:
                invitation.joined_at = utcnow()
                await audit.append(s, actor=principal.key, action="expert.joined",
                                   case_id=call.case_id, detail={"call_id": call_id})
            return await self.view(s, call)

    # -- participants ----------------------------------------------------------------

    async def participant_joined(self, call_id: int, kind: str, principal: str,
                                 name: str) -> int:
        """Record that someone joined a call's media; returns the participant row id."""
        async with self.db.session() as s:
            call = await s.get(Call, call_id)
            if call is None:
                raise NotFoundError(f"call {call_id} does not exist", field="call_id")
            row = Participant(call_id=call_id, kind=kind, principal=principal, name=name)
            s.add(row)
            await s.flush()
            await audit.append(s, actor=principal, action="participant.joined",
                               case_id=call.case_id, detail={"call_id": call_id, "kind": kind})
            return row.id

    async def participants_left(self, call_id: int, principal: str | None = None) -> None:
        """Close the open participant rows of a call (of one principal, or all)."""
        async with self.db.session() as s:
            query = update(Participant).where(Participant.call_id == call_id,
                                              Participant.left_at.is_(None))
            if principal is not None:
                query = query.where(Participant.principal == principal)
            await s.execute(query.values(left_at=utcnow()))

    async def participants(self, call_id: int) -> list[Participant]:
        async with self.db.session() as s:
            return list((await s.scalars(select(Participant).where(
                Participant.call_id == call_id).order_by(Participant.id))).all())

    # -- materials -----------------------------------------------------------------

    async def add_material(
        self,
        actor: Principal | str,
        case_id: int,
        *,
        sha256: str,
        size: int,
        content_type: str,
        filename: str,
        source: str,
        call_id: int | None,
        kind: str = "file",
        document: str | None = None,
        page: int | None = None,
    ) -> tuple[MaterialView, bool]:
        """Link stored bytes to a case; the same content twice is one material.

        Returns the material and whether it is new. ``actor`` is who added it, or a
        system name such as ``"system:recorder"``.
        """
        actor_key = actor if isinstance(actor, str) else actor.key
        async with self.db.session() as s:
            existing = (
                await s.scalars(
                    select(Material).where(Material.case_id == case_id,
                                           Material.sha256 == sha256)
                )
            ).first()
            if existing is not None:
                return material_view(existing), False
            m = Material(
                case_id=case_id,
                call_id=call_id,
                sha256=sha256,
                size=size,
                content_type=content_type,
                filename=filename,
                source=source,
                kind=kind,
                document=document,
                page=page,
                created_by=actor_key,
            )
            s.add(m)
            try:
                await s.flush()
            except IntegrityError as err:
                raise ConflictError("material was added concurrently; retry") from err
            await audit.append(s, actor=actor_key, action="material.added",
                               case_id=case_id,
                               detail={"material_id": m.id, "sha256": sha256, "size": size,
                                       "type": content_type, "source": source,
                                       "kind": kind})
            # A case returned for more material (补正) resumes with the first new one.
            await case_flow.material_arrived(s, case_id, m.id, actor_key)
            logger.info("case %s: material %s added (%s, %d bytes)", case_id, m.id,
                        content_type, size)
            return material_view(m), True

    async def get_material(self, material_id: int) -> Material:
        async with self.db.session() as s:
            m = await s.get(Material, material_id)
        if m is None:
            raise NotFoundError(f"material {material_id} does not exist", field="material_id")
        return m

    async def case_view(self, case_id: int) -> CaseView:
        async with self.db.session() as s:
            case = await s.get(Case, case_id)
            if case is None:
                raise NotFoundError(f"case {case_id} does not exist", field="case_id")
            item = await s.get_one(ServiceItem, case.service_item_id)
            kiosk = await s.get_one(Kiosk, case.kiosk_id)
            town = await s.get_one(Township, kiosk.township_id)
            mats = (
                await s.scalars(
                    select(Material).where(Material.case_id == case_id).order_by(Material.id)
                )
            ).all()
            notes = (await s.scalars(select(CaseNote).where(CaseNote.case_id == case_id)
                                     .order_by(CaseNote.id))).all()
            return CaseView(
                case_id=case.id,
                number=case.number,
                status=case.status,
                service=ServiceRef(code=item.code, name=item.name),
                kiosk=KioskRef(code=kiosk.code, name=kiosk.name, township=town.name),
                assigned_agent_id=case.assigned_agent_id,
                created_at=case.created_at,
                materials=[material_view(m) for m in mats],
                notes=[note_view(n) for n in notes],
            )

    # -- ratings -------------------------------------------------------------------

    async def rate(self, principal: Principal, call_id: int, stars: int, comment: str) -> None:
        if not 1 <= stars <= 5:
            raise ValidationError(f"stars must be 1..5, got {stars}", field="stars")
        async with self.db.session() as s:
            call = await s.get(Call, call_id)
            if call is None:
                raise NotFoundError(f"call {call_id} does not exist", field="call_id")
            if principal.role is not Role.KIOSK or call.kiosk_id != int(principal.subject):
                raise ForbiddenError(f"not allowed to rate call {call_id}", field="call_id")
            if call.status != CallStatus.ENDED:
                raise InvalidStateError(f"call {call_id} is {call.status!r}; rate it after it ends")
            exists = (await s.scalars(select(Rating.id).where(Rating.call_id == call_id))).first()
            if exists is not None:
                raise ConflictError(f"call {call_id} is already rated", field="call_id")
            s.add(Rating(case_id=call.case_id, call_id=call_id, agent_id=call.agent_id,
                         stars=stars, comment=comment))
            await audit.append(s, actor=principal.key, action="call.rated",
                               case_id=call.case_id, detail={"call_id": call_id, "stars": stars})

    # -- surveyor links ------------------------------------------------------------

    async def create_surveyor_link(
        self, principal: Principal, case_id: int, call_id: int, ttl_s: int
    ) -> tuple[str, SurveyorLink]:
        call = await self.require_call_agent(principal, call_id)
        if call.case_id != case_id:
            raise ValidationError(f"call {call_id} is not on case {case_id}", field="call_id")
        if call.status != CallStatus.LIVE:
            raise InvalidStateError(f"call {call_id} is {call.status!r}, not live")
        code = secrets.token_urlsafe(24)
        async with self.db.session() as s:
            link = SurveyorLink(
                code_hash=hashlib.sha256(code.encode()).hexdigest(),
                case_id=case_id,
                call_id=call_id,
                created_by=int(principal.subject),
                expires_at=utcnow() + timedelta(seconds=ttl_s),
            )
            s.add(link)
            await s.flush()
            await audit.append(s, actor=principal.key, action="surveyor.invited",
                               case_id=case_id, detail={"link_id": link.id, "call_id": call_id})
            return code, link

    async def redeem_surveyor_link(self, code: str) -> SurveyorLink:
        """Use a one-time link: valid once, before it expires."""
        digest = hashlib.sha256(code.encode()).hexdigest()
        async with self.db.session() as s:
            link = (
                await s.scalars(select(SurveyorLink).where(SurveyorLink.code_hash == digest))
            ).first()
            if link is None:
                raise AuthError("this inspection link is not valid", field="code")
            if link.used_at is not None:
                raise AuthError("this inspection link has already been used", field="code")
            if link.expires_at <= utcnow():
                raise AuthError("this inspection link has expired", field="code")
            call = await s.get(Call, link.call_id)
            if call is None or call.status != CallStatus.LIVE:
                raise AuthError("the video call of this inspection link has ended",
                                field="code")
            result = await s.execute(
                update(SurveyorLink)
                .where(SurveyorLink.id == link.id, SurveyorLink.used_at.is_(None))
                .values(used_at=utcnow())
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise AuthError("this inspection link has already been used", field="code")
            await audit.append(s, actor=f"surveyor:{link.id}", action="surveyor.joined",
                               case_id=link.case_id, detail={"link_id": link.id})
            return link
