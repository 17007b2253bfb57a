"""Evidence snapshots into the case, also while the picture is away.

``media.snapshot`` decodes the next keyframe of a participant's live track into a JPEG
material of the case (a surveyor's is stamped first, see ``signaling.inspections``).
When that picture is away — the phone's link dropped and it is rejoining, or its track
stopped arriving — the request is not refused: it is queued. The agent is answered
``snapshot.queued`` at once and told ``snapshot.taken`` when the first keyframe after
the picture's return has been stored, or ``snapshot.failed`` with the reason when none
came within ``snapshot_wait_s``. A queued shot's stamp says when it was asked for as
well as when it was taken, so nobody mistakes it for the moment of the request.

The wait runs as a task of its own: a socket handles its messages one at a time, and
the agent's console must go on working (and answering pings) meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from media.fanout import EncodedPublication, ParticipantInfo
from media.hub import SessionHub
from media.service import MediaService
from media.snapshot import Snapshot, SnapshotError, take_snapshot
from media.watermark import stamp as stamp_evidence
from signaling.presence import Connection, Presence, Room
from vwindow.auth import Principal
from vwindow.cases import Cases
from vwindow.db import Database
from vwindow.errors import InvalidStateError, NotFoundError, VWindowError
from vwindow.inspections import Inspections
from vwindow.models import Case, Role
from vwindow.store import FileStore
from vwindow.views import MaterialView

logger = logging.getLogger(__name__)

MAX_QUEUED_PER_CALL = 8
"""Snapshots waiting for one call's pictures at once; more is a stuck button, refused."""


@dataclass(frozen=True)
class QueuedSnapshot:
    request_id: str
    call_id: int
    participant_id: str
    role: str
    requester: Principal
    requested_at: datetime
    deadline: float  # the loop's clock


