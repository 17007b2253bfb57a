"""A server killed mid-call (SIGKILL) leaves a recording that ``recover()`` makes whole.

The child process (this module run as ``__main__``) is a publisher, a forwarding middle
and a recorder, all real; the test kills it while it records.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from media.forwarding import ForwardingHook
from media.recording import SessionRecorder, recover
from tests.integration.media.peers import Middle, Publisher, ToneTrack, moving_pattern
from tests.integration.media.test_recording import (
    assert_plays,
    by_title,
    flowing,
    inspect_recording,
    listing,
)

REPO = Path(__file__).resolve().parents[3]


async def test_recording_killed_mid_call_is_recovered_up_to_the_kill(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.media.test_recording_crash", str(tmp_path),
        cwd=REPO, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.strip() == b"recording", line
        started = time.monotonic()
        await asyncio.sleep(2.0)
        # While the recording is live, recovery leaves it alone.
        assert recover(tmp_path) == []
        (parts_dir,) = [tmp_path / n for n in listing(tmp_path)]
        await asyncio.sleep(2.0)
        proc.send_signal(signal.SIGKILL)
        killed_after = time.monotonic() - started
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len([n for n in listing(parts_dir) if n.endswith(".mkv")]) == 2

    (result,) = recover(tmp_path)

    assert result.recovered and result.session_id == "77"
    assert listing(tmp_path) == [result.path.name]  # the partials are gone
    # Up to about the kill: a cluster (1 s) and a writer wake-up (0.25 s) lost, and on a
    # loaded machine whatever the child's publisher had not sent yet.
    assert killed_after - 2.5 <= result.duration_s <= killed_after + 0.2, (
        result.duration_s, killed_after)
    _, _, reports = inspect_recording(result.path)
    assert_plays(reports)
    streams = by_title(reports)
    assert set(streams) == {"kiosk camera", "kiosk mic"}
    assert streams["kiosk camera"].frames >= 15 * (killed_after - 2.0)
    assert recover(tmp_path) == []  # nothing left to do


async def _child(directory: Path) -> None:
    hook = ForwardingHook()
    hook.start()
    publisher = Publisher({"video": moving_pattern(320, 240, 15), "audio": ToneTrack()})
    middle = Middle(hook)
    sources = await middle.accept(publisher)
    await flowing(sources)
    recorder = SessionRecorder(77, directory)
    recorder.start()
    recorder.add_track("p1", role="camera", participant="kiosk", kind="video",
                       source=sources["video"])
    recorder.add_track("p2", role="mic", participant="kiosk", kind="audio",
                       source=sources["audio"])
    os.write(1, b"recording\n")
    await asyncio.sleep(120)  # killed long before


if __name__ == "__main__":
    asyncio.run(_child(Path(sys.argv[1])))
