"""SAM (安全模块, "SAM_V") serial protocol of second-generation ID-card readers.

This is the frame layer that every GA 467-conformant reader module speaks on its
UART/USB-serial port, as documented in vendors' SAM module manuals.

Frame::

    AA AA AA 96 69 | LEN1 LEN2 | payload (LEN-1 bytes) | CHK

* preamble ``AA AA AA 96 69`` (5 bytes);
* ``LEN`` big-endian = number of bytes after it, i.e. payload + the checksum byte;
* ``CHK`` = XOR of every byte after the preamble up to, not including, ``CHK``
  (the two length bytes and the payload).

Host -> module payload: ``CMD PARA [data]``. Module -> host payload:
``SW1 SW2 SW3 [data]`` with ``SW1 SW2 = 00 00`` and ``SW3`` the status.
Examples (checksums verified in the tests)::

    find   AA AA AA 96 69 00 03 20 01 22      -> ... 00 08 00 00 9F 00 00 00 00 97
    select AA AA AA 96 69 00 03 20 02 21      -> ... 00 0C 00 00 90 <8 bytes> CHK
    read   AA AA AA 96 69 00 03 30 01 32      -> ... 05 08 00 00 90 01 00 04 00
                                                     <256 text> <1024 photo> CHK
    no card                                   -> ... 00 04 00 00 80 84

The read response data is ``text length (2, BE) | photo length (2, BE) | text | photo``;
``30 10`` (read with fingerprint) adds ``fingerprint length (2, BE)`` after the photo
length and the fingerprint bytes at the end.

Status ``SW3`` (the SAM module manuals' table): 90 ok, 9F card found, 91 no such item
on the card, 10 checksum error in the request, 11 length error in the request,
21 bad command, 23 not permitted, 24 unrecognised error, 31 card failed to
authenticate the SAM, 32 SAM failed to authenticate the card, 33 information check
failed, 40 unknown card type, 41 read failed, 47 random number failed, 60 SAM self
test failed, 66 SAM not authorised, 80 no card found, 81 card select failed.

API
---
``PREAMBLE``, ``MAX_LENGTH``, ``Command(cmd, para)`` with ``FIND``, ``SELECT``, ``READ``,
``READ_WITH_FINGERPRINT``, ``SAM_STATUS``, ``SAM_ID``, ``RESET``;
``STATUS_OK=0x90``, ``STATUS_FOUND=0x9F``, ``STATUS_TEXT: Mapping[int, str]``
``xor_checksum(data) -> int``
``build_frame(payload) -> bytes``, ``parse_frame(frame) -> bytes`` (payload)
``build_command(command, data=b"") -> bytes``, ``parse_command(frame) -> (Command, bytes)``
``build_response(status, data=b"") -> bytes``, ``parse_response(frame) -> Response``
``Response(sw1, sw2, sw3, data)`` with ``.check(expected, action)`` raising by status:
    80/81 -> ``IdCardNotFoundError``; anything else unexpected -> ``IdCardReadError``
``read_frame(read: Callable[[int], bytes], *, max_skip=64) -> bytes``  one frame off a
    byte stream; skips line noise before the preamble; ``DeviceIOError`` on silence.
Every malformed frame raises ``FrameError`` with the offending byte values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, NamedTuple

from devices.errors import (
    DeviceIOError,
    FrameError,
    IdCardNotFoundError,
    IdCardReadError,
)

PREAMBLE: Final = b"\xaa\xaa\xaa\x96\x69"
HEADER_LEN: Final = len(PREAMBLE) + 2
# The largest real response (text + photo + fingerprint) is 0x090A bytes.
MAX_LENGTH: Final = 0x1000
MIN_LENGTH: Final = 2  # one payload byte and the checksum

STATUS_OK: Final = 0x90
STATUS_FOUND: Final = 0x9F
STATUS_NO_CONTENT: Final = 0x91
STATUS_NO_CARD: Final = 0x80
STATUS_SELECT_FAILED: Final = 0x81
STATUS_READ_FAILED: Final = 0x41
STATUS_BAD_CHECKSUM: Final = 0x10
STATUS_BAD_LENGTH: Final = 0x11
STATUS_BAD_COMMAND: Final = 0x21

STATUS_TEXT: Final[Mapping[int, str]] = MappingProxyType(
    {
        0x90: "ok",
        0x91: "no such item on the card",
        0x9F: "card found",
        0x10: "request checksum error",
        0x11: "request length error",
        0x21: "bad command",
        0x23: "operation not permitted",
        0x24: "unrecognised error",
        0x31: "card failed to authenticate the SAM",
        0x32: "SAM failed to authenticate the card",
        0x33: "information check failed",
        0x40: "unknown card type",
        0x41: "card read failed",
        0x47: "random number failed",
        0x60: "SAM self test failed",
        0x66: "SAM not authorised",
        0x80: "no card found",
        0x81: "card select failed",
    }
)


class Command(NamedTuple):
    cmd: int
    para: int

    def __str__(self) -> str:
        return f"{self.cmd:02X} {self.para:02X}"


FIND: Final = Command(0x20, 0x01)
SELECT: Final = Command(0x20, 0x02)
READ: Final = Command(0x30, 0x01)
READ_WITH_FINGERPRINT: Final = Command(0x30, 0x10)
SAM_STATUS: Final = Command(0x11, 0xFF)
SAM_ID: Final = Command(0x12, 0xFF)
RESET: Final = Command(0x10, 0xFF)


def _hex(data: bytes) -> str:
    return data.hex(" ").upper()


def status_text(status: int) -> str:
    return STATUS_TEXT.get(status, "unknown status")


def xor_checksum(data: bytes) -> int:
    """XOR of all bytes (0 for no bytes)."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def build_frame(payload: bytes) -> bytes:
    """Wrap ``payload`` in preamble, length and checksum."""
    length = len(payload) + 1
    if length > MAX_LENGTH or not payload:
        raise FrameError(f"payload of {len(payload)} bytes cannot be framed")
    body = length.to_bytes(2, "big") + payload
    return PREAMBLE + body + bytes([xor_checksum(body)])


