"""Keyboard-wedge decoding: key events -> code bytes, payload formats, the keymap."""

from __future__ import annotations

import evdev
import pytest
from evdev import ecodes
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import scanner_keys as keys
from devices.errors import DeviceConfigError, ScannerOverflowError, ScannerPayloadError
from devices.scanner_keys import (
    PRESS,
    RELEASE,
    KeyDecoder,
    decode_typed,
    encode_typed,
    key_strokes,
)

LICENCE = "营业执照 91340100MA2NXXXX1X 黄山市测试有限公司"


def run(decoder: KeyDecoder, strokes: list[tuple[int, int]], start: float = 100.0) -> list[bytes]:
    """Feed strokes as real evdev events 1 ms apart; the codes that came out."""
    out: list[bytes] = []
    for i, (code, value) in enumerate(strokes):
        t = start + i / 1000
        event = evdev.InputEvent(int(t), int(t % 1 * 1_000_000), ecodes.EV_KEY, code, value)
        typed = decoder.feed(event)
        if typed is not None:
            out.append(typed)
    return out


def tap(code: int) -> list[tuple[int, int]]:
    return [(code, PRESS), (code, RELEASE)]


def test_key_codes_match_the_kernel_abi() -> None:
    names = [n for n in dir(keys) if n.startswith("KEY_") and isinstance(getattr(keys, n), int)]
    assert len(names) > 30
    for name in names:
        assert getattr(keys, name) == getattr(ecodes, name), name
    assert keys.EV_KEY == ecodes.EV_KEY


def test_lowercase_digits_and_enter() -> None:
    strokes = [*tap(ecodes.KEY_A), *tap(ecodes.KEY_B), *tap(ecodes.KEY_1), *tap(ecodes.KEY_0)]
    assert run(KeyDecoder(), [*strokes, *tap(ecodes.KEY_ENTER)]) == [b"ab10"]


def test_shift_gives_capitals_and_symbols_and_release_ends_it() -> None:
    strokes = [
        (ecodes.KEY_LEFTSHIFT, PRESS),
        *tap(ecodes.KEY_H),
        *tap(ecodes.KEY_1),
        *tap(ecodes.KEY_SLASH),
        (ecodes.KEY_LEFTSHIFT, RELEASE),
        *tap(ecodes.KEY_H),
        (ecodes.KEY_RIGHTSHIFT, PRESS),
        *tap(ecodes.KEY_SEMICOLON),
        (ecodes.KEY_RIGHTSHIFT, RELEASE),
        *tap(ecodes.KEY_SEMICOLON),
        *tap(ecodes.KEY_KPENTER),
    ]
    assert run(KeyDecoder(), strokes) == [b"H!?h:;"]


def test_every_printable_ascii_character_round_trips() -> None:
    printable = bytes(range(0x20, 0x7F))
    assert run(KeyDecoder(), key_strokes(printable)) == [printable]


def test_punctuation_on_a_url() -> None:
    url = b"https://zwfw.example.gov.cn/v?id=A-1_2&x=[3]{4}~`'\"|\\<>,.%"
    assert run(KeyDecoder(), key_strokes(url)) == [url]


def test_caps_lock_inverts_letters_only() -> None:
    strokes = [
        *tap(ecodes.KEY_CAPSLOCK),
        *tap(ecodes.KEY_A),
        (ecodes.KEY_LEFTSHIFT, PRESS),
        *tap(ecodes.KEY_B),
        *tap(ecodes.KEY_2),
        (ecodes.KEY_LEFTSHIFT, RELEASE),
        *tap(ecodes.KEY_3),
        *tap(ecodes.KEY_CAPSLOCK),
        *tap(ecodes.KEY_C),
        *tap(ecodes.KEY_ENTER),
    ]
    assert run(KeyDecoder(), strokes) == [b"Ab@3c"]


