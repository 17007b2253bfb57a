"""A throw-away coturn for tests: ``use-auth-secret`` with a random secret, on 127.0.0.1.

It reads no config file (``-n``, so Debian's /etc/turnserver.conf and any coturn service
the package started play no part), listens on a free port, relays from a small port range
below the kernel's ephemeral range, and allows loopback peers: the hub's only host
candidate in tests is 127.0.0.1, which coturn refuses to relay to by default.
"""

from __future__ import annotations

import random
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from aioice import stun

TURNSERVER = "/usr/bin/turnserver"
REALM = "vwindow.test"


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (coturn listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port for coturn on 127.0.0.1")


class TurnServer:
    def __init__(self) -> None:
        self.binary = shutil.which("turnserver") or TURNSERVER
        self.dir = Path(tempfile.mkdtemp(prefix="vwindow-turn-"))
        self.secret = secrets.token_urlsafe(24)
        self.port = _free_port()
        # Relay ports below 32768 (Linux's ephemeral range), so nothing else takes them.
        self.min_port = random.randrange(20000, 32000, 100)
        self.max_port = self.min_port + 99
        self.log = self.dir / "turn.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def start(self) -> None:
        if not Path(self.binary).exists():
            raise RuntimeError(f"{self.binary} is missing: apt-get install coturn")
        cmd = [
            self.binary, "-n",
            "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
            f"--listening-port={self.port}",
            f"--min-port={self.min_port}", f"--max-port={self.max_port}",
            "--allow-loopback-peers",
            "--use-auth-secret", f"--static-auth-secret={self.secret}", f"--realm={REALM}",
            "--fingerprint", "--no-tls", "--no-dtls", "--no-rfc5780", "--no-cli",
            "--relay-threads=1", "--verbose",
            f"--log-file={self.log}", "--simple-log", "--no-stdout-log",
            f"--pidfile={self.dir / 'turnserver.pid'}", f"--userdb={self.dir / 'turndb'}",
        ]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      cwd=self.dir)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"turnserver exited with {self._proc.returncode}:\n"
                                   f"{self.log_text()[-2000:]}")
            if self._answers_binding():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"turnserver did not answer on 127.0.0.1:{self.port}")

    def _answers_binding(self) -> bool:
        """True once a STUN Binding request on the UDP port gets a success response."""
        request = stun.Message(message_method=stun.Method.BINDING,
                               message_class=stun.Class.REQUEST)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            try:
                sock.sendto(bytes(request), ("127.0.0.1", self.port))
                data = sock.recv(2048)
            except OSError:
                return False
        try:
            response = stun.parse_message(data)
        except ValueError:
            return False
        return (response.transaction_id == request.transaction_id
                and response.message_class == stun.Class.RESPONSE)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
