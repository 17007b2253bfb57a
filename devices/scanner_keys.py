"""Keyboard-wedge scanner decoding: Linux key events -> the bytes of one scanned code.

Pure logic, no device and no vendor library, so it is tested without hardware and
shared by :mod:`devices.scanner_evdev` and the simulator. Key codes are the Linux
``input-event-codes.h`` values (a stable kernel ABI; a test checks them against
``evdev.ecodes``).

A scanner in keyboard mode "types" its payload on a US layout and ends it with Enter
(or Tab, if so configured). Decoded here:

- printable ASCII with Shift (and Caps Lock, which some scanners press themselves);
- the keypad, assuming Num Lock on;
- Ctrl+letter and Ctrl+[ \\ ] as control bytes (GS1 codes carry GS, 0x1D, as Ctrl+]);
- Alt+numpad codes, which scanners use for anything outside ASCII: a value up to 255
  is one byte (``Alt+0233``), a larger one a double-byte code page character as on
  Chinese Windows (``Alt+54992`` = GBK ``D6 D0`` = 中). The collected bytes are decoded
  later with :func:`devices.qr.decode_payload` (UTF-8, then GB 18030).

Many Chinese scanners can instead be set to type the payload as hex or base64 of its
UTF-8 bytes, which survives any keyboard layout: :func:`decode_typed` undoes that.

API
---
``KeyEventLike`` protocol: ``type``, ``code``, ``value``, ``sec``, ``usec`` (an
``evdev.InputEvent`` is one).
``KeyDecoder(*, suffix="enter", max_length=4096, key_timeout=1.0)``
    ``feed(event) -> bytes | None``  the typed bytes when a terminator ends a code;
        raises ``ScannerOverflowError`` (longer than ``max_length``, discarded) or
        ``ScannerPayloadError`` (a key with no character) at that terminator.
    ``feed_key(code, value, time) -> bytes | None``  the same without an event object
    ``reset()``, ``pending -> int`` (bytes buffered)
``decode_typed(typed, payload) -> tuple[str, bytes, str]``  (text, payload bytes,
    encoding) for ``payload`` in ``"text" | "hex" | "base64"``; ``ScannerPayloadError`` on
    odd-length or non-hex input and bad base64.
``encode_typed(text, payload) -> bytes``   what a scanner in that mode would type
``key_strokes(typed, *, suffix="enter") -> list[tuple[int, int]]``
    ``(key code, value)`` presses and releases that type ``typed`` and the terminator.
Constants: ``EV_KEY``, ``RELEASE``, ``PRESS``, ``REPEAT``, the ``KEY_*`` codes used.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Final, Literal, Protocol, cast, get_args

from devices.errors import DeviceConfigError, ScannerOverflowError, ScannerPayloadError
from devices.qr import decode_payload

logger = logging.getLogger(__name__)

PayloadFormat = Literal["text", "hex", "base64"]
KeySuffix = Literal["enter", "tab"]
PAYLOAD_FORMATS: Final[tuple[str, ...]] = get_args(PayloadFormat)
KEY_SUFFIXES: Final[tuple[str, ...]] = get_args(KeySuffix)

EV_KEY: Final = 1
RELEASE: Final = 0
PRESS: Final = 1
REPEAT: Final = 2

KEY_ESC: Final = 1
KEY_MINUS: Final = 12
KEY_EQUAL: Final = 13
KEY_BACKSPACE: Final = 14
KEY_TAB: Final = 15
KEY_LEFTBRACE: Final = 26
KEY_RIGHTBRACE: Final = 27
KEY_ENTER: Final = 28
KEY_LEFTCTRL: Final = 29
KEY_SEMICOLON: Final = 39
KEY_APOSTROPHE: Final = 40
KEY_GRAVE: Final = 41
KEY_LEFTSHIFT: Final = 42
KEY_BACKSLASH: Final = 43
KEY_COMMA: Final = 51
KEY_DOT: Final = 52
KEY_SLASH: Final = 53
KEY_RIGHTSHIFT: Final = 54
KEY_KPASTERISK: Final = 55
KEY_LEFTALT: Final = 56
KEY_SPACE: Final = 57
KEY_CAPSLOCK: Final = 58
KEY_NUMLOCK: Final = 69
KEY_KP7: Final = 71
KEY_KP8: Final = 72
KEY_KP9: Final = 73
KEY_KPMINUS: Final = 74
KEY_KP4: Final = 75
KEY_KP5: Final = 76
KEY_KP6: Final = 77
KEY_KPPLUS: Final = 78
KEY_KP1: Final = 79
KEY_KP2: Final = 80
KEY_KP3: Final = 81
KEY_KP0: Final = 82
KEY_KPDOT: Final = 83
KEY_KPENTER: Final = 96
KEY_RIGHTCTRL: Final = 97
KEY_KPSLASH: Final = 98
KEY_RIGHTALT: Final = 100

_LETTER_KEYS: Final = {
    "q": 16, "w": 17, "e": 18, "r": 19, "t": 20, "y": 21, "u": 22, "i": 23, "o": 24,
    "p": 25, "a": 30, "s": 31, "d": 32, "f": 33, "g": 34, "h": 35, "j": 36, "k": 37,
    "l": 38, "z": 44, "x": 45, "c": 46, "v": 47, "b": 48, "n": 49, "m": 50,
}  # fmt: skip
_LETTER_CODES: Final = frozenset(_LETTER_KEYS.values())

# key code -> (unshifted, shifted) on a US layout.
_US_KEYS: Final[dict[int, tuple[str, str]]] = {
    2: ("1", "!"), 3: ("2", "@"), 4: ("3", "#"), 5: ("4", "$"), 6: ("5", "%"),
    7: ("6", "^"), 8: ("7", "&"), 9: ("8", "*"), 10: ("9", "("), 11: ("0", ")"),
    KEY_MINUS: ("-", "_"), KEY_EQUAL: ("=", "+"), KEY_LEFTBRACE: ("[", "{"),
    KEY_RIGHTBRACE: ("]", "}"), KEY_SEMICOLON: (";", ":"), KEY_APOSTROPHE: ("'", '"'),
    KEY_GRAVE: ("`", "~"), KEY_BACKSLASH: ("\\", "|"), KEY_COMMA: (",", "<"),
    KEY_DOT: (".", ">"), KEY_SLASH: ("/", "?"), KEY_SPACE: (" ", " "),
    **{code: (letter, letter.upper()) for letter, code in _LETTER_KEYS.items()},
}  # fmt: skip

_KEYPAD_DIGITS: Final[dict[int, int]] = {
    KEY_KP0: 0, KEY_KP1: 1, KEY_KP2: 2, KEY_KP3: 3, KEY_KP4: 4,
    KEY_KP5: 5, KEY_KP6: 6, KEY_KP7: 7, KEY_KP8: 8, KEY_KP9: 9,
}  # fmt: skip
_KEYPAD_SIGNS: Final[dict[int, str]] = {
    KEY_KPDOT: ".",
    KEY_KPPLUS: "+",
    KEY_KPMINUS: "-",
    KEY_KPASTERISK: "*",
    KEY_KPSLASH: "/",
}
# Ctrl+[ \ ] give ESC, FS, GS as on a terminal; GS separates GS1 fields.
_CTRL_PUNCTUATION: Final[dict[int, int]] = {
    KEY_LEFTBRACE: 0x1B, KEY_BACKSLASH: 0x1C, KEY_RIGHTBRACE: 0x1D,
}  # fmt: skip
_SHIFT_KEYS: Final = frozenset({KEY_LEFTSHIFT, KEY_RIGHTSHIFT})
_CTRL_KEYS: Final = frozenset({KEY_LEFTCTRL, KEY_RIGHTCTRL})
_ALT_KEYS: Final = frozenset({KEY_LEFTALT, KEY_RIGHTALT})
# Keys a scanner may send that carry no character of the code.
_IGNORED_KEYS: Final = frozenset({KEY_NUMLOCK})

# Reverse map for key_strokes(): character -> (key code, shifted).
_CHAR_KEYS: Final[dict[str, tuple[int, bool]]] = {
    char: (code, shifted)
    for code, pair in _US_KEYS.items()
    for shifted, char in ((True, pair[1]), (False, pair[0]))
}
_CTRL_CHARS: Final[dict[int, int]] = {
    **{ord(letter) - 0x60: code for letter, code in _LETTER_KEYS.items()},
    **{byte: code for code, byte in _CTRL_PUNCTUATION.items()},
}
_MAX_ALT_CODE: Final = 0xFFFF


class KeyEventLike(Protocol):
    """What the decoder reads from an input event; ``evdev.InputEvent`` fits."""

    @property
    def type(self) -> int: ...
    @property
    def code(self) -> int: ...
    @property
    def value(self) -> int: ...
    @property
    def sec(self) -> int: ...
    @property
    def usec(self) -> int: ...


def terminator_keys(suffix: str) -> frozenset[int]:
    """Key codes that end a code for a configured suffix ("enter" or "tab")."""
    if suffix == "enter":
        return frozenset({KEY_ENTER, KEY_KPENTER})
    if suffix == "tab":
        return frozenset({KEY_TAB})
    raise DeviceConfigError(f"scanner suffix {suffix!r} is not one of {', '.join(KEY_SUFFIXES)}")


def check_payload_format(payload: str) -> PayloadFormat:
    """``payload`` as a :data:`PayloadFormat`, or :class:`DeviceConfigError` naming it."""
    if payload in PAYLOAD_FORMATS:
        return cast(PayloadFormat, payload)
    raise DeviceConfigError(
        f"scanner payload format {payload!r} is not one of {', '.join(PAYLOAD_FORMATS)}"
    )


class KeyDecoder:
    """Turns a scanner's key presses into the bytes of each code it types."""

    def __init__(
        self, *, suffix: str = "enter", max_length: int = 4096, key_timeout: float = 1.0
    ) -> None:
        if max_length < 1:
            raise DeviceConfigError(f"scanner max_length {max_length} must be at least 1")
        if key_timeout <= 0:
            raise DeviceConfigError(f"scanner key_timeout {key_timeout} must be positive")
        self._terminators = terminator_keys(suffix)
        self._max_length = max_length
        self._key_timeout = key_timeout
        self._buffer = bytearray()
        self._overflow = False
        self._unknown_key: str | None = None
        self._last_time: float | None = None
        self._shift: set[int] = set()
        self._ctrl: set[int] = set()
        self._alt: set[int] = set()
        self._alt_digits = ""
        self._caps = False

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def reset(self) -> None:
        """Forget a half-typed code and every held modifier (e.g. after a reconnect)."""
        self._clear_code()
        self._shift.clear()
        self._ctrl.clear()
        self._alt.clear()
        self._alt_digits = ""
        self._caps = False
        self._last_time = None

    def feed(self, event: KeyEventLike) -> bytes | None:
        if event.type != EV_KEY:
            return None
        return self.feed_key(event.code, event.value, event.sec + event.usec / 1_000_000)

    def feed_key(self, code: int, value: int, time: float) -> bytes | None:
        """One key event; returns a finished code's bytes when ``code`` is a terminator."""
        if self._update_modifier(code, value):
            return None
        # Releases carry nothing; autorepeat only comes from a held key, which a
        # scanner never does, so a repeat is noise rather than a second character.
        if value != PRESS:
            return None
        self._drop_stale(time)
        self._last_time = time
        if code in self._terminators:
            return self._finish()
        if code in _IGNORED_KEYS:
            return None
        if self._alt and code in _KEYPAD_DIGITS:
            self._alt_digits += str(_KEYPAD_DIGITS[code])
            return None
        byte = self._byte_for(code)
        if byte is None:
            if self._unknown_key is None:
                self._unknown_key = f"key code {code}"
            return None
        self._append(bytes([byte]))
        return None

    def _update_modifier(self, code: int, value: int) -> bool:
        """Track Shift, Ctrl, Alt and Caps Lock; ``True`` when ``code`` is one of them."""
        held = value != RELEASE
        if code in _SHIFT_KEYS or code in _CTRL_KEYS:
            group = self._shift if code in _SHIFT_KEYS else self._ctrl
            if held:
                group.add(code)
            else:
                group.discard(code)
            return True
        if code in _ALT_KEYS:
            if held:
                if not self._alt:
                    self._alt_digits = ""
                self._alt.add(code)
            else:
                self._alt.discard(code)
                if not self._alt:
                    self._end_alt_code()
            return True
        if code == KEY_CAPSLOCK:
            if value == PRESS:
                self._caps = not self._caps
            return True
        return False

    def _end_alt_code(self) -> None:
        digits, self._alt_digits = self._alt_digits, ""
        if not digits:
            return
        number = int(digits)
        if number == 0 or number > _MAX_ALT_CODE:
            if self._unknown_key is None:
                self._unknown_key = f"Alt code {digits}"
            return
        self._append(number.to_bytes(1 if number <= 0xFF else 2, "big"))

    def _byte_for(self, code: int) -> int | None:
        if self._ctrl:
            if code in _LETTER_CODES:
                return ord(_US_KEYS[code][0]) - 0x60
            return _CTRL_PUNCTUATION.get(code)
        pair = _US_KEYS.get(code)
        if pair is not None:
            shifted = bool(self._shift)
            if pair[0].isalpha():
                shifted ^= self._caps
            return ord(pair[1] if shifted else pair[0])
        if code in _KEYPAD_DIGITS:
            return ord(str(_KEYPAD_DIGITS[code]))
        sign = _KEYPAD_SIGNS.get(code)
        if sign is not None:
            return ord(sign)
        if code == KEY_TAB:  # only reached when Tab is not the terminator
            return 0x09
        return None

    def _append(self, data: bytes) -> None:
        if self._overflow:
            return
        if len(self._buffer) + len(data) > self._max_length:
            # Keep nothing more of it, but remember, so the terminator reports it.
            self._overflow = True
            self._buffer.clear()
            return
        self._buffer += data

    def _drop_stale(self, time: float) -> None:
        last = self._last_time
        if last is None or time - last <= self._key_timeout:
            return
        if self._buffer or self._overflow or self._unknown_key is not None:
            # A misread that never got its terminator: it must not prefix the next code.
            logger.warning(
                "scanner: dropped %d bytes typed without a terminator (%.1f s idle)",
                len(self._buffer),
                time - last,
            )
            self._clear_code()

    def _clear_code(self) -> None:
        self._buffer.clear()
        self._overflow = False
        self._unknown_key = None

    def _finish(self) -> bytes | None:
        data = bytes(self._buffer)
        overflow, unknown = self._overflow, self._unknown_key
        self._clear_code()
        if overflow:
            raise ScannerOverflowError(
                f"scanned code longer than {self._max_length} bytes was discarded"
            )
        if unknown is not None:
            raise ScannerPayloadError(f"scanner typed {unknown}, which has no character")
        return data or None


