"""XTest input into the kiosk window, and a global stop key on the kiosk's X display.

API
---
``BUTTONS``: ``{"left": 1, "middle": 2, "right": 3}`` (no back/forward buttons)
``InjectOutcome``: what became of one event (``injected``, ``outside_window``...)
``XTestInjector(display_name, spec, *, geometry_ttl=0.25)``
    ``open()`` / ``close()`` (releases held keys and buttons; safe twice), ``rect()``,
    ``pointer_move(nx, ny)``, ``pointer_button(nx, ny, button, press)``,
    ``wheel(nx, ny, dx, dy)``, ``key(keysym_name, press)`` -> :class:`InjectOutcome`,
    ``held_modifiers() -> frozenset[str]`` (keysym names, e.g. ``"Alt_L"``)
``StopKeyListener(display_name, key="Pause", on_stop=callback)``
    ``start()`` (needs a running loop) / ``stop()``; ``on_stop("stop_key")`` when the key
    is pressed, ``on_stop("display_lost")`` when the display goes away.
``parse_key_spec("Ctrl+Shift+Escape") -> (modifier mask, keysym)``

Why a hit test on every press: clamping keeps coordinates inside the kiosk window's
rectangle, but another window stacked on top of it would still receive the click. So
before anything is pressed, the top-level window under the target point is looked up
(``XTranslateCoordinates`` on the root) and must be the kiosk's own top-level, or an
override-redirect popup of the same ``WM_CLASS`` (a browser's drop-down menu).
Keys go only while the keyboard focus is in the kiosk window. Releases are sent only
for what was pressed here, and are never refused, so nothing stays stuck down.

Why no worker thread: every call is a round trip to the local X server (well under a
millisecond), and python-xlib connections are not thread-safe without a global switch;
running in the caller's thread also keeps ordering simple -- once ``close()`` has
returned, nothing is still in flight. Each inject ends with ``sync()`` so the server has
processed it (and delivered the events) before the call returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from Xlib import XK, X
from Xlib import error as xerror
from Xlib.display import Display
from Xlib.ext import xtest
from Xlib.xobject.drawable import Window

from devices.errors import DeviceConfigError, DeviceIOError, DeviceUnavailableError
from devices.x11 import (
    DisplayLostError,
    Rect,
    WindowLostError,
    WindowSpec,
    find_window,
    open_display,
    toplevel_of,
    window_id_of,
    window_rect,
)

logger = logging.getLogger(__name__)

# Buttons an agent may press; 8/9 (back/forward) would navigate the kiosk page away.
BUTTONS: Final[Mapping[str, int]] = MappingProxyType({"left": 1, "middle": 2, "right": 3})
_WHEEL_UP, _WHEEL_DOWN, _WHEEL_LEFT, _WHEEL_RIGHT = 4, 5, 6, 7
_LOCK_KEYSYMS: Final = frozenset({"Caps_Lock", "Num_Lock", "Shift_Lock", "Scroll_Lock"})
# Names for the keysyms a modifier key can carry (python-xlib maps names to keysyms
# only); anything else held is reported by number and so refused as unknown.
_MODIFIER_KEYSYM_NAMES: Final = (
    "Shift_L", "Shift_R", "Control_L", "Control_R", "Alt_L", "Alt_R", "Meta_L", "Meta_R",
    "Super_L", "Super_R", "Hyper_L", "Hyper_R", "Mode_switch", *sorted(_LOCK_KEYSYMS),
)
_MODIFIER_MASKS: Final[Mapping[str, int]] = MappingProxyType({
    "shift": X.ShiftMask,
    "ctrl": X.ControlMask,
    "control": X.ControlMask,
    "alt": X.Mod1Mask,
    "super": X.Mod4Mask,
})


class InjectOutcome(StrEnum):
    """What happened to one input event."""

    INJECTED = "injected"
    RATE_LIMITED = "rate_limited"
    OUTSIDE_WINDOW = "outside_window"
    """The point is covered by another window (or the kiosk window is not shown)."""
    NOT_FOCUSED = "not_focused"
    """The keyboard focus is not in the kiosk window."""
    NOT_HELD = "not_held"
    """A release for a key or button that remote control had not pressed."""


def parse_key_spec(spec: str) -> tuple[int, int]:
    """``"Ctrl+Shift+Escape"`` -> (modifier mask, keysym). Names are X keysym names."""
    parts = [p.strip() for p in spec.split("+")]
    if not parts or any(not p for p in parts):
        raise DeviceConfigError(f"stop key {spec!r} is not like 'Pause' or 'Ctrl+Shift+Escape'")
    mask = 0
    for part in parts[:-1]:
        bit = _MODIFIER_MASKS.get(part.lower())
        if bit is None:
            raise DeviceConfigError(
                f"stop key {spec!r}: unknown modifier {part!r} (Ctrl, Shift, Alt, Super)"
            )
        mask |= bit
    keysym = XK.string_to_keysym(parts[-1])
    if keysym == X.NoSymbol:
        raise DeviceConfigError(f"stop key {spec!r}: {parts[-1]!r} is not an X keysym name")
    return mask, keysym


class XTestInjector:
    """Pointer and key input into one kiosk window through XTest; see the module docstring."""

    def __init__(
        self,
        display_name: str,
        spec: WindowSpec,
        *,
        geometry_ttl: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._display_name = display_name
        self._spec = spec
        self._ttl = geometry_ttl
        self._clock = clock
        self._display: Display | None = None
        self._window: Window | None = None
        self._toplevel = 0
        self._wm_class: tuple[str, str] | None = None
        self._rect: Rect | None = None
        self._rect_at = 0.0
        self._buttons: set[int] = set()
        self._keys: set[int] = set()
        self._modifier_keycodes: frozenset[int] = frozenset()
        self._modifier_names = {
            keysym: name
            for name in _MODIFIER_KEYSYM_NAMES
            if (keysym := XK.string_to_keysym(name)) != X.NoSymbol
        }

    def open(self) -> None:
        """Connect, check for XTest and find the kiosk window."""
        display = open_display(self._display_name)
        try:
            if not display.has_extension("XTEST"):
                raise DeviceUnavailableError(
                    f"X display {self._display_name!r} has no XTEST extension"
                )
            window = find_window(display, self._spec)
            self._toplevel = toplevel_of(display, window)
            self._wm_class = window.get_wm_class()
            modifiers = display.get_modifier_mapping()
            self._modifier_keycodes = frozenset(kc for row in modifiers for kc in row if kc)
        except BaseException:
            display.close()
            raise
        self._display = display
        self._window = window
        self._rect = None

    def close(self) -> None:
        """Release whatever is still pressed, then disconnect. Safe to call twice."""
        display, self._display = self._display, None
        if display is None:
            return
        try:
            root = display.screen().root.id
            for button in sorted(self._buttons):
                xtest.fake_input(display, X.ButtonRelease, button, root=root)
            for keycode in sorted(self._keys):
                xtest.fake_input(display, X.KeyRelease, keycode)
            display.sync()
        except (xerror.ConnectionClosedError, OSError):
            logger.info("kiosk display closed before held input could be released")
        finally:
            self._buttons.clear()
            self._keys.clear()
            display.close()

    def _require(self) -> tuple[Display, Window]:
        if self._display is None or self._window is None:
            raise DeviceIOError("XTest injector is not open")
        return self._display, self._window

    def rect(self) -> Rect:
        """The kiosk window's rectangle, re-read at most every ``geometry_ttl`` seconds."""
        display, window = self._require()
        now = self._clock()
        if self._rect is None or now - self._rect_at >= self._ttl:
            self._rect = window_rect(display, window)
            self._rect_at = now
        return self._rect

    def _target_ok(self, display: Display, window_id: int) -> bool:
        if window_id == self._toplevel:
            return True
        if window_id in (X.NONE, X.PointerRoot) or self._wm_class is None:
            return False
        # A browser's drop-down menu is a separate override-redirect top-level window.
        other = display.create_resource_object("window", window_id)
        try:
            return bool(other.get_attributes().override_redirect) and (
                other.get_wm_class() == self._wm_class
            )
        except (xerror.BadWindow, xerror.BadDrawable):
            return False  # that window closed meanwhile; the kiosk window did not

    def _point_ok(self, display: Display, x: int, y: int) -> bool:
        root = display.screen().root
        return self._target_ok(display, window_id_of(root.translate_coords(root, x, y).child))

    def _run(self, action: Callable[[Display, Window], InjectOutcome]) -> InjectOutcome:
        display, window = self._require()
        try:
            return action(display, window)
        except (xerror.BadWindow, xerror.BadDrawable) as err:
            raise WindowLostError(f"kiosk window 0x{window.id:x} no longer exists") from err
        except (xerror.ConnectionClosedError, OSError) as err:
            raise DisplayLostError(f"X display {self._display_name!r} went away: {err}") from err

    def pointer_move(self, nx: float, ny: float) -> InjectOutcome:
        def act(display: Display, window: Window) -> InjectOutcome:
            x, y = self.rect().point(nx, ny)
            if not self._point_ok(display, x, y):
                return InjectOutcome.OUTSIDE_WINDOW
            xtest.fake_input(display, X.MotionNotify, x=x, y=y)
            display.sync()
            return InjectOutcome.INJECTED

        return self._run(act)

    def pointer_button(self, nx: float, ny: float, button: int, press: bool) -> InjectOutcome:
        if button not in BUTTONS.values():
            raise DeviceConfigError(f"button {button} is not allowed")

        def act(display: Display, window: Window) -> InjectOutcome:
            if not press:
                if button not in self._buttons:
                    return InjectOutcome.NOT_HELD
                # Released where it is: the press's implicit grab takes the release to
                # the kiosk window even if the point is now covered.
                self._buttons.discard(button)
                xtest.fake_input(display, X.ButtonRelease, button)
                display.sync()
                return InjectOutcome.INJECTED
            x, y = self.rect().point(nx, ny)
            if not self._point_ok(display, x, y):
                return InjectOutcome.OUTSIDE_WINDOW
            xtest.fake_input(display, X.MotionNotify, x=x, y=y)
            xtest.fake_input(display, X.ButtonPress, button)
            self._buttons.add(button)
            display.sync()
            return InjectOutcome.INJECTED

        return self._run(act)

    def wheel(self, nx: float, ny: float, dx: int, dy: int) -> InjectOutcome:
        def act(display: Display, window: Window) -> InjectOutcome:
            x, y = self.rect().point(nx, ny)
            if not self._point_ok(display, x, y):
                return InjectOutcome.OUTSIDE_WINDOW
            xtest.fake_input(display, X.MotionNotify, x=x, y=y)
            for button, steps in (
                (_WHEEL_DOWN if dy > 0 else _WHEEL_UP, abs(dy)),
                (_WHEEL_RIGHT if dx > 0 else _WHEEL_LEFT, abs(dx)),
            ):
                for _ in range(steps):
                    xtest.fake_input(display, X.ButtonPress, button)
                    xtest.fake_input(display, X.ButtonRelease, button)
            display.sync()
            return InjectOutcome.INJECTED

        return self._run(act)

    def _keycode(self, display: Display, keysym_name: str) -> int:
        keysym = XK.string_to_keysym(keysym_name)
        keycode = display.keysym_to_keycode(keysym) if keysym != X.NoSymbol else 0
        if not keycode:
            raise DeviceConfigError(f"key {keysym_name!r} is not on the kiosk's keyboard map")
        return int(keycode)

    def _focus_ok(self, display: Display) -> bool:
        focus = window_id_of(display.get_input_focus().focus)
        if focus == X.PointerRoot:
            # Keys follow the pointer: they go to the window under it.
            pointer = display.screen().root.query_pointer()
            return self._target_ok(display, window_id_of(pointer.child))
        if focus == X.NONE:
            return False
        window = display.create_resource_object("window", focus)
        try:
            toplevel = toplevel_of(display, window)
        except (xerror.BadWindow, xerror.BadDrawable):
            return False  # the focused window closed meanwhile
        return self._target_ok(display, toplevel)

    def key(self, keysym_name: str, press: bool) -> InjectOutcome:
        def act(display: Display, window: Window) -> InjectOutcome:
            keycode = self._keycode(display, keysym_name)
            if not press:
                if keycode not in self._keys:
                    return InjectOutcome.NOT_HELD
                self._keys.discard(keycode)
                xtest.fake_input(display, X.KeyRelease, keycode)
                display.sync()
                return InjectOutcome.INJECTED
            if not self._focus_ok(display):
                return InjectOutcome.NOT_FOCUSED
            xtest.fake_input(display, X.KeyPress, keycode)
            self._keys.add(keycode)
            display.sync()
            return InjectOutcome.INJECTED

        return self._run(act)

    def held_modifiers(self) -> frozenset[str]:
        """Modifier keys down on the kiosk keyboard (ours or physical), by keysym name."""
        display, _ = self._require()
        try:
            keymap = display.query_keymap()
            held = set()
            for keycode in self._modifier_keycodes:
                if keymap[keycode // 8] & (1 << (keycode % 8)):
                    keysym = display.keycode_to_keysym(keycode, 0)
                    held.add(self._modifier_names.get(keysym, f"keysym 0x{keysym:x}"))
        except (xerror.ConnectionClosedError, OSError) as err:
            raise DisplayLostError(f"X display {self._display_name!r} went away: {err}") from err
        return frozenset(held - _LOCK_KEYSYMS)


class StopKeyListener:
    """Grabs one key (with any lock state) on the root window; pressing it calls ``on_stop``.

    ``start()`` raises ``DeviceIOError`` if another program already holds the key: remote
    control must not start without a working stop key.
    """

    def __init__(
        self, display_name: str, key: str = "Pause", *, on_stop: Callable[[str], None]
    ) -> None:
        self._display_name = display_name
        self._key = key
        self._mask, self._keysym = parse_key_spec(key)
        self._on_stop = on_stop
        self._display: Display | None = None
        self._keycode = 0
        self._lock_bits = X.LockMask
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def key(self) -> str:
        return self._key

    def _numlock_mask(self, display: Display) -> int:
        num_keycode = display.keysym_to_keycode(XK.string_to_keysym("Num_Lock"))
        for index, keycodes in enumerate(display.get_modifier_mapping()):
            if num_keycode and num_keycode in keycodes:
                return 1 << index
        return 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        display = open_display(self._display_name)
        try:
            keycode = display.keysym_to_keycode(self._keysym)
            if not keycode:
                raise DeviceConfigError(f"stop key {self._key!r} is not on the keyboard map")
            root = display.screen().root
            catch = xerror.CatchError(xerror.BadAccess)
            # A grab matches exact modifier state: grab once per Caps/Num Lock combination.
            self._lock_bits = X.LockMask | self._numlock_mask(display)
            numlock = self._lock_bits & ~X.LockMask
            for extra in sorted({0, X.LockMask, numlock, X.LockMask | numlock}):
                root.grab_key(
                    keycode, self._mask | extra, True, X.GrabModeAsync, X.GrabModeAsync,
                    onerror=catch,
                )
            display.sync()
            if catch.get_error() is not None:
                raise DeviceIOError(
                    f"stop key {self._key!r} is already taken by another program on "
                    f"display {self._display_name!r}"
                )
        except BaseException:
            display.close()
            raise
        self._display, self._keycode, self._loop = display, int(keycode), loop
        loop.add_reader(display.fileno(), self._on_readable)
        self._on_readable()  # events read while waiting for replies sit in the queue

    def stop(self) -> None:
        """Release the grab and disconnect. Safe to call twice."""
        display, self._display = self._display, None
        if display is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(display.fileno())
        try:
            display.close()  # closing the connection releases its grabs
        except (xerror.ConnectionClosedError, OSError):
            pass

    def _on_readable(self) -> None:
        display = self._display
        if display is None:
            return
        lock_bits = self._lock_bits
        try:
            while display.pending_events():
                event = display.next_event()
                if (
                    event.type == X.KeyPress
                    and event.detail == self._keycode
                    and (event.state & ~lock_bits) == self._mask
                ):
                    self._on_stop("stop_key")
                    return
        except (xerror.ConnectionClosedError, OSError):
            self.stop()
            self._on_stop("display_lost")
