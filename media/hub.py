"""One live session's media hub: a star of peer connections, the hub always offering.

Every participant has one ``RTCPeerConnection`` to the hub. What a participant will
publish (camera, mic, doccam, screen) becomes a ``recvonly`` transceiver; every other
participant's publication becomes a ``sendonly`` transceiver fed by a ``ForwardTrack``.
New publications renegotiate with the subscribers; offers to one participant are
serialised and coalesced (a change during an outstanding offer re-offers after the
answer).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.exceptions import InvalidAccessError, OperationError
from aiortc.exceptions import InvalidStateError as AiortcInvalidStateError
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from media.errors import (
    HubClosedError,
    InvalidCandidateError,
    InvalidSdpError,
    ParticipantNotFoundError,
)
from media.fanout import DecodedPublication, EncodedPublication, ParticipantInfo, Publication
from media.forwarding import ForwardingHook

logger = logging.getLogger(__name__)

Notify = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Send a message to one participant (by participant id) over its signalling socket."""

ROLES = {"camera": "video", "mic": "audio", "doccam": "video", "screen": "video"}


@dataclass(frozen=True)
class TrackRole:
    role: str
    kind: str


@dataclass
class _Member:
    info: ParticipantInfo
    pc: RTCPeerConnection
    publish: list[TrackRole]
    subscribe: bool
    publish_transceivers: list[tuple[RTCRtpTransceiver, TrackRole]] = field(default_factory=list)
    subscriptions: dict[str, RTCRtpTransceiver] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    awaiting_answer: bool = False
    pending: bool = False
    closed: bool = False