def decode_typed(typed: bytes, payload: str) -> tuple[str, bytes, str]:
    """The text of a typed code: ``(text, payload bytes, encoding)``."""
    fmt = check_payload_format(payload)
    if fmt == "hex":
        raw = _from_hex(typed)
    elif fmt == "base64":
        try:
            raw = base64.b64decode(b"".join(typed.split()), validate=True)
        except binascii.Error as err:
            raise ScannerPayloadError(f"scanned code is not valid base64: {err}") from None
    else:
        raw = typed
    text, encoding = decode_payload(raw)
    return text, raw, encoding


def _from_hex(typed: bytes) -> bytes:
    digits = b"".join(typed.split())  # some scanners separate bytes with spaces
    for position, byte in enumerate(digits):
        if byte not in b"0123456789abcdefABCDEF":
            raise ScannerPayloadError(
                f"scanned code is not hex: character {position + 1} is not a hex digit"
            )
    if len(digits) % 2:
        raise ScannerPayloadError(
            f"scanned code has an odd number of hex digits ({len(digits)}); a byte is missing"
        )
    return bytes.fromhex(digits.decode("ascii"))


def encode_typed(text: str, payload: str) -> bytes:
    """What a scanner set to ``payload`` types for ``text`` (UTF-8 underneath)."""
    fmt = check_payload_format(payload)
    raw = text.encode("utf-8")
    if fmt == "hex":
        return raw.hex().upper().encode("ascii")
    if fmt == "base64":
        return base64.b64encode(raw)
    return raw


