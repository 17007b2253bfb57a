"""The WebSocket endpoint: authenticate, then dispatch typed messages; errors keep it open."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from media.hub import TrackRole
from signaling import metrics as node_metrics
from signaling import protocol as p
from signaling.presence import Connection, RelayedConnection
from signaling.services import SERVICES, Services
from signaling.switchboard import HubElsewhere
from signaling.turn import ice_servers
from vwindow.auth import Principal
from vwindow.db import infrastructure_error
from vwindow.errors import AuthError, ForbiddenError, VWindowError
from vwindow.models import Role

logger = logging.getLogger(__name__)

AUTH_TIMEOUT_S = 10.0

# Which roles may send which message type (auth and ping: anyone authenticated).
ALLOWED: dict[type[p._Message], tuple[Role, ...]] = {
    p.Ping: tuple(Role),
    p.AgentState: (Role.AGENT,),
    p.CallStart: (Role.KIOSK,),
    p.CallCancel: (Role.KIOSK,),
    p.CallCallback: (Role.KIOSK,),
    p.CallAccept: (Role.AGENT,),
    p.CallDecline: (Role.AGENT,),
    p.CallTransfer: (Role.AGENT,),
    p.CallEnd: (Role.AGENT, Role.KIOSK),
    p.RtcJoin: (Role.KIOSK, Role.AGENT, Role.SURVEYOR, Role.SUPERVISOR),
    p.RtcAnswer: (Role.KIOSK, Role.AGENT, Role.SURVEYOR, Role.SUPERVISOR),
    p.RtcCandidate: (Role.KIOSK, Role.AGENT, Role.SURVEYOR, Role.SUPERVISOR),
    p.RtcLeave: (Role.KIOSK, Role.AGENT, Role.SURVEYOR, Role.SUPERVISOR),
    p.RtcPublish: (Role.KIOSK, Role.AGENT, Role.SURVEYOR),
    p.RtcUnpublish: (Role.KIOSK, Role.AGENT, Role.SURVEYOR),
    p.SessionMonitor: (Role.SUPERVISOR,),
    p.CallInvite: (Role.AGENT,),
    p.CallJoin: (Role.AGENT,),
    p.MediaSnapshot: (Role.AGENT,),
    p.DeviceCapture: (Role.AGENT, Role.KIOSK),
    p.DeviceIdCard: (Role.AGENT, Role.KIOSK),
    p.DeviceCode: (Role.KIOSK,),
    p.DeviceScreen: (Role.AGENT,),
    p.RemoteRequest: (Role.AGENT,),
    p.RemoteConsent: (Role.KIOSK,),
    p.RemoteStop: (Role.AGENT, Role.KIOSK),
    p.RemoteInput: (Role.AGENT,),
    p.RemoteState: (Role.KIOSK,),
    p.SurveyorPosition: (Role.SURVEYOR,),
    p.DeviceProgress: (Role.KIOSK,),
    p.ChatSend: (Role.AGENT, Role.KIOSK, Role.SURVEYOR),
    p.DashboardSubscribe: (Role.SUPERVISOR,),
}


# Messages about a live call that are handled where the call's room and media hub are:
# on another node, they are relayed there over the bus (``relay_to_hub_node``).
ROOM_MESSAGES: tuple[type[p._Message], ...] = (
    p.RtcJoin, p.RtcAnswer, p.RtcCandidate, p.RtcLeave, p.RtcPublish, p.RtcUnpublish,
    p.ChatSend, p.DeviceCapture, p.DeviceIdCard, p.DeviceScreen, p.DeviceProgress,
    p.RemoteRequest, p.RemoteConsent, p.RemoteStop, p.RemoteInput, p.RemoteState,
    p.SurveyorPosition, p.MediaSnapshot, p.SessionMonitor,
    p.CallEnd, p.CallInvite, p.CallJoin, p.CallTransfer,
)

# The kiosk's device agent shares the kiosk's token but only publishes and reports.
DEVICE_CLIENT_MESSAGES: frozenset[type[p._Message]] = frozenset({
    p.Ping, p.RtcJoin, p.RtcAnswer, p.RtcCandidate, p.RtcLeave, p.RtcPublish, p.RtcUnpublish,
    p.DeviceProgress, p.DeviceCode, p.RemoteState, p.RemoteStop,
})


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    services = request.app[SERVICES]
    limit = services.config.server.max_ws_frame
    # Let a slightly larger frame through the reader so we can answer "too_large"
    # ourselves instead of aiohttp closing the socket. No permessage-deflate, which every
    # browser offers: signalling messages are small, and a socket that compresses keeps a
    # zlib compressor and decompressor (~300 KiB) for its whole life.
    ws = web.WebSocketResponse(heartbeat=20.0, compress=False,
                               max_msg_size=max(limit * 32, 4 * 1024 * 1024))
    await ws.prepare(request)
    conn: Connection | None = None
    # A timer, not a task: a task lingers on the socket (done, with its cancellation and
    # traceback) for as long as the socket lives; a cancelled timer is dropped.
    deadline: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
        AUTH_TIMEOUT_S, _close_unauthenticated, ws)
    try:
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            # One frame per call: its locals (the parsed message, the reply -- the
            # welcome with its ICE servers is kilobytes) go when it returns, so an idle
            # socket holds nothing of its last message.
            conn = await _on_frame(request, services, ws, conn, msg.data, limit)
            if conn is not None and deadline is not None:
                deadline.cancel()
                deadline = None
            del msg
    finally:
        if deadline is not None:
            deadline.cancel()
        if conn is not None:
            services.presence.remove(conn, services.switchboard.agent_gone)
            logger.info("socket closed for %s", conn.participant_id)
    return ws


def _close_unauthenticated(ws: web.WebSocketResponse) -> None:
    if not ws.closed:
        task = asyncio.ensure_future(ws.close(code=4401, message=b"no auth within 10 s"))
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)


_CLOSING: set[asyncio.Future[bool]] = set()
"""Sockets being closed for want of an auth frame (kept so the close is not collected)."""


async def _on_frame(request: web.Request, services: Services, ws: web.WebSocketResponse,
                    conn: Connection | None, raw: str | bytes, limit: int
                    ) -> Connection | None:
    """Handle one frame; the socket's connection (made by the ``auth`` frame)."""
    try:
        message = p.parse_message(raw, limit)
    except p.ProtocolError as err:
        node_metrics.count_ws_error(request.app, err.code)
        await _send_error(ws, err.code, err.message, err.field, err.ref)
        return conn
    except Exception:
        # Whatever a frame does to the parser, the socket stays up.
        logger.exception("parsing a frame failed")
        node_metrics.count_ws_error(request.app, "internal")
        await _send_error(ws, "internal", "the server could not read this frame", None, None)
        return conn
    try:
        if conn is None:
            return await _authenticate(services, ws, message)
        reply = await _dispatch(services, conn, message)
        if reply is not None:
            reply["ref"] = message.id
            await conn.send(reply)
    except VWindowError as err:
        node_metrics.count_ws_error(request.app, err.code)
        await _send_error(ws, err.code, err.message, err.field, message.id)
    except Exception as exc:
        if (known := infrastructure_error(exc)) is not None:
            logger.warning("handling %s: %s (%s)", type(message).__name__, known.code,
                           type(exc).__name__)
            node_metrics.count_ws_error(request.app, known.code)
            await _send_error(ws, known.code, known.message, None, message.id)
            return conn
        logger.exception("handling %s failed", type(message).__name__)
        node_metrics.count_ws_error(request.app, "internal")
        await _send_error(ws, "internal", "the server could not handle this message; "
                          "it has been logged", None, message.id)
    return conn


