"""A real Xvfb server and plain X windows for the screen-share and remote-control tests.

``xvfb()`` starts ``Xvfb -displayfd`` (the server picks a free display number itself, so
parallel runs never collide) and stops it afterwards. ``ProbeWindow`` is a coloured
window at a known place on its own X connection that records the pointer and key
events delivered to it -- what a kiosk application would see.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from Xlib import XK, X
from Xlib.display import Display
from Xlib.ext import xtest

XVFB = shutil.which("Xvfb")
requires_xvfb = pytest.mark.skipif(
    XVFB is None, reason="Xvfb is not installed (Debian: apt-get install xvfb)"
)

RED = (255, 0, 0)
BLUE = (0, 0, 255)
GREEN = (0, 255, 0)
_INPUT_MASK = (
    X.ButtonPressMask | X.ButtonReleaseMask | X.KeyPressMask | X.KeyReleaseMask
    | X.PointerMotionMask | X.ExposureMask
)


# keysym -> name; python-xlib only maps the other way.
KEYSYM_NAMES = {
    getattr(XK, attr): attr[3:] for attr in sorted(dir(XK), reverse=True)
    if attr.startswith("XK_")
}


@dataclass(frozen=True)
class XServer:
    display: str
    width: int
    height: int


@contextmanager
def xvfb(width: int = 640, height: int = 480) -> Iterator[XServer]:
    """A fresh Xvfb for one test; ``-noreset`` so it survives its last client leaving."""
    if XVFB is None:
        pytest.skip("Xvfb is not installed (Debian: apt-get install xvfb)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [XVFB, "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24",
         "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        if not select.select([read_fd], [], [], 10)[0]:
            raise RuntimeError("Xvfb did not report a display within 10 s")
        number = os.read(read_fd, 32).decode().strip()
        if not number:
            raise RuntimeError(f"Xvfb exited ({proc.poll()}) without a display")
        yield XServer(f":{number}", width, height)
    finally:
        os.close(read_fd)
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Press:
    x: int
    y: int
    button: int


@dataclass
class ProbeWindow:
    """A window at ``(x, y, width, height)`` that records the input delivered to it."""

    display_name: str
    x: int
    y: int
    width: int
    height: int
    colour: tuple[int, int, int] = RED
    name: str = "probe"
    wm_class: tuple[str, str] = ("probe", "Probe")
    override_redirect: bool = False
    events: list[tuple[str, object]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.conn = Display(self.display_name)
        self.closed = False
        screen = self.conn.screen()
        self.window = screen.root.create_window(
            self.x, self.y, self.width, self.height, 0, screen.root_depth,
            X.InputOutput, X.CopyFromParent,
            background_pixel=self._pixel(self.colour),
            event_mask=_INPUT_MASK,
            override_redirect=self.override_redirect,
        )
        self.window.set_wm_name(self.name)
        self.window.set_wm_class(*self.wm_class)
        self.window.map()
        self.conn.sync()

    @property
    def id(self) -> int:
        return int(self.window.id)

    def _pixel(self, colour: tuple[int, int, int]) -> int:
        r, g, b = colour
        # A 24-bit TrueColor visual: the pixel value is the RGB triple itself.
        return (r << 16) | (g << 8) | b

    def paint(self, colour: tuple[int, int, int]) -> None:
        self.window.change_attributes(background_pixel=self._pixel(colour))
        self.window.clear_area(0, 0, 0, 0)
        self.conn.sync()

    def raise_(self) -> None:
        self.window.configure(stack_mode=X.Above)
        self.conn.sync()

    def focus(self) -> None:
        self.window.set_input_focus(X.RevertToParent, X.CurrentTime)
        self.conn.sync()

    def collect(self) -> list[tuple[str, object]]:
        """Everything delivered so far: a round trip first, so nothing is still in flight."""
        self.conn.sync()
        while self.conn.pending_events():
            event = self.conn.next_event()
            if event.type == X.ButtonPress:
                self.events.append(("press", Press(event.event_x, event.event_y, event.detail)))
            elif event.type == X.ButtonRelease:
                self.events.append(("release", event.detail))
            elif event.type in (X.KeyPress, X.KeyRelease):
                keysym = self.conn.keycode_to_keysym(event.detail, 0)
                kind = "key" if event.type == X.KeyPress else "keyup"
                self.events.append((kind, KEYSYM_NAMES.get(keysym, keysym)))
            elif event.type == X.MotionNotify:
                self.events.append(("motion", (event.event_x, event.event_y)))
        return self.events

    def presses(self) -> list[Press]:
        return [p for kind, p in self.collect() if kind == "press" and isinstance(p, Press)]

    def keys(self) -> list[object]:
        return [k for kind, k in self.collect() if kind == "key"]

    def input_events(self) -> list[tuple[str, object]]:
        return [e for e in self.collect() if e[0] != "motion"]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.conn.close()


class LocalKeyboard:
    """Someone at the kiosk typing: key events from a separate XTest client."""

    def __init__(self, display_name: str) -> None:
        self.conn = Display(display_name)

    def _keycode(self, name: str) -> int:
        keycode = self.conn.keysym_to_keycode(XK.string_to_keysym(name))
        if not keycode:
            raise ValueError(f"no keycode for {name!r}")
        return int(keycode)

    def down(self, *names: str) -> None:
        for name in names:
            xtest.fake_input(self.conn, X.KeyPress, self._keycode(name))
        self.conn.sync()

    def up(self, *names: str) -> None:
        for name in reversed(names):
            xtest.fake_input(self.conn, X.KeyRelease, self._keycode(name))
        self.conn.sync()

    def tap(self, *names: str) -> None:
        self.down(*names)
        self.up(*names)

    def is_down(self, name: str) -> bool:
        keycode = self._keycode(name)
        return bool(self.conn.query_keymap()[keycode // 8] & (1 << (keycode % 8)))

    def close(self) -> None:
        self.conn.close()
