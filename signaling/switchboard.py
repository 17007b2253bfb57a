"""The call flow of one node: calls in and out of rooms, media, chat, dashboards.

Who is offered which waiting call is the router's (``signaling.router``); the claim is
atomic in the database (``CallQueue.claim``), so two agents accepting at once get one
call and one ``conflict``, and every other ringing console is told to stop at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from datetime import UTC, date, datetime
from typing import Any

from media.fanout import ParticipantInfo
from media.hub import SessionHub, TrackRole
from media.recording import RecordingResult
from media.service import MediaService
from signaling.inspections import InspectionDesk
from signaling.kiosk_requests import KioskRequests
from signaling.presence import Connection, Presence, Room
from signaling.router import Router
from signaling.snapshots import QueuedSnapshot, SnapshotDesk
from vwindow.case_sla import sla_flags
from vwindow.cases import Cases
from vwindow.chat import store_chat
from vwindow.db import Database
from vwindow.errors import ForbiddenError, InvalidStateError, NotFoundError, VWindowError
from vwindow.models import Call, CallStatus, Role
from vwindow.nodes import Beat, LostCall
from vwindow.queue import CallQueue
from vwindow.routing import is_elderly, priority_for
from vwindow.sla_config import SlaConfig
from vwindow.store import FileStore
from vwindow.views import CallView

logger = logging.getLogger(__name__)

CALL_TRACKS = (TrackRole("camera", "video"), TrackRole("mic", "audio"))
"""What each party of a call publishes from its page (a device missing: not published)."""


MONITOR_AUDIENCE = {"listen": "none", "whisper": "agents", "barge": "all"}
"""Who hears a monitoring supervisor's microphone in each mode."""


def _dump(view: CallView) -> dict[str, Any]:
    return view.model_dump(mode="json")


class HubElsewhere(InvalidStateError):
    """A call's media is connecting at another node: the join goes there (relayed)."""

    def __init__(self, call_id: int) -> None:
        super().__init__(f"the media of call {call_id} is connecting at another node; "
                         "join again", field="call_id")


SLA_FLAGS_TTL_S = 10.0
"""How stale the dashboard's SLA warnings may be (the clocks count minutes)."""

