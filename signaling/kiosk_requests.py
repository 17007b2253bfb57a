"""Requests to a kiosk's devices and what they send back, as part of the switchboard.

The agent (or the kiosk page) asks the kiosk's device agent for a page or an ID read;
its progress reports come back to the call's room as ``capture.progress``; materials,
ID reads and scanned codes it adds are pushed to whoever is in the case's live call.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from signaling.presence import Connection, Presence, Room
from vwindow.cases import Cases
from vwindow.errors import ForbiddenError, NotFoundError
from vwindow.models import CallStatus, Role
from vwindow.readings import Readings, purpose_of
from vwindow.views import MaterialView

logger = logging.getLogger(__name__)


class KioskRequests:
    """Mixin of :class:`signaling.switchboard.Switchboard` (which sets these up)."""

    presence: Presence
    cases: Cases
    _captures: dict[str, tuple[int, int]]
    _kiosk_ids: dict[int, int]

    async def require_member(self, conn: Connection, call_id: int,
                             roles: tuple[Role, ...] | None = None) -> Room:
        raise NotImplementedError

    async def request_device(self, conn: Connection, call_id: int, push_type: str,
                             extra: dict[str, Any]) -> dict[str, Any]:
        """Ask the kiosk's device agent to capture a page or read an ID card; its
        progress reports come back to the room as ``capture.progress``."""
        room = await self.require_member(conn, call_id, roles=(Role.AGENT, Role.KIOSK))
        kiosk_key = f"kiosk:{self._kiosk_ids.get(call_id, 0)}"
        request_id = secrets.token_hex(6)
        # The kiosk's device agent may be connected to another node: deliver it there.
        sent = await self.presence.deliver(
            kiosk_key,
            {"type": push_type, "call_id": call_id, "case_id": room.case_id,
             "request_id": request_id, **extra},
            client="devices",
        )
        if not sent:
            raise NotFoundError("the kiosk's devices are not connected; check that the "
                                "device agent (vwindow kiosk) is running")
        self._captures[request_id] = (call_id, self._kiosk_ids.get(call_id, 0))
        while len(self._captures) > 1000:
            self._captures.pop(next(iter(self._captures)))
        await self.presence.send_room(call_id, {"type": "capture.progress", "call_id": call_id,
                                                "request_id": request_id, "what": push_type,
                                                "stage": "requested", "percent": 0})
        return {"type": "capture.requested", "request_id": request_id}

    async def capture_progress(self, conn: Connection, request_id: str, stage: str,
                               percent: float | None, message: str | None) -> None:
        if conn.client != "devices":
            raise ForbiddenError("only the kiosk's device agent reports capture progress")
        found = self._captures.get(request_id)
        if found is None or found[1] != int(conn.principal.subject):
            raise NotFoundError(f"capture request {request_id!r} is unknown",
                                field="request_id")
        call_id = found[0]
        if stage in ("done", "failed"):
            self._captures.pop(request_id, None)
        push: dict[str, Any] = {"type": "capture.progress", "call_id": call_id,
                                "request_id": request_id, "stage": stage}
        if percent is not None:
            push["percent"] = percent
        if message:
            push["message"] = message
        await self.presence.send_room(call_id, push)

    async def device_code(self, conn: Connection, readings: Readings, text: str,
                          symbology: str, source: str) -> dict[str, Any]:
        """A code from the kiosk's scanner: recorded in the live call's case and shown
        to the agent; with no call, handed to the kiosk's page (a booking code)."""
        if conn.client != "devices":
            raise ForbiddenError("only the kiosk's device agent sends scanned codes")
        call = await self.cases.active_call_for(conn.principal)
        if call is not None and call.status == CallStatus.LIVE:
            view = await readings.add_code(conn.principal, call.case_id, text=text,
                                           symbology=symbology, source=source,
                                           call_id=call.call_id)
            payload = view.model_dump(mode="json")
            await self.presence.send_room(call.call_id, {"type": "case.code",
                                                         "case_id": call.case_id,
                                                         "code": payload})
            return {"type": "code.recorded", "code": payload}
        purpose = purpose_of(text)
        await self.presence.deliver(conn.principal.key, {
            "type": "kiosk.code", "text": text, "symbology": symbology, "purpose": purpose},
            client="page")
        return {"type": "code.forwarded", "purpose": purpose}

    async def case_event(self, case_id: int, message: dict[str, Any]) -> None:
        """Tell everyone in the live call of ``case_id`` (if there is one)."""
        call_id = await self.cases.live_call_of(case_id)
        if call_id is not None:
            await self.presence.send_room(call_id, message)

    async def material_added(self, call_id: int | None, material: MaterialView) -> None:
        """Show a new material in its call's room and, when that call is over (a kiosk
        uploading what it kept while offline), in the case's live call, if any."""
        live = await self.cases.live_call_of(material.case_id)
        msg = {"type": "case.material", "case_id": material.case_id,
               "material": material.model_dump(mode="json")}
        for target in {c for c in (call_id, live) if c is not None}:
            await self.presence.send_room(target, msg)

    # -- kiosk screen share and remote control ------------------------------------

    async def to_kiosk_devices(self, conn: Connection, call_id: int, push: dict[str, Any],
                               *, roles: tuple[Role, ...]) -> None:
        """Relay a request to the call's kiosk device agent (screen share, remote
        control); the device agent enforces consent, bounds and rate limits itself."""
        await self.require_member(conn, call_id, roles=roles)
        kiosk_key = f"kiosk:{self._kiosk_ids.get(call_id, 0)}"
        sent = await self.presence.deliver(kiosk_key, {**push, "call_id": call_id},
                                           client="devices")
        if not sent:
            raise NotFoundError("the kiosk's devices are not connected; check that the "
                                "device agent (vwindow kiosk) is running")

    async def remote_state(self, conn: Connection, call_id: int, state: str,
                           reason: str | None, agent_name: str | None) -> None:
        if conn.client != "devices":
            raise ForbiddenError("only the kiosk's device agent reports remote control")
        await self.require_member(conn, call_id, roles=(Role.KIOSK,))
        logger.info("call %s: remote control %s%s", call_id, state,
                    f" ({reason})" if reason else "")
        await self.presence.send_room(call_id, {"type": "remote.state", "call_id": call_id,
                                                "state": state, "reason": reason,
                                                "agent_name": agent_name})
