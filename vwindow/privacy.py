"""Personal data helpers shared by the server and the devices: masking ID numbers, names,
birth dates and addresses for lists, exports and logs (who sees what unmasked is
``vwindow.permissions``), and the GB 11643 (ISO 7064 MOD 11-2) check character, so the server can
re-check a number a kiosk sends instead of trusting it.
"""

from __future__ import annotations

from typing import Final

from vwindow.errors import ValidationError

_WEIGHTS: Final = tuple(pow(2, 17 - i, 11) for i in range(17))
_CHECK_CHARS: Final = "10X98765432"  # indexed by (weighted sum mod 11)


def mask_id_number(number: str) -> str:
    """Keep the first 4 and last 4 characters, star the rest (all stars if too short)."""
    if len(number) <= 8:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character for 17 digits."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValidationError("check character needs exactly 17 ASCII digits",
                              field="id_number")
    total = sum(int(ch) * w for ch, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def id_number_checks(number: str) -> bool:
    """True for 18 characters whose last is the right check character (no date check)."""
    return (len(number) == 18 and number[:17].isascii() and number[:17].isdigit()
            and check_character(number[:17]) == number[17])


def mask_name(name: str) -> str:
    """``张*明``-style: first and last character kept (a 2-character name keeps the first)."""
    if len(name) <= 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_birth_date(birth_date: str) -> str:
    """``1958-**-**``: the year only (the age to within a year; the full date is in the
    ID number's digits 7-14, which the masked number hides too)."""
    year = birth_date[:4]
    if len(year) == 4 and year.isascii() and year.isdigit():
        return year + "-**-**"
    return "*" * len(birth_date)


def mask_address(address: str) -> str:
    """The first 6 characters and ``…``: the town-level part a person needs to recognise
    the place, without the village, street or house number."""
    return address[:6] + "…" if len(address) > 6 else address