def parse_frame(frame: bytes) -> bytes:
    """Check preamble, length and checksum of one whole frame; return the payload."""
    if len(frame) < HEADER_LEN + MIN_LENGTH:
        raise FrameError(
            f"frame too short: {len(frame)} bytes, need at least {HEADER_LEN + MIN_LENGTH}"
            f" (got {_hex(frame[:16])})"
        )
    if frame[: len(PREAMBLE)] != PREAMBLE:
        raise FrameError(f"bad preamble {_hex(frame[: len(PREAMBLE)])}, expected {_hex(PREAMBLE)}")
    length = int.from_bytes(frame[5:7], "big")
    _check_length(length, frame[5:7])
    actual = len(frame) - HEADER_LEN
    if actual != length:
        kind = "truncated" if actual < length else "overlong"
        raise FrameError(
            f"{kind} frame: length bytes {_hex(frame[5:7])} declare {length} bytes, got {actual}"
        )
    body = frame[5:-1]
    expected = xor_checksum(body)
    if frame[-1] != expected:
        raise FrameError(f"bad checksum 0x{frame[-1]:02X}, expected 0x{expected:02X}")
    return body[2:]


def _check_length(length: int, raw: bytes) -> None:
    if length < MIN_LENGTH or length > MAX_LENGTH:
        raise FrameError(
            f"length bytes {_hex(raw)} declare {length} bytes, outside {MIN_LENGTH}..{MAX_LENGTH}"
        )


def build_command(command: Command, data: bytes = b"") -> bytes:
    return build_frame(bytes([command.cmd, command.para]) + data)


def parse_command(frame: bytes) -> tuple[Command, bytes]:
    payload = parse_frame(frame)
    if len(payload) < 2:
        raise FrameError(f"command payload {_hex(payload)} is shorter than CMD PARA")
    return Command(payload[0], payload[1]), payload[2:]


