"""Fuzzing the ID-card reader's SAM frames and card text, from the serial line up.

Real answers come from the simulator's :class:`SamResponder` (the same bytes a reader
module sends); they are damaged byte-wise (flips, cuts, inserts) and structurally (a
length field or checksum fixed up so the damage reaches the next layer: the card-data
lengths, the 256-byte text block, its dates and codes). Whatever arrives, the reader
path (``read_frame`` -> ``parse_response`` -> ``Response.check`` -> ``split_card_data``
-> ``parse_text`` -> what the kiosk sends) raises only the ``devices`` package's named
errors, never IndexError, ValueError, UnicodeDecodeError or struct.error.
"""

from __future__ import annotations

import dataclasses
import io
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.errors import DeviceError, DeviceIOError, FrameError, IdCardError
from devices.idcard_protocol import (
    FIND,
    HEADER_LEN,
    MAX_LENGTH,
    PREAMBLE,
    READ,
    READ_WITH_FINGERPRINT,
    SELECT,
    STATUS_FOUND,
    STATUS_OK,
    Command,
    build_command,
    build_frame,
    build_response,
    parse_command,
    parse_frame,
    parse_response,
    read_frame,
    split_card_data,
    xor_checksum,
)
from devices.idcard_text import (
    TEXT_LENGTH,
    TYPE_OFFSET,
    CardType,
    Gender,
    IdCardData,
    layout_fields,
    parse_text,
)
from devices.sim.idcard import SamResponder, card_read_data, fixture_card
from signaling.kiosk_readers import id_read_body

EXAMPLES = 200
SLOW_FACTOR = 30


def _answers(card_type: CardType, fingerprint: bool) -> list[bytes]:
    """The three answers of one card read, as the simulated module sends them."""
    card = fixture_card(card_type)
    if fingerprint:
        card = dataclasses.replace(card, fingerprint=bytes(range(256)) * 2)
    responder = SamResponder(card)
    read = READ_WITH_FINGERPRINT if fingerprint else READ
    return [responder.respond(build_command(c)) for c in (FIND, SELECT, read)]


REAL_ANSWERS = {(t, fp): _answers(t, fp) for t in CardType for fp in (False, True)}
card_types = st.sampled_from(list(CardType))


def reader_path(frame: bytes, *, fingerprint: bool = False) -> IdCardData | None:
    """Everything the kiosk does with a read answer; None when the status says no card."""
    response = parse_response(frame)
    response.check(STATUS_OK, "read card")
    payload = split_card_data(response.data, fingerprint=fingerprint)
    card = parse_text(payload.text, photo=payload.photo, fingerprint=payload.fingerprint)
    # What the kiosk logs and sends must not fail either.
    repr(card)
    card.masked_number  # noqa: B018 - a property that parses the number
    id_read_body(card, 1)
    return card


def refit(frame: bytes) -> bytes:
    """Length and checksum made right again around whatever payload ``frame`` carries."""
    payload = frame[HEADER_LEN:-1]
    if not payload or len(payload) + 1 > MAX_LENGTH:
        return frame
    return build_frame(payload)


@st.composite
def damaged(draw: st.DrawFn, frame: bytes) -> bytes:
    """``frame`` with one to four byte-level mutations, sometimes refitted."""
    data = bytearray(frame)
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete", "length",
                                    "dup"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if how == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif how == "cut":
            del data[at:]
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif how == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif how == "length" and len(data) >= HEADER_LEN:
            data[5:7] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
        elif how == "dup":
            data += data[at:]
    out = bytes(data)
    return refit(out) if draw(st.booleans()) and len(out) > HEADER_LEN + 1 else out


def _only_named_errors(frame: bytes, fingerprint: bool) -> None:
    try:
        reader_path(frame, fingerprint=fingerprint)
    except DeviceError:  # FrameError, IdCardError and their kin: named, with a message
        pass


# -- frames ---------------------------------------------------------------------------


@st.composite
def damaged_answer(draw: st.DrawFn) -> tuple[bytes, bool]:
    fingerprint = draw(st.booleans())
    answers = REAL_ANSWERS[(draw(card_types), fingerprint)]
    return draw(damaged(draw(st.sampled_from(answers)))), fingerprint