def test_keypad_digits_and_signs() -> None:
    strokes = [
        *tap(ecodes.KEY_NUMLOCK),
        *tap(ecodes.KEY_KP4),
        *tap(ecodes.KEY_KPDOT),
        *tap(ecodes.KEY_KP2),
        *tap(ecodes.KEY_KPPLUS),
        *tap(ecodes.KEY_KPMINUS),
        *tap(ecodes.KEY_KPASTERISK),
        *tap(ecodes.KEY_KPSLASH),
        *tap(ecodes.KEY_KPENTER),
    ]
    assert run(KeyDecoder(), strokes) == [b"4.2+-*/"]


def test_ctrl_bracket_gives_gs1_group_separator() -> None:
    strokes = [
        *tap(ecodes.KEY_0),
        *tap(ecodes.KEY_1),
        (ecodes.KEY_LEFTCTRL, PRESS),
        *tap(ecodes.KEY_RIGHTBRACE),
        (ecodes.KEY_LEFTCTRL, RELEASE),
        *tap(ecodes.KEY_9),
        *tap(ecodes.KEY_ENTER),
    ]
    assert run(KeyDecoder(), strokes) == [b"01\x1d9"]


def test_alt_numpad_codes_bytes_and_gbk_double_byte() -> None:
    def alt(number: str) -> list[tuple[int, int]]:
        digits = [getattr(ecodes, f"KEY_KP{d}") for d in number]
        pressed = [s for d in digits for s in tap(d)]
        return [(ecodes.KEY_LEFTALT, PRESS), *pressed, (ecodes.KEY_LEFTALT, RELEASE)]

    # 中 is GBK D6 D0 = 54992; 文 is CE C4 = 52932 (what Chinese Windows types for Alt+n).
    strokes = [*tap(ecodes.KEY_X), *alt("54992"), *alt("52932"), *tap(ecodes.KEY_ENTER)]
    (typed,) = run(KeyDecoder(), strokes)
    assert typed == b"x\xd6\xd0\xce\xc4"
    assert decode_typed(typed, "text") == ("x中文", typed, "gb18030")
    # UTF-8 bytes one by one as Alt+0nnn decode as UTF-8.
    utf8 = "é中".encode()
    strokes = [s for byte in utf8 for s in alt(f"{byte:04d}")] + tap(ecodes.KEY_ENTER)
    (typed,) = run(KeyDecoder(), strokes)
    assert decode_typed(typed, "text")[0] == "é中"


def test_alt_code_zero_is_reported_at_the_terminator() -> None:
    strokes = [
        (ecodes.KEY_LEFTALT, PRESS),
        *tap(ecodes.KEY_KP0),
        (ecodes.KEY_LEFTALT, RELEASE),
        *tap(ecodes.KEY_ENTER),
    ]
    with pytest.raises(ScannerPayloadError, match="Alt code 0"):
        run(KeyDecoder(), strokes)


def test_tab_terminator_and_tab_inside_an_enter_terminated_code() -> None:
    strokes = [*tap(ecodes.KEY_A), *tap(ecodes.KEY_TAB), *tap(ecodes.KEY_B)]
    assert run(KeyDecoder(suffix="tab"), strokes) == [b"a"]
    assert run(KeyDecoder(), [*strokes, *tap(ecodes.KEY_ENTER)]) == [b"a\tb"]
    # With Tab as terminator, Enter is just a key without a character.
    with pytest.raises(ScannerPayloadError, match="key code 28"):
        run(KeyDecoder(suffix="tab"), [*tap(ecodes.KEY_ENTER), *tap(ecodes.KEY_TAB)])


def test_empty_enter_gives_nothing_and_codes_come_one_by_one() -> None:
    strokes = [*tap(ecodes.KEY_ENTER), *key_strokes(b"A1"), *key_strokes(b"B2")]
    assert run(KeyDecoder(), strokes) == [b"A1", b"B2"]


def test_non_key_events_and_autorepeat_are_ignored() -> None:
    decoder = KeyDecoder()
    syn = evdev.InputEvent(1, 0, ecodes.EV_SYN, 0, 0)
    msc = evdev.InputEvent(1, 0, ecodes.EV_MSC, ecodes.MSC_SCAN, 0x70004)
    assert decoder.feed(syn) is None
    assert decoder.feed(msc) is None
    strokes = [(ecodes.KEY_A, PRESS), (ecodes.KEY_A, 2), (ecodes.KEY_A, RELEASE)]
    assert run(decoder, [*strokes, *tap(ecodes.KEY_ENTER)]) == [b"a"]