@dataclass(frozen=True, slots=True)
class Response:
    """A module's answer: status words and data."""

    sw1: int
    sw2: int
    sw3: int
    data: bytes

    @property
    def status(self) -> int:
        return self.sw3

    def __repr__(self) -> str:
        # ``data`` may hold a citizen's card: never print it.
        return (
            f"Response(sw={self.sw1:02X} {self.sw2:02X} {self.sw3:02X}, "
            f"{len(self.data)} data bytes)"
        )

    def check(self, expected: int, action: str) -> None:
        """Raise the named error for this status unless it is ``expected``."""
        if self.sw3 == expected and self.sw1 == 0 and self.sw2 == 0:
            return
        message = (
            f"{action}: reader status {self.sw1:02X} {self.sw2:02X} {self.sw3:02X} "
            f"(0x{self.sw3:02X} {status_text(self.sw3)}), expected 0x{expected:02X}"
        )
        if self.sw3 in (STATUS_NO_CARD, STATUS_SELECT_FAILED):
            raise IdCardNotFoundError(message)
        raise IdCardReadError(message)


def build_response(status: int, data: bytes = b"", *, sw1: int = 0, sw2: int = 0) -> bytes:
    return build_frame(bytes([sw1, sw2, status]) + data)


def parse_response(frame: bytes) -> Response:
    payload = parse_frame(frame)
    if len(payload) < 3:
        raise FrameError(f"response payload {_hex(payload)} is shorter than SW1 SW2 SW3")
    return Response(payload[0], payload[1], payload[2], payload[3:])


def read_frame(read: Callable[[int], bytes], *, max_skip: int = 64) -> bytes:
    """Read one frame from a byte stream (``serial.Serial.read``-like, may return short).

    Bytes before the preamble are skipped (some modules emit a stray byte after
    power-up), at most ``max_skip`` of them. Silence before the first byte raises
    :class:`DeviceIOError`; a frame cut short raises :class:`FrameError`.
    """
    window = b""
    skipped = 0
    while window != PREAMBLE:
        byte = read(1)
        if not byte:
            if not window and not skipped:
                raise DeviceIOError("no response from the ID-card reader (timeout)")
            raise FrameError(
                f"truncated frame: stream ended after {_hex(window)} while looking for "
                f"{_hex(PREAMBLE)}"
            )
        window = (window + byte)[-len(PREAMBLE) :]
        if len(window) == len(PREAMBLE) and window != PREAMBLE:
            skipped += 1
            if skipped > max_skip:
                raise FrameError(f"no preamble within {max_skip} bytes (last seen {_hex(window)})")
    raw_len = _read_exact(read, 2, "length")
    length = int.from_bytes(raw_len, "big")
    _check_length(length, raw_len)
    body = _read_exact(read, length, "body")
    return PREAMBLE + raw_len + body


def _read_exact(read: Callable[[int], bytes], count: int, what: str) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < count:
        chunk = read(count - got)
        if not chunk:
            raise FrameError(f"truncated frame: {what} needs {count} bytes, got {got}")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class CardPayload:
    """The parts of a read response's data."""

    text: bytes
    photo: bytes
    fingerprint: bytes

    def __repr__(self) -> str:
        return (
            f"CardPayload(text={len(self.text)} bytes, photo={len(self.photo)} bytes, "
            f"fingerprint={len(self.fingerprint)} bytes)"
        )


def split_card_data(data: bytes, *, fingerprint: bool = False) -> CardPayload:
    """Split ``text len | photo len | [fp len] | text | photo | [fp]`` (lengths BE)."""
    header = 6 if fingerprint else 4
    if len(data) < header:
        raise FrameError(f"card data of {len(data)} bytes has no {header}-byte length header")
    text_len = int.from_bytes(data[0:2], "big")
    photo_len = int.from_bytes(data[2:4], "big")
    fp_len = int.from_bytes(data[4:6], "big") if fingerprint else 0
    total = header + text_len + photo_len + fp_len
    if total != len(data):
        raise FrameError(
            f"card data lengths {_hex(data[:header])} add up to {total} bytes, got {len(data)}"
        )
    text_end = header + text_len
    photo_end = text_end + photo_len
    return CardPayload(data[header:text_end], data[text_end:photo_end], data[photo_end:])
