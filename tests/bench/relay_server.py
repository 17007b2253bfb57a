"""The hubs ``tests.bench.relay`` measures, each in a process of its own.

``VWindowServer`` prepares a temp SQLite database (demo data plus one kiosk, agent and
supervisor account per simulated session) and runs the real server, ``vwindow serve``,
through this module's ``main``, which adds only observation: aioice's log lines (an ICE
consent expiry closes a peer connection silently otherwise) and an event-loop lag probe.
With ``--mediarecorder`` the transcoding hub also records each decoded publication with
aiortc's ``MediaRecorder``, as a hub that cannot forward would have to. ``ProcessStats``
reads a process's CPU time, run-queue wait and RSS from ``/proc``.

    python -m tests.bench.relay_server --config cfg.toml [--mediarecorder DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from vwindow.auth import hash_secret
from vwindow.db import Database
from vwindow.models import Kiosk, Role, Township, User
from vwindow.seed import DEMO, seed_demo

SECRET = "bench-secret-0123456789-abcdefghijklmnop"


@dataclass(frozen=True)
class Accounts:
    """Logins for session ``i``: ``kiosk(i)``, ``agent(i)``, ``supervisor(i)``."""

    password: str = DEMO.password
    kiosk_key: str = "bench-kiosk-key"

    @staticmethod
    def kiosk(i: int) -> str:
        return f"bench-k{i:03d}"

    @staticmethod
    def agent(i: int) -> str:
        return f"bench-a{i:03d}"

    @staticmethod
    def supervisor(i: int) -> str:
        return f"bench-s{i:03d}"


ACCOUNTS = Accounts()


async def prepare_database(url: str, sessions: int) -> None:
    """Schema, demo data, and one kiosk + agent + supervisor per session."""
    db = Database(url)
    await db.start()
    try:
        await seed_demo(db)
        kiosk_hash = hash_secret(ACCOUNTS.kiosk_key)  # one scrypt, reused: it is salted
        password_hash = hash_secret(ACCOUNTS.password)
        async with db.session() as s:
            town = (await s.scalars(select(Township))).first()
            if town is None:
                raise RuntimeError("seed_demo made no township")
            # An agent who may take the township's calls at once: its county, its
            # dialect, every skill (routing fields only where the schema has them).
            agent_fields: dict[str, Any] = {"level": "county", "skills": ["*"],
                                            "dialects": ["普通话"]}
            if hasattr(User, "county"):
                agent_fields["county"] = town.county
            dialect = getattr(town, "default_dialect", None)
            if dialect:
                agent_fields["dialects"].append(dialect)
            for i in range(sessions):
                s.add(Kiosk(code=ACCOUNTS.kiosk(i), name=f"bench kiosk {i}",
                            township_id=town.id, key_hash=kiosk_hash))
                s.add(User(username=ACCOUNTS.agent(i), display_name=f"bench agent {i}",
                           role=Role.AGENT, password_hash=password_hash, **agent_fields))
                s.add(User(username=ACCOUNTS.supervisor(i),
                           display_name=f"bench supervisor {i}", role=Role.SUPERVISOR,
                           password_hash=password_hash, level="county"))
    finally:
        await db.stop()


def stat_fields(path: str) -> list[str]:
    """A ``/proc/…/stat`` line's fields after the command name (state, ppid, …: field
    11 is utime, 12 stime, 13 and 14 the reaped children's)."""
    with open(path) as fh:
        return fh.read().rsplit(")", 1)[1].split()