def test_unknown_key_is_an_error_naming_it_and_the_next_code_is_clean() -> None:
    decoder = KeyDecoder()
    with pytest.raises(ScannerPayloadError, match=f"key code {ecodes.KEY_F5}"):
        run(decoder, [*tap(ecodes.KEY_A), *tap(ecodes.KEY_F5), *tap(ecodes.KEY_ENTER)])
    assert run(decoder, key_strokes(b"ok")) == [b"ok"]


def test_overlong_code_is_discarded_with_an_error_then_decoding_resumes() -> None:
    decoder = KeyDecoder(max_length=8)
    with pytest.raises(ScannerOverflowError, match="longer than 8 bytes"):
        run(decoder, key_strokes(b"123456789"))
    assert decoder.pending == 0
    assert run(decoder, key_strokes(b"12345678")) == [b"12345678"]


def test_half_typed_code_is_dropped_after_the_key_timeout() -> None:
    decoder = KeyDecoder(key_timeout=0.5)
    assert run(decoder, tap(ecodes.KEY_X), start=10.0) == []
    assert decoder.pending == 1
    assert run(decoder, key_strokes(b"fresh"), start=20.0) == [b"fresh"]


def test_keys_within_the_timeout_stay_one_code() -> None:
    decoder = KeyDecoder(key_timeout=0.5)
    assert run(decoder, tap(ecodes.KEY_X), start=10.0) == []
    assert run(decoder, key_strokes(b"y"), start=10.3) == [b"xy"]


def test_hex_mode_decodes_chinese_utf8() -> None:
    typed = encode_typed(LICENCE, "hex")
    assert typed.startswith(b"E890A5")  # 营 = E8 90 A5
    (got,) = run(KeyDecoder(), key_strokes(typed))
    text, raw, encoding = decode_typed(got, "hex")
    assert text == LICENCE
    assert raw == LICENCE.encode("utf-8")
    assert encoding == "utf-8"


def test_hex_mode_accepts_lowercase_and_spaces() -> None:
    assert decode_typed(b"e4 b8 ad e6 96 87", "hex")[0] == "中文"


def test_hex_mode_odd_length_is_named() -> None:
    with pytest.raises(ScannerPayloadError, match=r"odd number of hex digits \(5\)"):
        decode_typed(b"E890A", "hex")


def test_hex_mode_non_hex_character_gives_its_position() -> None:
    with pytest.raises(ScannerPayloadError, match="character 3 is not a hex digit"):
        decode_typed(b"E8G0A5", "hex")


def test_base64_mode_round_trip_and_error() -> None:
    typed = encode_typed(LICENCE, "base64")
    (got,) = run(KeyDecoder(), key_strokes(typed))
    assert decode_typed(got, "base64")[0] == LICENCE
    with pytest.raises(ScannerPayloadError, match="not valid base64"):
        decode_typed(b"5Lit5p*H", "base64")


def test_text_mode_gb18030_bytes() -> None:
    raw = "黄山市".encode("gb18030")
    assert decode_typed(raw, "text") == ("黄山市", raw, "gb18030")


def test_bad_options_are_named() -> None:
    with pytest.raises(DeviceConfigError, match="'space'"):
        KeyDecoder(suffix="space")
    with pytest.raises(DeviceConfigError, match="'rot13'"):
        decode_typed(b"x", "rot13")
    with pytest.raises(DeviceConfigError, match="max_length 0"):
        KeyDecoder(max_length=0)


@settings(max_examples=60, deadline=None)
@given(
    st.text(
        st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(["text", "hex", "base64"]),
)
def test_any_text_survives_typing_in_every_mode(text: str, payload: str) -> None:
    (typed,) = run(KeyDecoder(), key_strokes(encode_typed(text, payload)))
    decoded, raw, _ = decode_typed(typed, payload)
    assert raw == text.encode("utf-8")
    assert decoded == text.removeprefix("\ufeff")
