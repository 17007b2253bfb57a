"""The agent's remote-control input events: a pure, validated model (no X, no I/O).

An agent's browser sends one JSON object per event over the data channel:

``{"type": "pointermove", "x": 0.25, "y": 0.5}``
``{"type": "pointerdown" | "pointerup", "x": .., "y": .., "button": "left"}``
``{"type": "wheel", "x": .., "y": .., "dx": 0, "dy": 3}``   (whole notches, -10..10)
``{"type": "keydown" | "keyup", "code": "KeyA"}``

``x``/``y`` are normalised to the shared kiosk window (0..1, left/top = 0); any finite
value is accepted and clamped into the window when injected, so a drag that ends just
outside the agent's video still releases inside the window.

Keys are named by the browser's ``KeyboardEvent.code`` (the physical key, independent
of layout) and only codes in :data:`KEY_CODES` are accepted: letters, digits,
punctuation, editing and navigation keys, Shift and Control. Alt, Super/Meta, function
keys, Print Screen and Pause are refused outright, so Alt+F4, Ctrl+Alt+Del and Super
shortcuts cannot be typed. Control combinations are limited by :func:`check_combo` to
editing (Ctrl+A/C/V/X/Y/Z, word moves, word deletes); Ctrl+W, Ctrl+Q, Ctrl+T, Ctrl+L,
Ctrl+Shift+Escape and the like are refused.

API
---
``parse_remote_event(raw: str | bytes | Mapping) -> RemoteEvent``
    raises :class:`RemoteEventError` naming the field and the value.
``RemoteEvent`` = ``PointerMove | PointerDown | PointerUp | Wheel | KeyDown | KeyUp``
``KEY_CODES: Mapping[str, str]``       ``KeyboardEvent.code`` -> X keysym name
``MODIFIER_CODES: frozenset[str]``     the Shift and Control codes
``check_combo(held: frozenset[str], code: str) -> None``
    ``held`` = keysym names of modifier keys down on the kiosk; raises
    :class:`ForbiddenKeyError` if pressing ``code`` now would make a refused combination.

Errors: ``RemoteControlError`` (root, a ``DeviceError``), ``RemoteEventError``,
``ForbiddenKeyError``, ``RemoteControlStateError``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal, cast

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from devices.errors import DeviceError
from vwindow.validation import describe, show_value

MAX_EVENT_BYTES: Final = 512


class RemoteControlError(DeviceError):
    """Root of the remote-control errors."""

    code = "remote_control"
    http_status = 400


class RemoteEventError(RemoteControlError):
    """An input event from the agent is malformed; the message names field and value."""

    code = "remote_event_invalid"
    http_status = 400


class ForbiddenKeyError(RemoteEventError):
    """A key or key combination that remote control never types."""

    code = "remote_key_forbidden"
    http_status = 403


class RemoteControlStateError(RemoteControlError):
    """Remote control was used in a state that does not allow it (e.g. before consent)."""

    code = "remote_control_state"
    http_status = 409


def _keys() -> dict[str, str]:
    keys = {f"Key{c}": c.lower() for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
    keys.update({f"Digit{d}": d for d in "0123456789"})
    keys.update(
        {
            "Space": "space",
            "Enter": "Return",
            "NumpadEnter": "KP_Enter",
            "Backspace": "BackSpace",
            "Tab": "Tab",
            "Escape": "Escape",
            "Delete": "Delete",
            "ArrowLeft": "Left",
            "ArrowRight": "Right",
            "ArrowUp": "Up",
            "ArrowDown": "Down",
            "Home": "Home",
            "End": "End",
            "PageUp": "Prior",
            "PageDown": "Next",
            "Minus": "minus",
            "Equal": "equal",
            "BracketLeft": "bracketleft",
            "BracketRight": "bracketright",
            "Backslash": "backslash",
            "Semicolon": "semicolon",
            "Quote": "apostrophe",
            "Backquote": "grave",
            "Comma": "comma",
            "Period": "period",
            "Slash": "slash",
            "ShiftLeft": "Shift_L",
            "ShiftRight": "Shift_R",
            "ControlLeft": "Control_L",
            "ControlRight": "Control_R",
        }
    )
    return keys


KEY_CODES: Final[Mapping[str, str]] = MappingProxyType(_keys())
MODIFIER_CODES: Final = frozenset({"ShiftLeft", "ShiftRight", "ControlLeft", "ControlRight"})
_SHIFT: Final = frozenset({"Shift_L", "Shift_R"})
_CONTROL: Final = frozenset({"Control_L", "Control_R"})
_MOVES: Final = frozenset({"ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End"})
# Editing only: anything else with Control drives the browser (close, new tab, print...).
_CONTROL_OK: Final = frozenset({"KeyA", "KeyC", "KeyV", "KeyX", "KeyY", "KeyZ", "Backspace",
                                "Delete"}) | _MOVES
# Ctrl+Shift+Delete opens the browser's "clear data" page, Ctrl+Shift+Escape a task manager.
_CONTROL_SHIFT_OK: Final = frozenset({"KeyZ"}) | _MOVES


def _check_code(code: str) -> str:
    if code not in KEY_CODES:
        raise ValueError(f"key {show_value(code)} is not allowed for remote control")
    return code


KeyCode = Annotated[str, Field(min_length=1, max_length=32), AfterValidator(_check_code)]
Coord = Annotated[float, Field(allow_inf_nan=False)]
Notches = Annotated[int, Field(ge=-10, le=10)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PointerMove(_Event):
    type: Literal["pointermove"]
    x: Coord
    y: Coord


class PointerDown(_Event):
    type: Literal["pointerdown"]
    x: Coord
    y: Coord
    button: Literal["left", "middle", "right"] = "left"


class PointerUp(_Event):
    type: Literal["pointerup"]
    x: Coord
    y: Coord
    button: Literal["left", "middle", "right"] = "left"


class Wheel(_Event):
    type: Literal["wheel"]
    x: Coord
    y: Coord
    dx: Notches = 0
    dy: Notches = 0


class KeyDown(_Event):
    type: Literal["keydown"]
    code: KeyCode


class KeyUp(_Event):
    type: Literal["keyup"]
    code: KeyCode


RemoteEvent = PointerMove | PointerDown | PointerUp | Wheel | KeyDown | KeyUp
PointerEvent = PointerMove | PointerDown | PointerUp | Wheel

EVENT_TYPES: Final[Mapping[str, type[_Event]]] = MappingProxyType(
    {
        "pointermove": PointerMove,
        "pointerdown": PointerDown,
        "pointerup": PointerUp,
        "wheel": Wheel,
        "keydown": KeyDown,
        "keyup": KeyUp,
    }
)


def parse_remote_event(raw: str | bytes | Mapping[str, Any]) -> RemoteEvent:
    """Parse one event, or raise :class:`RemoteEventError` naming the field and value."""
    data: Any
    if isinstance(raw, str | bytes):
        if len(raw) > MAX_EVENT_BYTES:
            raise RemoteEventError(
                f"event of {len(raw)} bytes is over the {MAX_EVENT_BYTES}-byte limit"
            )
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RemoteEventError(f"event is not valid JSON: {err}") from err
    else:
        data = raw
    if not isinstance(data, Mapping):
        raise RemoteEventError(f"an event must be a JSON object, got {type(data).__name__}")
    event_type = data.get("type")
    if not isinstance(event_type, str):
        raise RemoteEventError("field 'type' is missing or not a string", field="type")
    model = EVENT_TYPES.get(event_type)
    if model is None:
        raise RemoteEventError(f"unknown event type {show_value(event_type)}", field="type")
    try:
        event = model.model_validate(dict(data))
    except PydanticValidationError as err:
        field, text = describe(err, where="event", within=event_type)
        if field == "code" and isinstance(data.get("code"), str):
            raise ForbiddenKeyError(text, field=field) from err
        raise RemoteEventError(text, field=field) from err
    return cast(RemoteEvent, event)  # one of the union's members, by the table


def check_combo(held: frozenset[str], code: str) -> None:
    """Refuse pressing ``code`` while ``held`` modifiers make it a browser or system shortcut.

    ``held`` holds X keysym names (``"Control_L"``, ``"Alt_L"``...) of modifier keys down
    on the kiosk keyboard, whether remote control or someone at the kiosk pressed them.
    """
    if code in MODIFIER_CODES:
        return
    others = held - _SHIFT - _CONTROL
    if others:
        raise ForbiddenKeyError(
            f"key {code!r} refused while {sorted(others)[0]!r} is held on the kiosk",
            field="code",
        )
    if not held & _CONTROL:
        return
    if held & _SHIFT:
        if code not in _CONTROL_SHIFT_OK:
            raise ForbiddenKeyError(
                f"key combination 'Control+Shift+{code}' is not allowed", field="code"
            )
    elif code not in _CONTROL_OK:
        raise ForbiddenKeyError(f"key combination 'Control+{code}' is not allowed", field="code")
