"""SAM frame layer: documented byte examples, corrupt frames, statuses, fuzzing."""

from __future__ import annotations

import io

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.errors import (
    DeviceIOError,
    FrameError,
    IdCardError,
    IdCardNotFoundError,
    IdCardReadError,
)
from devices.idcard_protocol import (
    FIND,
    MAX_LENGTH,
    PREAMBLE,
    READ,
    SAM_STATUS,
    SELECT,
    Command,
    Response,
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


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text)


@pytest.mark.parametrize(
    ("command", "frame"),
    [
        (FIND, "AA AA AA 96 69 00 03 20 01 22"),
        (SELECT, "AA AA AA 96 69 00 03 20 02 21"),
        (READ, "AA AA AA 96 69 00 03 30 01 32"),
        (SAM_STATUS, "AA AA AA 96 69 00 03 11 FF ED"),
    ],
)
def test_commands_match_module_manual(command: Command, frame: str) -> None:
    assert build_command(command) == hexbytes(frame)
    assert parse_command(hexbytes(frame)) == (command, b"")


@pytest.mark.parametrize(
    ("status", "data", "frame"),
    [
        (0x9F, bytes(4), "AA AA AA 96 69 00 08 00 00 9F 00 00 00 00 97"),
        (0x80, b"", "AA AA AA 96 69 00 04 00 00 80 84"),
        (0x90, b"", "AA AA AA 96 69 00 04 00 00 90 94"),
        (0x90, bytes(8), "AA AA AA 96 69 00 0C 00 00 90 00 00 00 00 00 00 00 00 9C"),
    ],
)
def test_responses_match_module_manual(status: int, data: bytes, frame: str) -> None:
    assert build_response(status, data) == hexbytes(frame)
    response = parse_response(hexbytes(frame))
    assert (response.sw1, response.sw2, response.status, response.data) == (0, 0, status, data)


def test_read_response_header_matches_manual() -> None:
    data = (256).to_bytes(2, "big") + (1024).to_bytes(2, "big") + bytes(256 + 1024)
    frame = build_response(0x90, data)
    assert frame[:14] == hexbytes("AA AA AA 96 69 05 08 00 00 90 01 00 04 00")
    assert len(frame) == 1295


def test_checksum_covers_length_and_payload_not_preamble() -> None:
    frame = build_frame(b"\x12\x34")
    assert frame[-1] == 0x00 ^ 0x03 ^ 0x12 ^ 0x34
    assert xor_checksum(b"") == 0
    assert xor_checksum(b"\xff\x0f") == 0xF0


def test_bad_xor_names_both_values() -> None:
    frame = bytearray(build_command(FIND))
    frame[-1] = 0x23
    with pytest.raises(FrameError, match="bad checksum 0x23, expected 0x22"):
        parse_frame(bytes(frame))


def test_flipped_payload_bit_is_a_checksum_error() -> None:
    frame = bytearray(build_command(READ))
    frame[7] ^= 0x01
    with pytest.raises(FrameError, match="checksum"):
        parse_frame(bytes(frame))


def test_truncated_frame_names_declared_and_actual_length() -> None:
    frame = build_response(0x9F, bytes(4))
    with pytest.raises(FrameError, match=r"truncated.*00 08.*declare 8 bytes, got 5"):
        parse_frame(frame[:-3])


def test_overlong_frame() -> None:
    with pytest.raises(FrameError, match="overlong"):
        parse_frame(build_command(FIND) + b"\x00")


def test_wrong_preamble_names_the_bytes() -> None:
    frame = b"\xaa\xaa\xab\x96\x69" + build_command(FIND)[5:]
    with pytest.raises(FrameError, match="bad preamble AA AA AB 96 69, expected AA AA AA 96 69"):
        parse_frame(frame)


def test_too_short() -> None:
    with pytest.raises(FrameError, match="too short: 3 bytes"):
        parse_frame(b"\xaa\xaa\xaa")


@pytest.mark.parametrize("length", [0, 1, MAX_LENGTH + 1, 0xFFFF])
def test_length_out_of_range(length: int) -> None:
    frame = PREAMBLE + length.to_bytes(2, "big") + b"\x00\x00"
    with pytest.raises(FrameError, match=f"declare {length} bytes, outside"):
        parse_frame(frame)


