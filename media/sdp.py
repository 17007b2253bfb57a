"""What the hub says in its offers beyond aiortc's defaults.

aiortc offers Opus with no ``a=fmtp`` line, so a browser publishing to the hub sends no
in-band forward error correction: on a lossy link every lost 20 ms packet is concealed
(~10 % of the voice at 5 % loss each way). ``useinbandfec=1`` in the hub's offer asks
the browser to carry a low-bit-rate copy of each frame in the next packet (RFC 7587
§6.1); the hub forwards packets untouched, and each receiver's decoder uses the copy
when a packet is missing. Only the text sent to the client changes: aiortc's own
description stays as it made it (it never decodes forwarded audio).

``with_opus_fec(sdp) -> str``   the offer with ``useinbandfec=1`` on every Opus payload

A client's ICE candidates, in its answer or trickled one by one, are checked before
aioice sees them: aioice checks the address and type but takes any integer as a port,
and a port past 65535 only fails later, inside ``sendto`` on the hub's socket, as a
"fatal write error" that names nothing the client sent.

``check_candidate(c)``          raise ``ValueError`` naming the bad field of one candidate
``check_sdp_candidates(sdp)``   the same for every ``a=candidate`` line of a description
"""

from __future__ import annotations

import re

from aiortc import RTCIceCandidate
from aiortc.sdp import candidate_from_sdp

_OPUS = re.compile(r"a=rtpmap:(\d+) opus/48000(?:/2)?", re.IGNORECASE)


def with_opus_fec(sdp: str) -> str:
    """``sdp`` with ``useinbandfec=1`` in the fmtp of each Opus payload type."""
    newline = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(newline)
    opus = {m.group(1) for line in lines if (m := _OPUS.fullmatch(line))}
    out: list[str] = []
    for line in lines:
        pt, _, params = line.removeprefix("a=fmtp:").partition(" ")
        if line.startswith("a=fmtp:") and pt in opus and "useinbandfec" not in params:
            line = f"{line};useinbandfec=1" if params else f"a=fmtp:{pt} useinbandfec=1"
        out.append(line)
        rtpmap = _OPUS.fullmatch(line)
        if rtpmap is not None and not any(
                other.startswith(f"a=fmtp:{rtpmap.group(1)} ") for other in lines):
            out.append(f"a=fmtp:{rtpmap.group(1)} useinbandfec=1")
    return newline.join(out)


def check_candidate(candidate: RTCIceCandidate) -> None:
    """Raise ``ValueError`` naming what no socket could use in ``candidate``."""
    if not 1 <= candidate.port <= 65535:
        raise ValueError(f"candidate port {candidate.port} is outside 1-65535")
    if candidate.component not in (1, 2):
        raise ValueError(f"candidate component {candidate.component} is neither 1 (RTP) "
                         "nor 2 (RTCP)")
    if not 0 <= candidate.priority < 2**32:
        raise ValueError(f"candidate priority {candidate.priority} is outside 0-(2^32-1)")


def check_sdp_candidates(sdp: str) -> None:
    """Raise ``ValueError`` naming the first unusable ``a=candidate`` line of ``sdp``."""
    for line in sdp.splitlines():
        if not line.startswith("a=candidate:"):
            continue
        try:
            candidate = candidate_from_sdp(line.removeprefix("a=candidate:"))
        except (ValueError, IndexError, AssertionError) as err:
            raise ValueError(f"ICE candidate is malformed: {line[:80]!r}") from err
        try:
            check_candidate(candidate)
        except ValueError as err:
            raise ValueError(f"{err}: {line[:80]!r}") from err
