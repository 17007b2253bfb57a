"""One live session's media hub: a star of peer connections, the hub always offering.

Every participant has one ``RTCPeerConnection`` to the hub. What a participant will
publish (camera, mic, doccam, screen) becomes a ``recvonly`` transceiver; every other
participant's publication becomes a ``sendonly`` transceiver fed by a ``ForwardTrack``.
New publications renegotiate with the subscribers; offers to one participant are
serialised and coalesced (a change during an outstanding offer re-offers after the
answer).

A participant may join before the call is answered (``admitted=False``: the kiosk and
the agent it rings, connecting while it rings). Its peer connection comes up and its
publications arrive, but nothing flows between it and anyone else, and nothing of it is
recorded: its m-lines towards others, and theirs towards it, are parked slots (see
``_Member.reserved``). ``admit`` at the answer starts them all with no renegotiation, so
the answer costs a keyframe request instead of an ICE and DTLS set-up.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    RTCBundlePolicy,
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

from media.encoded_fanout import ForwardingTrack
from media.errors import (
    HubClosedError,
    HubStateError,
    InvalidCandidateError,
    InvalidSdpError,
    MediaError,
    ParticipantNotFoundError,
)
from media.fanout import DecodedPublication, EncodedPublication, ParticipantInfo, Publication
from media.forwarding import ForwardingHook
from media.recording import SessionRecorder
from media.sdp import check_candidate, check_sdp_candidates, with_opus_fec

logger = logging.getLogger(__name__)

Notify = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Send a message to one participant (by participant id) over its signalling socket."""

MemberState = Callable[[int, str, str], Awaitable[None]]
"""(session id, participant id, "reconnecting" | "connected"): a participant's media link
went down or came (back) up, so the others can say "reconnecting" while it lasts."""

ROLES = {"camera": "video", "mic": "audio", "doccam": "video", "screen": "video"}


@dataclass(frozen=True)
class TrackRole:
    role: str
    kind: str


AUDIENCES = ("all", "agents", "none")
"""Who receives a publication: everyone else, only agents (a supervisor's whisper), no one."""


