"""A raw signalling socket for fuzzing: send any frame, then prove the socket still lives.

``probe(ws, frame)`` sends ``frame`` and then a ``ping`` with a fresh id, and returns what
came back before the ``pong``. The server handles one socket's frames in order, so the
reply to ``frame`` (if any) is in that list; no pong means the socket died or hung.
"""

from __future__ import annotations

import itertools
import json
import logging
from typing import Any

import aiohttp
import pytest

from tests.conftest import Server

_probe_ids = itertools.count(1)

PROBE_TIMEOUT_S = 10.0


class SocketDiedError(AssertionError):
    """The server closed the socket or stopped answering after a frame."""


async def open_socket(server: Server, token: str | None) -> aiohttp.ClientWebSocketResponse:
    ws = await server.http.ws_connect(server.url.replace("http", "ws", 1) + "/ws",
                                      max_msg_size=16 * 1024 * 1024)
    if token is not None:
        await ws.send_json({"v": 1, "type": "auth", "id": "a1", "token": token})
        welcome = await receive(ws)
        assert welcome["type"] == "welcome", welcome
    return ws


async def receive(ws: aiohttp.ClientWebSocketResponse,
                  timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    try:
        msg = await ws.receive(timeout=timeout)
    except TimeoutError:
        raise SocketDiedError(f"no answer within {timeout} s") from None
    if msg.type != aiohttp.WSMsgType.TEXT:
        raise SocketDiedError(f"socket closed: {msg.type.name} {msg.data!r} {msg.extra!r}")
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def send_frame(ws: aiohttp.ClientWebSocketResponse, frame: str | bytes) -> None:
    if isinstance(frame, bytes):
        await ws.send_bytes(frame)
    else:
        await ws.send_str(frame)


async def probe(ws: aiohttp.ClientWebSocketResponse, frame: str | bytes) -> list[dict[str, Any]]:
    """Send ``frame`` then a ping; everything received before the pong."""
    probe_id = f"probe-{next(_probe_ids)}"
    await send_frame(ws, frame)
    await ws.send_json({"v": 1, "type": "ping", "id": probe_id})
    seen: list[dict[str, Any]] = []
    while True:
        msg = await receive(ws)
        if msg.get("ref") == probe_id:
            # Before auth the ping is refused, which proves the socket lives just as well.
            assert msg["type"] == "pong" or msg.get("code") == "unauthenticated", msg
            return seen
        seen.append(msg)


def frame_ref(frame: str | bytes) -> tuple[bool, str | None]:
    """(whether the server can read the frame's id, the ``ref`` its reply must carry)."""
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError):
        return False, None
    if not isinstance(data, dict):
        return False, None
    msg_id = data.get("id")
    return isinstance(msg_id, str), (msg_id if isinstance(msg_id, str) and msg_id else None)


def check_reply(frame: str | bytes, seen: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """The reply to ``frame`` among ``seen``: present, clear, never "internal"."""
    for msg in seen:
        if msg.get("type") == "error":
            assert msg.get("code") != "internal", msg
            assert isinstance(msg.get("code"), str) and msg["code"], msg
            assert isinstance(msg.get("message"), str) and msg["message"], msg
    if len(frame) > limit:
        errors = [m for m in seen if m.get("type") == "error" and m["code"] == "too_large"]
        assert errors, f"frame of {len(frame)} bytes got {seen}"
        return errors[0]
    has_id, ref = frame_ref(frame)
    if ref is not None:
        replies = [m for m in seen if m.get("ref") == ref]
    else:
        replies = [m for m in seen if m.get("type") == "error" and "ref" not in m]
        if has_id:  # an empty id: any reply without a ref, error or not
            replies += [m for m in seen if m.get("type") != "error" and "ref" not in m]
    assert replies, f"no reply to {frame[:200]!r}; got {seen}"
    reply = replies[0]
    if reply.get("type") == "error" and reply["code"] == "invalid_message" and ref is not None:
        # A message that could be read as an object names the field it got wrong.
        assert reply.get("field") or "JSON object" in reply["message"], reply
    return reply


def tracebacks(caplog: pytest.LogCaptureFixture, since: int = 0) -> list[logging.LogRecord]:
    """Records at ERROR or above carrying an exception: the server failed, not the input."""
    return [r for r in caplog.records[since:] if r.levelno >= logging.ERROR and
            (r.exc_info or "Unhandled" in r.getMessage() or "Traceback" in r.getMessage())]


def describe_records(records: list[logging.LogRecord]) -> str:
    return "\n".join(f"{r.name}: {r.getMessage()} ({r.exc_info[1]!r})" if r.exc_info
                     else f"{r.name}: {r.getMessage()}" for r in records)