class Switchboard(KioskRequests, InspectionDesk, SnapshotDesk):
    def __init__(self, db: Database, cases: Cases, queue: CallQueue, presence: Presence,
                 media: MediaService, node_id: str, store: FileStore,
                 sla: SlaConfig | None = None) -> None:
        self.db = db
        self.queue = queue
        self.router = Router(queue, presence, self.changed, self._after_beat)
        self.store = store
        self.sla = sla
        self.cases = cases
        self.presence = presence
        self.media = media
        self.node_id = node_id
        self._captures: dict[str, tuple[int, int]] = {}  # request id -> (call id, kiosk id)
        self._dashboard_task: asyncio.Task[None] | None = None
        self._dashboard_dirty = asyncio.Event()
        self._kiosk_ids: dict[int, int] = {}  # call id -> kiosk id
        self._monitors: dict[tuple[int, str], str] = {}  # (call id, supervisor key) -> mode
        self._positions: dict[int, dict[str, Any]] = {}  # call id -> surveyor's latest fix
        # request id -> a snapshot waiting for a participant's picture to come back
        self._queued_snapshots: dict[str, tuple[QueuedSnapshot, asyncio.Task[None]]] = {}
        # Work after a reply: hubs being closed, recordings stored, notices of who joined.
        self._closing: set[asyncio.Task[None]] = set()
        self._sla_flags: tuple[float, list[dict[str, object]]] | None = None  # (at, flags)

    async def start(self) -> None:
        for result in await self.media.recover_recordings():
            # Recordings of sessions a crash cut short: up to the crash, into their case.
            await self._store_recording(int(result.session_id), result)
        for view in await self.cases.live():
            # Calls live here before a restart: their rooms come back so clients rejoin.
            await self._remember_kiosk(view)
            if await self.cases.hub_node(view.call_id) == self.node_id:
                self._room_for(view)
                self.media.hub(view.call_id)
        for view in await self.queue.waiting_views():
            await self._remember_kiosk(view)
        await self.router.start()
        self._dashboard_task = asyncio.create_task(self._dashboard_loop())

    async def stop(self) -> None:
        # A clean shutdown finalises the recordings of live sessions; the calls stay live
        # in the database and their clients rejoin when the node is back.
        for call_id in self.media.live_sessions:
            await self._close_and_store(call_id)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        waiting = self.cancel_queued_snapshots()
        if waiting:
            await asyncio.gather(*waiting, return_exceptions=True)
        await self.router.stop()
        if self._dashboard_task is not None:
            self._dashboard_task.cancel()
            try:
                await self._dashboard_task
            except asyncio.CancelledError:
                pass

    # -- helpers -----------------------------------------------------------------------

    def _room_for(self, view: CallView) -> Room:
        room = self.presence.rooms.get(view.call_id)
        if room is None:
            room = Room(view.call_id, view.case_id)
            self.presence.rooms[view.call_id] = room
        room.members.add(f"kiosk:{self._kiosk_id(view)}")
        if view.agent is not None:
            room.members.add(f"agent:{view.agent.id}")
        return room

    def _kiosk_id(self, view: CallView) -> int:
        return self._kiosk_ids.get(view.call_id, 0)

    def changed(self) -> None:
        """Something a supervisor sees changed: push a new snapshot soon."""
        self._dashboard_dirty.set()

    # -- agents ------------------------------------------------------------------------

    def agent_state(self, agent_id: int) -> str:
        return self.router.state_of(agent_id)

    async def set_agent_state(self, conn: Connection, state: str,
                              reason: str | None = None) -> str:
        return await self.router.set_state(int(conn.principal.subject), state, reason)

    def agent_gone(self, key: str) -> None:
        role, _, subject = key.partition(":")
        if role == Role.AGENT.value:
            self._background(self.router.agent_gone(int(subject)))

    async def decline_call(self, conn: Connection, call_id: int) -> None:
        await self.router.decline(int(conn.principal.subject), call_id)
        await self._leave_waiting(call_id, conn.participant_id)

    async def _stop_ringing(self, message: dict[str, Any], except_key: str | None,
                            offered: int | None = None) -> None:
        """Ring-all rang every ready agent: tell them all. An offer rang one agent only."""
        if self.queue.rules.strategy == "ring_all":
            await self.presence.tell_role(Role.AGENT, message, except_key=except_key)
        elif offered is not None and f"agent:{offered}" != except_key:
            await self.presence.deliver(f"agent:{offered}", message)

    # -- calls -------------------------------------------------------------------------

    async def start_call(self, conn: Connection, service_code: str, dialect: str | None,
                         birth_date: date | None = None, *,
                         appointment: bool = False,
                         case_number: str | None = None) -> dict[str, Any]:
        kiosk_id = int(conn.principal.subject)
        today = datetime.now(UTC).date()
        priority = priority_for(birth_date, today, appointment=appointment,
                                callback=False, rules=self.queue.rules)
        view = await self.cases.start_call(
            kiosk_id, service_code, dialect, priority, case_number=case_number,
            elderly=birth_date is not None and is_elderly(birth_date, today, self.queue.rules))
        self._kiosk_ids[view.call_id] = kiosk_id
        infos = await self.queue.queue_info({kiosk_id})
        info = next((i for i in infos if i.call_id == view.call_id), None)
        self.router.wake()
        self.changed()
        reply: dict[str, Any] = {"type": "call.queued", "call": _dump(view),
                                 "position": info.position if info else 1,
                                 "eta_s": round(info.eta_s) if info and info.eta_s is not None
                                 else None}
        return reply

    async def id_read(self, case_id: int, birth_date: str) -> None:
        """An ID card was read on the case: an elderly citizen's waiting call moves up."""
        try:
            born = date.fromisoformat(birth_date)
        except ValueError:
            return  # a card with an unknown day ("1950-00-00" happens): no boost
        if await self.queue.elderly_read(case_id, born) is not None:
            self.router.wake()
            self.changed()

    async def cancel_call(self, conn: Connection, call_id: int) -> None:
        _, offered = await self.queue.cancel(conn.principal, call_id)
        self._kiosk_ids.pop(call_id, None)
        await self._close_unanswered(call_id)
        await self._stop_ringing({"type": "call.cancelled", "call_id": call_id}, None,
                                 offered)
        if offered is not None:
            await self.router.offer_ended(offered)
        self.router.call_left_queue(call_id)
        self.changed()

    async def request_callback(self, conn: Connection, call_id: int) -> dict[str, Any]:
        view = await self.queue.request_callback(conn.principal, call_id)
        self.router.wake()
        self.changed()
        return {"type": "call.callback", "call": _dump(view)}

    async def accept_call(self, conn: Connection, call_id: int) -> dict[str, Any]:
        agent_id = int(conn.principal.subject)
        answered = await self.router.claim(agent_id, call_id)
        view = answered.view
        self._kiosk_ids[call_id] = answered.kiosk_id
        joined: list[ParticipantInfo] = []
        if answered.hub_node == self.node_id:
            room = self._room_for(view)
            # First: the media connected while it rang starts flowing at once.
            joined = await self._admit(self.media.hub(call_id), answered.kiosk_id, agent_id)
            logger.info("call %s: room %s", call_id, sorted(room.members))
        elif answered.hub_node is not None:
            # The session is at another node (the kiosk connected its media there while
            # it rang, or a transferred call): that node lets the parties in. This
            # agent's messages about the call are relayed there.
            await self.presence.bus.publish({"k": "answered", "node": answered.hub_node,
                                             "call_id": call_id, "agent": agent_id,
                                             "kiosk": answered.kiosk_id})
        name = view.agent.name if view.agent else ""
        await self._stop_ringing({"type": "call.taken", "call_id": call_id, "agent_name": name},
                                 conn.principal.key)
        await self.presence.deliver(f"kiosk:{answered.kiosk_id}",
                                    {"type": "call.answered", "call": _dump(view)})
        if joined:
            # The agent's reply first: its console shows the call as the frames arrive;
            # the participants' rows and notices follow.
            self._background(self._announce_joined(call_id, joined))
        self.changed()
        return {"type": "call.accepted", "call": _dump(view)}

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                logger.exception("background work failed")

        task = asyncio.create_task(run())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def on_event(self, event: dict[str, Any]) -> None:
        """A call whose session is here was answered at another node; calls another
        node queued again (their hub's node died) whose people may be connected here."""
        if event.get("k") == "calls_lost":
            for lost in _lost_calls(event.get("calls")):
                await self._call_lost(lost)
            return
        if event.get("k") != "answered" or event.get("node") != self.node_id:
            return
        call_id, agent_id, kiosk_id = event.get("call_id"), event.get("agent"), event.get("kiosk")
        if not (isinstance(call_id, int) and isinstance(agent_id, int)
                and isinstance(kiosk_id, int)):
            return
        view = await self.cases.call_view(call_id)
        self._kiosk_ids[call_id] = kiosk_id
        self._room_for(view)
        joined = await self._admit(self.media.hub(call_id), kiosk_id, agent_id)
        await self._announce_joined(call_id, joined)
        self.changed()

    async def _admit(self, hub: SessionHub, kiosk_id: int, agent_id: int
                     ) -> list[ParticipantInfo]:
        """Let the kiosk's and the answering agent's pages in, if they connected while
        the call rang (or as soon as they join); any other agent rung meanwhile goes."""
        parties = (f"kiosk:{kiosk_id}/page", f"agent:{agent_id}/page")
        waiting = hub.waiting()
        for info in waiting:
            if info.id not in parties:
                await hub.leave(info.id)
        for participant_id in parties:
            await hub.admit(participant_id)
        return [info for info in waiting if info.id in parties]

    async def _announce_joined(self, call_id: int, joined: list[ParticipantInfo]) -> None:
        for info in joined:
            await self.cases.participant_joined(call_id, info.kind, info.id, info.name)
            await self._announce(call_id, {"type": "participant.joined", "call_id": call_id,
                                           "participant": info.as_dict()}, hidden=False)

    async def transfer(self, conn: Connection, call_id: int, to_agent: str | None,
                       to_queue: str | None, note: str) -> dict[str, Any]:
        """Hand the call on; the kiosk stays in the session and waits for the next agent."""
        await self.require_member(conn, call_id, roles=(Role.AGENT,))
        agent_id = int(conn.principal.subject)
        view, where = await self.queue.transfer(agent_id, call_id, to_username=to_agent,
                                                to_category=to_queue, note=note,
                                                author_name=conn.principal.name)
        hub = self.media.find(call_id)
        for participant in [c.participant_id for c in self.presence.connections(
                conn.principal.key)]:
            if hub is not None and hub.has(participant):
                await hub.leave(participant)
                await self.presence.send_room(call_id, {
                    "type": "participant.left", "call_id": call_id,
                    "participant": {"id": participant, "kind": "agent",
                                    "name": conn.principal.name}})
        await self.cases.participants_left(call_id, conn.participant_id)
        room = self.presence.rooms.get(call_id)
        if room is not None:
            room.members.discard(conn.principal.key)
        await self.presence.send_room(call_id, {"type": "call.transferring",
                                                "call_id": call_id, "to": where})
        await self.router.call_ended(agent_id)
        self.router.wake()
        self.changed()
        return {"type": "call.transferred", "call": _dump(view), "to": where}

    async def _remember_kiosk(self, view: CallView) -> None:
        if view.call_id not in self._kiosk_ids:
            call = await self.cases.get_call(view.call_id)
            self._kiosk_ids[view.call_id] = call.kiosk_id

    async def end_call(self, conn: Connection | None, call_id: int, ended_by: str) -> None:
        if conn is not None:
            # Not require_member: a call must stay endable even if its room was lost.
            if conn.principal.role not in (Role.AGENT, Role.KIOSK):
                raise ForbiddenError(f"a {conn.principal.role.value} cannot end a call")
            if conn.principal.role is Role.KIOSK:
                await self.cases.check_call_member(conn.principal, call_id)
            elif (await self.cases.get_call(call_id)).agent_id != int(conn.principal.subject):
                # The agent who took it is a member; anyone else is told why not.
                await self.cases.check_call_member(conn.principal, call_id)
                raise ForbiddenError("only the agent who took the call can end it; "
                                     "an invited expert leaves with rtc.leave")
        actor = conn.principal.key if conn else "system"
        view = await self.cases.end_call(call_id, ended_by, actor)
        if view is None:
            raise InvalidStateError(f"call {call_id} is not live")
        await self.presence.send_room(call_id, {"type": "call.ended", "call_id": call_id,
                                                "case_id": view.case_id, "ended_by": ended_by})
        # Finishing a recording remuxes it (seconds for a long call): not on the caller's
        # request path.
        self._background(self._close_and_store(call_id))
        room = self.presence.rooms.pop(call_id, None)
        self._kiosk_ids.pop(call_id, None)
        self.forget_position(call_id)
        for key in [k for k in self._monitors if k[0] == call_id]:
            del self._monitors[key]
        for member in room.members if room else ():
            role, _, subject = member.partition(":")
            if role == "agent" and view.agent is not None and int(subject) != view.agent.id:
                # An expert who joined: free again (no wrap-up; the case is not theirs).
                await self.router.call_ended(int(subject), expert=True)
        if view.agent is not None:
            await self.router.call_ended(view.agent.id)
        self.changed()

    async def require_member(self, conn: Connection, call_id: int,
                             roles: tuple[Role, ...] | None = None) -> Room:
        room, _ = await self._membership(conn, call_id, roles)
        return room

    async def _membership(self, conn: Connection, call_id: int,
                          roles: tuple[Role, ...] | None = None) -> tuple[Room, Call]:
        """The live call's room and the call, unless ``conn`` does not belong in it."""
        if roles is not None and conn.principal.role not in roles:
            raise ForbiddenError(f"a {conn.principal.role.value} cannot do this in a call")
        call = await self.cases.check_call_member(conn.principal, call_id)
        room = self.presence.rooms.get(call_id)
        if room is None:
            raise InvalidStateError(f"call {call_id} is not live")
        return room, call

    async def active_call(self, conn: Connection) -> dict[str, Any] | None:
        view = await self.cases.active_call_for(conn.principal)
        if view is None:
            return None
        await self._remember_kiosk(view)
        # A call whose room is on another node is reached through that node (relayed).
        if view.status == "live" and await self.cases.hub_node(view.call_id) == self.node_id:
            room = self._room_for(view)
            if conn.principal.role is Role.SURVEYOR:
                room.members.add(conn.principal.key)
            if conn.principal.role is Role.AGENT:
                await self.router.in_call(int(conn.principal.subject))
        return _dump(view)

    # -- media -------------------------------------------------------------------------

    async def check_join(self, conn: Connection, call_id: int,
                         publish: list[TrackRole]) -> tuple[Call, bool]:
        """Everything ``join_media`` would refuse, checked before the join is acked. A
        join while the call rings opens its hub here, unless another node has it
        (``HubElsewhere``: the socket's node relays the join there). Returns the call as
        checked and whether it rings, for ``join_media``."""
        ringing = await self._ringing_call(conn, call_id, publish)
        if ringing is not None:
            if self.media.find(call_id) is None:
                if await self.cases.place_hub(call_id, self.node_id) != self.node_id:
                    raise HubElsewhere(call_id)
                self.media.hub(call_id)
            return ringing, True
        _, call = await self._membership(conn, call_id)
        if conn.principal.role is Role.SUPERVISOR:
            if (call_id, conn.principal.key) not in self._monitors:
                raise InvalidStateError("send session.monitor with a mode before joining")
            if any(t.role != "mic" for t in publish):
                raise ForbiddenError("a monitoring supervisor may publish only its mic",
                                     field="publish")
        return call, False

    async def _ringing_call(self, conn: Connection, call_id: int,
                            publish: list[TrackRole]) -> Call | None:
        """The call, if ``conn`` is joining its media while it rings: the kiosk page of a
        call never answered yet, or the page of the agent it is offered to. The two
        connect while the agent's console rings and are held apart by the hub (nothing
        flows, nothing is recorded) until the answer lets them in (``_admit``)."""
        if conn.client != "page" or conn.principal.role not in (Role.KIOSK, Role.AGENT):
            return None
        call = await self.cases.get_call(call_id)
        if call.status != CallStatus.QUEUED:
            return None
        subject = int(conn.principal.subject)
        if conn.principal.role is Role.KIOSK:
            if call.kiosk_id != subject or call.answered_at is not None:
                return None
        elif call.offered_to != subject:
            return None
        extra = [t.role for t in publish if t not in CALL_TRACKS]
        if extra:
            raise ForbiddenError(f"while the call rings only the camera and mic connect, "
                                 f"not {', '.join(extra)}", field="publish")
        return call

    async def _join_ringing(self, conn: Connection, call: Call,
                            publish: list[TrackRole]) -> None:
        hub = self.media.find(call.id)  # opened by ``check_join``
        if hub is None:  # cancelled since, which closed it
            raise InvalidStateError(f"call {call.id} no longer rings")
        kind = self._kind(conn)
        info = ParticipantInfo(conn.participant_id, kind, conn.principal.name)
        await hub.join(info, publish, admitted=False,
                       expect=self._other_party(conn, call, kind))
        if hub.is_admitted(info.id):  # answered while this join was on its way
            await self._announce_joined(call.id, [info])

    async def join_media(self, conn: Connection, call: Call, publish: list[TrackRole],
                         ringing: bool) -> None:
        """Join the call's media, with the call as ``check_join`` found it (membership
        checked) and whether it rang then."""
        if ringing:
            await self._join_ringing(conn, call, publish)
            return
        call_id = call.id
        room = self.presence.rooms.get(call_id)
        if room is None:
            raise InvalidStateError(f"call {call_id} is not live")
        hub = self.media.find(call_id)
        if hub is None:
            raise InvalidStateError(f"call {call_id} has no media hub on this node")
        kind = self._kind(conn)
        hidden = False
        audience: dict[str, str] = {}
        if conn.principal.role is Role.SUPERVISOR:
            mode = self._monitors.get((call_id, conn.principal.key))
            if mode is None:
                raise InvalidStateError("send session.monitor with a mode before joining")
            hidden = True
            audience = {"mic": MONITOR_AUDIENCE[mode]}
        elif conn.principal.role is Role.AGENT and call.agent_id != int(conn.principal.subject):
            kind = "expert"
        room.members.add(conn.principal.key)
        info = ParticipantInfo(conn.participant_id, kind, conn.principal.name)
        rejoin = hub.has(info.id)
        await hub.join(info, publish, subscribe=conn.client != "devices", hidden=hidden,
                       audience=audience, expect=self._other_party(conn, call, kind))
        if not rejoin:
            await self.cases.participant_joined(call_id, info.kind, info.id, info.name)
            await self._announce(call_id, {"type": "participant.joined", "call_id": call_id,
                                           "participant": info.as_dict()}, hidden)
        self.changed()

    async def _announce(self, call_id: int, message: dict[str, Any], hidden: bool) -> None:
        """Tell the room; a hidden participant (a monitoring supervisor) only to staff."""
        if not hidden:
            await self.presence.send_room(call_id, message)
            return
        room = self.presence.rooms.get(call_id)
        for key in tuple(room.members if room else ()):
            if key.startswith(("agent:", "supervisor:")):
                await self.presence.send_to(key, message)

    # -- supervision and experts -------------------------------------------------------

    async def monitor(self, conn: Connection, call_id: int, mode: str) -> dict[str, Any]:
        await self.require_member(conn, call_id)
        key = (call_id, conn.principal.key)
        previous = self._monitors.get(key)
        self._monitors[key] = mode
        hub = self.media.find(call_id)
        if hub is not None and hub.has(conn.participant_id):
            await hub.set_audience(conn.participant_id, "mic", MONITOR_AUDIENCE[mode])
        if previous != mode:
            await self._announce(call_id, {"type": "monitor.state", "call_id": call_id,
                                           "supervisor": conn.principal.name, "mode": mode},
                                 hidden=True)
        logger.info("call %s: supervisor %s %s", call_id, conn.principal.subject, mode)
        return {"type": "monitor.state", "call_id": call_id, "mode": mode}

    async def invite(self, conn: Connection, call_id: int, username: str) -> dict[str, Any]:
        await self.require_member(conn, call_id, roles=(Role.AGENT,))
        invitee = await self.cases.invite(conn.principal, call_id, username)
        view = await self.cases.call_view(call_id)
        sent = await self.presence.send_to(f"agent:{invitee.id}", {
            "type": "call.invited", "call": _dump(view), "from": conn.principal.name})
        if not sent:
            raise NotFoundError(f"{invitee.display_name} is not online", field="username")
        return {"type": "call.invite.sent", "call_id": call_id, "agent": invitee.display_name}

    async def join_as_expert(self, conn: Connection, call_id: int) -> dict[str, Any]:
        room = self.presence.rooms.get(call_id)
        rejoining = room is not None and conn.principal.key in room.members
        if self.agent_state(int(conn.principal.subject)) == "in_call" and not rejoining:
            raise InvalidStateError("you are in another call; end or leave it first")
        view = await self.cases.accept_invitation(conn.principal, call_id)
        room = self.presence.rooms.get(call_id)
        if room is None:
            raise InvalidStateError(f"call {call_id} is not live")
        room.members.add(conn.principal.key)
        await self.router.in_call(int(conn.principal.subject))
        return {"type": "call.joined", "call": _dump(view)}

    async def leave_media(self, conn: Connection, call_id: int) -> None:
        if await self._leave_waiting(call_id, conn.participant_id):
            return
        await self.require_member(conn, call_id)
        hub = self.media.find(call_id)
        present = hub is not None and hub.has(conn.participant_id)
        # A monitoring supervisor whose page closed its connection first may already be
        # gone from the hub (closed = lost): the agents must still hear that it left.
        monitoring = (call_id, conn.principal.key) in self._monitors
        if hub is not None and (present or monitoring):
            hidden = hub.is_hidden(conn.participant_id) if present else True
            if present:
                await hub.leave(conn.participant_id)
            await self.cases.participants_left(call_id, conn.participant_id)
            await self._announce(call_id, {
                "type": "participant.left", "call_id": call_id,
                "participant": {"id": conn.participant_id, "kind": self._kind(conn),
                                "name": conn.principal.name}}, hidden)
            self._monitors.pop((call_id, conn.principal.key), None)
            if conn.principal.role is Role.SUPERVISOR:
                room = self.presence.rooms.get(call_id)
                if room is not None:
                    room.members.discard(conn.principal.key)
            self.changed()
        if conn.principal.role is Role.AGENT:
            call = await self.cases.get_call(call_id)
            if call.agent_id != int(conn.principal.subject):
                # An expert who leaves is done with this call: free for the next one.
                room = self.presence.rooms.get(call_id)
                if room is not None:
                    room.members.discard(conn.principal.key)
                await self.router.call_ended(int(conn.principal.subject), expert=True)

    def _other_party(self, conn: Connection, call: Call, kind: str
                     ) -> list[tuple[ParticipantInfo, TrackRole]]:
        """The camera and mic the call's other party will publish, when one of the two
        parties joins from its page: right after an answer both join at once, and each
        is offered the other's tracks in its first offer (``SessionHub.join``)."""
        if conn.client != "page":
            return []
        agent_id = call.agent_id if call.agent_id is not None else call.offered_to
        if kind == "kiosk" and agent_id is not None:
            other = self.presence.by_participant(f"agent:{agent_id}/page")
            other_kind = "agent"
        elif kind == "agent":
            other = self.presence.by_participant(f"kiosk:{call.kiosk_id}/page")
            other_kind = "kiosk"
        else:
            return []
        if other is None:
            return []
        owner = ParticipantInfo(other.participant_id, other_kind, other.principal.name)
        return [(owner, role) for role in CALL_TRACKS]

    @staticmethod
    def _kind(conn: Connection) -> str:
        return "devices" if conn.client == "devices" else conn.principal.role.value

    async def member_state(self, call_id: int, participant_id: str, state: str) -> None:
        """A participant's media went down (``reconnecting``) or is back (``connected``)."""
        hub = self.media.find(call_id)
        if hub is not None and hub.has(participant_id) and not hub.is_admitted(participant_id):
            return  # connecting while the call rings: nobody is told
        hidden = hub.is_hidden(participant_id) if hub else False
        await self._announce(call_id, {"type": "participant.state", "call_id": call_id,
                                       "participant_id": participant_id, "state": state},
                             hidden)

    async def notify_participant(self, participant_id: str, message: dict[str, Any]) -> None:
        conn = self.presence.by_participant(participant_id)
        if conn is not None:
            await conn.send(message)
            return
        key, _, client = participant_id.partition("/")
        # Its socket may be on another node (the call's hub is here, the kiosk is there).
        if not await self.presence.deliver(key, message, client=client or None):
            logger.info("no socket for %s; message %s dropped", participant_id,
                        message.get("type"))

    # -- chat, recordings, snapshots --------------------------------------------------

    async def chat(self, conn: Connection, call_id: int, text: str,
                   material_id: int | None = None) -> None:
        """Push a message to the room, stored first as a note of the case (see vwindow.chat)."""
        await self.require_member(conn, call_id, roles=(Role.AGENT, Role.KIOSK, Role.SURVEYOR))
        material = await store_chat(self.db, conn.principal, call_id, text, material_id)
        message: dict[str, Any] = {
            "type": "chat.message", "call_id": call_id,
            "from": {"kind": conn.principal.role.value, "name": conn.principal.name},
            "text": text, "at": datetime.now(UTC).isoformat()}
        if material is not None:
            message["material"] = material.model_dump(mode="json")
        await self.presence.send_room(call_id, message)

    async def _leave_waiting(self, call_id: int, participant_id: str) -> bool:
        """Take out a member that connected while the call rang and was never let in
        (nobody saw it come or go); False if it is not one."""
        hub = self.media.find(call_id)
        if hub is None or not hub.has(participant_id) or hub.is_admitted(participant_id):
            return False
        await hub.leave(participant_id)
        await self._close_unanswered(call_id)
        return True

    async def _close_unanswered(self, call_id: int) -> None:
        """Close the hub of a call that was never answered once nobody is connecting to
        it (the kiosk cancelled, or the kiosk and the rung agent both left)."""
        hub = self.media.find(call_id)
        if hub is None or hub.participants:
            return
        call = await self.cases.get_call(call_id)
        if call.answered_at is None and (call.status != CallStatus.QUEUED
                                         or not hub.waiting()):
            await self.media.close_hub(call_id)

    async def _close_and_store(self, call_id: int) -> None:
        try:
            recording = await self.media.close_hub(call_id)
            if recording is not None:
                await self._store_recording(call_id, recording)
        except Exception:
            logger.exception("call %s: closing the media hub failed", call_id)

    async def _store_recording(self, call_id: int, result: RecordingResult) -> None:
        """Move a finished recording into the file store, as a material of its case."""
        try:
            call = await self.cases.get_call(call_id)
            sha, size = await self.store.put_file(result.path)
            mime = "video/webm" if result.path.suffix == ".webm" else "video/x-matroska"
            stamp = result.started_at.strftime("%Y%m%d-%H%M%S")
            material, new = await self.cases.add_material(
                "system:recorder", call.case_id, sha256=sha, size=size, content_type=mime,
                filename=f"recording-{call_id}-{stamp}{result.path.suffix}",
                source="recording", call_id=call_id, kind="recording")
        except VWindowError:
            logger.exception("call %s: recording could not be stored; kept at %s", call_id,
                             result.path)
            return
        await asyncio.to_thread(result.path.unlink, missing_ok=True)
        logger.info("call %s: recording %.0f s stored as material %s", call_id,
                    result.duration_s, material.id)
        if new:
            await self.material_added(call_id, material)

    # -- nodes -------------------------------------------------------------------------

    async def _after_beat(self, beat: Beat) -> None:
        """Calls whose hub's node is gone wait again: everyone in them is told, here and
        (for the calls this node's beat found) at the other nodes. A node that had been
        declared dead itself drops the sessions it no longer holds (fencing)."""
        if beat.lost:
            await self.presence.bus.publish({"k": "calls_lost", "calls": [
                [c.call_id, c.case_id, c.kiosk_id, c.agent_id] for c in beat.lost]})
            for lost in beat.lost:
                await self._call_lost(lost)
        if beat.revived:
            for lost in await self._no_longer_held():
                await self._call_lost(lost)

    async def _no_longer_held(self) -> list[LostCall]:
        """Sessions here whose call the database gives to another node now, or to none:
        the node that declared this one dead queued them again."""
        lost = []
        for call_id in sorted(set(self.presence.rooms) | set(self.media.live_sessions)):
            try:
                call = await self.cases.get_call(call_id)
            except NotFoundError:
                continue
            if call.hub_node == self.node_id and call.status in (CallStatus.LIVE,
                                                                 CallStatus.QUEUED):
                continue
            logger.warning("call %s is no longer this node's (%s at %s): its session "
                           "here ends", call_id, call.status, call.hub_node)
            # The agent this node had in the call is the room's, not the database's.
            lost.append(LostCall(call.id, call.case_id, call.kiosk_id, None,
                                 waiting=call.status == CallStatus.QUEUED))
        return lost

    async def _call_lost(self, lost: LostCall) -> None:
        """Tell the call's people connected here: the kiosk waits again (same case, its
        materials kept), agents and the others are out of the call. Its session here,
        if any, is closed; the recording up to now goes into the case."""
        room = self.presence.rooms.pop(lost.call_id, None)
        members = set(room.members) if room is not None else set()
        members.add(f"kiosk:{lost.kiosk_id}")
        if lost.agent_id is not None:
            members.add(f"agent:{lost.agent_id}")
        for monitor in [k for k in self._monitors if k[0] == lost.call_id]:
            members.add(monitor[1])
            del self._monitors[monitor]
        self.forget_position(lost.call_id)
        if self.media.find(lost.call_id) is not None:
            self._background(self._close_and_store(lost.call_id))
        for key in sorted(members):
            if not self.presence.connected(key):
                continue
            role, _, subject = key.partition(":")
            if role == Role.KIOSK.value:
                if lost.waiting:  # (else it was told where its call went, or that it ended)
                    await self.presence.send_to(key, {"type": "call.requeued",
                                                      "call_id": lost.call_id,
                                                      "case_id": lost.case_id})
                continue
            await self.presence.send_to(key, {"type": "call.ended", "call_id": lost.call_id,
                                              "case_id": lost.case_id, "ended_by": "server"})
            if role == Role.AGENT.value and self.router.state_of(int(subject)) == "in_call":
                await self.router.call_ended(int(subject), expert=(
                    lost.agent_id is not None and int(subject) != lost.agent_id))
        self.changed()

    # -- dashboard ---------------------------------------------------------------------

    async def snapshot(self) -> dict[str, Any]:
        queue = [_dump(v) for v in await self.queue.waiting_views()]
        sessions = []
        for view in await self.cases.live():
            hub = self.media.find(view.call_id)
            entry = _dump(view)
            entry["participants"] = [p.as_dict() for p in hub.participants] if hub else []
            sessions.append(entry)
        agent_list = await self.queue.dashboard_agents()
        return {"type": "dashboard.snapshot", "queue": queue, "sessions": sessions,
                "agents": agent_list, "sla_flags": await self._current_sla_flags()}

    async def _current_sla_flags(self) -> list[dict[str, object]]:
        """The SLA warnings, recomputed at most every ``SLA_FLAGS_TTL_S``: a busy centre
        pushes the dashboard several times a second, the clocks move by minutes."""
        now = asyncio.get_running_loop().time()
        if self._sla_flags is None or now - self._sla_flags[0] >= SLA_FLAGS_TTL_S:
            self._sla_flags = (now, await sla_flags(self.db, self.sla, datetime.now(UTC)))
        return self._sla_flags[1]

    async def _dashboard_loop(self) -> None:
        while True:
            # SLA clocks move with time, not with events: refresh at least each minute.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dashboard_dirty.wait(), 60)
            await asyncio.sleep(0.1)  # coalesce bursts of changes
            self._dashboard_dirty.clear()
            watchers = [c for c in self.presence.by_role(Role.SUPERVISOR) if c.dashboard]
            if not watchers:
                continue
            try:
                snap = await self.snapshot()
            except Exception:
                logger.exception("dashboard snapshot failed")
                continue
            for conn in watchers:
                await conn.send(dict(snap))


def _lost_calls(raw: object) -> list[LostCall]:
    """The ``calls_lost`` event's calls; anything malformed is skipped."""
    if not isinstance(raw, list):
        return []
    return [LostCall(*item) for item in raw
            if isinstance(item, list) and len(item) == 4
            and all(isinstance(v, int) for v in item[:3])
            and (item[3] is None or isinstance(item[3], int))]