@dataclass
class _Member:
    info: ParticipantInfo
    pc: RTCPeerConnection
    publish: list[TrackRole]
    subscribe: bool
    hidden: bool = False
    audience: dict[str, str] = field(default_factory=dict)  # role -> one of AUDIENCES
    publish_transceivers: list[tuple[RTCRtpTransceiver, TrackRole]] = field(default_factory=list)
    subscriptions: dict[str, RTCRtpTransceiver] = field(default_factory=dict)
    # Inactive subscription m-lines kept for reuse, by kind: without reuse every rejoin or
    # screen-share cycle of someone else grows this participant's SDP until it is too big.
    spare: dict[str, list[tuple[RTCRtpTransceiver, ForwardingTrack]]] = field(
        default_factory=dict)
    # Reused m-lines whose sender drops frames until the answer re-enables it: they
    # must start again at a fresh keyframe once it has.
    rekey: list[ForwardingTrack] = field(default_factory=list)
    # Subscriptions offered before their publication exists, by (owner id, role): the
    # other party's camera and mic, expected any moment. When it publishes, its frames go
    # into the waiting m-line with no renegotiation (which aiortc could only start once
    # this member's connection is up: a round trip and more after it).
    reserved: dict[tuple[str, str], tuple[RTCRtpTransceiver, ForwardingTrack,
                                          ParticipantInfo]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # False while the call rings: no media to or from anyone, nothing recorded (``admit``).
    admitted: bool = True
    awaiting_answer: bool = False
    negotiated: bool = False
    pending: bool = False
    closed: bool = False


class SessionHub:
    """The media star of one live session (``session_id`` is the call id)."""

    def __init__(self, session_id: int, notify: Notify, *, video_codec: str = "VP8",
                 forwarding: ForwardingHook | None = None,
                 on_member_state: MemberState | None = None,
                 recorder: SessionRecorder | None = None) -> None:
        self.session_id = session_id
        self.recorder = recorder
        self._on_member_state = on_member_state
        self._forwarding = forwarding
        self._notify = notify
        self.video_codec = video_codec.upper()
        self._members: dict[str, _Member] = {}
        self._publications: dict[str, Publication] = {}
        self._pub_seq = itertools.count(1)
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        # Admitted before they joined: the join is in, whatever it asked (see ``admit``).
        self._admit_on_join: set[str] = set()

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
        """The admitted members (not one still connecting while the call rings)."""
        return [m.info for m in self._members.values() if m.admitted]

    def has(self, participant_id: str) -> bool:
        return participant_id in self._members

    def is_admitted(self, participant_id: str) -> bool:
        member = self._members.get(participant_id)
        return member is not None and member.admitted

    def waiting(self) -> list[ParticipantInfo]:
        """Members that joined while the call rang and are not admitted yet."""
        return [m.info for m in self._members.values() if not m.admitted]

    def publishes(self, participant_id: str, role: str) -> bool:
        """``participant_id`` is an admitted member with a ``role`` slot, whether or not
        its track arrives right now (it may be joining, or its link may be down)."""
        member = self._members.get(participant_id)
        return (member is not None and member.admitted
                and any(tr.role == role for tr in member.publish))

    def is_hidden(self, participant_id: str) -> bool:
        member = self._members.get(participant_id)
        return member is not None and member.hidden

    async def join(
        self,
        info: ParticipantInfo,
        publish: list[TrackRole],
        *,
        subscribe: bool = True,
        hidden: bool = False,
        audience: dict[str, str] | None = None,
        expect: Sequence[tuple[ParticipantInfo, TrackRole]] = (),
        admitted: bool = True,
    ) -> None:
        """Add (or re-add, after a lost connection) a participant and send it an offer.

        ``expect``: tracks of others this participant will receive that are not published
        yet (the other party of a call just answered, joining at the same moment): their
        m-lines are in this first offer already (see ``_Member.reserved``).
        ``admitted=False``: joining while the call rings, held apart until ``admit``."""
        if self._closed:
            raise HubClosedError(f"session {self.session_id} has ended")
        if info.id in self._members:
            # A rejoin: the slots others keep for this member's tracks stay theirs.
            await self.leave(info.id, release=False)
        # max-bundle: with aiortc's default (balanced) policy a second video m-line keeps
        # a transport of its own that the answer's BUNDLE never replaces, so its sender
        # never starts (seen as a supervisor receiving one camera but not the other).
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[],
                                                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        if info.id in self._admit_on_join:  # taken once: a later ring holds it apart again
            self._admit_on_join.discard(info.id)
            admitted = True
        member = _Member(info=info, pc=pc, publish=list(publish), subscribe=subscribe,
                         hidden=hidden, audience=dict(audience or {}), admitted=admitted)
        self._members[info.id] = member

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._on_track(member, track)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            logger.info("session %s: %s connection %s", self.session_id, info.id,
                        pc.connectionState)
            current = (self._members.get(info.id) is member and not member.closed
                       and not self._closed)
            # "closed" while still a member: aioice gave up on consent (the link stalled
            # for ~3 s) and closed the connection itself; the same as failing.
            lost = pc.connectionState == "failed" or pc.connectionState == "closed"
            if (pc.connectionState == "disconnected" or lost) and current:
                await self._member_state(info.id, "reconnecting")
            if lost and current:
                # The client rejoins with a new peer connection (aiortc has no ICE restart).
                await self.leave(info.id)
            elif pc.connectionState == "connected" and current:
                await self._member_state(info.id, "connected")
                if member.pending:
                    await self._negotiate(member)

        for tr in publish:
            transceiver = pc.addTransceiver(tr.kind, direction="recvonly")
            self._pin_codec(transceiver)
            member.publish_transceivers.append((transceiver, tr))
        for pub in self._publications.values():
            if self._eligible(member, pub):
                self._add_subscription(member, pub)
        for owner, role in expect:
            self._reserve(member, owner, role)
        self._release_unpublished(info.id, {tr.role for tr in publish})
        logger.info("session %s: %s (%s) joins, publishing %s", self.session_id, info.id,
                    info.kind, ",".join(t.role for t in publish) or "nothing")
        await self._negotiate(member)

    def _reserve(self, member: _Member, owner: ParticipantInfo, role: TrackRole) -> None:
        """An m-line for ``owner``'s ``role`` before it is published (forwarding only: the
        waiting track is a parked forwarding track that the publication adopts)."""
        if (self._forwarding is None or not member.subscribe or owner.id == member.info.id
                or any(p.owner.id == owner.id and p.role == role.role
                       for p in self._publications.values())):
            return
        joined = self._members.get(owner.id)
        if joined is not None and all(t.role != role.role for t in joined.publish):
            return  # it joined already, without that track
        self._park_slot(member, owner, role)

    def _park_slot(self, member: _Member, owner: ParticipantInfo, role: TrackRole) -> None:
        if (owner.id, role.role) in member.reserved:
            return
        spares = member.spare.get(role.kind)
        if spares:
            # An inactive m-line again (the agent an earlier offer rang, gone): its
            # sender drops frames until the answer re-enables it, so start at a keyframe.
            transceiver, parked = spares.pop()
            transceiver.direction = "sendonly"
            member.rekey.append(parked)
            member.reserved[(owner.id, role.role)] = (transceiver, parked, owner)
            return
        track = ForwardingTrack(role.kind)
        transceiver = member.pc.addTransceiver(track, direction="sendonly")
        self._pin_codec(transceiver)
        track.bind_sender(transceiver.sender)
        member.reserved[(owner.id, role.role)] = (transceiver, track, owner)

    def _held_apart(self, member: _Member, pub: Publication) -> bool:
        owner = self._members.get(pub.owner.id)
        return not member.admitted or (owner is not None and not owner.admitted)

    async def admit(self, participant_id: str) -> None:
        """The call was answered: ``participant_id`` (joined while it rang) is in. Its
        media and everyone else's start flowing into the slots parked for them, each
        from a fresh keyframe, and its publications are recorded from now on."""
        member = self._members.get(participant_id)
        if member is None:
            # Not joined (yet): a join still on its way while the call rang gets in.
            self._admit_on_join.add(participant_id)
            return
        if member.admitted:
            return
        member.admitted = True
        for pub in [p for p in self._publications.values() if p.owner.id == participant_id]:
            self._record(pub)
        offers: list[_Member] = []
        for pub in list(self._publications.values()):
            for other in list(self._members.values()):
                if ((other is member or pub.owner.id == participant_id)
                        and pub.id not in other.subscriptions and self._eligible(other, pub)
                        and self._add_subscription(other, pub) and other not in offers):
                    offers.append(other)
        logger.info("session %s: %s admitted", self.session_id, participant_id)
        for other in offers:
            await self._negotiate(other)

    def _release_unpublished(self, owner_id: str, publishing: set[str]) -> None:
        """``owner_id`` joined without some role others kept a slot for (no camera, say):
        those slots go inactive (kept as spares) and their members are offered again."""
        for other in list(self._members.values()):
            gone = [key for key in other.reserved
                    if key[0] == owner_id and key[1] not in publishing]
            for key in gone:
                transceiver, track, _ = other.reserved.pop(key)
                transceiver.direction = "inactive"
                other.spare.setdefault(track.kind, []).append((transceiver, track))
            if gone:
                self._spawn(self._negotiate(other))

    async def _member_state(self, participant_id: str, state: str) -> None:
        if self._on_member_state is not None:
            try:
                await self._on_member_state(self.session_id, participant_id, state)
            except Exception:
                logger.exception("session %s: state report failed", self.session_id)

    async def leave(self, participant_id: str, *, release: bool = True) -> None:
        """Remove a participant. The slots others keep for its tracks go inactive (kept
        as spares) unless ``release`` is False (it rejoins at once)."""
        member = self._members.pop(participant_id, None)
        if member is None:
            return
        member.closed = True
        if release:
            self._release_unpublished(participant_id, set())
        ended = [p for p in self._publications.values() if p.owner.id == participant_id]
        await member.pc.close()
        await self._end_publications(ended)
        logger.info("session %s: %s left", self.session_id, participant_id)

    async def _end_publications(self, ended: list[Publication]) -> None:
        """Stop publications; their subscribers' m-lines go inactive and are kept for reuse."""
        for pub in ended:
            self._publications.pop(pub.id, None)
            if isinstance(pub, EncodedPublication):
                leftovers = await pub.source.stop(keep_subscribers=True)
            else:
                await pub.stop()
                leftovers = []
            for other in list(self._members.values()):
                if self._remove_subscription(other, pub.id):
                    self._spawn(self._negotiate(other))
            for track in leftovers:  # not a member's (the recorder's, say): it ends here
                if track.source is None and not self._is_spare(track):
                    track.end()

    def _is_spare(self, track: MediaStreamTrack) -> bool:
        return any(t is track for m in self._members.values()
                   for spares in m.spare.values() for _, t in spares)

    @staticmethod
    def _remove_subscription(member: _Member, pub_id: str) -> bool:
        transceiver = member.subscriptions.pop(pub_id, None)
        if transceiver is None:
            return False
        track = transceiver.sender.track
        transceiver.direction = "inactive"
        if isinstance(track, ForwardingTrack) and not track.ended and not member.closed:
            track.park()
            member.spare.setdefault(track.kind, []).append((transceiver, track))
            return True
        transceiver.sender.replaceTrack(None)
        if track is not None:
            track.stop()  # replaceTrack does not: the source would keep feeding it
        return True

    # -- publishing more or less mid-call (screen share on / off) ------------------------

    async def publish(self, participant_id: str, role: TrackRole) -> None:
        """Add a publication slot (e.g. a screen share) and renegotiate."""
        member = self._member(participant_id)
        if any(tr.role == role.role for t, tr in member.publish_transceivers
               if t.direction != "inactive"):
            raise HubStateError(f"{participant_id!r} already publishes {role.role!r}")
        transceiver = member.pc.addTransceiver(role.kind, direction="recvonly")
        self._pin_codec(transceiver)
        member.publish_transceivers.append((transceiver, role))
        member.publish.append(role)
        logger.info("session %s: %s adds %s", self.session_id, participant_id, role.role)
        await self._negotiate(member)

    async def unpublish(self, participant_id: str, role: str) -> None:
        """Stop one publication (e.g. the screen share ends) and renegotiate."""
        member = self._member(participant_id)
        slots = [t for t, tr in member.publish_transceivers
                 if tr.role == role and t.direction != "inactive"]
        if not slots:
            raise HubStateError(f"{participant_id!r} does not publish {role!r}")
        for transceiver in slots:
            transceiver.direction = "inactive"
        member.publish = [tr for tr in member.publish if tr.role != role]
        ended = [p for p in self._publications.values()
                 if p.owner.id == participant_id and p.role == role]
        await self._end_publications(ended)
        logger.info("session %s: %s stops %s", self.session_id, participant_id, role)
        await self._negotiate(member)

    async def set_audience(self, participant_id: str, role: str, audience: str) -> None:
        """Change who receives ``participant_id``'s ``role`` (whisper ↔ barge)."""
        if audience not in AUDIENCES:
            raise HubStateError(f"audience must be one of {AUDIENCES}, got {audience!r}")
        member = self._member(participant_id)
        member.audience[role] = audience
        for pub in [p for p in self._publications.values()
                    if p.owner.id == participant_id and p.role == role]:
            for other in list(self._members.values()):
                wanted = self._eligible(other, pub)
                has = pub.id in other.subscriptions
                if wanted and not has and self._add_subscription(other, pub):
                    self._spawn(self._negotiate(other))
                elif has and not wanted:
                    self._remove_subscription(other, pub.id)
                    self._spawn(self._negotiate(other))

    def _eligible(self, member: _Member, pub: Publication) -> bool:
        if not member.subscribe or pub.owner.id == member.info.id:
            return False
        owner = self._members.get(pub.owner.id)
        audience = owner.audience.get(pub.role, "all") if owner else "all"
        if audience == "none":
            return False
        if audience == "agents":
            return member.info.kind in ("agent", "expert")
        return True

    async def stop(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for pid in list(self._members):
            # A member may leave on its own meanwhile (its connection failing while we
            # close the others).
            member = self._members.pop(pid, None)
            if member is None:
                continue
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
            if member.awaiting_answer or (
                    member.negotiated and member.pc.connectionState != "connected"):
                # aiortc starts the senders and receivers of new m-lines only once DTLS is
                # up; a renegotiation while it is still connecting leaves them unstarted.
                # So wait for the answer, or for "connected", then offer again.
                member.pending = True
                return
            if not member.pc.getTransceivers():
                # Nothing to send or receive yet (a receive-only member before anyone
                # publishes): an offer without m-lines would leave a connection that never
                # connects, and every later offer would wait for it. Offer once there is.
                return
            member.pending = False
            await member.pc.setLocalDescription(await member.pc.createOffer())
            member.awaiting_answer = True
            message = {
                "type": "rtc.offer",
                "call_id": self.session_id,
                # The text only: aiortc's own description stays as it made it.
                "sdp": with_opus_fec(member.pc.localDescription.sdp),
                "tracks": self._track_infos(member),
            }
        await self._notify(member.info.id, message)

    def _track_infos(self, member: _Member) -> list[dict[str, Any]]:
        infos: list[dict[str, Any]] = []
        for transceiver, tr in member.publish_transceivers:
            if transceiver.direction == "inactive":
                continue
            infos.append({"mid": transceiver.mid, "kind": tr.kind, "role": tr.role,
                          "direction": "publish", "participant": member.info.as_dict()})
        for pub_id, transceiver in member.subscriptions.items():
            pub = self._publications.get(pub_id)
            if pub is None:
                continue
            infos.append({"mid": transceiver.mid, "kind": pub.kind, "role": pub.role,
                          "direction": "subscribe", "participant": pub.owner.as_dict()})
        for (_, role), (transceiver, track, owner) in member.reserved.items():
            infos.append({"mid": transceiver.mid, "kind": track.kind, "role": role,
                          "direction": "subscribe", "participant": owner.as_dict()})
        return infos

    async def answer(self, participant_id: str, sdp: str) -> None:
        member = self._member(participant_id)
        again = False
        async with member.lock:
            if not member.awaiting_answer:
                raise InvalidSdpError("no offer is outstanding for this answer", field="sdp")
            try:
                check_sdp_candidates(sdp)
                await member.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
            except (ValueError, KeyError, IndexError, TypeError, AttributeError, AssertionError,
                    OperationError, InvalidAccessError, AiortcInvalidStateError) as err:
                raise InvalidSdpError(f"answer SDP was refused: {err}", field="sdp") from err
            member.awaiting_answer = False
            member.negotiated = True
            for track in member.rekey:
                track.restart_at_keyframe()
            member.rekey.clear()
            again = member.pending and member.pc.connectionState == "connected"
        if again:
            await self._negotiate(member)

    async def add_candidate(self, participant_id: str, candidate: dict[str, Any] | None) -> None:
        member = self._member(participant_id)
        if candidate is None or not candidate.get("candidate"):
            return  # end of candidates: aioice keeps checking what it has
        line = str(candidate["candidate"])
        try:
            parsed = candidate_from_sdp(line.removeprefix("candidate:"))
        except (ValueError, IndexError, AssertionError) as err:  # aiortc asserts 8 fields
            raise InvalidCandidateError(f"ICE candidate is malformed: {line[:80]!r}",
                                        field="candidate") from err
        try:
            check_candidate(parsed)
        except ValueError as err:
            raise InvalidCandidateError(f"ICE candidate refused: {err}",
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
            if member.admitted:
                self._record(pub)
        else:
            decoded = DecodedPublication(pub_id, member.info, role.role, track,
                                         self.session_id)
            decoded.start()
            pub = decoded
        self._publications[pub.id] = pub
        logger.info("session %s: %s publishes %s", self.session_id, member.info.id, role.role)
        for other in list(self._members.values()):
            if self._eligible(other, pub) and self._add_subscription(other, pub):
                self._spawn(self._negotiate(other))

    def _record(self, pub: Publication) -> None:
        if self.recorder is None or not isinstance(pub, EncodedPublication):
            return
        try:
            if self.recorder.state == "new":
                self.recorder.start()
            self.recorder.add_publication(pub)
        except (MediaError, OSError) as err:  # OSError: no recording directory
            logger.warning("session %s: %s not recorded: %s", self.session_id, pub.id, err)

    def _add_subscription(self, member: _Member, pub: Publication) -> bool:
        """Subscribe ``member`` to ``pub``; True if that needs an offer (a new or reused
        m-line), False if its reserved m-line simply starts carrying it. While either of
        the two is not admitted, the m-line is parked instead (``admit`` starts it)."""
        if self._held_apart(member, pub):
            if self._forwarding is None or (pub.owner.id, pub.role) in member.reserved:
                return False
            self._park_slot(member, pub.owner, TrackRole(pub.role, pub.kind))
            return True
        reserved = member.reserved.pop((pub.owner.id, pub.role), None)
        if reserved is not None:
            transceiver, waiting, _ = reserved
            if isinstance(pub, EncodedPublication) and waiting.kind == pub.kind:
                pub.source.adopt(waiting)  # from its next keyframe, which this requests
                member.subscriptions[pub.id] = transceiver
                return False
            transceiver.direction = "inactive"
            member.spare.setdefault(waiting.kind, []).append((transceiver, waiting))
        spares = member.spare.get(pub.kind)
        if isinstance(pub, EncodedPublication) and spares:
            # Reuse an inactive m-line: its sender still waits on its parked track.
            transceiver, parked = spares.pop()
            pub.source.adopt(parked)
            transceiver.direction = "sendonly"
            member.rekey.append(parked)
            member.subscriptions[pub.id] = transceiver
            return True
        track = pub.subscribe()
        transceiver = member.pc.addTransceiver(track, direction="sendonly")
        pub.bind(track, transceiver.sender)
        self._pin_codec(transceiver)
        member.subscriptions[pub.id] = transceiver
        return True

    def publications(self) -> list[Publication]:
        return list(self._publications.values())
