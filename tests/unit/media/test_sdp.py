"""The hub's offers ask for Opus in-band FEC; a client's candidates are checked."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from media.sdp import check_sdp_candidates, with_opus_fec

OFFER = ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96 0\r\na=rtpmap:96 opus/48000/2\r\n"
         "a=rtpmap:0 PCMU/8000\r\nm=video 9 UDP/TLS/RTP/SAVPF 97\r\na=rtpmap:97 VP8/90000\r\n")


def test_an_fmtp_line_is_added_for_opus_only() -> None:
    out = with_opus_fec(OFFER)
    assert "a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\n" in out
    assert "fmtp:0" not in out and "fmtp:97" not in out
    assert out.replace("a=fmtp:96 useinbandfec=1\r\n", "") == OFFER


@pytest.mark.parametrize(("fmtp", "expected"), [
    ("a=fmtp:111 minptime=10", "a=fmtp:111 minptime=10;useinbandfec=1"),
    ("a=fmtp:111 minptime=10;useinbandfec=1", "a=fmtp:111 minptime=10;useinbandfec=1"),
    ("a=fmtp:111 useinbandfec=0", "a=fmtp:111 useinbandfec=0"),  # a stated no stays no
])
def test_an_existing_fmtp_line_is_extended_once(fmtp: str, expected: str) -> None:
    sdp = f"a=rtpmap:111 opus/48000/2\n{fmtp}\n"
    assert with_opus_fec(sdp) == f"a=rtpmap:111 opus/48000/2\n{expected}\n"
    assert with_opus_fec(with_opus_fec(sdp)) == with_opus_fec(sdp)


async def test_a_real_aiortc_offer_is_accepted_by_an_aiortc_answerer() -> None:
    hub, client = RTCPeerConnection(), RTCPeerConnection()
    try:
        hub.addTrack(AudioStreamTrack())
        await hub.setLocalDescription(await hub.createOffer())
        offer = with_opus_fec(hub.localDescription.sdp)
        assert "useinbandfec=1" in offer
        await client.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await client.setLocalDescription(await client.createAnswer())
        await hub.setRemoteDescription(client.localDescription)
        assert hub.signalingState == "stable"
    finally:
        await hub.close()
        await client.close()


@pytest.mark.parametrize(("line", "named"), [
    ("a=candidate:1 1 udp 1 127.0.0.1 65536 typ host", "port 65536"),
    ("a=candidate:1 1 udp 1 127.0.0.1 -1 typ host", "port -1"),
    ("a=candidate:1 0 udp 1 127.0.0.1 5000 typ host", "component 0"),
    ("a=candidate:1 1 udp -1 127.0.0.1 5000 typ host", "priority -1"),
    ("a=candidate:1 1 udp 1 127.0.0.1 x typ host", "malformed"),
])
def test_an_unusable_candidate_is_named(line: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        check_sdp_candidates(f"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\n{line}\r\n")


def test_usable_candidates_pass() -> None:
    check_sdp_candidates("a=candidate:1 1 udp 2130706431 127.0.0.1 65535 typ host\r\n"
                         "a=candidate:2 2 tcp 1 ::1 9 typ host tcptype active\r\n")