@settings(max_examples=EXAMPLES, deadline=None)
@given(case=damaged_answer())
def test_damaged_answers_raise_only_named_errors(case: tuple[bytes, bool]) -> None:
    _only_named_errors(*case)


@pytest.mark.slow
@settings(max_examples=EXAMPLES * SLOW_FACTOR, deadline=None)
@given(case=damaged_answer())
def test_damaged_answers_raise_only_named_errors_long(case: tuple[bytes, bool]) -> None:
    _only_named_errors(*case)


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.binary(max_size=600) | st.binary(max_size=600).map(lambda b: PREAMBLE + b),
       fingerprint=st.booleans())
def test_random_bytes_raise_only_named_errors(data: bytes, fingerprint: bool) -> None:
    _only_named_errors(data, fingerprint)
    for parser in (parse_frame, parse_command):
        try:
            parser(data)
        except FrameError:
            pass


@settings(max_examples=100, deadline=None)
@given(card_type=card_types, fingerprint=st.booleans())
def test_real_answers_round_trip(card_type: CardType, fingerprint: bool) -> None:
    found, selected, read = REAL_ANSWERS[(card_type, fingerprint)]
    assert parse_response(found).status == STATUS_FOUND
    assert parse_response(selected).status == STATUS_OK
    card = reader_path(read, fingerprint=fingerprint)
    expected = fixture_card(card_type)
    assert card is not None
    assert (card.id_number, card.name, card.birth_date, card.valid_to, card.photo_wlt) == (
        expected.id_number, expected.name, expected.birth_date, expected.valid_to,
        expected.photo_wlt)


@settings(max_examples=EXAMPLES, deadline=None)
@given(payload=st.binary(min_size=1, max_size=MAX_LENGTH - 1),
       cmd=st.integers(0, 255), para=st.integers(0, 255), status=st.integers(0, 255))
def test_built_frames_round_trip(payload: bytes, cmd: int, para: int, status: int) -> None:
    frame = build_frame(payload)
    assert parse_frame(frame) == payload
    assert frame[-1] == xor_checksum(frame[5:-1])
    data = payload[: MAX_LENGTH - 4]
    assert parse_command(build_command(Command(cmd, para), data)) == (Command(cmd, para), data)
    response = parse_response(build_response(status, data))
    assert (response.status, response.data) == (status, data)


# -- the byte stream ------------------------------------------------------------------


class _Dribble:
    """A serial port's ``read``: short reads of the sizes hypothesis picks, then silence."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._stream = io.BytesIO(data)
        self._sizes = sizes or [1]
        self._i = 0

    def read(self, n: int) -> bytes:
        size = min(n, self._sizes[self._i % len(self._sizes)])
        self._i += 1
        return self._stream.read(max(size, 1))


noise = st.binary(max_size=64).map(lambda b: b.replace(b"\xaa", b"\x55"))


@settings(max_examples=EXAMPLES, deadline=None)
@given(card_type=card_types, fingerprint=st.booleans(), before=noise,
       sizes=st.lists(st.integers(1, 700), max_size=6), after=st.binary(max_size=20))
def test_read_frame_finds_real_answers_in_a_dribbling_stream(
        card_type: CardType, fingerprint: bool, before: bytes, sizes: list[int],
        after: bytes) -> None:
    answers = REAL_ANSWERS[(card_type, fingerprint)]
    port = _Dribble(before + b"".join(answers) + after, sizes)
    assert [read_frame(port.read) for _ in answers] == answers


@settings(max_examples=EXAMPLES, deadline=None)
@given(case=damaged_answer(), before=st.binary(max_size=80),
       sizes=st.lists(st.integers(1, 700), max_size=6))
def test_read_frame_on_damaged_streams_raises_only_named_errors(
        case: tuple[bytes, bool], before: bytes, sizes: list[int]) -> None:
    frame, fingerprint = case
    port = _Dribble(before + frame, sizes)
    try:
        got = read_frame(port.read)
    except (FrameError, DeviceIOError):
        return
    _only_named_errors(got, fingerprint)


# -- the card text block --------------------------------------------------------------

_GOOD_DATES = st.dates(date(1900, 1, 1), date(2099, 12, 31)).map(lambda d: d.strftime("%Y%m%d"))
_BAD_DATES = st.one_of(st.dates().map(lambda d: d.strftime("%Y%m%d")),
                       st.text("0123456789", min_size=8, max_size=8),
                       st.sampled_from(["长期", "00000000", "20230230", "2023-1-1",
                                        "２０２３０１０１", "٢٠٢٣٠١٠١", "        ", ""]))


def _mostly(good: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``good`` seven times in eight; shrinks towards ``good``."""
    return st.integers(0, 7).flatmap(lambda n: bad if n == 7 else good)