def test_command_frame_is_not_a_response() -> None:
    with pytest.raises(FrameError, match="shorter than SW1 SW2 SW3"):
        parse_response(build_command(FIND))
    with pytest.raises(FrameError, match="shorter than CMD PARA"):
        parse_command(build_frame(b"\x20"))


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (0x80, IdCardNotFoundError),
        (0x81, IdCardNotFoundError),
        (0x41, IdCardReadError),
        (0x31, IdCardReadError),
        (0x33, IdCardReadError),
        (0x60, IdCardReadError),
        (0x91, IdCardReadError),
        (0x10, IdCardReadError),
        (0x5E, IdCardReadError),
    ],
)
def test_each_failure_status_raises_its_error(status: int, error: type[IdCardError]) -> None:
    response = parse_response(build_response(status))
    with pytest.raises(error) as info:
        response.check(0x90, "read card")
    message = str(info.value)
    assert f"0x{status:02X}" in message
    assert f"00 00 {status:02X}" in message
    assert "read card" in message


def test_expected_status_passes_and_nonzero_sw1_fails() -> None:
    parse_response(build_response(0x9F)).check(0x9F, "find")
    with pytest.raises(IdCardReadError, match="01 00 90"):
        parse_response(build_response(0x90, sw1=1)).check(0x90, "read")


def test_response_repr_hides_data() -> None:
    response = Response(0, 0, 0x90, "测试".encode())
    assert "测试" not in repr(response) and "6 data bytes" in repr(response)


def test_split_card_data() -> None:
    data = (4).to_bytes(2, "big") + (2).to_bytes(2, "big") + b"TEXTph"
    parts = split_card_data(data)
    assert (parts.text, parts.photo, parts.fingerprint) == (b"TEXT", b"ph", b"")
    with_fp = data[:4] + (3).to_bytes(2, "big") + b"TEXTphFPX"
    assert split_card_data(with_fp, fingerprint=True).fingerprint == b"FPX"
    with pytest.raises(FrameError, match="add up to 11 bytes, got 10"):
        split_card_data((4).to_bytes(2, "big") + (3).to_bytes(2, "big") + b"TEXTph")
    with pytest.raises(FrameError, match="no 4-byte length header"):
        split_card_data(b"\x01")


def test_read_frame_skips_line_noise() -> None:
    frame = build_response(0x9F, bytes(4))
    stream = io.BytesIO(b"\x00\xaa\x13" + frame + build_command(FIND))
    assert read_frame(stream.read) == frame
    assert read_frame(stream.read) == build_command(FIND)


def test_read_frame_silence_is_an_io_error() -> None:
    with pytest.raises(DeviceIOError, match="no response"):
        read_frame(io.BytesIO(b"").read)


def test_read_frame_gives_up_on_noise() -> None:
    with pytest.raises(FrameError, match="no preamble within 64 bytes"):
        read_frame(io.BytesIO(bytes(200)).read)


def test_read_frame_truncated() -> None:
    with pytest.raises(FrameError, match="truncated frame: body needs 8 bytes, got 3"):
        read_frame(io.BytesIO(build_response(0x9F, bytes(4))[:10]).read)


def test_frames_through_pyserial_loop() -> None:
    port = serial.serial_for_url("loop://", timeout=0.2)
    try:
        frames = [build_command(FIND), build_response(0x90, bytes(range(256)) * 5)]
        for frame in frames:
            port.write(frame)
        assert parse_command(read_frame(port.read)) == (FIND, b"")
        assert parse_response(read_frame(port.read)).data == bytes(range(256)) * 5
        with pytest.raises(DeviceIOError):
            read_frame(port.read)
    finally:
        port.close()


@given(st.binary(min_size=1, max_size=MAX_LENGTH - 1))
def test_build_parse_round_trip(payload: bytes) -> None:
    assert parse_frame(build_frame(payload)) == payload


@settings(max_examples=400)
@given(st.binary(max_size=64) | st.binary(max_size=64).map(lambda b: PREAMBLE + b))
def test_parsers_raise_only_frame_error_on_random_bytes(data: bytes) -> None:
    for parser in (parse_frame, parse_response, parse_command):
        try:
            parser(data)
        except FrameError:
            pass


@settings(max_examples=300)
@given(
    length=st.integers(min_value=0, max_value=0xFFFF),
    body=st.binary(max_size=40),
    noise=st.binary(max_size=80),
)
def test_read_frame_raises_only_frame_errors(length: int, body: bytes, noise: bytes) -> None:
    stream = io.BytesIO(noise + PREAMBLE + length.to_bytes(2, "big") + body)
    try:
        frame = read_frame(stream.read)
    except (FrameError, DeviceIOError):
        return
    try:
        parse_response(frame)
    except FrameError:
        pass