class SnapshotDesk:
    """Mixin of :class:`signaling.switchboard.Switchboard` (which sets these up)."""

    db: Database
    cases: Cases
    media: MediaService
    presence: Presence
    _queued_snapshots: dict[str, tuple[QueuedSnapshot, asyncio.Task[None]]]

    snapshot_try_s = 3.0
    """A live picture gives a keyframe within a second; past this it is taken as away."""
    snapshot_wait_s = 60.0
    """How long a queued snapshot waits for the picture to come back."""
    snapshot_attempt_s = 5.0
    """One wait for a keyframe while queued; then the publication is looked up again."""

    async def require_member(self, conn: Connection, call_id: int,
                             roles: tuple[Role, ...] | None = None) -> Room:
        raise NotImplementedError

    def position_of(self, call_id: int) -> dict[str, Any] | None:
        raise NotImplementedError

    def evidence_lines(self, call_id: int, taken_at: datetime, case_number: str,
                       inspection: str | None,
                       requested_at: datetime | None = None) -> list[str]:
        raise NotImplementedError

    async def material_added(self, call_id: int | None, material: MaterialView) -> None:
        raise NotImplementedError

    async def snapshot_to_case(self, conn: Connection, call_id: int, participant_id: str,
                               role: str, store: FileStore,
                               inspections: Inspections | None = None) -> dict[str, Any]:
        """Decode one keyframe of a live track into a JPEG material of the case; queue
        the request if that participant's picture is away (see the module)."""
        room = await self.require_member(conn, call_id, roles=(Role.AGENT,))
        hub = self.media.find(call_id)
        pub = _publication(hub, participant_id, role)
        failure: SnapshotError | None = None
        if pub is not None:
            try:
                shot = await take_snapshot(pub.source, name=f"{pub.owner.name} {role}",
                                           timeout=self.snapshot_try_s)
            except SnapshotError as err:
                failure = err
            else:
                return await self._keep_snapshot(conn.principal, room, pub.owner, role, shot,
                                                 store, inspections)
        if hub is None or not _may_come_back(room, hub, participant_id, role):
            if failure is not None:
                raise failure
            raise NotFoundError(f"{participant_id!r} has no live {role!r} track in call "
                                f"{call_id}", field="participant_id")
        return self._queue_snapshot(conn.principal, call_id, participant_id, role, store,
                                    inspections)

    def cancel_queued_snapshots(self) -> list[asyncio.Task[None]]:
        """Stop waiting (the node shuts down); the tasks, to await."""
        tasks = [task for _, task in self._queued_snapshots.values()]
        for task in tasks:
            task.cancel()
        return tasks

    # -- internals ---------------------------------------------------------------------

    def _queue_snapshot(self, requester: Principal, call_id: int, participant_id: str,
                        role: str, store: FileStore,
                        inspections: Inspections | None) -> dict[str, Any]:
        waiting = sum(1 for q, _ in self._queued_snapshots.values() if q.call_id == call_id)
        if waiting >= MAX_QUEUED_PER_CALL:
            raise InvalidStateError(f"{waiting} snapshots already wait for call {call_id}'s "
                                    "pictures; wait for them first")
        loop = asyncio.get_running_loop()
        queued = QueuedSnapshot(request_id=secrets.token_urlsafe(9), call_id=call_id,
                                participant_id=participant_id, role=role, requester=requester,
                                requested_at=datetime.now(UTC),
                                deadline=loop.time() + self.snapshot_wait_s)
        task = loop.create_task(self._wait_and_take(queued, store, inspections),
                                name=f"snapshot {queued.request_id}")
        self._queued_snapshots[queued.request_id] = (queued, task)
        task.add_done_callback(lambda _: self._queued_snapshots.pop(queued.request_id, None))
        logger.info("call %s: snapshot of %s %s queued until its picture is back",
                    call_id, participant_id, role)
        return {"type": "snapshot.queued", "call_id": call_id,
                "request_id": queued.request_id, "participant_id": participant_id,
                "role": role, "requested_at": queued.requested_at.isoformat(),
                "wait_s": self.snapshot_wait_s}

    async def _wait_and_take(self, queued: QueuedSnapshot, store: FileStore,
                             inspections: Inspections | None) -> None:
        about = {"call_id": queued.call_id, "request_id": queued.request_id,
                 "participant_id": queued.participant_id, "role": queued.role}
        try:
            reply = await self._take_when_back(queued, store, inspections)
        except VWindowError as err:
            logger.info("call %s: queued snapshot %s failed: %s", queued.call_id,
                        queued.request_id, err.message)
            await self.presence.deliver(queued.requester.key, {
                "type": "snapshot.failed", **about, "code": err.code, "message": err.message})
            return
        except Exception:
            logger.exception("call %s: queued snapshot %s failed", queued.call_id,
                             queued.request_id)
            await self.presence.deliver(queued.requester.key, {
                "type": "snapshot.failed", **about, "code": "internal",
                "message": "the snapshot could not be taken; it has been logged"})
            return
        await self.presence.deliver(queued.requester.key, {**reply, **about})

    async def _take_when_back(self, queued: QueuedSnapshot, store: FileStore,
                              inspections: Inspections | None) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        last = "its picture did not come back"
        while (remaining := queued.deadline - loop.time()) > 0:
            room = self.presence.rooms.get(queued.call_id)
            hub = self.media.find(queued.call_id)
            if room is None or hub is None:
                raise InvalidStateError(f"call {queued.call_id} ended before the snapshot "
                                        "could be taken")
            pub = _publication(hub, queued.participant_id, queued.role)
            if pub is None or pub.source.ended:
                await asyncio.sleep(min(0.25, remaining))
                continue
            try:
                shot = await take_snapshot(pub.source, name=f"{pub.owner.name} {queued.role}",
                                           timeout=min(self.snapshot_attempt_s, remaining))
            except SnapshotError as err:
                last = err.message
                await asyncio.sleep(min(0.25, max(0.0, queued.deadline - loop.time())))
                continue
            return await self._keep_snapshot(queued.requester, room, pub.owner, queued.role,
                                             shot, store, inspections,
                                             requested_at=queued.requested_at)
        raise SnapshotError(f"no picture from {queued.participant_id} {queued.role} within "
                            f"{self.snapshot_wait_s:g} s of the request: {last}")

    async def _keep_snapshot(self, principal: Principal, room: Room, owner: ParticipantInfo,
                             role: str, shot: Snapshot, store: FileStore,
                             inspections: Inspections | None,
                             requested_at: datetime | None = None) -> dict[str, Any]:
        """Stamp (a surveyor's), store and announce one snapshot; the reply to send."""
        call_id = room.call_id
        surveyor = owner.kind == "surveyor"
        jpeg, prefix = shot.jpeg, "snapshot"
        position = self.position_of(call_id) if surveyor else None
        inspection = (await inspections.open_for_call(call_id)
                      if inspections is not None and surveyor else None)
        if surveyor:
            # Evidence from the site: stamped with when, where, which case.
            async with self.db.session() as s:
                case_number = str(await s.scalar(select(Case.number).where(
                    Case.id == room.case_id)))
            lines = self.evidence_lines(call_id, shot.taken_at, case_number,
                                        inspection.number if inspection else None,
                                        requested_at=requested_at)
            jpeg = await asyncio.to_thread(stamp_evidence, shot.jpeg, lines)
            prefix = "evidence"
        sha = await store.put(jpeg)
        stamp = shot.taken_at.strftime("%Y%m%d-%H%M%S")
        material, new = await self.cases.add_material(
            principal, room.case_id, sha256=sha, size=len(jpeg),
            content_type="image/jpeg", filename=f"{prefix}-{owner.kind}-{role}-{stamp}.jpg",
            source="surveyor" if position is not None or prefix == "evidence" else "snapshot",
            call_id=call_id, kind="snapshot")
        evidence = None
        if inspection is not None and inspections is not None:
            evidence = await inspections.add_evidence(inspection.id, material.id, position)
        if new:
            await self.material_added(call_id, material)
        if evidence is not None and inspection is not None:
            await self.presence.send_room(call_id, {
                "type": "inspection.evidence", "call_id": call_id,
                "inspection_id": inspection.id, "evidence": evidence.model_dump(mode="json")})
        return {"type": "snapshot.taken", "material": material.model_dump(mode="json"),
                "width": shot.width, "height": shot.height, "position": position,
                "evidence": evidence.model_dump(mode="json") if evidence else None,
                "taken_at": shot.taken_at.isoformat(),
                "requested_at": requested_at.isoformat() if requested_at else None}


def _publication(hub: SessionHub | None, participant_id: str,
                 role: str) -> EncodedPublication | None:
    for pub in hub.publications() if hub is not None else ():
        if pub.owner.id == participant_id and pub.role == role:
            if not isinstance(pub, EncodedPublication):
                raise InvalidStateError("snapshots need the hub in forwarding mode")
            return pub
    return None


def _may_come_back(room: Room, hub: SessionHub, participant_id: str, role: str) -> bool:
    """Is ``participant_id``'s ``role`` picture away rather than gone? It is still in the
    call, and either rejoining the hub with that slot or dropped from it (a link that
    failed; the client rejoins with a new peer connection)."""
    key = participant_id.partition("/")[0]
    if key not in room.members:
        return False
    return hub.publishes(participant_id, role) if hub.has(participant_id) else True
