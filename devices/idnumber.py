"""Citizen ID numbers (公民身份号码, GB 11643-1999): check, mask, take apart.

An 18-character number is ``RRRRRR YYYYMMDD SSS C``: a 6-digit region code, the
birth date, a 3-digit sequence (odd for men, even for women) and a check character
computed with ISO 7064 MOD 11-2 over the first 17 digits: weights ``2**(17-i) mod 11``
(7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2), ``check = (12 - sum mod 11) mod 11`` with 10
written as ``X``. Since 2023 the foreigner permanent residence card uses the same
format with a leading ``9``, so it validates here too.

API
---
``check_character(first17: str) -> str``     the MOD 11-2 check character
``validate_id_number(number: str, *, today: date | None = None) -> None``
    raises ``IdNumberError`` saying what is wrong: length, characters, birth date
    (not a date, or in the future) or checksum (expected vs got). Messages show the
    number masked, never whole.
``normalize_id_number(text: str) -> str``     strip spaces, upper-case a trailing x
``mask_id_number(number: str) -> str``        ``"3401**********1234"`` (first 4, last 4)
``parse_id_number(number: str) -> IdNumber``  validated parts: region, birth_date,
                                              sequence, gender ("1" male / "2" female)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Final

from devices.errors import IdNumberError
from vwindow.errors import ValidationError
from vwindow.privacy import check_character as _check_character
from vwindow.privacy import mask_id_number

__all__ = ["IdNumber", "check_character", "mask_id_number", "normalize_id_number",
           "parse_id_number", "validate_id_number"]

_LENGTH: Final = 18


def check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character for 17 digits."""
    try:
        return _check_character(first17)
    except ValidationError as err:
        raise IdNumberError(err.message, field=err.field) from None


def normalize_id_number(text: str) -> str:
    """Remove spaces a person or OCR put in and upper-case a trailing ``x``."""
    compact = "".join(text.split())
    return compact[:-1] + compact[-1:].upper() if compact else compact


def validate_id_number(number: str, *, today: date | None = None) -> None:
    """Raise :class:`IdNumberError` unless ``number`` is a valid 18-character ID number."""
    if len(number) != _LENGTH:
        raise IdNumberError(
            f"ID number must have {_LENGTH} characters, got {len(number)}", field="id_number"
        )
    masked = mask_id_number(number)
    for position, ch in enumerate(number[:17], start=1):
        if not ("0" <= ch <= "9"):
            raise IdNumberError(
                f"ID number {masked}: character {position} must be a digit 0-9", field="id_number"
            )
    last = number[17]
    if not ("0" <= last <= "9" or last == "X"):
        hint = " (use upper-case 'X')" if last == "x" else ""
        raise IdNumberError(
            f"ID number {masked}: character 18 must be a digit or 'X'{hint}", field="id_number"
        )
    birth = _birth_date(number, masked)
    if birth > (today or date.today()):
        raise IdNumberError(
            f"ID number {masked}: birth date (characters 7-14) is in the future",
            field="id_number",
        )
    expected = check_character(number[:17])
    if last != expected:
        raise IdNumberError(
            f"ID number {masked}: check character is {last!r}, expected {expected!r}",
            field="id_number",
        )


def _birth_date(number: str, masked: str) -> date:
    digits = number[6:14]
    try:
        birth = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        raise IdNumberError(
            f"ID number {masked}: birth date (characters 7-14) is not a valid YYYYMMDD date",
            field="id_number",
        ) from None
    if birth.year < 1850:
        raise IdNumberError(
            f"ID number {masked}: birth date (characters 7-14) is before 1850",
            field="id_number",
        )
    return birth


@dataclass(frozen=True, slots=True)
class IdNumber:
    """The parts of a validated ID number."""

    number: str
    region: str
    birth_date: date
    sequence: str
    gender: str  # GB/T 2261.1 code: "1" male, "2" female

    def __repr__(self) -> str:
        return f"IdNumber({mask_id_number(self.number)})"


def parse_id_number(number: str, *, today: date | None = None) -> IdNumber:
    """Validate ``number`` and return its parts."""
    validate_id_number(number, today=today)
    sequence = number[14:17]
    return IdNumber(
        number=number,
        region=number[:6],
        birth_date=date(int(number[6:10]), int(number[10:12]), int(number[12:14])),
        sequence=sequence,
        gender="1" if int(sequence[-1]) % 2 else "2",
    )
