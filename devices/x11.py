"""The kiosk's X display: connections, the kiosk window and where it is on the screen.

Everything here talks to one named X display (``":0"``) through python-xlib and to
nothing else. Used by :mod:`devices.screen` (which window or region to capture) and
:mod:`devices.x11_input` (where the agent's pointer and keys may go).

API
---
``WindowSpec(window_id=None, name=None, wm_class=None)``  how to find the kiosk window;
    ``name`` matches ``_NET_WM_NAME`` or ``WM_NAME``, ``wm_class`` the instance or class
    part of ``WM_CLASS``; the largest viewable match wins.
``Rect(x, y, width, height)``     a rectangle in root-window coordinates;
    ``point(nx, ny)`` maps normalised 0..1 coordinates into it, clamping.
``open_display(name) -> Display`` raises ``DeviceNotFoundError`` naming the display
``find_window(display, spec) -> Window``  raises ``DeviceNotFoundError`` naming the spec
``window_rect(display, window) -> Rect``  the window's rectangle on the root window
``screen_rect(display) -> Rect``
``toplevel_of(display, window) -> int``   the root's child holding ``window`` (its frame)
``window_id_of(value) -> int``            a reply's window field as an id

Errors: ``DisplayLostError`` and ``WindowLostError`` (both ``DeviceIOError``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from Xlib import X
from Xlib import error as xerror
from Xlib.display import Display
from Xlib.xobject.drawable import Window

from devices.errors import DeviceConfigError, DeviceIOError, DeviceNotFoundError

logger = logging.getLogger(__name__)


class DisplayLostError(DeviceIOError):
    """The connection to the kiosk's X display broke."""

    code = "display_lost"


class WindowLostError(DeviceIOError):
    """The kiosk window was destroyed while it was being controlled or captured."""

    code = "window_lost"


@dataclass(frozen=True, slots=True)
class Rect:
    """A rectangle in root-window (screen) pixels."""

    x: int
    y: int
    width: int
    height: int

    def point(self, nx: float, ny: float) -> tuple[int, int]:
        """Map normalised 0..1 coordinates to a pixel inside; out-of-range values clamp."""
        px = min(self.width - 1, max(0, math.floor(_clamp01(nx) * self.width)))
        py = min(self.height - 1, max(0, math.floor(_clamp01(ny) * self.height)))
        return self.x + px, self.y + py

    def intersect(self, other: Rect) -> Rect | None:
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1 = min(self.x + self.width, other.x + other.width)
        y1 = min(self.y + self.height, other.y + other.height)
        if x1 <= x0 or y1 <= y0:
            return None
        return Rect(x0, y0, x1 - x0, y1 - y0)


def _clamp01(value: float) -> float:
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """How to find the kiosk window: by id, or by title and/or ``WM_CLASS`` (exact)."""

    window_id: int | None = None
    name: str | None = None
    wm_class: str | None = None

    def __post_init__(self) -> None:
        if self.window_id is None and self.name is None and self.wm_class is None:
            raise DeviceConfigError("a window needs a window_id, a name or a wm_class")
        if self.window_id is not None and self.window_id <= 0:
            raise DeviceConfigError(f"window_id {self.window_id} is not a window id")

    def describe(self) -> str:
        parts = []
        if self.window_id is not None:
            parts.append(f"id 0x{self.window_id:x}")
        if self.name is not None:
            parts.append(f"name {self.name!r}")
        if self.wm_class is not None:
            parts.append(f"class {self.wm_class!r}")
        return ", ".join(parts)


def open_display(name: str) -> Display:
    """Connect to the X display ``name``; errors name the display."""
    try:
        display = Display(name)
    except (xerror.DisplayError, xerror.ConnectionClosedError, OSError) as err:
        raise DeviceNotFoundError(f"cannot open X display {name!r}: {err}") from err
    # python-xlib prints asynchronous errors to stderr by default; log them instead.
    display.set_error_handler(_log_x_error)
    return display


def _log_x_error(err: object, request: object) -> None:
    logger.warning("X error on the kiosk display: %s", type(err).__name__)


def window_id_of(value: Any) -> int:
    """A window field of a reply: python-xlib gives an int for None/PointerRoot."""
    if isinstance(value, int):
        return value
    return int(value.id)


def screen_rect(display: Display) -> Rect:
    screen = display.screen()
    return Rect(0, 0, int(screen.width_in_pixels), int(screen.height_in_pixels))


def window_rect(display: Display, window: Window) -> Rect:
    """The window's rectangle in root coordinates (border excluded)."""
    try:
        geometry = window.get_geometry()
        origin = geometry.root.translate_coords(window, 0, 0)
    except (xerror.BadWindow, xerror.BadDrawable) as err:
        raise WindowLostError(f"window 0x{window.id:x} no longer exists") from err
    except xerror.ConnectionClosedError as err:
        raise DisplayLostError(f"X display connection closed: {err}") from err
    return Rect(int(origin.x), int(origin.y), int(geometry.width), int(geometry.height))


def _window_matches(window: Window, spec: WindowSpec, net_wm_name: int, utf8: int) -> bool:
    if spec.wm_class is not None:
        wm_class = window.get_wm_class()
        if wm_class is None or spec.wm_class not in wm_class:
            return False
    if spec.name is not None:
        names = {window.get_wm_name(), window.get_full_text_property(net_wm_name, utf8)}
        if spec.name not in names:
            return False
    return True


def find_window(display: Display, spec: WindowSpec) -> Window:
    """The kiosk window: the one with ``spec.window_id``, or the largest viewable match."""
    if spec.window_id is not None:
        window = display.create_resource_object("window", spec.window_id)
        try:
            window.get_geometry()
        except (xerror.BadWindow, xerror.BadDrawable) as err:
            raise DeviceNotFoundError(
                f"no window with id 0x{spec.window_id:x} on the X display"
            ) from err
        return window
    net_wm_name = display.intern_atom("_NET_WM_NAME")
    utf8 = display.intern_atom("UTF8_STRING")
    best: tuple[int, Window] | None = None
    pending = [display.screen().root]
    while pending:
        parent = pending.pop()
        try:
            children = parent.query_tree().children
        except (xerror.BadWindow, xerror.BadDrawable):
            continue  # destroyed while we walked the tree
        for child in children:
            pending.append(child)
            try:
                if child.get_attributes().map_state != X.IsViewable:
                    continue
                if not _window_matches(child, spec, net_wm_name, utf8):
                    continue
                geometry = child.get_geometry()
            except (xerror.BadWindow, xerror.BadDrawable):
                continue
            area = int(geometry.width) * int(geometry.height)
            if best is None or area > best[0]:
                best = (area, child)
    if best is None:
        raise DeviceNotFoundError(f"no viewable window with {spec.describe()} on the X display")
    return best[1]


def toplevel_of(display: Display, window: Window) -> int:
    """The id of the root's child that contains ``window`` (its window-manager frame)."""
    root_id = display.screen().root.id
    current = window
    while True:
        parent = current.query_tree().parent
        parent_id = window_id_of(parent)
        if parent_id in (root_id, X.NONE):
            return int(current.id)
        current = display.create_resource_object("window", parent_id)