async def _send_error(ws: web.WebSocketResponse, code: str, message: str,
                      field: str | None, ref: str | None) -> None:
    if not ws.closed:
        await ws.send_json(p.error_message(code, message, field=field, ref=ref))


async def _authenticate(services: Services, ws: web.WebSocketResponse,
                        message: p._Message) -> Connection:
    if not isinstance(message, p.Auth):
        raise AuthError("send 'auth' with a token first")
    principal: Principal = services.tokens.verify(message.token)
    if message.client == "devices" and principal.role is not Role.KIOSK:
        raise ForbiddenError("only a kiosk token can connect a device agent", field="client")
    conn = Connection(ws=ws, principal=principal, client=message.client)
    resumed = services.presence.resumes(message.resume_token, principal)
    if principal.role is Role.SURVEYOR and principal.call_id is not None:
        room = services.presence.rooms.get(principal.call_id)
        if room is not None:
            room.members.add(principal.key)
    active = await services.switchboard.active_call(conn)
    ice = ice_servers(services.config, conn.participant_id)
    await conn.send({
        "type": "welcome", "ref": message.id, "role": principal.role.value,
        "principal": {"id": principal.subject, "name": principal.name,
                      "kind": "devices" if message.client == "devices" else principal.role.value},
        "resume_token": conn.resume_token, "resumed": resumed, "ice_servers": ice,
        "ice_transport_policy": services.config.media.ice_transport_policy,
        "active_call": active, "recording": services.config.media.record,
    })
    # Registered only once the welcome is out: a failure before leaves no stale entry.
    services.presence.add(conn)
    if principal.role is Role.AGENT:
        await services.switchboard.router.agent_connected(conn)
    logger.info("socket authenticated for %s", conn.participant_id)
    return conn


