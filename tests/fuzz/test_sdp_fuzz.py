"""Fuzzing the media hub's SDP answers and ICE candidates in a live, answered call.

A kiosk and an agent talk through the hub with real aiortc peers. A supervisor starts
monitoring, joins the media and gets the hub's offer; instead of answering it, it sends
damaged answers (truncated, wrong m-lines, bad fingerprints, random bytes...) and
damaged ``rtc.candidate`` messages. Each answer gets a clear ``invalid_sdp`` (or
``invalid_message``) error, a bad candidate ``invalid_candidate``, the socket lives, the
kiosk and the agent go on seeing each other, and at the end the supervisor answers
properly and gets the kiosk's video: the hub's state survived the garbage.

Hypothesis runs in a worker thread (``asyncio.to_thread``) and drives the live call on
the test's event loop through ``run_coroutine_threadsafe``, so one call serves every
example and the checks after the fuzzing see what it left behind.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import SessionDescription
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling.client import ClientError, HubPeer, SignalClient
from tests.conftest import Server
from tests.fuzz.rawsocket import describe_records, tracebacks
from tests.helpers import answered_call, camera_and_mic, first_frame, wait_for

ANSWER_EXAMPLES = 60
CANDIDATE_EXAMPLES = 60
SLOW_FACTOR = 10

T = TypeVar("T")

# The live call's aiortc/aioice code on the event loop draws from the global ``random``
# while hypothesis draws examples in its worker thread; hypothesis would take that for
# a strategy using ``random``.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning")


@dataclass
class Monitor:
    """The fuzzing supervisor: its socket and the hub's outstanding offer to it."""

    signal: SignalClient
    call_id: int
    offer: dict[str, Any] = field(default_factory=dict)
    accepted: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    rejoins: int = 0

    async def join(self) -> None:
        await self.signal.request("rtc.join", call_id=self.call_id, publish=[])
        self.offer = await wait_for(self.signal, "rtc.offer", timeout=15,
                                    pred=lambda m: m.get("call_id") == self.call_id)

    async def rejoin(self) -> None:
        """A damaged answer was taken: start over with a fresh member and offer."""
        self.rejoins += 1
        await self.signal.request("rtc.leave", call_id=self.call_id)
        await self.signal.request("session.monitor", call_id=self.call_id, mode="listen")
        await self.join()

    async def answer(self, sdp: str, kind: str) -> dict[str, Any] | None:
        """Send a damaged answer: the error, or None when the hub took it."""
        try:
            await self.signal.request("rtc.answer", call_id=self.call_id, sdp=sdp)
        except ClientError as err:
            self.refused[kind] += 1
            return {"code": err.code, "message": err.message, "field": err.field}
        self.accepted[kind] += 1
        await self.rejoin()
        return None

    async def candidate(self, candidate: dict[str, Any] | None) -> dict[str, Any] | None:
        """Send a candidate, then a ping: the candidate's error, or None (no reply)."""
        before = len(self.signal.received)
        await self.signal.send({"v": 1, "type": "rtc.candidate", "id": "cand",
                                "call_id": self.call_id, "candidate": candidate})
        await self.signal.request("ping")
        errors = [m for m in self.signal.received[before:]
                  if m.get("type") == "error" and m.get("ref") == "cand"]
        for m in errors:
            self.signal.received.remove(m)
        return errors[0] if errors else None


@dataclass
class LiveCall:
    server: Server
    kiosk_peer: HubPeer
    agent_peer: HubPeer
    monitor: Monitor


@pytest.fixture
async def live_call(server: Server) -> AsyncIterator[LiveCall]:
    kiosk, agent, call_id, _case = await answered_call(server)
    kiosk_peer = HubPeer(kiosk, call_id, camera_and_mic(320, 240, (0, 0, 255)))
    agent_peer = HubPeer(agent, call_id, camera_and_mic(320, 240, (255, 0, 0)))
    await kiosk_peer.join()
    await agent_peer.join()
    await first_frame(agent_peer, "camera", "kiosk")
    sup = SignalClient(server.http, server.url, await server.login("super1"))
    await sup.connect()
    await sup.request("session.monitor", call_id=call_id, mode="listen")
    monitor = Monitor(sup, call_id)
    await monitor.join()
    try:
        yield LiveCall(server, kiosk_peer, agent_peer, monitor)
    finally:
        for peer in (kiosk_peer, agent_peer):
            await peer.close()
        for client in (kiosk, agent, sup):
            await client.close()


def _runner(loop: asyncio.AbstractEventLoop) -> Any:
    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)
    return run


