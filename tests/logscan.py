"""Log scan: no personal data in any log line of a test run (issue 8, item 8).

A handler on the root logger renders every record the way a production node ships it
(:class:`vwindow.logjson.JsonFormatter`: message with %-args applied, ``extra=`` fields,
exception and stack text) and looks in the line for

* a personal datum of the test fixtures: the ID number, name, English name, address and
  pass number of every :func:`devices.sim.idcard.fixture_card` layout and the ID read of
  ``tests.authz.ID_READ`` (also as UCS-2 bytes, as the card reader frames carry text);
* any 18-character GB 11643 number with a valid check character
  (:func:`vwindow.privacy.id_number_checks`), fixture or not.

Masked forms (``mask_id_number``/``mask_name``) never match. The demo seed's names are
staff, not citizens, and are never looked for. Only what was captured is judged, so a
subset of the tests or any order works; a leak makes the session fail at its end, listed
with the test that was running. Registered by ``tests/conftest.py``.
"""

from __future__ import annotations

import ast
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from vwindow.logjson import JsonFormatter
from vwindow.privacy import id_number_checks

# 17 digits and a check character, not inside a longer run of letters or digits (so
# hex digests, tokens and nanosecond clocks don't look like an ID number).
_GB11643: Final = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9X](?![0-9A-Za-z])")

_MAX_LEAKS: Final = 50  # lines kept for the report; the count goes on


@dataclass(frozen=True)
class Leak:
    test: str
    logger: str
    what: str
    line: str


def _seed_staff_names() -> frozenset[str]:
    """The literal names the demo seed writes (staff, kiosks, townships): not citizens."""
    import vwindow.seed

    source = Path(vwindow.seed.__file__).read_text(encoding="utf-8")
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg in {"display_name", "name"}:
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                names.add(node.value.value)
    return frozenset(names)


def fixture_personal_data() -> dict[str, str]:
    """``{needle: description}`` for the fixtures' personal data."""
    from devices.idcard_text import CardType
    from devices.sim.idcard import fixture_card
    from tests.authz import ID_READ

    data: dict[str, str] = {}
    for card_type in CardType:
        card = fixture_card(card_type)
        label = f"fixture_card({card_type.name})"
        for field in ("id_number", "name", "english_name", "address", "pass_number"):
            value = getattr(card, field, None)
            if isinstance(value, str) and value.strip():
                data[value.strip()] = f"{label}.{field}"
    for field in ("number", "name", "address"):
        data[str(ID_READ[field])] = f"ID_READ[{field!r}]"
    staff = _seed_staff_names()
    # Staff names are not personal data of a citizen; nor is a needle they contain.
    data = {k: v for k, v in data.items() if not any(k in s for s in staff)}
    for needle, what in list(data.items()):
        raw = needle.encode("utf-16-le")  # the card's text encoding on the wire
        data[raw.hex()] = f"{what} (UCS-2 hex)"
        data[repr(raw)[2:-1]] = f"{what} (UCS-2 bytes)"
    return data


class LogScanner(logging.Handler):
    """Scans each record as it is emitted; keeps only the leaks, not the lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.needles = fixture_personal_data()
        self.current_test = "(outside a test)"
        self.lines = 0
        self.leak_count = 0
        self.leaks: list[Leak] = []
        self._guard = threading.local()

    def render(self, record: logging.LogRecord) -> str:
        try:
            return self.format(record)
        except Exception:  # a broken record must still be scanned, not lost
            return f"{record.msg!r} {record.args!r} {record.exc_text or ''}"

    def scan(self, line: str) -> list[str]:
        found = [what for needle, what in self.needles.items() if needle in line]
        found += [f"GB 11643 number {m.group()[:4]}…" for m in _GB11643.finditer(line)
                  if id_number_checks(m.group())]
        return found

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._guard, "busy", False):
            return
        self._guard.busy = True
        try:
            line = self.render(record)
            self.lines += 1
            found = self.scan(line)
            if found:
                self.leak_count += 1
                if len(self.leaks) < _MAX_LEAKS:
                    self.leaks.append(Leak(self.current_test, record.name,
                                           ", ".join(found), line))
        finally:
            self._guard.busy = False


_KEY: Final = pytest.StashKey[LogScanner]()
_LEVEL_KEY: Final = pytest.StashKey[int]()


def _install(scanner: LogScanner) -> None:
    root = logging.getLogger()
    if scanner not in root.handlers:  # e.g. a test called logjson.setup_logging
        root.addHandler(scanner)


def pytest_configure(config: pytest.Config) -> None:
    scanner = LogScanner()
    config.stash[_KEY] = scanner
    root = logging.getLogger()
    config.stash[_LEVEL_KEY] = root.level
    # Look at DEBUG and INFO too (a node runs at INFO, or DEBUG with --verbose); the
    # libraries a node keeps at WARNING stay there, as in vwindow.logjson.setup_logging.
    root.setLevel(logging.DEBUG)
    from vwindow.logjson import NOISY_LOGGERS

    for name in NOISY_LOGGERS:
        noisy = logging.getLogger(name)
        if noisy.level == logging.NOTSET:
            noisy.setLevel(logging.WARNING)
    _install(scanner)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    scanner = item.config.stash.get(_KEY, None)
    if scanner is not None:
        scanner.current_test = item.nodeid
        _install(scanner)
        root = logging.getLogger()
        if root.level > logging.DEBUG:
            root.setLevel(logging.DEBUG)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    scanner = item.config.stash.get(_KEY, None)
    if scanner is not None:
        _install(scanner)


def pytest_sessionfinish(session: pytest.Session) -> None:
    scanner = session.config.stash.get(_KEY, None)
    if scanner is None:
        return
    scanner.current_test = "(session teardown)"
    if scanner.leak_count and session.exitstatus in (pytest.ExitCode.OK,
                                                     pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    scanner = terminalreporter.config.stash.get(_KEY, None)
    if scanner is None or not scanner.leak_count:
        return
    terminalreporter.section("personal data in logs", sep="=", red=True, bold=True)
    terminalreporter.line(f"{scanner.leak_count} of {scanner.lines} log lines carry personal data "
                          f"(first {len(scanner.leaks)} shown):", red=True)
    for leak in scanner.leaks:
        terminalreporter.line(f"{leak.test} [{leak.logger}] {leak.what}: {leak.line[:600]}")


def pytest_unconfigure(config: pytest.Config) -> None:
    scanner = config.stash.get(_KEY, None)
    if scanner is not None:
        logging.getLogger().removeHandler(scanner)
        logging.getLogger().setLevel(config.stash[_LEVEL_KEY])