async def _dispatch(services: Services, conn: Connection,
                    message: p._Message) -> dict[str, Any] | None:
    allowed = ALLOWED.get(type(message))
    if allowed is None:
        raise ForbiddenError("already authenticated")
    if conn.principal.role not in allowed:
        raise ForbiddenError(
            f"a {conn.principal.role.value} may not send {message_type(message)!r}", field="type")
    if conn.client == "devices" and type(message) not in DEVICE_CLIENT_MESSAGES:
        raise ForbiddenError(f"the device agent may not send {message_type(message)!r}",
                             field="type")
    if isinstance(message, ROOM_MESSAGES) and await relay_to_hub_node(services, conn, message):
        return None  # the hub's node answers (with this message's id as ref)
    sb = services.switchboard
    match message:
        case p.Ping():
            return {"type": "pong"}
        case p.AgentState(state=state, reason=reason):
            return {"type": "agent.state",
                    "state": await sb.set_agent_state(conn, state, reason)}
        case p.CallStart(service_code=code, dialect=dialect, birth_date=birth,
                         booking_code=booking, case_number=number):
            holds = booking is not None and await services.appointments.holds(booking)
            return await sb.start_call(conn, code, dialect, birth, appointment=holds,
                                       case_number=number)
        case p.CallCancel(call_id=call_id):
            await sb.cancel_call(conn, call_id)
        case p.CallCallback(call_id=call_id):
            return await sb.request_callback(conn, call_id)
        case p.CallDecline(call_id=call_id):
            await sb.decline_call(conn, call_id)
        case p.CallTransfer(call_id=call_id, to_agent=to_agent, to_queue=to_queue, note=note):
            return await sb.transfer(conn, call_id, to_agent, to_queue, note)
        case p.CallAccept(call_id=call_id):
            return await sb.accept_call(conn, call_id)
        case p.CallEnd(call_id=call_id):
            await sb.end_call(conn, call_id, conn.principal.role.value)
        case p.RtcJoin(call_id=call_id, publish=publish):
            roles = [TrackRole(x.role, x.kind) for x in publish]
            try:
                call, ringing = await sb.check_join(conn, call_id, roles)
            except HubElsewhere:
                # Placed at another node since this socket's node looked: go there.
                if not isinstance(conn, RelayedConnection) and await relay_to_hub_node(
                        services, conn, message):
                    return None
                raise
            # Ack first: the offer that follows must find the client ready for it.
            await conn.send({"type": "ack", "ref": message.id})
            await sb.join_media(conn, call, roles, ringing)
            return None
        case p.RtcAnswer(call_id=call_id, sdp=sdp):
            await _hub_for(services, conn, call_id).answer(conn.participant_id, sdp)
        case p.RtcCandidate(call_id=call_id, candidate=candidate):
            hub = _hub_for(services, conn, call_id)
            await hub.add_candidate(conn.participant_id,
                                    candidate.model_dump() if candidate else None)
            return None
        case p.RtcLeave(call_id=call_id):
            await sb.leave_media(conn, call_id)
        case p.RtcPublish(call_id=call_id, role=role, kind=kind):
            # The offer for the new slot may reach the client before this ack.
            await sb.require_member(conn, call_id)
            await _hub_for(services, conn, call_id).publish(conn.participant_id,
                                                            TrackRole(role, kind))
        case p.RtcUnpublish(call_id=call_id, role=role):
            await sb.require_member(conn, call_id)
            await _hub_for(services, conn, call_id).unpublish(conn.participant_id, role)
        case p.SessionMonitor(call_id=call_id, mode=mode):
            return await sb.monitor(conn, call_id, mode)
        case p.CallInvite(call_id=call_id, username=username):
            return await sb.invite(conn, call_id, username)
        case p.CallJoin(call_id=call_id):
            return await sb.join_as_expert(conn, call_id)
        case p.MediaSnapshot(call_id=call_id, participant_id=pid, role=role):
            return await sb.snapshot_to_case(conn, call_id, pid, role, services.store,
                                             services.inspections)
        case p.DeviceCapture(call_id=call_id, document=document, mode=mode,
                             accept_poor=accept_poor):
            return await sb.request_device(conn, call_id, "device.capture",
                                           {"document": document, "mode": mode,
                                            "accept_poor": accept_poor})
        case p.DeviceIdCard(call_id=call_id):
            return await sb.request_device(conn, call_id, "device.idcard", {})
        case p.DeviceScreen(call_id=call_id, on=on):
            await sb.to_kiosk_devices(conn, call_id, {"type": "device.screen", "on": on},
                                      roles=(Role.AGENT,))
        case p.RemoteRequest(call_id=call_id):
            await sb.to_kiosk_devices(
                conn, call_id, {"type": "remote.request", "agent_name": conn.principal.name},
                roles=(Role.AGENT,))
        case p.RemoteConsent(call_id=call_id, granted=granted):
            if conn.client == "devices":
                raise ForbiddenError("consent comes from the kiosk's own screen")
            await sb.to_kiosk_devices(conn, call_id, {"type": "remote.consent",
                                                      "granted": granted},
                                      roles=(Role.KIOSK,))
        case p.RemoteStop(call_id=call_id):
            await sb.to_kiosk_devices(
                conn, call_id, {"type": "remote.stop", "by": conn.principal.role.value},
                roles=(Role.AGENT, Role.KIOSK))
        case p.RemoteInput(call_id=call_id, event=event):
            await sb.to_kiosk_devices(conn, call_id, {"type": "remote.input", "event": event},
                                      roles=(Role.AGENT,))
        case p.RemoteState(call_id=call_id, state=state, reason=reason, agent_name=name):
            await sb.remote_state(conn, call_id, state, reason, name)
        case p.SurveyorPosition(call_id=call_id, lat=lat, lon=lon, accuracy=acc,
                                heading=heading, at=at):
            await sb.surveyor_position(conn, call_id, lat, lon, acc, heading, at)
        case p.DeviceCode(text=text, symbology=symbology, source=source):
            return await sb.device_code(conn, services.readings, text, symbology, source)
        case p.DeviceProgress(request_id=rid, stage=stage, percent=pct, message=text):
            await sb.capture_progress(conn, rid, stage, pct, text)
        case p.ChatSend(call_id=call_id, text=text, material_id=material_id):
            await sb.chat(conn, call_id, text.strip(), material_id)
        case p.DashboardSubscribe():
            conn.dashboard = True
            return await sb.snapshot()
        case _:
            raise ForbiddenError(f"{message_type(message)!r} is not handled")
    return {"type": "ack"}


