"""Turning a recording's partial files into its final file, after a finish or a crash.

Every partial file holds one track already on the session's timeline (see
``media.recording_files``), so the final file is a packet copy: the partials are read
in timestamp order across all of them and muxed into one ``.webm`` (VP8 + Opus) or
``.mkv`` (anything else), with a duration and cues, written under a temporary name,
fsynced and renamed. ``recover()`` does it for recordings whose process died.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import av
import av.error
from av.container import InputContainer
from av.packet import Packet
from av.stream import Stream

from media.recording_errors import NothingRecordedError, RecordingError
from media.recording_files import (
    LOCK_FILE,
    MS,
    PARTS_SUFFIX,
    SESSION_FILE,
    TAG,
    WEBM_CODECS,
    PartSummary,
    RecordedTrack,
    RecordingResult,
    TrackInfo,
    fsync_dir,
    release_parts_dir,
    session_tags,
    track_tags,
)

logger = logging.getLogger(__name__)


@dataclass
class _Group:
    parts: list[PartSummary] = field(default_factory=list)

    @property
    def info(self) -> TrackInfo:
        return self.parts[0].info

    @property
    def end_ms(self) -> int:
        return self.parts[-1].end_ms


def _tags(metadata: dict[str, str]) -> dict[str, str]:
    return {k.upper(): v for k, v in metadata.items()}


def _demux(container: InputContainer, path: Path) -> Iterator[tuple[int, int, Packet[Any]]]:
    """(pts, duration) in ms and every timestamped packet of a partial file, up to where
    a crash cut it."""
    time_base = container.streams[0].time_base
    scale = None if time_base == MS or time_base is None else float(time_base * 1000)
    try:
        for packet in container.demux():
            pts = packet.pts
            if pts is None or packet.size == 0:
                continue
            duration = packet.duration or 0
            if scale is None:
                yield pts, duration, packet
            else:
                yield round(pts * scale), round(duration * scale), packet
    except av.error.FFmpegError as err:
        logger.warning("%s ends in a damaged cluster (%s): kept what comes before", path, err)


def _scan(path: Path) -> PartSummary | None:
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        logger.warning("%s cannot be read (%s): left out", path, err)
        return None
    with container:
        if len(container.streams) != 1:
            logger.warning("%s has %d streams, not one: left out", path,
                           len(container.streams))
            return None
        stream = container.streams[0]
        tags = _tags(dict(stream.metadata))
        kind = tags.get(f"{TAG}KIND", stream.type)
        info = TrackInfo(pub_id=tags.get(f"{TAG}PUB", path.stem),
                         role=tags.get(f"{TAG}ROLE", kind),
                         participant=tags.get(f"{TAG}PARTICIPANT", "unknown"),
                         kind=kind, codec=tags.get(f"{TAG}CODEC", stream.codec_context.name))
        first = end = None
        count = 0
        for pts, duration, _ in _demux(container, path):
            if first is None:
                first = pts
            end = max(end or 0, pts + max(duration, 1))
            count += 1
    if first is None or end is None:
        return None
    return PartSummary(path, info, first, end, count)


def _group(scans: list[PartSummary]) -> list[_Group]:
    """Streams of the final file: publications of one participant, role and codec that
    follow each other (a rejoin) share one; overlapping ones keep their own."""
    groups: list[_Group] = []
    for scan in sorted(scans, key=lambda s: (s.first_ms, s.path.name)):
        key = (scan.info.participant, scan.info.role, scan.info.kind, scan.info.codec.upper())
        for group in groups:
            g = group.info
            if (g.participant, g.role, g.kind, g.codec.upper()) == key \
                    and group.end_ms <= scan.first_ms:
                group.parts.append(scan)
                break
        else:
            groups.append(_Group([scan]))
    return groups


def _read_session(parts_dir: Path, scans: list[PartSummary]) -> tuple[str, datetime]:
    try:
        data = json.loads((parts_dir / SESSION_FILE).read_text())
        return str(data["session_id"]), datetime.fromisoformat(data["started_at"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    for scan in scans:  # session.json is lost: every partial carries the same tags
        with contextlib.suppress(av.error.FFmpegError, KeyError, ValueError), \
                av.open(str(scan.path)) as container:
            tags = _tags(dict(container.metadata))
            return tags[f"{TAG}SESSION"], datetime.fromisoformat(tags[f"{TAG}STARTED_AT"])
    raise RecordingError(f"{parts_dir}: neither {SESSION_FILE} nor the partial files say "
                         "which session this is")


def final_path(parts_dir: Path, codecs: set[str]) -> Path:
    ext = ".webm" if {c.lower() for c in codecs} <= WEBM_CODECS else ".mkv"
    return parts_dir.with_name(parts_dir.name.removesuffix(PARTS_SUFFIX) + ext)


def merge_parts(parts_dir: Path, *, known: Sequence[PartSummary] = (),
                recovered: bool = False) -> RecordingResult:
    """Remux every partial file in ``parts_dir`` into the final file next to it (written
    to a temporary name, fsynced, renamed). Files not in ``known`` are read first to
    learn what they hold. The partials are left for the caller."""
    summaries = {s.path.name: s for s in known}
    scans = [s for s in (summaries.get(p.name) or _scan(p)
                         for p in sorted(parts_dir.glob("*.mkv"))) if s is not None]
    if not scans:
        try:
            session = str(json.loads((parts_dir / SESSION_FILE).read_text())["session_id"])
        except (OSError, ValueError, KeyError, TypeError):
            session = parts_dir.name
        raise NothingRecordedError(f"session {session}: nothing was recorded")
    session_id, started_at = _read_session(parts_dir, scans)
    groups = _group(scans)
    path = final_path(parts_dir, {s.info.codec for s in scans})
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        _remux(groups, tmp, "webm" if path.suffix == ".webm" else "matroska",
               session_tags(session_id, started_at) | {"creation_time": started_at.isoformat()})
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    tracks = tuple(RecordedTrack(role=g.info.role, participant=g.info.participant,
                                 kind=g.info.kind, codec=g.info.codec,
                                 start_s=g.parts[0].first_ms / 1000, end_s=g.end_ms / 1000,
                                 segments=len(g.parts)) for g in groups)
    return RecordingResult(session_id=session_id, path=path,
                           duration_s=max(g.end_ms for g in groups) / 1000,
                           tracks=tracks, size=path.stat().st_size, started_at=started_at,
                           recovered=recovered)


def _remux(groups: list[_Group], tmp: Path, fmt: str, metadata: dict[str, str]) -> None:
    with contextlib.ExitStack() as stack:
        # Packets arrive here in timestamp order across every stream: the muxer's own
        # interleaving would only hold them back waiting for streams that have ended.
        out = stack.enter_context(av.open(str(tmp), "w", format=fmt,
                                          options={"max_interleave_delta": "1"}))
        out.metadata.update(metadata)
        feeds: list[Iterator[tuple[int, int, Packet[Any], Stream]]] = []
        for group in groups:
            target: Stream | None = None
            for scan in group.parts:
                source = stack.enter_context(av.open(str(scan.path)))
                if target is None:
                    target = out.add_stream_from_template(source.streams[0], opaque=True)
                    target.time_base = MS
                    target.metadata.clear()
                    target.metadata.update({k: v for k, v in track_tags(scan.info).items()
                                            if k != f"{TAG}PUB"})
                feeds.append(_feed(source, scan, len(feeds), target))
        last: dict[int, int] = {}
        for pts, _, packet, target in heapq.merge(*feeds):
            index = target.index
            if pts <= last.get(index, -1):
                continue  # never backwards within a stream
            last[index] = pts
            packet.stream = target
            out.mux(packet)


def _feed(container: InputContainer, scan: PartSummary, order: int,
          target: Stream) -> Iterator[tuple[int, int, Packet[Any], Stream]]:
    for pts, _, packet in _demux(container, scan.path):
        yield pts, order, packet, target


# -- recovery ----------------------------------------------------------------------


def recover(directory: Path) -> list[RecordingResult]:
    """Turn the partial files of recordings whose process died into final files.

    Run it at server start-up (it blocks: from async code, ``asyncio.to_thread``). A
    recording in progress holds its lock and is skipped. A recording whose final file
    already exists (the crash came between the rename and the clean-up) only loses its
    partials; one with no readable frame is removed.
    """
    results: list[RecordingResult] = []
    if not directory.is_dir():
        return results
    for stale in directory.glob(f".*{PARTS_SUFFIX}.new"):
        _remove_if_unlocked(stale)
    for parts_dir in sorted(directory.glob(f"*{PARTS_SUFFIX}")):
        if not parts_dir.is_dir():
            continue
        fd = _try_lock(parts_dir)
        if fd is None:
            logger.info("%s is being recorded: not recovered", parts_dir.name)
            continue
        try:
            finals = (final_path(parts_dir, {"vp8"}), final_path(parts_dir, {"h264"}))
            for final in finals:  # a merge cut short; its partials are all still here
                final.with_name(f".{final.name}.tmp").unlink(missing_ok=True)
            done = [p for p in finals if p.exists()]
            if done:
                logger.info("%s was merged into %s already: removing the partials",
                            parts_dir.name, done[0].name)
                release_parts_dir(fd, parts_dir)
                fd = None
                continue
            try:
                result = merge_parts(parts_dir, recovered=True)
            except NothingRecordedError:
                logger.warning("%s holds no recorded frame: removed", parts_dir.name)
                release_parts_dir(fd, parts_dir)
                fd = None
                continue
            except (RecordingError, OSError, av.error.FFmpegError) as err:
                logger.error("%s could not be recovered, left in place: %s",
                             parts_dir.name, err)
                continue
            logger.info("session %s: recovered %s (%.1f s, %d tracks)", result.session_id,
                        result.path.name, result.duration_s, len(result.tracks))
            results.append(result)
            release_parts_dir(fd, parts_dir)
            fd = None
        finally:
            if fd is not None:
                os.close(fd)
    return results


def _try_lock(parts_dir: Path) -> int | None:
    try:
        fd = os.open(parts_dir / LOCK_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _remove_if_unlocked(staging: Path) -> None:
    fd = _try_lock(staging)
    if fd is not None:
        release_parts_dir(fd, staging)
