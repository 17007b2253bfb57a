"""The log scan (tests/logscan.py) finds fixture personal data and valid ID numbers,
and leaves masked forms, staff names and look-alike digit runs alone."""

from __future__ import annotations

import logging
import sys

import pytest

from devices.idcard_text import CardType
from devices.sim.idcard import fixture_card
from tests.authz import ID_READ
from tests.logscan import LogScanner
from vwindow.privacy import check_character, mask_id_number, mask_name


@pytest.fixture
def scanner() -> LogScanner:
    return LogScanner()


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("vwindow.test", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


@pytest.mark.parametrize("card_type", list(CardType))
def test_fixture_cards_are_found(scanner: LogScanner, card_type: CardType) -> None:
    card = fixture_card(card_type)
    assert scanner.scan(f"read {card.id_number}")
    assert scanner.scan(f"holder {card.name}")
    assert scanner.scan(repr(card.id_number.encode("utf-16-le")))


def test_records_args_extras_and_exceptions_are_scanned(scanner: LogScanner) -> None:
    number = fixture_card().id_number
    scanner.emit(_record("read %s", number))
    scanner.emit(_record("read", id_number=ID_READ["number"]))
    try:
        raise ValueError(f"bad name {ID_READ['name']}")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    scanner.emit(record)
    assert scanner.leak_count == 3 and scanner.lines == 3


def test_any_valid_gb11643_number_is_a_leak(scanner: LogScanner) -> None:
    number = "11010519491231002" + check_character("11010519491231002")
    assert scanner.scan(f"id={number}")
    bad_check = number[:17] + ("0" if number[17] != "0" else "1")
    assert not scanner.scan(f"id={bad_check}")


def test_masked_forms_and_look_alikes_are_not_leaks(scanner: LogScanner) -> None:
    card = fixture_card()
    number = card.id_number
    assert not scanner.scan(f"card {mask_id_number(number)} of {mask_name(card.name)}")
    assert not scanner.scan(f"ID read {mask_id_number(str(ID_READ['number']))} "
                            f"{mask_name(str(ID_READ['name']))}")
    assert not scanner.scan("agent 王芳（县政务中心） at 汤口镇便民服务中心 1 号机")
    # a valid number inside a longer run of digits or letters (ns clocks, digests, tokens)
    other = "11010519491231002" + check_character("11010519491231002")
    assert scanner.scan(f"id {other}")
    assert not scanner.scan(f"t=9{other} sha=ab{other}cd token_{other}9")
