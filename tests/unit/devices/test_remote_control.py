"""Consented remote control against a real Xvfb: input lands in the kiosk window only,
only after consent, stops at the local key, is rate-limited, and refuses unsafe keys."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator

import pytest

from devices.errors import DeviceError, DeviceIOError, DeviceNotFoundError
from devices.remote_control import (
    InjectOutcome,
    RemoteControl,
    RemoteControlState,
    RemoteControlStatus,
    StopReason,
    TokenBucket,
)
from devices.remote_events import (
    ForbiddenKeyError,
    KeyDown,
    PointerDown,
    PointerUp,
    RemoteControlStateError,
    RemoteEventError,
    check_combo,
    parse_remote_event,
)
from devices.x11 import WindowSpec
from devices.x11_input import StopKeyListener
from tests.unit.devices.xvfb import (
    BLUE,
    GREEN,
    LocalKeyboard,
    Press,
    ProbeWindow,
    XServer,
    xvfb,
)

KIOSK_CLASS = ("vwindow-kiosk", "VWindowKiosk")


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[XServer]:
    with xvfb(640, 480) as x:
        yield x


@pytest.fixture
def kiosk(server: XServer) -> Iterator[ProbeWindow]:
    window = ProbeWindow(server.display, 100, 50, 200, 150, name="kiosk", wm_class=KIOSK_CLASS)
    yield window
    window.close()


@pytest.fixture
def other(server: XServer, kiosk: ProbeWindow) -> Iterator[ProbeWindow]:
    """Right beside the kiosk window: the first pixel past its right edge is this one's."""
    window = ProbeWindow(server.display, 300, 50, 200, 150, colour=BLUE, name="other")
    yield window
    window.close()


@pytest.fixture
def keyboard(server: XServer) -> Iterator[LocalKeyboard]:
    board = LocalKeyboard(server.display)
    yield board
    board.close()


def make_control(server: XServer, **options: object) -> RemoteControl:
    return RemoteControl(display=server.display, window=WindowSpec(wm_class=KIOSK_CLASS[0]),
                         session_id="test-session", **options)  # type: ignore[arg-type]


@pytest.fixture
async def active(server: XServer, kiosk: ProbeWindow) -> AsyncIterator[RemoteControl]:
    control = make_control(server)
    await control.request("Agent Wang")
    control.grant()
    yield control
    control.stop(StopReason.CALL_ENDED)


def click(control: RemoteControl, x: float, y: float) -> list[InjectOutcome]:
    return [
        control.inject_message({"type": "pointerdown", "x": x, "y": y, "button": "left"}),
        control.inject_message({"type": "pointerup", "x": x, "y": y, "button": "left"}),
    ]


async def test_click_at_the_centre_lands_in_the_kiosk_window(
    active: RemoteControl, kiosk: ProbeWindow, other: ProbeWindow
) -> None:
    assert click(active, 0.5, 0.5) == [InjectOutcome.INJECTED] * 2
    assert kiosk.presses() == [Press(100, 75, 1)]
    assert ("release", 1) in kiosk.collect()
    assert other.input_events() == []
    assert active.status.counts.pointer == 2


async def test_out_of_range_click_is_clamped_inside_and_never_reaches_the_other_window(
    active: RemoteControl, kiosk: ProbeWindow, other: ProbeWindow
) -> None:
    click(active, 1.5, -1)
    click(active, 1.0, 1.0)
    assert kiosk.presses() == [Press(199, 0, 1), Press(199, 149, 1)]
    assert other.input_events() == []


async def test_click_where_another_window_covers_the_kiosk_is_refused(
    server: XServer, active: RemoteControl, kiosk: ProbeWindow
) -> None:
    cover = ProbeWindow(server.display, 150, 100, 100, 50, colour=GREEN, name="dialog")
    try:
        assert click(active, 0.5, 0.5) == [InjectOutcome.OUTSIDE_WINDOW, InjectOutcome.NOT_HELD]
        assert cover.input_events() == []
        assert kiosk.presses() == []
        # The uncovered part of the kiosk window still works.
        click(active, 0.1, 0.1)
        assert kiosk.presses() == [Press(20, 15, 1)]
        assert active.status.counts.refused == 1
    finally:
        cover.close()


async def test_same_class_popup_over_the_kiosk_takes_clicks(
    server: XServer, active: RemoteControl, kiosk: ProbeWindow
) -> None:
    # A browser's drop-down menu: an override-redirect window of the kiosk's class.
    menu = ProbeWindow(server.display, 150, 100, 100, 50, name="menu", wm_class=KIOSK_CLASS,
                       override_redirect=True)
    try:
        click(active, 0.5, 0.5)
        assert menu.presses() == [Press(50, 25, 1)]
        assert kiosk.presses() == []
    finally:
        menu.close()