async def relay_to_hub_node(services: Services, conn: Connection, message: p._Message) -> bool:
    """Send ``message`` to the node holding its call's room, if that is another node."""
    call_id = getattr(message, "call_id", None)
    if call_id is None or call_id in services.presence.rooms:
        return False
    node = await services.cases.hub_node(call_id)
    if node is None or node == services.config.server.node_id:
        return False
    principal = conn.principal
    return await services.presence.bus.publish({
        "k": "relay", "node": node, "client": conn.client,
        "principal": {"role": principal.role.value, "subject": principal.subject,
                      "name": principal.name, "case_id": principal.case_id,
                      "call_id": principal.call_id},
        "msg": message.model_dump(mode="json")})


async def handle_relay(services: Services, event: dict[str, Any]) -> None:
    """A message relayed from another node's socket about a call whose room is here."""
    if event.get("k") != "relay" or event.get("node") != services.config.server.node_id:
        return
    who = event.get("principal")
    raw = event.get("msg")
    if not isinstance(who, dict) or not isinstance(raw, dict):
        return
    principal = Principal(role=Role(who["role"]), subject=str(who["subject"]),
                          name=str(who.get("name", "")), case_id=who.get("case_id"),
                          call_id=who.get("call_id"))
    conn = RelayedConnection(ws=None, principal=principal,  # type: ignore[arg-type]
                             client=str(event.get("client") or "page"),
                             presence=services.presence)
    try:
        message = p.parse_message(json.dumps(raw))
        reply = await _dispatch(services, conn, message)
        if reply is not None:
            reply["ref"] = message.id
            await conn.send(reply)
    except p.ProtocolError as err:
        await conn.send(p.error_message(err.code, err.message, field=err.field, ref=err.ref))
    except VWindowError as err:
        await conn.send(p.error_message(err.code, err.message, field=err.field,
                                        ref=str(raw.get("id") or "")))
    except Exception:
        logger.exception("relayed %s failed", raw.get("type"))
        await conn.send(p.error_message("internal", "the server could not handle this "
                                        "message; it has been logged",
                                        ref=str(raw.get("id") or "")))


def _hub_for(services: Services, conn: Connection, call_id: int) -> Any:
    hub = services.media.find(call_id)
    if hub is None or not hub.has(conn.participant_id):
        raise ForbiddenError(f"join the media of call {call_id} first (rtc.join)",
                             field="call_id")
    return hub


def message_type(message: p._Message) -> str:
    return str(getattr(message, "type", type(message).__name__))


async def close_all(services: Services) -> None:
    for role in Role:
        for conn in services.presence.by_role(role):
            await conn.ws.close(code=1001, message=b"server shutting down")
    await asyncio.sleep(0)
