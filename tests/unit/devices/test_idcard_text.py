"""Card text blocks: every layout, type byte at 248, 长期, format errors, fuzzing."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.errors import IdCardFormatError
from devices.idcard_text import (
    LONG_TERM,
    TEXT_LENGTH,
    TYPE_OFFSET,
    CardType,
    Gender,
    IdCardData,
    card_type_of,
    encode_text,
    layout_fields,
    parse_text,
)
from devices.idnumber import validate_id_number
from devices.sim.idcard import fixture_card


def field_at(block: bytes, start: int, length: int) -> str:
    return block[start : start + length].decode("utf-16-le").strip()


@pytest.mark.parametrize("card_type", list(CardType))
def test_layouts_are_256_bytes_with_type_at_248(card_type: CardType) -> None:
    fields = layout_fields(card_type)
    assert sum(length for _, length in fields) == TEXT_LENGTH
    offset = 0
    for name, length in fields:
        if name == "card_type":
            assert offset == TYPE_OFFSET
        offset += length


@pytest.mark.parametrize("card_type", list(CardType))
def test_round_trip(card_type: CardType) -> None:
    card = fixture_card(card_type)
    block = encode_text(card)
    assert len(block) == TEXT_LENGTH
    assert card_type_of(block) is card_type
    assert parse_text(block, photo=card.photo_wlt) == card


def test_resident_layout_offsets() -> None:
    card = fixture_card(CardType.RESIDENT)
    block = encode_text(card)
    assert field_at(block, 0, 30) == card.name
    assert field_at(block, 30, 2) == "2"
    assert field_at(block, 32, 4) == "01"
    assert field_at(block, 36, 16) == "19580314"
    assert field_at(block, 52, 70) == card.address
    assert field_at(block, 122, 36) == card.id_number
    assert field_at(block, 158, 30) == card.authority
    assert field_at(block, 188, 16) == "20160520"
    assert field_at(block, 204, 16) == LONG_TERM
    assert block[248:250] == " ".encode("utf-16-le")
    parsed = parse_text(block)
    assert parsed.valid_to is None
    assert parsed.nation == "汉"
    assert parsed.gender is Gender.FEMALE


def test_resident_block_with_zero_reserved_area() -> None:
    block = encode_text(fixture_card(CardType.RESIDENT))
    zeroed = block[:220] + bytes(36)
    assert parse_text(zeroed).card_type is CardType.RESIDENT


def test_hmt_permit_offsets() -> None:
    card = fixture_card(CardType.HMT_RESIDENCE)
    block = encode_text(card)
    assert field_at(block, 32, 4) == ""
    assert field_at(block, 220, 18) == "H60000000"
    assert field_at(block, 238, 4) == "01"
    assert block[248:250] == "J".encode("utf-16-le")
    parsed = parse_text(block)
    assert (parsed.pass_number, parsed.issue_count, parsed.nation_code) == ("H60000000", "01", "")
    assert parsed.valid_to == date(2024, 7, 1)


def test_foreigner_2017_offsets() -> None:
    card = fixture_card(CardType.FOREIGNER_2017)
    block = encode_text(card)
    assert field_at(block, 0, 120) == "SAMPLE, TEST PERSON"
    assert field_at(block, 122, 30) == "USA000085061599"
    assert field_at(block, 152, 6) == "USA"
    assert field_at(block, 158, 30) == "样例"
    assert field_at(block, 220, 16) == "19850615"
    assert field_at(block, 236, 4) == "01"
    assert block[248:250] == "I".encode("utf-16-le")


def test_foreigner_2023_english_name_spans_two_fields() -> None:
    card = fixture_card(CardType.FOREIGNER_2023)
    assert len(card.english_name) > 35
    block = encode_text(card)
    assert field_at(block, 0, 30) == "样例"
    assert field_at(block, 52, 70) == card.english_name[:35].strip()
    assert field_at(block, 122, 36) == card.id_number
    assert field_at(block, 220, 22) == card.english_name[35:].strip()
    assert field_at(block, 242, 6) == "USA"
    assert block[248:250] == "Y".encode("utf-16-le")
    assert parse_text(block).english_name == card.english_name


@pytest.mark.parametrize(
    "card_type", [CardType.RESIDENT, CardType.HMT_RESIDENCE, CardType.FOREIGNER_2023]
)
def test_fixture_numbers_pass_gb11643(card_type: CardType) -> None:
    validate_id_number(fixture_card(card_type).id_number, today=date(2024, 1, 1))


def test_unknown_type_byte_is_named() -> None:
    block = bytearray(encode_text(fixture_card()))
    block[248:250] = "X".encode("utf-16-le")
    with pytest.raises(IdCardFormatError, match="unknown card type bytes 58 00 at text offset 248"):
        parse_text(bytes(block))


def test_wrong_block_length() -> None:
    with pytest.raises(IdCardFormatError, match="255 bytes, expected 256"):
        parse_text(bytes(255))


def test_bad_date_names_field_not_value() -> None:
    block = bytearray(encode_text(fixture_card()))
    block[36:52] = "19581399".encode("utf-16-le")
    with pytest.raises(IdCardFormatError, match="'birth_date' is not a valid calendar date") as e:
        parse_text(bytes(block))
    assert "19581399" not in str(e.value)


def test_bad_gender_code() -> None:
    block = bytearray(encode_text(fixture_card()))
    block[30:32] = "7".encode("utf-16-le")
    with pytest.raises(IdCardFormatError, match="'gender'"):
        parse_text(bytes(block))


def test_unpaired_surrogate_is_a_format_error() -> None:
    block = bytearray(encode_text(fixture_card()))
    block[0:2] = b"\x00\xd8"
    with pytest.raises(IdCardFormatError, match="'name' is not valid UCS-2"):
        parse_text(bytes(block))


def test_field_too_long_to_encode() -> None:
    card = replace(fixture_card(), name="名" * 16)
    with pytest.raises(IdCardFormatError, match="'name' needs 32 bytes, only 30 fit"):
        encode_text(card)
    long_english = replace(fixture_card(CardType.FOREIGNER_2023), english_name="A" * 47)
    with pytest.raises(IdCardFormatError, match="english_name"):
        encode_text(long_english)


def test_repr_hides_personal_data() -> None:
    card = fixture_card()
    text = repr(card) + str(card)
    for secret in (card.name, card.address, card.id_number, "1958"):
        assert secret not in text
    assert card.masked_number in text
    assert isinstance(card, IdCardData)


@given(st.binary(min_size=TEXT_LENGTH, max_size=TEXT_LENGTH))
def test_random_blocks_raise_only_format_errors(block: bytes) -> None:
    try:
        parse_text(block)
    except IdCardFormatError:
        pass


@given(st.sampled_from([" ", "J", "I", "Y"]), st.binary(min_size=248, max_size=248))
def test_random_blocks_of_each_type_raise_only_format_errors(kind: str, head: bytes) -> None:
    block = head + kind.encode("utf-16-le") + bytes(6)
    try:
        parse_text(block)
    except IdCardFormatError:
        pass