async def test_without_consent_nothing_is_injected(
    server: XServer, kiosk: ProbeWindow, other: ProbeWindow
) -> None:
    seen: list[RemoteControlStatus] = []
    control = make_control(server, on_change=seen.append)
    with pytest.raises(RemoteControlStateError, match="'idle'"):
        click(control, 0.5, 0.5)
    await control.request("Agent Wang")
    assert control.state is RemoteControlState.AWAITING_CONSENT
    assert seen[-1].agent_name == "Agent Wang" and seen[-1].stop_key == "Pause"
    with pytest.raises(RemoteControlStateError, match="'awaiting_consent'"):
        click(control, 0.5, 0.5)
    control.deny()
    with pytest.raises(RemoteControlStateError, match="'stopped'"):
        click(control, 0.5, 0.5)
    assert kiosk.input_events() == [] and other.input_events() == []
    assert [s.state for s in seen] == ["awaiting_consent", "stopped"]
    assert seen[-1].reason is StopReason.DENIED
    with pytest.raises(RemoteControlStateError):
        control.grant()  # consent cannot be given after the session ended


async def test_unanswered_consent_expires(server: XServer, kiosk: ProbeWindow) -> None:
    control = make_control(server, consent_timeout=0.05)
    await control.request("Agent Wang")
    assert await asyncio.wait_for(control.wait_stopped(), 2) is StopReason.CONSENT_TIMEOUT


async def test_after_stop_nothing_is_injected_and_held_input_is_released(
    active: RemoteControl, kiosk: ProbeWindow, keyboard: LocalKeyboard
) -> None:
    kiosk.focus()
    active.inject(PointerDown(type="pointerdown", x=0.5, y=0.5))
    active.inject(KeyDown(type="keydown", code="ShiftLeft"))
    assert keyboard.is_down("Shift_L")
    active.stop(StopReason.AGENT)
    events = kiosk.input_events()
    assert ("release", 1) in events and ("keyup", "Shift_L") in events
    assert not keyboard.is_down("Shift_L")
    with pytest.raises(RemoteControlStateError):
        active.inject(PointerDown(type="pointerdown", x=0.5, y=0.5))
    assert kiosk.presses() == [Press(100, 75, 1)]  # only the one from before the stop
    assert active.status.reason is StopReason.AGENT
    active.stop(StopReason.KIOSK)  # a second stop changes nothing
    assert active.status.reason is StopReason.AGENT


async def test_rate_limit_drops_the_excess_and_counts_it(
    server: XServer, kiosk: ProbeWindow
) -> None:
    clock = ManualClock()
    control = make_control(server, pointer_rate=60, key_rate=20, clock=clock)
    await control.request("Agent Wang")
    control.grant()
    try:
        move = {"type": "pointermove", "x": 0.5, "y": 0.5}
        outcomes = [control.inject_message(move) for _ in range(100)]
        assert outcomes.count(InjectOutcome.INJECTED) == 60
        assert outcomes.count(InjectOutcome.RATE_LIMITED) == 40
        clock.now += 0.5  # half a second refills 30
        outcomes = [control.inject_message(move) for _ in range(40)]
        assert outcomes.count(InjectOutcome.INJECTED) == 30
        # Releases are never dropped: a held button always comes back up.
        clock.now += 1
        for _ in range(60):
            control.inject_message(move)
        assert control.inject_message({**move, "type": "pointerdown"}) is (
            InjectOutcome.RATE_LIMITED
        )
        counts = control.status.counts
        assert (counts.pointer, counts.rate_limited) == (150, 51)
    finally:
        control.stop()


