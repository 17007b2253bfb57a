"""JSON log lines: one object per line, %-args applied, extras and exceptions kept."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from vwindow.logjson import setup_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_json_lines(restore_root: None) -> None:
    out = io.StringIO()
    setup_logging("json", node_id="node-2", stream=out)
    log = logging.getLogger("vwindow.test")
    log.info("call %s queued for case %s", 12, 7, extra={"call_id": 12})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("call %s failed", 12)
    logging.getLogger("aioice.ice").info("noise")  # libraries' INFO stays out
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "call 12 queued for case 7"
    assert first["level"] == "INFO" and first["logger"] == "vwindow.test"
    assert first["node"] == "node-2" and first["call_id"] == 12
    assert first["ts"].endswith("+00:00")
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exc"]


def test_text_and_no_duplicate_handlers(restore_root: None) -> None:
    out = io.StringIO()
    setup_logging("text", stream=out)
    setup_logging("text", stream=out)
    logging.getLogger("vwindow.test").warning("汤口镇 %d", 1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].endswith("WARNING vwindow.test: 汤口镇 1")