class SessionHub:
    """The media star of one live session (``session_id`` is the call id)."""

    def __init__(self, session_id: int, notify: Notify, *, video_codec: str = "VP8",
                 forwarding: ForwardingHook | None = None) -> None:
        self.session_id = session_id
        self._forwarding = forwarding
        self._notify = notify
        self.video_codec = video_codec.upper()
        self._members: dict[str, _Member] = {}
        self._publications: dict[str, Publication] = {}
        self._pub_seq = itertools.count(1)
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                logger.exception("session %s: background negotiation failed", self.session_id)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- membership --------------------------------------------------------------------

    @property
    def participants(self) -> list[ParticipantInfo]:
        return [m.info for m in self._members.values()]

    def has(self, participant_id: str) -> bool:
        return participant_id in self._members

    async def join(
        self,
        info: ParticipantInfo,
        publish: list[TrackRole],
        *,
        subscribe: bool = True,
    ) -> None:
        """Add (or re-add, after a lost connection) a participant and send it an offer."""
        if self._closed:
            raise HubClosedError(f"session {self.session_id} has ended")
        if info.id in self._members:
            await self.leave(info.id)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        member = _Member(info=info, pc=pc, publish=publish, subscribe=subscribe)
        self._members[info.id] = member

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._on_track(member, track)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            logger.info("session %s: %s connection %s", self.session_id, info.id,
                        pc.connectionState)
            if pc.connectionState == "failed" and self._members.get(info.id) is member:
                await self.leave(info.id)

        for tr in publish:
            transceiver = pc.addTransceiver(tr.kind, direction="recvonly")
            self._pin_codec(transceiver)
            member.publish_transceivers.append((transceiver, tr))
        if subscribe:
            for pub in self._publications.values():
                self._add_subscription(member, pub)
        logger.info("session %s: %s (%s) joins, publishing %s", self.session_id, info.id,
                    info.kind, ",".join(t.role for t in publish) or "nothing")
        await self._negotiate(member)

    async def leave(self, participant_id: str) -> None:
        member = self._members.pop(participant_id, None)
        if member is None:
            return
        member.closed = True
        ended = [p for p in self._publications.values() if p.owner.id == participant_id]
        for pub in ended:
            del self._publications[pub.id]
            await pub.stop()
        await member.pc.close()
        for other in list(self._members.values()):
            changed = False
            for pub in ended:
                transceiver = other.subscriptions.pop(pub.id, None)
                if transceiver is not None:
                    transceiver.sender.replaceTrack(None)
                    transceiver.direction = "inactive"
                    changed = True
            if changed:
                self._spawn(self._negotiate(other))
        logger.info("session %s: %s left", self.session_id, participant_id)

    async def stop(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for pid in list(self._members):
            member = self._members.pop(pid)
            member.closed = True
            await member.pc.close()
        for pub in list(self._publications.values()):
            await pub.stop()
        self._publications.clear()

    # -- negotiation -------------------------------------------------------------------

    def _member(self, participant_id: str) -> _Member:
        member = self._members.get(participant_id)
        if member is None:
            raise ParticipantNotFoundError(
                f"{participant_id!r} has not joined the media of session {self.session_id}"
            )
        return member

    def _pin_codec(self, transceiver: RTCRtpTransceiver) -> None:
        if transceiver.kind != "video":
            return
        wanted = f"video/{self.video_codec}".lower()
        codecs = [c for c in RTCRtpSender.getCapabilities("video").codecs
                  if c.mimeType.lower() == wanted]
        if codecs:
            transceiver.setCodecPreferences(codecs)

    async def _negotiate(self, member: _Member) -> None:
        async with member.lock:
            if member.closed or member.pc.signalingState == "closed":
                return
            if member.awaiting_answer:
                member.pending = True
                return
            member.pending = False
            await member.pc.setLocalDescription(await member.pc.createOffer())
            member.awaiting_answer = True
            message = {
                "type": "rtc.offer",
                "call_id": self.session_id,
                "sdp": member.pc.localDescription.sdp,
                "tracks": self._track_infos(member),
            }
        await self._notify(member.info.id, message)

    def _track_infos(self, member: _Member) -> list[dict[str, Any]]:
        infos: list[dict[str, Any]] = []
        for transceiver, tr in member.publish_transceivers:
            infos.append({"mid": transceiver.mid, "kind": tr.kind, "role": tr.role,
                          "direction": "publish", "participant": member.info.as_dict()})
        for pub_id, transceiver in member.subscriptions.items():
            pub = self._publications.get(pub_id)
            if pub is None:
                continue
            infos.append({"mid": transceiver.mid, "kind": pub.kind, "role": pub.role,
                          "direction": "subscribe", "participant": pub.owner.as_dict()})
        return infos

    async def answer(self, participant_id: str, sdp: str) -> None:
        member = self._member(participant_id)
        again = False
        async with member.lock:
            if not member.awaiting_answer:
                raise InvalidSdpError("no offer is outstanding for this answer", field="sdp")
            try:
                await member.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
            except (ValueError, KeyError, IndexError, TypeError, AttributeError,
                    OperationError, InvalidAccessError, AiortcInvalidStateError) as err:
                raise InvalidSdpError(f"answer SDP was refused: {err}", field="sdp") from err
            member.awaiting_answer = False
            again = member.pending
        if again:
            await self._negotiate(member)

    async def add_candidate(self, participant_id: str, candidate: dict[str, Any] | None) -> None:
        member = self._member(participant_id)
        if candidate is None or not candidate.get("candidate"):
            return  # end of candidates: aioice keeps checking what it has
        line = str(candidate["candidate"])
        try:
            parsed = candidate_from_sdp(line.removeprefix("candidate:"))
        except (ValueError, IndexError) as err:
            raise InvalidCandidateError(f"ICE candidate is malformed: {line[:80]!r}",
                                        field="candidate") from err
        parsed.sdpMid = candidate.get("sdpMid")
        parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
        if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
            raise InvalidCandidateError("candidate names neither sdpMid nor sdpMLineIndex",
                                        field="candidate")
        await member.pc.addIceCandidate(parsed)

    # -- tracks ------------------------------------------------------------------------

    def _on_track(self, member: _Member, track: MediaStreamTrack) -> None:
        found = next(((t, tr) for t, tr in member.publish_transceivers
                      if t.receiver.track is track), None)
        if found is None:
            logger.warning("session %s: unexpected %s track from %s, dropped",
                           self.session_id, track.kind, member.info.id)
            track.stop()
            return
        transceiver, role = found
        pub_id = f"p{next(self._pub_seq)}"
        pub: Publication
        if self._forwarding is not None:
            # Synchronously, inside the "track" event: the receiver starts its worker
            # thread right after, and must pick the forwarding one.
            source = self._forwarding.forward(
                transceiver.receiver,
                label=f"session {self.session_id} {member.info.id} {role.role}")
            pub = EncodedPublication(pub_id, member.info, role.role, source)
        else:
            decoded = DecodedPublication(pub_id, member.info, role.role, track,
                                         self.session_id)
            decoded.start()
            pub = decoded
        self._publications[pub.id] = pub
        logger.info("session %s: %s publishes %s", self.session_id, member.info.id, role.role)
        for other in list(self._members.values()):
            if other is not member and other.subscribe:
                self._add_subscription(other, pub)
                self._spawn(self._negotiate(other))

    def _add_subscription(self, member: _Member, pub: Publication) -> None:
        track = pub.subscribe()
        transceiver = member.pc.addTransceiver(track, direction="sendonly")
        pub.bind(track, transceiver.sender)
        self._pin_codec(transceiver)
        member.subscriptions[pub.id] = transceiver

    def publications(self) -> list[Publication]:
        return list(self._publications.values())