@pytest.mark.parametrize("stop_key", ["Pause", "Ctrl+Shift+Escape"])
async def test_local_stop_key_stops_the_session_at_once(
    server: XServer, kiosk: ProbeWindow, keyboard: LocalKeyboard, stop_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[RemoteControlStatus] = []
    control = make_control(server, stop_key=stop_key, on_change=seen.append)
    await control.request("Agent Wang")
    control.grant()
    kiosk.focus()
    control.inject_message({"type": "keydown", "code": "KeyA"})
    with caplog.at_level(logging.INFO, logger="devices.remote_control"):
        keyboard.tap(*stop_key.replace("Ctrl", "Control_L").replace("Shift", "Shift_L")
                     .split("+"))
        assert await asyncio.wait_for(control.wait_stopped(), 2) is StopReason.STOP_KEY
    assert [s.state for s in seen] == ["awaiting_consent", "active", "stopped"]
    with pytest.raises(RemoteControlStateError):
        click(control, 0.5, 0.5)
    assert kiosk.presses() == []
    keys = kiosk.keys()
    assert keys[0] == "a"
    assert stop_key.split("+")[-1] not in keys  # the grabbed stop key never reached the kiosk
    assert ("keyup", "a") in kiosk.collect()  # what remote control held was released
    log = caplog.text
    assert "stopped (stop_key)" in log and "1 key events injected" in log
    # The log carries counts, never who or what was typed.
    assert "Agent Wang" not in log and "KeyA" not in log


async def test_stop_key_taken_by_another_program_blocks_the_session(
    server: XServer, kiosk: ProbeWindow
) -> None:
    holder = StopKeyListener(server.display, "Pause", on_stop=lambda reason: None)
    holder.start()
    try:
        control = make_control(server)
        with pytest.raises(DeviceIOError, match="already taken"):
            await control.request("Agent Wang")
        assert control.state is RemoteControlState.IDLE
    finally:
        holder.stop()


async def test_request_without_the_kiosk_window_fails_before_asking(server: XServer) -> None:
    control = make_control(server)
    with pytest.raises(DeviceNotFoundError, match="vwindow-kiosk"):
        await control.request("Agent Wang")
    assert control.state is RemoteControlState.IDLE


async def test_keys_are_typed_only_while_the_kiosk_has_the_focus(
    active: RemoteControl, kiosk: ProbeWindow, other: ProbeWindow
) -> None:
    other.focus()
    assert active.inject_message({"type": "keydown", "code": "KeyA"}) is (
        InjectOutcome.NOT_FOCUSED
    )
    assert other.keys() == []
    kiosk.focus()
    for code in ("KeyA", "Digit1", "Enter"):
        assert active.inject_message({"type": "keydown", "code": code}) is InjectOutcome.INJECTED
        active.inject_message({"type": "keyup", "code": code})
    assert kiosk.keys() == ["a", "1", "Return"]
    assert other.keys() == []


async def test_control_shortcuts_that_drive_the_browser_are_refused(
    active: RemoteControl, kiosk: ProbeWindow
) -> None:
    kiosk.focus()
    active.inject_message({"type": "keydown", "code": "ControlLeft"})
    with pytest.raises(ForbiddenKeyError, match="Control\\+KeyW"):
        active.inject_message({"type": "keydown", "code": "KeyW"})
    assert active.inject_message({"type": "keydown", "code": "KeyC"}) is InjectOutcome.INJECTED
    active.inject_message({"type": "keyup", "code": "KeyC"})
    active.inject_message({"type": "keyup", "code": "ControlLeft"})
    assert kiosk.keys() == ["Control_L", "c"]


async def test_a_modifier_held_at_the_kiosk_blocks_agent_keys(
    active: RemoteControl, kiosk: ProbeWindow, keyboard: LocalKeyboard
) -> None:
    kiosk.focus()
    keyboard.down("Alt_L")
    try:
        with pytest.raises(ForbiddenKeyError, match="Alt_L"):
            active.inject_message({"type": "keydown", "code": "KeyA"})
    finally:
        keyboard.up("Alt_L")
    assert "a" not in kiosk.keys()


async def test_wheel_scrolls_in_the_kiosk_window(
    active: RemoteControl, kiosk: ProbeWindow
) -> None:
    active.inject_message({"type": "wheel", "x": 0.5, "y": 0.5, "dy": 3})
    active.inject_message({"type": "wheel", "x": 0.5, "y": 0.5, "dy": -1})
    assert [p.button for p in kiosk.presses()] == [5, 5, 5, 4]


@pytest.mark.parametrize(
    ("raw", "field", "value"),
    [
        ({"type": "keydown", "code": "AltLeft"}, "code", "AltLeft"),
        ({"type": "keydown", "code": "F4"}, "code", "F4"),
        ({"type": "keydown", "code": "MetaLeft"}, "code", "MetaLeft"),
        ({"type": "keydown", "code": "PrintScreen"}, "code", "PrintScreen"),
    ],
)
def test_forbidden_keys_are_refused_by_name(raw: dict[str, object], field: str,
                                            value: str) -> None:
    with pytest.raises(ForbiddenKeyError) as info:
        parse_remote_event(raw)
    assert info.value.field == field and value in info.value.message
    assert isinstance(info.value, DeviceError)


@pytest.mark.parametrize(
    ("raw", "field", "needle"),
    [
        ('{"type": "pointermove", "x": NaN, "y": 0}', "x", "nan"),
        ({"type": "pointermove", "x": "0.5", "y": 0}, "x", "'0.5'"),
        ({"type": "pointermove", "x": 0.5}, "y", "missing"),
        ({"type": "pointermove", "x": 0.5, "y": 0.5, "keysym": 65}, "keysym", "not allowed"),
        ({"type": "pointerdown", "x": 0, "y": 0, "button": "back"}, "button", "'back'"),
        ({"type": "wheel", "x": 0, "y": 0, "dy": 50}, "dy", "50"),
        ({"type": "keypress", "code": "KeyA"}, "type", "keypress"),
        ('{"type": "pointermove", "x": 0, "y": 0, "pad": "' + "x" * 600 + '"}', None, "limit"),
        ("[1, 2]", None, "JSON object"),
        ("{not json", None, "not valid JSON"),
    ],
)
def test_bad_events_name_the_field_and_value(raw: object, field: str | None,
                                             needle: str) -> None:
    with pytest.raises(RemoteEventError) as info:
        parse_remote_event(raw)  # type: ignore[arg-type]
    assert info.value.field == field
    assert needle in info.value.message


def test_good_events_parse() -> None:
    event = parse_remote_event(json.dumps({"type": "pointerup", "x": 1, "y": 0.25}))
    assert event == PointerUp(type="pointerup", x=1.0, y=0.25, button="left")


@pytest.mark.parametrize(
    ("held", "code", "ok"),
    [
        (frozenset(), "KeyW", True),
        (frozenset({"Shift_L"}), "KeyW", True),
        (frozenset({"Control_L"}), "KeyV", True),
        (frozenset({"Control_R"}), "KeyW", False),
        (frozenset({"Control_L", "Shift_L"}), "KeyZ", True),
        (frozenset({"Control_L", "Shift_L"}), "Escape", False),
        (frozenset({"Control_L", "Shift_L"}), "Delete", False),
        (frozenset({"Control_L", "Alt_L"}), "Delete", False),
        (frozenset({"Super_L"}), "KeyD", False),
        (frozenset({"Alt_L"}), "ShiftLeft", True),  # a modifier alone types nothing
    ],
)
def test_combination_policy(held: frozenset[str], code: str, ok: bool) -> None:
    if ok:
        check_combo(held, code)
    else:
        with pytest.raises(ForbiddenKeyError):
            check_combo(held, code)


def test_token_bucket_refills_at_its_rate() -> None:
    clock = ManualClock()
    bucket = TokenBucket(20, clock=clock)
    assert sum(bucket.take() for _ in range(30)) == 20
    clock.now += 0.25
    assert sum(bucket.take() for _ in range(30)) == 5


async def test_stop_key_also_cancels_a_pending_consent_prompt(
    server: XServer, kiosk: ProbeWindow, keyboard: LocalKeyboard
) -> None:
    control = make_control(server)
    await control.request("Agent Wang")
    keyboard.tap("Pause")
    assert await asyncio.wait_for(control.wait_stopped(), 2) is StopReason.STOP_KEY
    with pytest.raises(RemoteControlStateError):
        control.grant()


async def test_an_idle_session_times_out(server: XServer, kiosk: ProbeWindow) -> None:
    control = make_control(server, idle_timeout=0.1)
    await control.request("Agent Wang")
    control.grant()
    await asyncio.sleep(0.06)
    control.inject_message({"type": "pointermove", "x": 0.5, "y": 0.5})  # input keeps it alive
    await asyncio.sleep(0.06)
    assert control.state is RemoteControlState.ACTIVE
    assert await asyncio.wait_for(control.wait_stopped(), 2) is StopReason.IDLE_TIMEOUT


async def test_closing_the_kiosk_window_ends_the_session(
    server: XServer, kiosk: ProbeWindow
) -> None:
    control = make_control(server)
    await control.request("Agent Wang")
    control.grant()
    kiosk.close()  # its client goes away, and the window with it
    await asyncio.sleep(0.3)  # past the cached geometry
    with pytest.raises(DeviceIOError, match="no longer exists"):
        control.inject_message({"type": "pointermove", "x": 0.5, "y": 0.5})
    assert control.status.reason is StopReason.WINDOW_LOST


async def test_agent_name_is_checked(server: XServer, kiosk: ProbeWindow) -> None:
    control = make_control(server)
    with pytest.raises(DeviceError) as info:
        await control.request("  ")
    assert info.value.field == "agent_name"
    assert control.state is RemoteControlState.IDLE
