"""`vwindow demo` starts, prints the URLs and logins, serves the pages, stops cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_demo_runs_and_prints_urls(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vwindow.cli", "demo", "--port", str(port), "--data",
         str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        out = "".join(lines)
        base = f"http://127.0.0.1:{port}"
        for path in ("/kiosk/", "/agent/", "/supervisor/", "/surveyor/"):
            assert base + path in out, out
        assert "kiosk-tx01" in out and "demo1234" in out
        with urllib.request.urlopen(base + "/") as resp:
            index = resp.read().decode()
        for path in ("/kiosk/", "/agent/", "/supervisor/", "/surveyor/"):
            assert f'href="{path}"' in index
        with urllib.request.urlopen(base + "/healthz") as resp:
            assert resp.status == 200
        # The simulated device agent connected as the kiosk's devices client.
        for _ in range(100):
            if "kiosk agent connected" in out:
                break
            out += proc.stdout.readline()
        assert "kiosk agent connected" in out
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0
    assert (tmp_path / "data" / "vwindow.db").exists()
