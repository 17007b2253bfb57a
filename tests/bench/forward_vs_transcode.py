"""CPU cost of the hub's middle hop: forwarding encoded frames vs decode + re-encode.

    python -m tests.bench.forward_vs_transcode --seconds 20

Publisher, middle and subscribers each run in their own process (real UDP on loopback,
SDP relayed through pipes by this process), so the middle's ``time.process_time()``
(all of its threads: receiver workers, encoder executor, event loop) counts only the hop.
The publisher sends a moving VP8 (or H264) pattern plus an Opus tone; the middle either
forwards them with ``media.forwarding`` or re-encodes them through ``media.fanout`` (the
decoded-frame path the hub uses today). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

WARMUP = 2.0  # seconds of media before the measurement starts


async def _recv(conn: Connection) -> Any:
    return await asyncio.to_thread(conn.recv)


def _description(pc: RTCPeerConnection) -> dict[str, str]:
    return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}


# -- publisher -------------------------------------------------------------------------


async def _publisher(conn: Connection, opts: dict[str, Any]) -> None:
    from tests.integration.media.peers import ToneTrack, moving_pattern, pin_codec

    pc = RTCPeerConnection()
    video = moving_pattern(opts["width"], opts["height"], opts["fps"])
    pin_codec(pc.addTransceiver(video, direction="sendonly"), opts["codec"])
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    conn.send(_description(pc))
    await pc.setRemoteDescription(RTCSessionDescription(**await _recv(conn)))
    await _recv(conn)  # stop
    await pc.close()
    conn.send({"video_frames_sent": video.frames})


# -- subscriber ------------------------------------------------------------------------


async def _subscriber(conn: Connection) -> None:
    pc = RTCPeerConnection()
    counts = {"video": 0, "audio": 0}
    sizes: set[tuple[int, int]] = set()
    tasks: list[asyncio.Task[None]] = []

    async def consume(track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            counts[track.kind] += 1
            if track.kind == "video":
                sizes.add((frame.width, frame.height))  # type: ignore[union-attr]

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        tasks.append(asyncio.ensure_future(consume(track)))

    await pc.setRemoteDescription(RTCSessionDescription(**await _recv(conn)))
    await pc.setLocalDescription(await pc.createAnswer())
    conn.send(_description(pc))
    await _recv(conn)  # stop
    await pc.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    conn.send({"decoded": counts, "sizes": sorted(sizes)})


# -- middle ----------------------------------------------------------------------------


async def _middle(conn: Connection, opts: dict[str, Any]) -> None:
    from media.bitrate_estimator import EstimatorSpeedup
    from media.fanout import DecodedPublication, ParticipantInfo
    from media.forwarding import EncodedSource, ForwardingHook
    from media.speedups import PacketPathSpeedup
    from tests.integration.media.peers import pin_codec

    forward = opts["mode"] == "forward"
    hook = ForwardingHook()
    if forward:
        hook.start()
    speedups = (EstimatorSpeedup(), PacketPathSpeedup())  # as MediaService does, both modes
    for speedup in speedups:
        speedup.start()
    pcs: list[RTCPeerConnection] = []
    sources: list[EncodedSource] = []
    publications: list[DecodedPublication] = []
    tracks_in = asyncio.Queue[MediaStreamTrack]()

    pc = RTCPeerConnection()
    pcs.append(pc)

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if forward:
            receiver = next(t.receiver for t in pc.getTransceivers()
                            if t.receiver.track is track)
            sources.append(hook.forward(receiver, label=f"bench {track.kind}"))
        else:
            pub = DecodedPublication(f"p{len(publications)}",
                                     ParticipantInfo("pub", "bench", "pub"), track.kind, track, 0)
            pub.start()
            publications.append(pub)
        tracks_in.put_nowait(track)

    await pc.setRemoteDescription(RTCSessionDescription(**await _recv(conn)))
    await pc.setLocalDescription(await pc.createAnswer())
    conn.send(_description(pc))
    for _ in range(2):
        await asyncio.wait_for(tracks_in.get(), 10)

    for _ in range(opts["subscribers"]):
        sub_pc = RTCPeerConnection()
        pcs.append(sub_pc)
        feeds: list[MediaStreamTrack] = ([s.subscribe() for s in sources] if forward
                                         else [p.subscribe() for p in publications])
        for feed in feeds:
            transceiver = sub_pc.addTransceiver(feed, direction="sendonly")
            pin_codec(transceiver, opts["codec"])
            if forward:
                feed.bind_sender(transceiver.sender)  # type: ignore[attr-defined]
        await sub_pc.setLocalDescription(await sub_pc.createOffer())
        conn.send(_description(sub_pc))
        await sub_pc.setRemoteDescription(RTCSessionDescription(**await _recv(conn)))

    await asyncio.sleep(WARMUP)
    frames_before = sum(s.frames for s in sources) + sum(p.frames for p in publications)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(opts["seconds"])
    cpu1, wall1 = time.process_time(), time.monotonic()
    frames = sum(s.frames for s in sources) + sum(p.frames for p in publications)
    conn.send({"cpu_s": cpu1 - cpu0, "media_s": wall1 - wall0,
               "frames_in": frames - frames_before})

    await _recv(conn)  # stop
    for source in sources:
        await source.stop()
    for pub in publications:
        await pub.stop()
    for p in pcs:
        await p.close()
    hook.stop()
    for speedup in speedups:
        speedup.stop()
    conn.send({"stopped": True})


def _child(role: str, conn: Connection, opts: dict[str, Any]) -> None:
    if role == "publisher":
        asyncio.run(_publisher(conn, opts))
    elif role == "middle":
        asyncio.run(_middle(conn, opts))
    else:
        asyncio.run(_subscriber(conn))


# -- orchestration ---------------------------------------------------------------------


def _trial(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    opts = {"mode": mode, "seconds": args.seconds, "subscribers": args.subscribers,
            "width": args.width, "height": args.height, "fps": args.fps, "codec": args.codec}
    roles = ["publisher", "middle"] + ["subscriber"] * args.subscribers
    conns: list[Connection] = []
    procs = []
    for role in roles:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_child, args=(role, child, opts), name=f"bench-{role}")
        proc.start()
        conns.append(parent)
        procs.append(proc)
    publisher, middle, subscribers = conns[0], conns[1], conns[2:]
    try:
        middle.send(publisher.recv())  # publisher's offer
        publisher.send(middle.recv())  # middle's answer
        for sub in subscribers:
            sub.send(middle.recv())  # middle's offer to this subscriber
            middle.send(sub.recv())  # its answer
        if not middle.poll(args.seconds + WARMUP + 30):
            raise TimeoutError(f"{mode}: the middle did not report")
        measured: dict[str, Any] = middle.recv()
        for conn in conns:
            conn.send("stop")
        middle.recv()
        published = publisher.recv()
        decoded = [sub.recv() for sub in subscribers]
    finally:
        for proc in procs:
            proc.join(15)
            if proc.is_alive():
                proc.terminate()
                proc.join()
    per_media_s = measured["cpu_s"] / measured["media_s"]
    return {"mode": mode, "cpu_s_per_media_s": round(per_media_s, 4), **measured,
            "published": published, "subscribers": decoded}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--subscribers", type=int, default=1)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--codec", choices=["VP8", "H264"], default="VP8")
    args = parser.parse_args(argv)

    results = {}
    for mode in ("forward", "transcode"):
        result = _trial(mode, args)
        results[mode] = result
        print(f"{mode}: {result['cpu_s_per_media_s']:.4f} CPU-s per media-second "
              f"({result['cpu_s']:.2f} CPU-s over {result['media_s']:.1f} s, "
              f"{result['frames_in']} frames in, subscribers decoded "
              f"{[s['decoded'] for s in result['subscribers']]})", file=sys.stderr)
    forward = results["forward"]["cpu_s_per_media_s"]
    transcode = results["transcode"]["cpu_s_per_media_s"]
    summary = {
        "media": f"{args.codec} {args.width}x{args.height}@{args.fps:g} + Opus",
        "subscribers": args.subscribers,
        "seconds": args.seconds,
        "forward_cpu_s_per_media_s": forward,
        "transcode_cpu_s_per_media_s": transcode,
        "transcode_over_forward": round(transcode / forward, 1) if forward else None,
        "details": results,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