_BMP = st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",))
_KIND_OF = {"birth_date": "date", "valid_from": "date", "valid_to": "date", "gender": "gender"}


@st.composite
def text_block(draw: st.DrawFn) -> bytes:
    """A 256-byte block in one layout; most fields plausible, some damaged, so that
    parsing gets past the first field often enough to reach the later ones."""
    card_type = draw(card_types)
    parts: list[bytes] = []
    for attr, length in layout_fields(card_type):
        if attr == "card_type":
            raw = draw(_mostly(st.just(card_type.value), st.sampled_from([" ", "X", "\x00", "长"])))
            parts.append(raw.encode("utf-16-le")[:length].ljust(length, b"\x00"))
            continue
        kind = _KIND_OF.get(attr, "text")
        if draw(st.integers(0, 7)) == 7:  # damage this field (shrinks towards no damage)
            kind = draw(st.sampled_from(["text", "date", "bytes", "gender"]))
        if kind == "text":
            value = draw(st.text(_BMP, max_size=min(length // 2, 12)))
        elif kind == "date":
            value = draw(_mostly(_GOOD_DATES, _BAD_DATES))
        elif kind == "gender":
            value = draw(_mostly(st.sampled_from([g.value for g in Gender]),
                                 st.sampled_from(["3", "男", "", "12"])))
        else:
            parts.append(draw(st.binary(min_size=length, max_size=length)))
            continue
        raw = value.encode("utf-16-le")[:length]
        parts.append(raw + b"\x20\x00" * ((length - len(raw)) // 2) + b"\x00" * (len(raw) % 2))
    block = b"".join(parts)
    assert len(block) == TEXT_LENGTH
    return block


@settings(max_examples=EXAMPLES, deadline=None)
@given(block=text_block(), wrap=st.booleans())
def test_text_blocks_raise_only_named_errors(block: bytes, wrap: bool) -> None:
    if wrap:  # the whole way, in a frame with a good checksum
        data = len(block).to_bytes(2, "big") + (0).to_bytes(2, "big") + block
        _only_named_errors(build_response(STATUS_OK, data), False)
        return
    try:
        card = parse_text(block)
    except IdCardError:
        return
    assert card.card_type.value.encode("utf-16-le") == block[TYPE_OFFSET:TYPE_OFFSET + 2] or \
        card.card_type is CardType.RESIDENT


@st.composite
def resident_card(draw: st.DrawFn) -> IdCardData:
    bmp = st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs", "Zs", "Cc"))
    return IdCardData(
        card_type=CardType.RESIDENT,
        name=draw(st.text(bmp, min_size=1, max_size=15).filter(lambda s: len(
            s.encode("utf-16-le")) <= 30)),
        gender=draw(st.sampled_from(list(Gender))),
        nation_code=draw(st.sampled_from(["01", "02", "56", "97"])),
        birth_date=draw(st.dates(date(1900, 1, 1), date(2099, 12, 31))),
        address=draw(st.text(bmp, min_size=1, max_size=35).filter(lambda s: len(
            s.encode("utf-16-le")) <= 70)),
        id_number=draw(st.text("0123456789X", min_size=18, max_size=18)),
        authority=draw(st.text(bmp, min_size=1, max_size=15).filter(lambda s: len(
            s.encode("utf-16-le")) <= 30)),
        valid_from=draw(st.dates(date(1990, 1, 1), date(2099, 12, 31))),
        valid_to=draw(st.none() | st.dates(date(1990, 1, 1), date(2099, 12, 31))),
        photo_wlt=draw(st.binary(max_size=1024)),
    )


@settings(max_examples=EXAMPLES, deadline=None)
@given(card=resident_card())
def test_resident_cards_round_trip_through_a_read_answer(card: IdCardData) -> None:
    answer = build_response(STATUS_OK, card_read_data(card))
    port = _Dribble(answer, [7, 300])
    assert reader_path(read_frame(port.read)) == card
