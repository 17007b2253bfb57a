"""Remote site inspection (远程踏勘) in the switchboard: the surveyor phone's position
and the stamp on every evidence snapshot taken from its camera (taken and stored by
``signaling.snapshots``).

The phone streams its GPS fix (``surveyor.position``); the node holding the call keeps
the latest one per call and passes it on to the room, so the agent sees where the
surveyor stands (and how far from the registered address, worked out in the page).
A snapshot of a surveyor's track is stamped with the time, that position, the case
number and the inspection number before it is stored.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from signaling.presence import Connection, Presence, Room
from vwindow.models import Role

logger = logging.getLogger(__name__)

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
STALE_S = 120.0
"""A fix older than this is stamped as such: the surveyor may have walked on."""


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine; plenty for a site visit)."""
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(min(1.0, math.sqrt(a)))


class InspectionDesk:
    """Mixin of :class:`signaling.switchboard.Switchboard` (which sets these up)."""

    presence: Presence
    _positions: dict[int, dict[str, Any]]

    async def require_member(self, conn: Connection, call_id: int,
                             roles: tuple[Role, ...] | None = None) -> Room:
        raise NotImplementedError

    async def surveyor_position(self, conn: Connection, call_id: int, lat: float, lon: float,
                                accuracy: float, heading: float | None,
                                at: int | None) -> None:
        await self.require_member(conn, call_id, roles=(Role.SURVEYOR,))
        fix = {"lat": round(lat, 7), "lon": round(lon, 7), "accuracy": round(accuracy, 1),
               "heading": heading, "at": at,
               "received_at": datetime.now(LOCAL_TZ).isoformat(timespec="seconds"),
               "participant_id": conn.participant_id}
        first = call_id not in self._positions
        self._positions[call_id] = fix
        if first:
            # Coordinates are personal data of a kind: not in the log, only that one came.
            logger.info("call %s: surveyor position received (±%.0f m)", call_id, accuracy)
        await self.presence.send_room(call_id, {"type": "inspection.position",
                                                "call_id": call_id, "position": fix})

    def position_of(self, call_id: int) -> dict[str, Any] | None:
        return self._positions.get(call_id)

    def evidence_lines(self, call_id: int, taken_at: datetime, case_number: str,
                       inspection: str | None,
                       requested_at: datetime | None = None) -> list[str]:
        """The stamp's text: time, place, case and inspection; for a snapshot that waited
        for the phone to come back (``requested_at``), when it was asked for."""
        local = taken_at.astimezone(LOCAL_TZ)
        lines = [f"时间 Time  {local:%Y-%m-%d %H:%M:%S} (UTC+8)"]
        if requested_at is not None:
            asked = requested_at.astimezone(LOCAL_TZ)
            lines.append(f"请求 Requested  {asked:%H:%M:%S}  重连后拍摄 after reconnect")
        fix = self._positions.get(call_id)
        if fix is None:
            lines.append("位置 GPS  无定位 / no fix")
        else:
            age = ""
            received = datetime.fromisoformat(fix["received_at"])
            if (taken_at - received).total_seconds() > STALE_S:
                age = f"  ({received:%H:%M:%S} 的定位 / fix at {received:%H:%M:%S})"
            lines.append(f"位置 GPS  {fix['lat']:.6f}, {fix['lon']:.6f}  "
                         f"±{fix['accuracy']:.0f} m{age}")
        lines.append(f"案件 Case  {case_number}" + (f"   踏勘 Inspection  {inspection}"
                                                     if inspection else ""))
        return lines

    def forget_position(self, call_id: int) -> None:
        self._positions.pop(call_id, None)