def key_strokes(typed: bytes, *, suffix: str = "enter") -> list[tuple[int, int]]:
    """Presses and releases a scanner sends for ``typed`` followed by the terminator.

    Bytes outside printable ASCII go as Alt+0nnn on the keypad, one per byte.
    """
    terminator = min(terminator_keys(suffix))
    strokes: list[tuple[int, int]] = []
    for byte in typed:
        char = chr(byte)
        mapped = _CHAR_KEYS.get(char) if byte < 0x80 else None
        if mapped is not None:
            code, shifted = mapped
            if shifted:
                strokes.append((KEY_LEFTSHIFT, PRESS))
            strokes += [(code, PRESS), (code, RELEASE)]
            if shifted:
                strokes.append((KEY_LEFTSHIFT, RELEASE))
        elif byte in _CTRL_CHARS:
            code = _CTRL_CHARS[byte]
            strokes += [(KEY_LEFTCTRL, PRESS), (code, PRESS), (code, RELEASE)]
            strokes.append((KEY_LEFTCTRL, RELEASE))
        else:
            strokes.append((KEY_LEFTALT, PRESS))
            for digit in f"{byte:04d}":
                key = next(k for k, d in _KEYPAD_DIGITS.items() if d == int(digit))
                strokes += [(key, PRESS), (key, RELEASE)]
            strokes.append((KEY_LEFTALT, RELEASE))
    strokes += [(terminator, PRESS), (terminator, RELEASE)]
    return strokes
