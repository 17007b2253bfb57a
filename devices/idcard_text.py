"""The 256-byte text block of Chinese ID cards and permits read through a SAM module.

Text is UCS-2 little-endian (GB 13000), each field padded with spaces (``20 00``).
Field lengths are in bytes. The card type is the UCS-2 character at byte 248.

Resident identity card (居民身份证, type ' '), GA 467 / vendor SAM manuals::

    name 30 | gender 2 | nation 4 | birth 16 | address 70 | number 36 | authority 30 |
    valid from 16 | valid to 16 (YYYYMMDD or "长期") | reserved 36

Residence permit for Hong Kong, Macau and Taiwan residents (港澳台居民居住证, 'J'),
《港澳台居民居住证机读信息规范》 as implemented by reader SDKs::

    name 30 | gender 2 | reserved 4 | birth 16 | address 70 | number 36 |
    authority 30 | valid from 16 | valid to 16 | pass number 18 | issue count 4 |
    reserved 6 | type 2 ("J") | reserved 6

Foreigner permanent residence ID card, 2017 edition (外国人永久居留身份证, 'I'), from
the published machine-readable item table (数据项表)::

    English name 120 | gender 2 | card number 30 (15 chars) | nationality 6
    (GB/T 2659 alpha-3) | Chinese name 30 | valid from 16 | valid to 16 | birth 16 |
    card version 4 | accepting authority code 8 | type 2 ("I") | reserved 6

Foreigner permanent residence ID card, 2023 edition ('Y', 18-digit number with a
MOD 11-2 check, first digit 9), as laid out in reader SDK headers implementing the
2023 rules (新版外国人永久居留身份证机读信息规则)::

    Chinese name 30 | gender 2 | renewal count 4 | birth 16 | English name 70
    (characters 1-35) | card number 36 | reserved 30 | valid from 16 | valid to 16 |
    English name continued 22 (characters 36-46) | nationality 6 | type 2 ("Y") |
    previous-card link 6

The 'I' and 'Y' layouts were taken from vendor documentation and SDK sources, not
from the issuing authority's specification itself, which was not available here.

API
---
``CardType`` (StrEnum): ``RESIDENT=" "``, ``HMT_RESIDENCE="J"``, ``FOREIGNER_2017="I"``,
``FOREIGNER_2023="Y"``
``Gender`` (StrEnum, GB/T 2261.1): ``UNKNOWN="0"``, ``MALE="1"``, ``FEMALE="2"``,
``UNSPECIFIED="9"``
``IdCardData`` frozen dataclass (see fields); ``repr`` shows only the type and the masked
number; ``nation`` is the ethnic group's name, ``masked_number`` the masked number
``TEXT_LENGTH = 256``, ``PHOTO_LENGTH = 1024``, ``LONG_TERM = "长期"``
``parse_text(text, *, photo=b"", fingerprint=b"") -> IdCardData``
    raises ``IdCardFormatError`` naming the field (never its value)
``encode_text(card) -> bytes``  the inverse, for simulators and tests
``ETHNIC_GROUPS: Mapping[str, str]``  code ("01") -> name ("汉")
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Final

from devices.errors import IdCardFormatError
from devices.idnumber import mask_id_number

TEXT_LENGTH: Final = 256
PHOTO_LENGTH: Final = 1024
TYPE_OFFSET: Final = 248
LONG_TERM: Final = "长期"


class CardType(enum.StrEnum):
    RESIDENT = " "
    HMT_RESIDENCE = "J"
    FOREIGNER_2017 = "I"
    FOREIGNER_2023 = "Y"


class Gender(enum.StrEnum):
    UNKNOWN = "0"
    MALE = "1"
    FEMALE = "2"
    UNSPECIFIED = "9"


_ETHNIC_NAMES: Final = tuple(
    (
        "汉 蒙古 回 藏 维吾尔 苗 彝 壮 布依 朝鲜 满 侗 瑶 白 土家 哈尼 哈萨克 傣 黎 傈僳 佤 畲 "
        "高山 拉祜 水 东乡 纳西 景颇 柯尔克孜 土 达斡尔 仫佬 羌 布朗 撒拉 毛南 仡佬 锡伯 阿昌 "
        "普米 塔吉克 怒 乌孜别克 俄罗斯 鄂温克 德昂 保安 裕固 京 塔塔尔 独龙 鄂伦春 赫哲 门巴 "
        "珞巴 基诺"
    ).split()
)
ETHNIC_GROUPS: Final[Mapping[str, str]] = MappingProxyType(
    {f"{i:02d}": n for i, n in enumerate(_ETHNIC_NAMES, start=1)}
    | {"97": "其他", "98": "外国血统中国籍人士"}
)


@dataclass(frozen=True, slots=True)
class IdCardData:
    """What a card says. Dates are ``date``; ``valid_to=None`` means 长期 (no expiry)."""

    card_type: CardType
    name: str  # Chinese name; for foreigner cards may be empty
    gender: Gender
    birth_date: date
    id_number: str  # citizen number, or permit number for 'I' / 'Y'
    valid_from: date
    valid_to: date | None
    authority: str = ""  # 签发机关; 'I': accepting authority code
    nation_code: str = ""  # resident: ethnic group code, e.g. "01"
    address: str = ""
    english_name: str = ""  # 'I' / 'Y'
    nationality: str = ""  # 'I' / 'Y': country or region code
    pass_number: str = ""  # 'J': travel permit number
    issue_count: str = ""  # 'J': 签发次数; 'Y': 换证次数
    card_version: str = ""  # 'I'
    previous_card_link: str = ""  # 'Y': 既往版本证件号码关联项
    photo_wlt: bytes = field(default=b"", repr=False)
    fingerprint: bytes = field(default=b"", repr=False)

    @property
    def masked_number(self) -> str:
        return mask_id_number(self.id_number)

    @property
    def nation(self) -> str:
        return ETHNIC_GROUPS.get(self.nation_code, "")

    def __repr__(self) -> str:
        return f"IdCardData(card_type={self.card_type.name}, id_number={self.masked_number})"

    __str__ = __repr__


# (attribute or None for reserved, length in bytes, kind) per layout.
_Field = tuple[str | None, int, str]
_TEXT, _DATE, _EXPIRY, _TYPE = "text", "date", "expiry", "type"

_LAYOUTS: Final[Mapping[CardType, tuple[_Field, ...]]] = MappingProxyType(
    {
        CardType.RESIDENT: (
            ("name", 30, _TEXT),
            ("gender", 2, _TEXT),
            ("nation_code", 4, _TEXT),
            ("birth_date", 16, _DATE),
            ("address", 70, _TEXT),
            ("id_number", 36, _TEXT),
            ("authority", 30, _TEXT),
            ("valid_from", 16, _DATE),
            ("valid_to", 16, _EXPIRY),
            (None, 28, _TEXT),
            ("card_type", 2, _TYPE),
            (None, 6, _TEXT),
        ),
        CardType.HMT_RESIDENCE: (
            ("name", 30, _TEXT),
            ("gender", 2, _TEXT),
            (None, 4, _TEXT),
            ("birth_date", 16, _DATE),
            ("address", 70, _TEXT),
            ("id_number", 36, _TEXT),
            ("authority", 30, _TEXT),
            ("valid_from", 16, _DATE),
            ("valid_to", 16, _EXPIRY),
            ("pass_number", 18, _TEXT),
            ("issue_count", 4, _TEXT),
            (None, 6, _TEXT),
            ("card_type", 2, _TYPE),
            (None, 6, _TEXT),
        ),
        CardType.FOREIGNER_2017: (
            ("english_name", 120, _TEXT),
            ("gender", 2, _TEXT),
            ("id_number", 30, _TEXT),
            ("nationality", 6, _TEXT),
            ("name", 30, _TEXT),
            ("valid_from", 16, _DATE),
            ("valid_to", 16, _EXPIRY),
            ("birth_date", 16, _DATE),
            ("card_version", 4, _TEXT),
            ("authority", 8, _TEXT),
            ("card_type", 2, _TYPE),
            (None, 6, _TEXT),
        ),
        CardType.FOREIGNER_2023: (
            ("name", 30, _TEXT),
            ("gender", 2, _TEXT),
            ("issue_count", 4, _TEXT),
            ("birth_date", 16, _DATE),
            ("english_name", 70, _TEXT),
            ("id_number", 36, _TEXT),
            (None, 30, _TEXT),
            ("valid_from", 16, _DATE),
            ("valid_to", 16, _EXPIRY),
            ("english_name+", 22, _TEXT),
            ("nationality", 6, _TEXT),
            ("card_type", 2, _TYPE),
            ("previous_card_link", 6, _TEXT),
        ),
    }
)


def _decode(raw: bytes, what: str) -> str:
    try:
        text = raw.decode("utf-16-le")
    except UnicodeDecodeError:
        raise IdCardFormatError(f"card field {what!r} is not valid UCS-2 text") from None
    return text.strip(" \x00\u3000")


def _date(text: str, what: str) -> date:
    if len(text) != 8 or not text.isascii() or not text.isdigit():
        raise IdCardFormatError(f"card field {what!r} is not a YYYYMMDD date")
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise IdCardFormatError(f"card field {what!r} is not a valid calendar date") from None


def card_type_of(text: bytes) -> CardType:
    """The layout of a 256-byte text block, from the character at byte 248."""
    if len(text) != TEXT_LENGTH:
        raise IdCardFormatError(f"card text block has {len(text)} bytes, expected {TEXT_LENGTH}")
    raw = text[TYPE_OFFSET : TYPE_OFFSET + 2]
    if raw in (b"\x00\x00", b"\x20\x00"):
        return CardType.RESIDENT
    for card_type in CardType:
        if raw == card_type.value.encode("utf-16-le"):
            return card_type
    raise IdCardFormatError(
        f"unknown card type bytes {raw.hex(' ').upper()} at text offset {TYPE_OFFSET}"
    )


def parse_text(text: bytes, *, photo: bytes = b"", fingerprint: bytes = b"") -> IdCardData:
    """Decode a 256-byte UCS-2LE text block in whichever layout its type byte names."""
    card_type = card_type_of(text)
    values: dict[str, object] = {}
    offset = 0
    for attr, length, kind in _LAYOUTS[card_type]:
        chunk = text[offset : offset + length]
        offset += length
        if attr is None or kind == _TYPE:
            continue
        value = _decode(chunk, attr)
        if attr == "english_name+":
            values["english_name"] = f"{values['english_name']}{value}".strip()
        elif kind == _DATE:
            values[attr] = _date(value, attr)
        elif kind == _EXPIRY:
            values[attr] = None if value == LONG_TERM else _date(value, attr)
        elif attr == "gender":
            try:
                values[attr] = Gender(value)
            except ValueError:
                raise IdCardFormatError("card field 'gender' is not a GB/T 2261.1 code") from None
        else:
            values[attr] = value
    return IdCardData(
        card_type=card_type,
        photo_wlt=photo,
        fingerprint=fingerprint,
        **values,  # type: ignore[arg-type]
    )


def _encode_field(value: str, length: int, what: str) -> bytes:
    raw = value.encode("utf-16-le")
    if len(raw) > length:
        raise IdCardFormatError(f"card field {what!r} needs {len(raw)} bytes, only {length} fit")
    return raw + " ".encode("utf-16-le") * ((length - len(raw)) // 2)


def encode_text(card: IdCardData) -> bytes:
    """The 256-byte text block a card of ``card.card_type`` would carry."""
    parts: list[bytes] = []
    english = card.english_name
    for attr, length, kind in _LAYOUTS[card.card_type]:
        if attr is None:
            value = ""
        elif kind == _TYPE:
            value = card.card_type.value
        elif attr == "english_name":
            value, english = english[: length // 2], english[length // 2 :]
        elif attr == "english_name+":
            value, english = english, ""
        else:
            raw = getattr(card, attr)
            if isinstance(raw, date):
                value = raw.strftime("%Y%m%d")
            elif raw is None:
                value = LONG_TERM
            else:
                value = str(raw)
        parts.append(_encode_field(value, length, attr or "reserved"))
    if english:
        raise IdCardFormatError("card field 'english_name' is too long for its layout")
    block = b"".join(parts)
    if len(block) != TEXT_LENGTH:  # pragma: no cover - layouts are fixed
        raise IdCardFormatError(f"layout {card.card_type.name} encodes to {len(block)} bytes")
    return block


def layout_fields(card_type: CardType) -> tuple[tuple[str, int], ...]:
    """(field, byte length) of a layout, reserved areas named "reserved"."""
    return tuple((attr or "reserved", length) for attr, length, _ in _LAYOUTS[card_type])
