"""A throw-away PostgreSQL server for tests: initdb in a temp dir, listening on 127.0.0.1.

Set ``VWINDOW_TEST_PG_URL`` to use an existing server instead. PostgreSQL refuses to run
as root, so when the tests run as root the cluster is owned by the ``postgres`` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found and name != "postgres":
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise RuntimeError(f"PostgreSQL program {name!r} not found: apt-get install postgresql")
    return candidates[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgServer:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="vwindow-pg-"))
        self.port = _free_port()
        self._as_user: str | None = None
        if os.geteuid() == 0:
            self._as_user = "postgres"
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.dir.chmod(0o700)

    def _run(self, *cmd: str) -> None:
        full = list(cmd)
        if self._as_user:
            full = ["runuser", "-u", self._as_user, "--", *full]
        subprocess.run(full, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       cwd="/tmp")

    def start(self) -> str:
        data = self.dir / "data"
        self._run(_bin("initdb"), "-D", str(data), "-U", "vw", "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8")
        return self.resume()

    def pause(self) -> None:
        """Stop the server as a crash would (``-m immediate``), keeping its data."""
        self._run(_bin("pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w",
                  "stop")

    def resume(self) -> str:
        """Start the server on its data and port (after ``start`` made them, or a pause)."""
        self._run(_bin("pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "log"),
                  "-w", "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off -c max_connections=200", "start")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        return f"postgresql+asyncpg://vw@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str) -> str:
        self._run(_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "vw", name)
        return f"postgresql+asyncpg://vw@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run(_bin("pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