async def _media_still_flows(call: LiveCall) -> None:
    """Fresh frames both ways between the kiosk and the agent."""
    await first_frame(call.agent_peer, "camera", "kiosk")
    await first_frame(call.kiosk_peer, "camera", "agent")
    await first_frame(call.agent_peer, "mic", "kiosk")


async def _monitor_answers_properly(call: LiveCall) -> None:
    """The supervisor answers the outstanding offer for real and sees the kiosk."""
    monitor = call.monitor
    pc = RTCPeerConnection()
    video: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()

    @pc.on("track")
    def _on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video" and not video.done():
            video.set_result(track)

    try:
        await pc.setRemoteDescription(RTCSessionDescription(monitor.offer["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await monitor.signal.request("rtc.answer", call_id=monitor.call_id,
                                     sdp=pc.localDescription.sdp)
        track = await asyncio.wait_for(video, 15)
        frame = await asyncio.wait_for(track.recv(), 20)
        assert frame.width > 0
    finally:
        await pc.close()


# -- damaged SDP answers --------------------------------------------------------------


def _lines(sdp: str) -> list[str]:
    return [line for line in sdp.replace("\r\n", "\n").split("\n") if line]


def _join(lines: list[str]) -> str:
    return "\r\n".join(lines) + "\r\n"


async def _valid_answer(offer_sdp: str) -> str:
    """What a well-behaved client would answer (the base for the damage)."""
    pc = RTCPeerConnection()
    try:
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


_BAD_LINES = [
    "m=video 9 UDP/TLS/RTP/SAVPF", "m=audio", "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "m=video -1 UDP/TLS/RTP/SAVPF 96", "m=video 99999999999999999999 RTP/AVP 96",
    "m=text 9 UDP/TLS/RTP/SAVPF 96", "m=video 9 UDP/TLS/RTP/SAVPF 300",
    "a=fingerprint:sha-256 ZZ:ZZ", "a=fingerprint:md5 00", "a=fingerprint:sha-256",
    "a=fingerprint:", "a=fingerprint:sha-256 " + ":".join(["AB"] * 64),
    "a=setup:holdconn", "a=setup:actpass", "a=setup:", "a=ice-ufrag:", "a=ice-pwd:x",
    "a=ice-ufrag:" + "u" * 600, "a=mid:", "a=mid:does-not-exist", "a=group:BUNDLE 7 8 9",
    "a=group:BUNDLE", "a=rtpmap:96", "a=rtpmap:abc VP8/90000", "a=rtpmap:96 VP8/notanumber",
    "a=rtpmap:96 /", "a=rtpmap:127 opus/48000/2/9", "a=fmtp:96", "a=fmtp:x apt=",
    "a=rtcp-fb:96", "a=rtcp:abc", "a=ssrc:99999999999999999999 cname:x", "a=ssrc:abc",
    "a=ssrc-group:FID 1", "a=ssrc-group:FID a b", "a=extmap:0 urn:x", "a=extmap:300 urn:x",
    "a=extmap:abc", "a=msid:", "a=sctp-port:abc", "a=max-message-size:-1", "a=rid:",
    "a=simulcast:", "a=candidate:1 1 udp 1 127.0.0.1 99999 typ host", "a=candidate:x",
    "a=candidate:", "a=end-of-candidates", "c=IN IP4", "c=IN IP9 999.1.1.1", "c=",
    "o=- x x IN IP4 127.0.0.1", "o=", "s=", "t=x y", "v=1", "v=", "b=AS:abc", "a=",
    "=", "x", "a=recvonly", "a=sendrecv", "a=inactive", "a=rtcp-mux-only", "\x00",
    "a=ice-options:trickle\x00", "a=msid-semantic:WMS *", "a=rtpmap:96 H264/90000",
]


@st.composite
def damaged_answer(draw: st.DrawFn, base: str) -> tuple[str, str]:
    """(damaged SDP, what was done to it)."""
    lines = _lines(base)
    how = draw(st.sampled_from(["truncate", "drop", "insert", "replace", "shuffle", "mline",
                                "fingerprint", "duplicate", "random", "bytes", "mix"]))
    if how == "truncate":
        sdp = base[: draw(st.integers(1, max(len(base) - 1, 1)))]
    elif how == "drop":
        kill = draw(st.sets(st.integers(0, len(lines) - 1), min_size=1, max_size=6))
        sdp = _join([line for i, line in enumerate(lines) if i not in kill])
    elif how in ("insert", "replace"):
        out = list(lines)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(out) - 1))
            bad = draw(st.sampled_from(_BAD_LINES))
            if how == "insert":
                out.insert(at, bad)
            else:
                out[at] = bad
        sdp = _join(out)
    elif how == "shuffle":
        sdp = _join(draw(st.permutations(lines)))
    elif how == "mline":
        # Every m-line's kind, port, protocol or format list swapped for another.
        def remline(line: str) -> str:
            if not line.startswith("m="):
                return line
            kind, port, proto, *fmts = line[2:].split(" ")
            choice = draw(st.sampled_from(["kind", "port", "proto", "fmts", "drop-fmts"]))
            if choice == "kind":
                kind = {"audio": "video", "video": "audio"}.get(kind, "audio")
            elif choice == "port":
                port = draw(st.sampled_from(["0", "-1", "65536", "x", "9/2", ""]))
            elif choice == "proto":
                proto = draw(st.sampled_from(["RTP/AVP", "TCP/TLS/RTP/SAVPF", "", "UDP"]))
            elif choice == "fmts":
                fmts = draw(st.lists(st.sampled_from(["0", "96", "127", "128", "x", "-1"]),
                                     min_size=1, max_size=3))
            else:
                fmts = []
            return "m=" + " ".join([kind, port, proto, *fmts])
        sdp = _join([remline(line) for line in lines])
    elif how == "fingerprint":
        value = draw(st.sampled_from([
            "sha-256 00", "sha-256 " + ":".join(["00"] * 32), "sha-1 " + ":".join(["AB"] * 20),
            "sha-999 AB", "", "sha-256 GG:" + ":".join(["00"] * 31), "sha-256  ", "md5"]))
        sdp = _join([f"a=fingerprint:{value}" if line.startswith("a=fingerprint:") else line
                     for line in lines])
    elif how == "duplicate":
        at = draw(st.integers(0, len(lines) - 1))
        sdp = _join(lines[:at] + lines[at:] * 2)
    elif how == "random":
        sdp = draw(st.text(min_size=1, max_size=500).filter(lambda s: s.strip()))
    elif how == "bytes":
        raw = draw(st.binary(min_size=1, max_size=500))
        sdp = raw.decode("latin-1")
    else:  # two answers' worth of lines interleaved with junk
        junk = draw(st.lists(st.text(max_size=40), min_size=1, max_size=10))
        sdp = _join(lines[: len(lines) // 2] + junk + lines)
    return sdp, how


def _aiortc_parser_asserts(sdp: str) -> bool:
    try:
        SessionDescription.parse(sdp)
    except AssertionError:
        return True
    except Exception:  # every other parse error is the hub's to handle
        return False
    return False


def _is_aiortc_parser_assert(record: logging.LogRecord) -> bool:
    if not record.exc_info or not isinstance(record.exc_info[1], AssertionError):
        return False
    tb = record.exc_info[2]
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.endswith("aiortc/sdp.py")


def _check_answer_reply(reply: dict[str, Any] | None, sdp: str) -> None:
    if reply is None:  # the hub took it (aiortc is lenient); the monitor rejoined
        return
    assert reply["code"] in ("invalid_sdp", "invalid_message"), (reply, sdp[:300])
    assert reply["message"], reply
    assert reply["field"] == "sdp", reply


async def _fuzz_answers(call: LiveCall, caplog: pytest.LogCaptureFixture, examples: int) -> None:
    caplog.set_level(logging.ERROR)
    monitor = call.monitor
    base = await _valid_answer(monitor.offer["sdp"])
    run = _runner(asyncio.get_running_loop())
    known_bug: Counter[str] = Counter()

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=damaged_answer(base))
    def fuzz(case: tuple[str, str]) -> None:
        sdp, how = case
        sdp = sdp[:60_000]
        reply = run(monitor.answer(sdp, how))
        if reply is not None and reply["code"] == "internal" and _aiortc_parser_asserts(sdp):
            # The known bug pinned by test_answers_aiortc_asserts_on_are_invalid_sdp.
            known_bug[how] += 1
            return
        _check_answer_reply(reply, sdp)

    await asyncio.to_thread(fuzz)
    print(f"answers refused {dict(monitor.refused)}, taken {dict(monitor.accepted)}, "
          f"aiortc asserted {dict(known_bug)}")
    bad = [r for r in tracebacks(caplog) if not _is_aiortc_parser_assert(r)]
    assert not bad, describe_records(bad)
    await _media_still_flows(call)
    await _monitor_answers_properly(call)
    bad = [r for r in tracebacks(caplog) if not _is_aiortc_parser_assert(r)]
    assert not bad, describe_records(bad)


async def test_damaged_answers_are_refused_and_the_call_goes_on(
        live_call: LiveCall, caplog: pytest.LogCaptureFixture) -> None:
    await _fuzz_answers(live_call, caplog, ANSWER_EXAMPLES)


@pytest.mark.slow
async def test_damaged_answers_are_refused_and_the_call_goes_on_long(
        live_call: LiveCall, caplog: pytest.LogCaptureFixture) -> None:
    await _fuzz_answers(live_call, caplog, ANSWER_EXAMPLES * SLOW_FACTOR)


ASSERTING_ANSWERS = [
    pytest.param(lambda sdp: re.sub(r"^(m=\w+) \d+ ", r"\1 -1 ", sdp, count=1, flags=re.M),
                 id="m-line-port"),
    pytest.param(lambda sdp: re.sub(r"^(m=\w+) .*$", r"\1", sdp, count=1, flags=re.M),
                 id="m-line-short"),
    pytest.param(lambda sdp: re.sub(r"^c=IN IP4 .*$", "c=IN IP4", sdp, count=1, flags=re.M),
                 id="c-line"),
]


async def test_answers_aiortc_asserts_on_are_invalid_sdp(
        live_call: LiveCall, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    base = await _valid_answer(live_call.monitor.offer["sdp"])
    replies = {}
    for case in ASSERTING_ANSWERS:
        (damage,) = case.values
        sdp = damage(base)
        assert sdp != base and _aiortc_parser_asserts(sdp), case.id
        replies[case.id] = await live_call.monitor.answer(sdp, "assert")
    for sdp_id, reply in replies.items():
        assert reply is not None and reply["code"] == "invalid_sdp", (sdp_id, reply)
    assert not tracebacks(caplog), describe_records(tracebacks(caplog))


# -- damaged ICE candidates -----------------------------------------------------------

_IPS = ["127.0.0.1", "0.0.0.0", "255.255.255.255", "224.0.0.1", "::1", "fe80::1%eth0",
        "999.1.1.1", "1.2.3", "example.com", "", "127.0.0.1\x00", "::ffff:127.0.0.1",
        "10.0.0.1"]
_PORTS = ["5000", "0", "65535", "65536", "-1", "99999999999999999999", "x", "1e3", "0x10"]
_TYPES = ["host", "srflx", "relay", "prflx", "xyz", ""]
_NUMS = ["1", "0", "2", "-1", "4294967296", "18446744073709551616", "x", "1.5"]


@st.composite
def damaged_candidate(draw: st.DrawFn) -> dict[str, Any] | None:
    """An ``rtc.candidate`` payload with at least eight fields (fewer: see the xfail)."""
    bits = [
        draw(st.sampled_from(["1", "foundation", "x" * 40, "長"])),  # foundation
        draw(st.sampled_from(_NUMS)),  # component
        draw(st.sampled_from(["udp", "UDP", "tcp", "sctp", "x"])),  # transport
        draw(st.sampled_from(["2130706431", *_NUMS])),  # priority
        draw(st.sampled_from(_IPS)),
        draw(st.sampled_from(_PORTS)),
        draw(st.sampled_from(["typ", "type", "x"])),
        draw(st.sampled_from(_TYPES)),
    ]
    if any(not b or b.isspace() for b in bits):  # a blank field makes fewer than eight
        bits = [b if b and not b.isspace() else "x" for b in bits]
    extra = draw(st.lists(st.sampled_from(["raddr", "rport", "tcptype", "generation",
                                           "ufrag", "x", "0", "-1", "99999999999999999999",
                                           "active", "127.0.0.1"]), max_size=7))
    line = " ".join(bits + extra)
    prefix = draw(st.sampled_from(["candidate:", "", "candidate: ", "a=candidate:"]))
    payload: dict[str, Any] = {"candidate": prefix + line}
    if draw(st.booleans()):
        payload["sdpMid"] = draw(st.sampled_from(["0", "1", "99", "", "x" * 32]))
    if draw(st.booleans()) or "sdpMid" not in payload:
        payload["sdpMLineIndex"] = draw(st.integers(0, 64))
    if draw(st.booleans()):
        payload["usernameFragment"] = draw(st.text(max_size=20))
    return payload


def _check_candidate_reply(reply: dict[str, Any] | None, candidate: Any) -> None:
    if reply is None:  # taken (or ignored by aioice as unusable): no reply by design
        return
    assert reply["code"] in ("invalid_candidate", "invalid_message"), (reply, candidate)
    assert reply["message"], reply


async def _fuzz_candidates(call: LiveCall, caplog: pytest.LogCaptureFixture,
                           examples: int) -> None:
    caplog.set_level(logging.ERROR)
    monitor = call.monitor
    run = _runner(asyncio.get_running_loop())
    replies: Counter[str] = Counter()

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(candidate=damaged_candidate())
    def fuzz(candidate: dict[str, Any] | None) -> None:
        reply = run(monitor.candidate(candidate))
        replies[reply["code"] if reply else "taken"] += 1
        _check_candidate_reply(reply, candidate)

    await asyncio.to_thread(fuzz)
    print(f"candidates: {dict(replies)}")
    assert not tracebacks(caplog), describe_records(tracebacks(caplog))
    await _media_still_flows(call)
    # The hub now holds the fuzzed remote candidates for the monitor: ICE must still
    # find the good pair once it answers.
    await _monitor_answers_properly(call)
    assert not tracebacks(caplog), describe_records(tracebacks(caplog))


async def test_damaged_candidates_are_refused_and_the_call_goes_on(
        live_call: LiveCall, caplog: pytest.LogCaptureFixture) -> None:
    await _fuzz_candidates(live_call, caplog, CANDIDATE_EXAMPLES)


@pytest.mark.slow
async def test_damaged_candidates_are_refused_and_the_call_goes_on_long(
        live_call: LiveCall, caplog: pytest.LogCaptureFixture) -> None:
    await _fuzz_candidates(live_call, caplog, CANDIDATE_EXAMPLES * SLOW_FACTOR)


SHORT_CANDIDATES = [
    pytest.param("candidate:1 1 udp 2130706431 127.0.0.1 5000 typ", id="seven-fields"),
    pytest.param("candidate:x", id="one-field"),
    pytest.param("garbage", id="no-prefix"),
]


async def test_short_candidates_are_invalid_candidate(
        live_call: LiveCall, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    replies = {}
    for case in SHORT_CANDIDATES:
        (line,) = case.values
        replies[case.id] = await live_call.monitor.candidate(
            {"candidate": line, "sdpMLineIndex": 0})
    for line_id, reply in replies.items():
        assert reply is not None and reply["code"] == "invalid_candidate", (line_id, reply)
    assert not tracebacks(caplog), describe_records(tracebacks(caplog))


UNUSABLE_CANDIDATES = [
    pytest.param("1 1 udp 2130706431 127.0.0.1 99999 typ host", "port 99999", id="port-high"),
    pytest.param("1 1 udp 2130706431 127.0.0.1 65536 typ host", "port 65536", id="port-65536"),
    pytest.param("1 1 udp 2130706431 127.0.0.1 0 typ host", "port 0", id="port-zero"),
    pytest.param("1 3 udp 2130706431 127.0.0.1 5000 typ host", "component 3", id="component"),
    pytest.param("1 1 udp 4294967296 127.0.0.1 5000 typ host", "priority 4294967296",
                 id="priority"),
]


@pytest.mark.parametrize(("line", "named"), [c.values for c in UNUSABLE_CANDIDATES],
                         ids=[c.id for c in UNUSABLE_CANDIDATES])
async def test_unusable_candidate_values_are_refused_in_answers_and_trickle(
        live_call: LiveCall, caplog: pytest.LogCaptureFixture, line: str, named: str) -> None:
    """aioice takes any integer as a port and only fails in ``sendto``: the hub refuses
    first, naming the field, in an answer and in a trickled candidate alike."""
    caplog.set_level(logging.ERROR)
    monitor = live_call.monitor
    trickled = await monitor.candidate({"candidate": "candidate:" + line, "sdpMLineIndex": 0})
    assert trickled is not None and trickled["code"] == "invalid_candidate", trickled
    assert named in trickled["message"], trickled
    base = _lines(await _valid_answer(monitor.offer["sdp"]))
    at = next(i for i, text in enumerate(base) if text.startswith("a=mid:")) + 1
    reply = await monitor.answer(_join([*base[:at], "a=candidate:" + line, *base[at:]]), "port")
    assert reply is not None and reply["code"] == "invalid_sdp", reply
    assert named in reply["message"], reply
    await _monitor_answers_properly(live_call)
    assert not tracebacks(caplog), describe_records(tracebacks(caplog))


def test_sdp_strategies_reach_every_damage_kind() -> None:
    """Guard against a strategy that silently stops producing a kind of damage."""
    base = _join(["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
                  "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=fingerprint:sha-256 00", "a=mid:0"])
    kinds: set[str] = set()

    @settings(max_examples=120, database=None, derandomize=True)  # the same draws each run
    @given(case=damaged_answer(base))
    def collect(case: tuple[str, str]) -> None:
        kinds.add(case[1])
        assert case[0]

    collect()
    assert len(kinds) == 11, kinds
