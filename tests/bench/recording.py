"""CPU cost and A/V sync of recording one session from the hub's forwarded packets.

    python -m tests.bench.recording                # 600 s, two participants
    python -m tests.bench.recording --seconds 60

The publishers (one process; each participant a peer connection sending VP8 video and
Opus audio) and the middle (another process: the forwarding hook and a
``SessionRecorder``) talk over real UDP on loopback. Every ``--marker-every`` seconds a
participant's camera shows one white frame and its microphone beeps, both at the same
instant of the publisher's clock. The middle first only forwards (baseline), then
records; the recorder's cost is the difference in the middle's CPU time per second
(``time.process_time()``: every thread), plus what ``finish()`` took, spread over the
recording. The final file is then decoded end to end; A/V drift is how far each beep
lands from its flash in the file. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import math
import multiprocessing
import shutil
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

AUDIO_RATE = 48000
AUDIO_SAMPLES = 960  # 20 ms
BEEP_S = 0.1
WARMUP = 3.0  # seconds of media before anything is measured


async def _recv(conn: Connection) -> Any:
    return await asyncio.to_thread(conn.recv)


def _description(pc: RTCPeerConnection) -> dict[str, str]:
    return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}


# -- publishers ------------------------------------------------------------------------


class MarkerVideo(MediaStreamTrack):
    """Frame k shows at ``origin + k / fps`` exactly (its pts says so); frames on a
    marker instant are white, the others a dark moving bar."""

    kind = "video"

    def __init__(self, origin: float, fps: int, every: float, width: int, height: int) -> None:
        super().__init__()
        self.origin, self.fps, self.every = origin, fps, every
        self.size = (width, height)
        self.index: int | None = None
        self.frames = 0
        self.markers = 0

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        due = math.ceil((now - self.origin) * self.fps)
        # Late (a busy machine): skip frames rather than drift from the clock.
        self.index = due if self.index is None else max(self.index + 1, due - 1)
        at = self.origin + self.index / self.fps
        if at > now:
            await asyncio.sleep(at - now)
        width, height = self.size
        period = round(self.every * self.fps)
        if self.index % period == 0:
            image = np.full((height, width, 3), 255, np.uint8)
            self.markers += 1
        else:
            image = np.full((height, width, 3), 40, np.uint8)
            x = (self.index * 5) % width
            image[:, x:x + 12] = 120
        frame = VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = self.index * 90000 // self.fps
        frame.time_base = fractions.Fraction(1, 90000)
        self.frames += 1
        return frame


class MarkerAudio(MediaStreamTrack):
    """20 ms frames paced on the same clock; a 1 kHz beep starts on each marker instant."""

    kind = "audio"

    def __init__(self, origin: float, every: float) -> None:
        super().__init__()
        self.origin, self.every = origin, every
        self.index: int | None = None

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        step = AUDIO_SAMPLES / AUDIO_RATE
        if self.index is None:
            self.index = math.ceil((now - self.origin) / step)
        else:
            self.index += 1
        at = self.origin + self.index * step
        if at > now:
            await asyncio.sleep(at - now)
        first = self.index * AUDIO_SAMPLES
        n = np.arange(first, first + AUDIO_SAMPLES)
        period = round(self.every * AUDIO_RATE)
        into = n % period
        beep = into < BEEP_S * AUDIO_RATE
        samples = np.where(beep, np.sin(2 * np.pi * 1000 * into / AUDIO_RATE) * 16000, 0)
        frame = AudioFrame.from_ndarray(samples.astype(np.int16).reshape(1, -1),
                                        format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = first
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        return frame


async def _publishers(conn: Connection, opts: dict[str, Any]) -> None:
    from tests.integration.media.peers import pin_codec

    pcs: list[RTCPeerConnection] = []
    videos: list[MarkerVideo] = []
    for _ in range(opts["participants"]):
        origin = time.monotonic()
        pc = RTCPeerConnection()
        video = MarkerVideo(origin, opts["fps"], opts["marker_every"], opts["width"],
                            opts["height"])
        pin_codec(pc.addTransceiver(video, direction="sendonly"), "VP8")
        pc.addTransceiver(MarkerAudio(origin, opts["marker_every"]), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        conn.send(_description(pc))
        await pc.setRemoteDescription(RTCSessionDescription(**await _recv(conn)))
        pcs.append(pc)
        videos.append(video)
    await _recv(conn)  # stop
    for pc in pcs:
        await pc.close()
    conn.send({"video_frames_sent": [v.frames for v in videos],
               "markers_sent": [v.markers for v in videos]})


# -- middle ----------------------------------------------------------------------------


async def _middle(conn: Connection, opts: dict[str, Any]) -> None:
    from media.encoded_fanout import EncodedSource
    from media.forwarding import ForwardingHook
    from media.recording import SessionRecorder

    hook = ForwardingHook()
    hook.start()
    pcs: list[RTCPeerConnection] = []
    sources: list[tuple[str, EncodedSource]] = []
    for p in range(opts["participants"]):
        pc = RTCPeerConnection()
        pcs.append(pc)

        def on_track(track: MediaStreamTrack, pc: RTCPeerConnection = pc,
                     who: str = f"participant{p + 1}") -> None:
            receiver = next(t.receiver for t in pc.getTransceivers()
                            if t.receiver.track is track)
            sources.append((who, hook.forward(receiver, label=f"bench {who} {track.kind}")))

        pc.on("track", on_track)
        await pc.setRemoteDescription(RTCSessionDescription(**await _recv(conn)))
        await pc.setLocalDescription(await pc.createAnswer())
        conn.send(_description(pc))
    async with asyncio.timeout(30):
        while True:
            if len(sources) == 2 * opts["participants"] and all(s.frames for _, s in sources):
                break
            await asyncio.sleep(0.1)
    await asyncio.sleep(WARMUP)

    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(opts["baseline"])
    baseline = (time.process_time() - cpu0) / (time.monotonic() - wall0)

    recorder = SessionRecorder("bench", Path(opts["directory"]))
    cpu0, wall0 = time.process_time(), time.monotonic()
    recorder.start()
    for i, (who, source) in enumerate(sources):
        recorder.add_track(f"p{i + 1}", role="camera" if source.kind == "video" else "mic",
                           participant=who, kind=source.kind, source=source)
    await asyncio.sleep(opts["seconds"])
    cpu1, wall1 = time.process_time(), time.monotonic()
    stats = recorder.stats
    result = await recorder.finish()
    finish_cpu = time.process_time() - cpu1
    media_s = wall1 - wall0
    conn.send({
        "baseline_cpu_s_per_s": baseline,
        "recording_cpu_s_per_s": (cpu1 - cpu0) / media_s,
        "media_s": media_s,
        "finish_cpu_s": finish_cpu,
        "finish_wall_s": time.monotonic() - wall1,
        "writer_cpu_s": stats.writer_cpu_s,
        "max_pending_bytes": stats.max_pending_bytes,
        "dropped": sum(t.dropped + t.upstream_dropped for t in stats.tracks),
        "trimmed": sum(t.trimmed for t in stats.tracks),
        "path": str(result.path),
        "size": result.size,
        "duration_s": result.duration_s,
        "tracks": [[t.participant, t.role, t.codec, t.start_s, t.end_s] for t in result.tracks],
    })
    await _recv(conn)  # stop
    for source in [s for _, s in sources]:
        await source.stop()
    for pc in pcs:
        await pc.close()
    hook.stop()
    conn.send({"stopped": True})


def _child(role: str, conn: Connection, opts: dict[str, Any]) -> None:
    if role == "publishers":
        asyncio.run(_publishers(conn, opts))
    else:
        asyncio.run(_middle(conn, opts))


# -- reading the file back -------------------------------------------------------------


def analyse(path: Path, every: float) -> dict[str, Any]:
    """Decode every stream end to end; find each flash and beep; pair them up."""
    import av
    import av.error
    import av.logging

    flashes: dict[str, list[float]] = {}
    beeps: dict[str, list[float]] = {}
    frames: dict[str, int] = {}
    errors = 0
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as logs, av.open(str(path)) as container:
            titles = {s.index: s.metadata.get("title", str(s.index)).split()[0]
                      for s in container.streams}
            last_beep: dict[int, float] = {}
            for packet in container.demux():
                if packet.size == 0:
                    continue
                who = titles[packet.stream.index]
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError:
                    errors += 1
                    continue
                for frame in decoded:
                    key = f"{who} {packet.stream.type}"
                    frames[key] = frames.get(key, 0) + 1
                    t = float(frame.pts * frame.time_base)  # type: ignore[operator]
                    if isinstance(frame, VideoFrame):
                        if frame.to_ndarray(format="gray").mean() > 180:
                            flashes.setdefault(who, []).append(t)
                    elif isinstance(frame, AudioFrame):
                        samples = frame.to_ndarray()
                        loud = np.flatnonzero(np.abs(samples[0]) > 0.1 * (
                            32768 if samples.dtype == np.int16 else 1.0))
                        index = packet.stream.index
                        if loud.size and t - last_beep.get(index, -1e9) > every / 2:
                            onset = t + loud[0] / frame.sample_rate
                            beeps.setdefault(who, []).append(onset)
                            last_beep[index] = onset
        errors += sum(1 for lvl, _, _ in logs if lvl <= av.logging.ERROR)
    finally:
        av.logging.set_level(level)

    offsets: dict[str, list[float]] = {}
    for who, times in flashes.items():
        heard = np.array(beeps.get(who, []))
        for t in times:
            if heard.size:
                nearest = heard[np.abs(heard - t).argmin()]
                if abs(nearest - t) < every / 2:
                    offsets.setdefault(who, []).append(nearest - t)
    everything = [o for values in offsets.values() for o in values]
    return {
        "decode_errors": errors,
        "frames": frames,
        "markers": {who: len(v) for who, v in offsets.items()},
        "av_offset_ms": {who: {"first": round(v[0] * 1000, 1), "last": round(v[-1] * 1000, 1),
                               "min": round(min(v) * 1000, 1), "max": round(max(v) * 1000, 1)}
                         for who, v in offsets.items()},
        "av_drift_ms_max": round(max((abs(o) for o in everything), default=float("nan"))
                                 * 1000, 1),
        "av_offset_change_ms_max": round(max((max(v) - min(v) for v in offsets.values()),
                                             default=float("nan")) * 1000, 1),
    }


# -- orchestration ---------------------------------------------------------------------


def _record(args: argparse.Namespace, directory: Path) -> tuple[dict[str, Any], Any]:
    ctx = multiprocessing.get_context("spawn")
    opts = {"seconds": args.seconds, "baseline": args.baseline,
            "participants": args.participants, "fps": args.fps, "width": args.width,
            "height": args.height, "marker_every": args.marker_every,
            "directory": str(directory)}
    conns: list[Connection] = []
    procs = []
    for role in ("publishers", "middle"):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_child, args=(role, child, opts), name=f"bench-{role}")
        proc.start()
        conns.append(parent)
        procs.append(proc)
    publishers, middle = conns
    try:
        for _ in range(args.participants):
            middle.send(publishers.recv())  # a participant's offer
            publishers.send(middle.recv())  # the middle's answer
        if not middle.poll(args.seconds + args.baseline + WARMUP + 300):
            raise TimeoutError("the middle did not report")
        measured: dict[str, Any] = middle.recv()
        for conn in conns:
            conn.send("stop")
        middle.recv()
        published = publishers.recv()
    finally:
        for proc in procs:
            proc.join(15)
            if proc.is_alive():
                proc.terminate()
                proc.join()
    return measured, published


def run(args: argparse.Namespace) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="vw-bench-rec-"))
    try:
        measured, published = _record(args, directory)
        analysis = analyse(Path(measured["path"]), args.marker_every)
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    live = measured["recording_cpu_s_per_s"] - measured["baseline_cpu_s_per_s"]
    media_s = measured["media_s"]
    return {
        "cpu_s_per_media_s": round(live + measured["finish_cpu_s"] / media_s, 5),
        "duration_s": measured["duration_s"],
        "av_drift_ms_max": analysis["av_drift_ms_max"],
        "decode_errors": analysis["decode_errors"],
        "details": {
            "session": f"{args.participants} participants, VP8 {args.width}x{args.height}"
                       f"@{args.fps} + Opus each",
            "live_cpu_s_per_media_s": round(live, 5),
            "finish_cpu_s": round(measured["finish_cpu_s"], 3),
            "finish_wall_s": round(measured["finish_wall_s"], 3),
            "writer_thread_cpu_s_per_media_s": round(measured["writer_cpu_s"] / media_s, 5),
            "middle_cpu_s_per_s": {"forwarding_only": round(measured["baseline_cpu_s_per_s"], 4),
                                   "recording": round(measured["recording_cpu_s_per_s"], 4)},
            "size_bytes": measured["size"],
            "max_pending_bytes": measured["max_pending_bytes"],
            "dropped": measured["dropped"],
            "trimmed": measured["trimmed"],
            "tracks": measured["tracks"],
            "published": published,
            **{k: v for k, v in analysis.items() if k not in ("decode_errors",
                                                              "av_drift_ms_max")},
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="recording length")
    parser.add_argument("--baseline", type=float, default=None,
                        help="forwarding-only seconds first (default: seconds / 5, 10..60)")
    parser.add_argument("--participants", type=int, default=2)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--marker-every", type=float, default=5.0)
    parser.add_argument("--keep", action="store_true", help="keep the recording")
    args = parser.parse_args(argv)
    if args.baseline is None:
        args.baseline = min(60.0, max(10.0, args.seconds / 5))
    summary = run(args)
    d = summary["details"]
    print(f"recording: {summary['cpu_s_per_media_s']:.5f} CPU-s per media-second "
          f"({d['live_cpu_s_per_media_s']:.5f} live + finish {d['finish_cpu_s']:.2f} s), "
          f"{summary['duration_s']:.1f} s, A/V offset max {summary['av_drift_ms_max']} ms "
          f"over {sum(d['markers'].values())} markers, "
          f"{summary['decode_errors']} decode errors", file=sys.stderr)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
