"""Log set-up for a node: plain text for a terminal, or one JSON object per line.

JSON lines are for log shippers (journald → Loki, Vector, Filebeat): every record has
``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message`` (the %-args already applied),
``node`` when known, the exception text under ``exc`` and any ``extra={...}`` fields a
caller passed. Messages never carry personal data (see STYLE.md), so nothing is
scrubbed here; the formatter only renders.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

NOISY_LOGGERS = ("aioice", "aiortc", "aiohttp.access", "alembic", "aiosqlite")
"""Libraries kept at WARNING: their INFO lines drown the node's own (one per ICE check, per
request), and aiosqlite's DEBUG lines carry SQL parameters, i.e. personal data."""

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (non-ASCII kept readable)."""

    def __init__(self, *, node_id: str | None = None) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.node_id:
            body["node"] = self.node_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                body[key] = value
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            body["exc"] = record.exc_text
        if record.stack_info:
            body["stack"] = self.formatStack(record.stack_info)
        return json.dumps(body, ensure_ascii=False, default=str)


def setup_logging(log_format: LogFormat = "text", *, verbose: bool = False,
                  node_id: str | None = None, stream: TextIO | None = None) -> None:
    """Configure the root logger once for the process (the CLI calls this).

    Replaces any handlers already on the root logger, so calling it again (the CLI sets
    up text logging before the config is read, then the configured format) does not
    print each line twice.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(node_id=node_id))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
