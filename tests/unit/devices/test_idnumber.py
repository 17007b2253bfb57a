"""GB 11643 ID numbers: MOD 11-2 check character, validation messages, masking."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.errors import IdNumberError
from devices.idnumber import (
    check_character,
    mask_id_number,
    normalize_id_number,
    parse_id_number,
    validate_id_number,
)

# Made-up bodies (region 340000 is a province code, never a person's). The check
# characters come from the recursive form of ISO 7064 MOD 11-2 (``iso7064`` below),
# an independent oracle for the weighted-sum form the module uses.
MADE_UP = {
    "34000019800101001": "1",
    "34000019580314002": "5",
    "34000020000229003": "5",
    "34000019991231004": "4",
    "34000019991230009": "X",
}


def iso7064(body: str) -> str:
    """ISO 7064 MOD 11-2, recursive (pure system) form."""
    p = 0
    for ch in body:
        p = ((p + int(ch)) * 2) % 11
    value = (12 - p) % 11
    return "X" if value == 10 else str(value)


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_check_character_matches_recursive_iso7064(body: str) -> None:
    assert check_character(body) == iso7064(body)


def test_standard_example_from_gb11643() -> None:
    validate_id_number("11010519491231002X")


@pytest.mark.parametrize(("body", "check"), MADE_UP.items())
def test_check_character_of_made_up_numbers(body: str, check: str) -> None:
    assert check_character(body) == check
    validate_id_number(body + check, today=date(2024, 1, 1))


@pytest.mark.parametrize(("body", "check"), MADE_UP.items())
def test_wrong_check_character_says_expected_and_got(body: str, check: str) -> None:
    wrong = "1" if check != "1" else "2"
    with pytest.raises(IdNumberError) as info:
        validate_id_number(body + wrong, today=date(2024, 1, 1))
    message = str(info.value)
    assert f"is {wrong!r}, expected {check!r}" in message
    assert body not in message, "the full number must not appear in errors"
    assert mask_id_number(body + wrong) in message


@pytest.mark.parametrize(
    ("number", "fragment"),
    [
        ("3400001980010100", "18 characters, got 16"),
        ("3400001980010100111", "18 characters, got 19"),
        ("", "got 0"),
        ("34000A198001010011", "character 6 must be a digit"),
        ("340000198001010Y11", "character 16 must be a digit"),
        ("34000019800101001Y", "character 18 must be a digit or 'X'"),
        ("34000019991231004x", "use upper-case 'X'"),
        ("340000198013010011", "not a valid YYYYMMDD date"),
        ("340000198002300011", "not a valid YYYYMMDD date"),
        ("340000180001010011", "before 1850"),
        ("340000203001010011", "in the future"),
    ],
)
def test_what_is_wrong_is_named(number: str, fragment: str) -> None:
    with pytest.raises(IdNumberError, match=fragment.replace("(", r"\(")):
        validate_id_number(number, today=date(2024, 1, 1))


def test_error_names_the_field() -> None:
    with pytest.raises(IdNumberError) as info:
        validate_id_number("123")
    assert info.value.field == "id_number"


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("340100199001011234", "3401**********1234"),
        ("USA000085061599", "USA0*******1599"),
        ("123456789", "1234*6789"),
        ("12345678", "********"),
        ("", ""),
    ],
)
def test_mask(number: str, masked: str) -> None:
    assert mask_id_number(number) == masked


def test_normalize() -> None:
    assert normalize_id_number(" 3400 0019 9912 3100 4x ") == "34000019991231004X"
    assert normalize_id_number("") == ""


def test_parse_gives_birth_date_and_gender() -> None:
    parts = parse_id_number("340000195803140025", today=date(2024, 1, 1))
    assert parts.birth_date == date(1958, 3, 14)
    assert parts.gender == "2"
    assert parts.region == "340000"
    assert "1958" not in repr(parts)
    assert parse_id_number("340000198001010011").gender == "1"


def test_check_character_needs_17_digits() -> None:
    with pytest.raises(IdNumberError, match="17 ASCII digits"):
        check_character("1234")


@given(
    birth=st.dates(min_value=date(1900, 1, 1), max_value=date(2020, 12, 31)),
    region=st.integers(min_value=110000, max_value=659999),
    sequence=st.integers(min_value=0, max_value=999),
    position=st.integers(min_value=0, max_value=17),
    delta=st.integers(min_value=1, max_value=9),
)
def test_any_single_substitution_is_caught(
    birth: date, region: int, sequence: int, position: int, delta: int
) -> None:
    body = f"{region:06d}{birth:%Y%m%d}{sequence:03d}"
    number = body + check_character(body)
    validate_id_number(number, today=date(2024, 1, 1))
    alphabet = "0123456789X" if position == 17 else "0123456789"
    old = alphabet.index(number[position])
    changed = alphabet[(old + delta) % len(alphabet)]
    mutated = number[:position] + changed + number[position + 1 :]
    with pytest.raises(IdNumberError):
        validate_id_number(mutated, today=date(2024, 1, 1))