class ProcessStats:
    """CPU seconds (all threads) and resident memory of one process, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._tick = os.sysconf("SC_CLK_TCK")

    def cpu_seconds(self, *, main_thread: bool = False) -> float:
        """All threads', or only the main thread's (a Python hub's event loop)."""
        path = (f"/proc/{self.pid}/task/{self.pid}/stat" if main_thread
                else f"/proc/{self.pid}/stat")
        fields = stat_fields(path)
        return (int(fields[11]) + int(fields[12])) / self._tick

    def runqueue_wait_s(self) -> float:
        """Time the main thread was runnable but waiting for a CPU (other work ran)."""
        with open(f"/proc/{self.pid}/task/{self.pid}/schedstat") as fh:
            return int(fh.read().split()[1]) / 1e9

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0


def children_cpu_seconds(parent: int) -> dict[int, float]:
    """CPU seconds of each live child of ``parent`` (a PostgreSQL postmaster's
    backends), and of ``parent`` with its children that have exited."""
    out: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            fields = stat_fields(f"/proc/{pid}/stat")
        except OSError:
            continue  # gone meanwhile
        if pid == parent:  # utime, stime, and its reaped children's cutime, cstime
            out[pid] = sum(int(f) for f in fields[11:15]) / tick
        elif int(fields[1]) == parent:
            out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def udp_drops(pids: list[int]) -> dict[str, int]:
    """By socket inode, the datagrams the kernel dropped because a UDP socket of one of
    ``pids`` had its receive queue full (``/proc/net/udp``'s ``drops``): what a process
    too busy to read lost before it could see it."""
    owned: set[str] = set()
    for pid in pids:
        try:
            for fd in os.scandir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(fd.path)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    owned.add(target[8:-1])
        except OSError:
            continue  # gone
    drops: dict[str, int] = {}
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    fields = line.split()
                    if fields[9] in owned:
                        drops[fields[9]] = int(fields[-1])
        except OSError:
            continue
    return drops


def drops_since(before: dict[str, int], after: dict[str, int]) -> int:
    """Drops since ``before`` on the sockets still open (a closed one took its count)."""
    return sum(n - before.get(inode, 0) for inode, n in after.items())


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine so far."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return float(total - idle), float(total)


def loadavg() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


class VWindowServer:
    """``vwindow serve``, forwarding or transcoding: on a temp SQLite database, or as
    node ``node_id`` on ``db_url`` (PostgreSQL, shared with other nodes; ``prepare``
    on one of them only)."""

    def __init__(self, workdir: Path, sessions: int, *, forward: bool, record: bool,
                 mediarecorder: bool = False, db_url: str = "", node_id: str = "node-1",
                 prepare: bool = True) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.sessions = sessions
        self.forward = forward
        self.record = record
        self.mediarecorder = mediarecorder
        self.db_url = db_url or f"sqlite+aiosqlite:///{workdir / 'vw.db'}"
        self.node_id = node_id
        self.prepare = prepare
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the server is not running")
        return self.proc.pid

    def _config(self) -> Path:
        path = self.workdir / "vwindow.toml"
        path.write_text(f"""\
[server]
host = "127.0.0.1"
port = 0
node_id = "{self.node_id}"

[db]
url = "{self.db_url}"

[storage]
root = "{self.workdir / 'files'}"

[auth]
secret = "{SECRET}"

[media]
ice_addresses = ["127.0.0.1"]
video_codec = "VP8"
forward = {str(self.forward).lower()}
record = {str(self.record).lower()}
recordings_dir = "{self.workdir / 'recordings'}"
""")
        return path

    def start(self, timeout: float = 60.0) -> None:
        if self.prepare:
            asyncio.run(prepare_database(self.db_url, self.sessions))
        cmd = [sys.executable, "-m", "tests.bench.relay_server", "--config", str(self._config())]
        if self.mediarecorder:
            cmd += ["--mediarecorder", str(self.workdir / "mediarecorder")]
        env = {k: v for k, v in os.environ.items() if not k.startswith("VWINDOW_")}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env,
                                     cwd=Path(__file__).resolve().parents[2],
                                     start_new_session=True)
        log.close()
        if self.proc.stdout is None:
            raise RuntimeError("no stdout pipe")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                raise RuntimeError(f"the server exited with {self.proc.wait()}; "
                                   f"see {self.log_path}")
            found = re.search(r"serving on (http://\S+)", line)
            if found:
                self.url = found.group(1)
                return
        raise RuntimeError(f"the server did not start within {timeout} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _record_decoded_publications(out_dir: Path) -> None:
    """Make every transcoding hub record each publication with aiortc's MediaRecorder.

    The server records only forwarded (encoded) publications; this gives the decode /
    re-encode hub the recorder it would need in that mode, for the comparison only.
    """
    from aiortc.contrib.media import MediaRecorder

    from media.fanout import DecodedPublication
    from media.hub import SessionHub

    out_dir.mkdir(parents=True, exist_ok=True)
    original_on_track = SessionHub._on_track
    original_stop = SessionHub.stop
    recorders: dict[int, list[Any]] = {}
    tasks: set[asyncio.Task[None]] = set()

    def on_track(self: SessionHub, member: Any, track: Any) -> None:
        known = {p.id for p in self.publications()}
        original_on_track(self, member, track)
        for pub in self.publications():
            if pub.id in known or not isinstance(pub, DecodedPublication):
                continue
            ext = "webm"
            recorder = MediaRecorder(str(out_dir / f"s{self.session_id}-{pub.id}.{ext}"))
            recorder.addTrack(pub.subscribe())
            recorders.setdefault(self.session_id, []).append(recorder)
            task = asyncio.ensure_future(recorder.start())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def stop(self: SessionHub) -> None:
        for recorder in recorders.pop(self.session_id, []):
            try:
                await recorder.stop()
            except Exception:  # the bench only needs the CPU it cost
                pass
        await original_stop(self)

    SessionHub._on_track = on_track  # type: ignore[method-assign]
    SessionHub.stop = stop  # type: ignore[method-assign]


async def _lag_probe(period: float = 0.05, report: float = 5.0) -> None:
    """Log, every ``report`` seconds, how late the event loop woke a 50 ms sleep."""
    log = logging.getLogger("tests.bench.lag")
    loop = asyncio.get_running_loop()
    worst = 0.0
    since = loop.time()
    while True:
        before = loop.time()
        await asyncio.sleep(period)
        worst = max(worst, loop.time() - before - period)
        if loop.time() - since >= report:
            log.info("event loop lag max %.0f ms", worst * 1000)
            worst, since = 0.0, loop.time()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--mediarecorder", help="record decoded publications here")
    args = parser.parse_args(argv)
    if args.mediarecorder:
        _record_decoded_publications(Path(args.mediarecorder))
    import vwindow.cli
    from vwindow.cli import main as vwindow_main

    quiet = vwindow.cli._setup_logging

    def setup_logging(verbose: bool, *args: Any, **kwargs: Any) -> None:
        quiet(verbose, *args, **kwargs)
        # ICE consent expiry closes a peer connection without a word otherwise.
        logging.getLogger("aioice.ice").setLevel(logging.INFO)

    vwindow.cli._setup_logging = setup_logging
    serve = vwindow.cli._serve

    async def serve_with_lag_probe(config: Any, *, demo: bool, devices: str | None) -> None:
        probe = asyncio.create_task(_lag_probe())
        try:
            await serve(config, demo=demo, devices=devices)
        finally:
            probe.cancel()

    vwindow.cli._serve = serve_with_lag_probe

    return vwindow_main(["serve", "--config", args.config])


if __name__ == "__main__":
    sys.exit(main())
