"""Janus (Debian's ``janus`` package) as the comparison SFU for ``tests.bench.relay``.

``JanusServer`` writes a throw-away config folder (HTTP transport on 127.0.0.1 only, the
videoroom plugin only, no STUN/TURN, no 1:1 NAT, ICE on one address) and runs
``/usr/bin/janus`` on it. Janus gathers no candidates on a loopback interface (with
``ice_enforce_list = "lo"`` it falls back to every interface), so ICE is pinned to one
local address, by default the machine's own; the packets never leave the host.
``JanusSession`` speaks Janus's HTTP REST API with aiohttp:
create a session, attach videoroom handles, send plugin requests, long-poll for the
asynchronous events (a publisher's SDP answer, a subscriber's SDP offer).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

JANUS_BIN = Path("/usr/bin/janus")
JANUS_LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
VIDEOROOM = "janus.plugin.videoroom"


class JanusError(Exception):
    """Janus is missing, did not start, or answered a request with an error."""


def janus_missing() -> str | None:
    """Why the Janus comparison cannot run here, or None when it can."""
    if not JANUS_BIN.exists():
        return (f"{JANUS_BIN} not found: install Debian's Janus with "
                "`apt-get install -y janus` to run --mode janus")
    if not (JANUS_LIB / "plugins" / "libjanus_videoroom.so").exists():
        return f"the Janus videoroom plugin is missing under {JANUS_LIB / 'plugins'}"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _others(folder: str, keep: str) -> str:
    """Every library in a Janus module folder except ``keep``, for a ``disable`` list."""
    names = sorted(p.name for p in (JANUS_LIB / folder).glob("libjanus_*.so"))
    return ",".join(n for n in names if n != keep)


class JanusServer:
    """One Janus process on a generated config; ``url`` is its REST API base."""

    def __init__(self, workdir: Path, *, ice_address: str, debug_level: int = 3) -> None:
        self.workdir = workdir
        self.conf = workdir / "janus-conf"
        self.rec_dir = workdir / "janus-recordings"
        self.log_path = workdir / "janus.log"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/janus"
        self.debug_level = debug_level
        self.ice_address = ice_address
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise JanusError("janus is not running")
        return self.proc.pid

    def write_config(self) -> None:
        self.conf.mkdir(parents=True, exist_ok=True)
        self.rec_dir.mkdir(parents=True, exist_ok=True)
        (self.conf / "janus.jcfg").write_text(f"""\
general: {{
    configs_folder = "{self.conf}"
    plugins_folder = "{JANUS_LIB / 'plugins'}"
    transports_folder = "{JANUS_LIB / 'transports'}"
    events_folder = "{JANUS_LIB / 'events'}"
    loggers_folder = "{JANUS_LIB / 'loggers'}"
    debug_level = {self.debug_level}
    session_timeout = 120
    server_name = "vwindow-bench"
    protected_folders = []
}}
media: {{
    rtp_port_range = "20000-60000"
}}
nat: {{
    nice_debug = false
    ignore_mdns = true
    ice_enforce_list = "{self.ice_address}"
}}
plugins: {{
    disable = "{_others('plugins', 'libjanus_videoroom.so')}"
}}
transports: {{
    disable = "{_others('transports', 'libjanus_http.so')}"
}}
loggers: {{
    disable = "{_others('loggers', '')}"
}}
events: {{
    broadcast = false
    disable = "{_others('events', '')}"
}}
""")
        (self.conf / "janus.transport.http.jcfg").write_text(f"""\
general: {{
    json = "plain"
    base_path = "/janus"
    http = true
    port = {self.port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
    admin_https = false
}}
""")
        (self.conf / "janus.plugin.videoroom.jcfg").write_text("""\
general: {
}
""")

    def start(self, timeout: float = 20.0) -> None:
        problem = janus_missing()
        if problem:
            raise JanusError(problem)
        self.write_config()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(JANUS_BIN), "--configs-folder", str(self.conf),
             "--config", str(self.conf / "janus.jcfg"), "--disable-colors"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise JanusError(f"janus exited with {self.proc.returncode}; "
                                 f"see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise JanusError(f"janus did not listen on 127.0.0.1:{self.port} within {timeout} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class JanusSession:
    """One Janus API session over HTTP, with a long-poll task collecting events."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.session_id: int | None = None
        self._ids = itertools.count(1)
        self._events: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None

    def _transaction(self) -> str:
        return f"{secrets.token_hex(4)}-{next(self._ids)}"

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {"transaction": self._transaction(), **body}
        async with self.http.post(self.url + path, json=body) as resp:
            data: dict[str, Any] = await resp.json(content_type=None)
        if data.get("janus") == "error":
            err = data.get("error", {})
            raise JanusError(f"janus {body.get('janus')}: {err.get('code')} "
                             f"{err.get('reason')}")
        return data

    async def create(self) -> None:
        data = await self._post("", {"janus": "create"})
        self.session_id = int(data["data"]["id"])
        self._poller = asyncio.create_task(self._poll())
        self._keepalive = asyncio.create_task(self._keep_alive())

    async def attach(self, plugin: str = VIDEOROOM) -> int:
        data = await self._post(f"/{self.session_id}", {"janus": "attach", "plugin": plugin})
        handle = int(data["data"]["id"])
        self._events[handle] = asyncio.Queue()
        return handle

    async def request(self, handle: int, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous plugin request (create, exists, ...): the plugin's data."""
        data = await self._post(f"/{self.session_id}/{handle}",
                                {"janus": "message", "body": body})
        plugin: dict[str, Any] = data.get("plugindata", {}).get("data", {})
        if "error" in plugin:
            raise JanusError(f"videoroom {body.get('request')}: {plugin.get('error_code')} "
                             f"{plugin['error']}")
        return plugin

    async def message(self, handle: int, body: dict[str, Any],
                      jsep: dict[str, Any] | None = None,
                      timeout: float = 20.0) -> dict[str, Any]:
        """An asynchronous plugin request: waits for the event that answers it."""
        msg: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        data = await self._post(f"/{self.session_id}/{handle}", msg)
        transaction = data.get("transaction")
        if data.get("janus") == "success":  # answered synchronously
            return data
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise JanusError(f"videoroom {body.get('request')}: no event in {timeout} s")
            event = await asyncio.wait_for(self._events[handle].get(), remaining)
            if event.get("janus") != "event" or event.get("transaction") != transaction:
                continue
            plugin = event.get("plugindata", {}).get("data", {})
            if "error" in plugin:
                raise JanusError(f"videoroom {body.get('request')}: "
                                 f"{plugin.get('error_code')} {plugin['error']}")
            return event

    async def _poll(self) -> None:
        while True:
            try:
                async with self.http.get(f"{self.url}/{self.session_id}",
                                         params={"maxev": "10"}) as resp:
                    data = await resp.json(content_type=None)
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(0.2)
                continue
            for event in data if isinstance(data, list) else [data]:
                handle = event.get("sender")
                if isinstance(handle, int) and handle in self._events:
                    self._events[handle].put_nowait(event)

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(25)
            try:
                await self._post(f"/{self.session_id}", {"janus": "keepalive"})
            except (aiohttp.ClientError, JanusError):
                pass

    async def destroy(self) -> None:
        for task in (self._poller, self._keepalive):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._poller, self._keepalive) if t),
                             return_exceptions=True)
        if self.session_id is not None:
            try:
                await self._post(f"/{self.session_id}", {"janus": "destroy"})
            except (aiohttp.ClientError, JanusError):
                pass
