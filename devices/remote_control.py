"""Consented remote control of the kiosk window (远程操控协办): the session state machine.

One :class:`RemoteControl` per request from an agent. States go one way::

    idle --request()--> awaiting_consent --grant()--> active --stop(reason)--> stopped
                                \\--deny() / stop() / consent timeout--> stopped

Nothing is injected unless the state is ``active``, which only the kiosk side's
``grant()`` reaches (wire it to the on-kiosk prompt, never to a message from the agent).
While awaiting consent and while active, a stop key (``Pause`` by default) is grabbed on
the kiosk's X display: pressing it stops at once, even if the browser hangs. Any stop
releases every key and button remote control still holds. Pointer events may only land
in the kiosk window and keys only go while it has the focus (see :mod:`devices.x11_input`).

Over-rate events are dropped and counted (token buckets: 60 pointer events/s and 20
key presses/s by default; releases are never dropped, so nothing stays stuck down and
releases cannot be abused: one is honoured only for a key or button pressed here).
The log gets the session's start, end, reason and counts -- never the keys typed,
which could be an ID number or a password, and never the agent's name.

API
---
``RemoteControl(*, display, window, stop_key="Pause", pointer_rate=60.0, key_rate=20.0,
consent_timeout=60.0, idle_timeout=300.0, max_duration=1800.0, session_id=None,
on_change=None, clock=time.monotonic)``
    ``state``, ``status`` (:class:`RemoteControlStatus`), ``session_id``
    ``add_listener(fn)`` / ``remove_listener(fn)``  ``fn(status)`` on every state change:
        the kiosk UI shows the consent prompt on ``awaiting_consent`` and the
        "remote control active" banner on ``active``
    ``async request(agent_name)``   opens the display, finds the window, grabs the stop
                                    key, then asks for consent; raises ``DeviceError``
                                    (state stays ``idle``) if any of that fails
    ``grant()`` / ``deny()``        the citizen's answer
    ``stop(reason="agent")``        any state -> ``stopped``; safe to call twice
    ``inject(event) -> InjectOutcome``   raises ``RemoteControlStateError`` unless active,
                                    ``ForbiddenKeyError`` for a refused combination
    ``inject_message(raw) -> InjectOutcome``  parse (``RemoteEventError``) then inject
    ``async wait_stopped() -> StopReason``
``TokenBucket(rate, burst=None, *, clock=time.monotonic)``  ``take() -> bool``
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from devices.errors import DeviceConfigError
from devices.remote_events import (
    KEY_CODES,
    MODIFIER_CODES,
    ForbiddenKeyError,
    KeyDown,
    KeyUp,
    PointerDown,
    PointerMove,
    PointerUp,
    RemoteControlError,
    RemoteControlStateError,
    RemoteEvent,
    Wheel,
    check_combo,
    parse_remote_event,
)
from devices.x11 import DisplayLostError, WindowLostError, WindowSpec
from devices.x11_input import (
    BUTTONS,
    InjectOutcome,
    StopKeyListener,
    XTestInjector,
    parse_key_spec,
)

logger = logging.getLogger(__name__)

__all__ = [
    "InjectCounts",
    "InjectOutcome",
    "RemoteControl",
    "RemoteControlState",
    "RemoteControlStatus",
    "StopReason",
    "TokenBucket",
    "WindowSpec",
]


class RemoteControlState(StrEnum):
    IDLE = "idle"
    AWAITING_CONSENT = "awaiting_consent"
    ACTIVE = "active"
    STOPPED = "stopped"


class StopReason(StrEnum):
    """Why a session ended; sent to both sides so each UI can say it."""

    STOP_KEY = "stop_key"
    """The local stop key on the kiosk keyboard."""
    KIOSK = "kiosk"
    """Stopped from the kiosk's screen (the banner's stop button)."""
    AGENT = "agent"
    DENIED = "denied"
    CONSENT_TIMEOUT = "consent_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    MAX_DURATION = "max_duration"
    CALL_ENDED = "call_ended"
    DISPLAY_LOST = "display_lost"
    WINDOW_LOST = "window_lost"


@dataclass(frozen=True, slots=True)
class InjectCounts:
    """Per-session counters; logged at the end instead of the events themselves."""

    pointer: int = 0
    keys: int = 0
    rate_limited: int = 0
    refused: int = 0
    """Outside the window, not focused, or a forbidden key combination."""
    not_held: int = 0


@dataclass(frozen=True, slots=True)
class RemoteControlStatus:
    """A snapshot for the kiosk UI (consent prompt, banner) and the agent's page."""

    session_id: str
    state: RemoteControlState
    agent_name: str | None
    stop_key: str
    reason: StopReason | None
    counts: InjectCounts


Listener = Callable[[RemoteControlStatus], None]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up (default: one second's worth)."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise DeviceConfigError(f"rate {rate} must be positive")
        self._rate = rate
        self._burst = float(burst if burst is not None else rate)
        if self._burst < 1:
            raise DeviceConfigError(f"burst {burst} must be at least 1")
        self._clock = clock
        self._tokens = self._burst
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise DeviceConfigError(f"{name} {value!r} must be positive", field=name)
    return value


class RemoteControl:
    """One consented remote-control session on the kiosk window; see the module docstring."""

    def __init__(
        self,
        *,
        display: str,
        window: WindowSpec,
        stop_key: str = "Pause",
        pointer_rate: float = 60.0,
        key_rate: float = 20.0,
        consent_timeout: float = 60.0,
        idle_timeout: float = 300.0,
        max_duration: float = 1800.0,
        session_id: str | None = None,
        on_change: Listener | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parse_key_spec(stop_key)  # a bad stop key is a config error now, not at consent
        self._display = display
        self._window = window
        self._stop_key = stop_key
        self._consent_timeout = _positive("consent_timeout", consent_timeout)
        self._idle_timeout = _positive("idle_timeout", idle_timeout)
        self._max_duration = _positive("max_duration", max_duration)
        self._pointer_bucket = TokenBucket(_positive("pointer_rate", pointer_rate), clock=clock)
        self._key_bucket = TokenBucket(_positive("key_rate", key_rate), clock=clock)
        self.session_id = session_id if session_id is not None else uuid.uuid4().hex[:12]
        self._state = RemoteControlState.IDLE
        self._reason: StopReason | None = None
        self._agent_name: str | None = None
        self._counts: dict[str, int] = dict.fromkeys(
            ("pointer", "keys", "rate_limited", "refused", "not_held"), 0
        )
        self._listeners: list[Listener] = [on_change] if on_change is not None else []
        self._injector: XTestInjector | None = None
        self._stop_listener: StopKeyListener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._active_since = 0.0
        self._last_input = 0.0
        self._stopped = asyncio.Event()
        self._rate_warned = False

    @property
    def state(self) -> RemoteControlState:
        return self._state

    @property
    def status(self) -> RemoteControlStatus:
        return RemoteControlStatus(
            session_id=self.session_id,
            state=self._state,
            agent_name=self._agent_name,
            stop_key=self._stop_key,
            reason=self._reason,
            counts=InjectCounts(**self._counts),
        )

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _notify(self) -> None:
        status = self.status
        for listener in list(self._listeners):
            try:
                listener(status)
            except Exception:
                # A broken UI callback must not keep a session running or block a stop.
                logger.exception("remote control %s: state listener failed", self.session_id)

    def _require(self, action: str, *states: RemoteControlState) -> None:
        if self._state not in states:
            wanted = " or ".join(repr(s.value) for s in states)
            raise RemoteControlStateError(
                f"cannot {action}: remote control {self.session_id} is "
                f"{self._state.value!r}, not {wanted}"
            )

    async def request(self, agent_name: str) -> None:
        """Prepare everything, then ask the kiosk for consent (``awaiting_consent``)."""
        self._require("request consent", RemoteControlState.IDLE)
        name = agent_name.strip() if isinstance(agent_name, str) else ""
        if not 0 < len(name) <= 64:
            raise RemoteControlError(
                "agent_name must be 1 to 64 characters", field="agent_name"
            )
        loop = asyncio.get_running_loop()
        injector = XTestInjector(self._display, self._window)
        injector.open()
        stop_listener = StopKeyListener(
            self._display, self._stop_key, on_stop=self._on_stop_key
        )
        try:
            stop_listener.start()
        except BaseException:
            injector.close()
            raise
        self._loop = loop
        self._injector, self._stop_listener = injector, stop_listener
        self._agent_name = name
        self._state = RemoteControlState.AWAITING_CONSENT
        self._timers["consent"] = loop.call_later(self._consent_timeout, self._consent_expired)
        logger.info(
            "remote control %s: consent requested on display %s (stop key %s)",
            self.session_id, self._display, self._stop_key,
        )
        self._notify()

    def grant(self) -> None:
        """The citizen agreed on the kiosk: input is accepted from now on."""
        self._require("grant consent", RemoteControlState.AWAITING_CONSENT)
        if self._loop is None or self._injector is None:  # pragma: no cover - set by request
            raise RemoteControlStateError("remote control was not prepared")
        try:
            rect = self._injector.rect()
        except WindowLostError:
            self.stop(StopReason.WINDOW_LOST)
            raise
        except DisplayLostError:
            self.stop(StopReason.DISPLAY_LOST)
            raise
        self._cancel_timers()
        self._state = RemoteControlState.ACTIVE
        self._active_since = self._loop.time()
        self._last_input = self._active_since
        self._timers["max"] = self._loop.call_later(self._max_duration, self._max_reached)
        self._timers["idle"] = self._loop.call_later(self._idle_timeout, self._idle_check)
        logger.info(
            "remote control %s: active on a %dx%d window at %d,%d",
            self.session_id, rect.width, rect.height, rect.x, rect.y,
        )
        self._notify()

    def deny(self) -> None:
        """The citizen said no."""
        self._require("deny consent", RemoteControlState.AWAITING_CONSENT)
        self.stop(StopReason.DENIED)

    def stop(self, reason: StopReason | str = StopReason.AGENT) -> None:
        """End the session at once: release held input, ungrab the stop key. Idempotent."""
        if self._state is RemoteControlState.STOPPED:
            return
        try:
            why = StopReason(reason)
        except ValueError as err:
            raise RemoteControlError(
                f"unknown stop reason {reason!r}", field="reason"
            ) from err
        was_active = self._state is RemoteControlState.ACTIVE
        # Flip the state first: whatever happens below, no further event is accepted.
        self._state = RemoteControlState.STOPPED
        self._reason = why
        self._cancel_timers()
        injector, self._injector = self._injector, None
        stop_listener, self._stop_listener = self._stop_listener, None
        try:
            if injector is not None:
                injector.close()
        finally:
            if stop_listener is not None:
                stop_listener.stop()
            duration = (
                self._loop.time() - self._active_since
                if was_active and self._loop is not None else 0.0
            )
            c = self._counts
            logger.info(
                "remote control %s: stopped (%s) after %.1f s active: %d pointer and %d key "
                "events injected, %d over the rate limit, %d refused",
                self.session_id, why.value, duration, c["pointer"], c["keys"],
                c["rate_limited"], c["refused"],
            )
            self._stopped.set()
            self._notify()

    async def wait_stopped(self) -> StopReason:
        await self._stopped.wait()
        if self._reason is None:  # pragma: no cover - set together with the event
            raise RemoteControlStateError("stopped without a reason")
        return self._reason

    def inject_message(self, raw: str | bytes | Mapping[str, Any]) -> InjectOutcome:
        """Parse one data-channel message and inject it."""
        return self.inject(parse_remote_event(raw))

    def inject(self, event: RemoteEvent) -> InjectOutcome:
        """Inject one event into the kiosk window; only while ``active``."""
        self._require("inject input", RemoteControlState.ACTIVE)
        injector = self._injector
        if injector is None:  # pragma: no cover - set while active
            raise RemoteControlStateError("remote control has no display")
        try:
            outcome = self._dispatch(injector, event)
        except ForbiddenKeyError:
            self._counts["refused"] += 1
            raise
        except WindowLostError:
            self.stop(StopReason.WINDOW_LOST)
            raise
        except DisplayLostError:
            self.stop(StopReason.DISPLAY_LOST)
            raise
        self._count(event, outcome)
        return outcome

    def _dispatch(self, injector: XTestInjector, event: RemoteEvent) -> InjectOutcome:
        if isinstance(event, PointerUp):
            return injector.pointer_button(event.x, event.y, BUTTONS[event.button], False)
        if isinstance(event, KeyUp):
            return injector.key(KEY_CODES[event.code], False)
        if isinstance(event, KeyDown):
            if not self._key_bucket.take():
                return InjectOutcome.RATE_LIMITED
            if event.code not in MODIFIER_CODES:
                check_combo(injector.held_modifiers(), event.code)
            return injector.key(KEY_CODES[event.code], True)
        if not self._pointer_bucket.take():
            return InjectOutcome.RATE_LIMITED
        if isinstance(event, PointerMove):
            return injector.pointer_move(event.x, event.y)
        if isinstance(event, PointerDown):
            return injector.pointer_button(event.x, event.y, BUTTONS[event.button], True)
        if isinstance(event, Wheel):
            return injector.wheel(event.x, event.y, event.dx, event.dy)
        raise RemoteControlError(f"unhandled event type {type(event).__name__}")

    def _count(self, event: RemoteEvent, outcome: InjectOutcome) -> None:
        if outcome is InjectOutcome.INJECTED:
            kind = "keys" if isinstance(event, KeyDown | KeyUp) else "pointer"
            self._counts[kind] += 1
            if self._loop is not None:
                self._last_input = self._loop.time()
        elif outcome is InjectOutcome.RATE_LIMITED:
            self._counts["rate_limited"] += 1
            if not self._rate_warned:
                self._rate_warned = True
                logger.warning(
                    "remote control %s: input over the rate limit, dropping", self.session_id
                )
        elif outcome is InjectOutcome.NOT_HELD:
            self._counts["not_held"] += 1
        else:
            self._counts["refused"] += 1

    def _cancel_timers(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _on_stop_key(self, reason: str) -> None:
        self.stop(StopReason.STOP_KEY if reason == "stop_key" else StopReason.DISPLAY_LOST)

    def _consent_expired(self) -> None:
        self.stop(StopReason.CONSENT_TIMEOUT)

    def _max_reached(self) -> None:
        self.stop(StopReason.MAX_DURATION)

    def _idle_check(self) -> None:
        if self._loop is None or self._state is not RemoteControlState.ACTIVE:
            return
        idle = self._loop.time() - self._last_input
        if idle >= self._idle_timeout:
            self.stop(StopReason.IDLE_TIMEOUT)
            return
        # Rescheduled from the last input rather than per event: one timer, not sixty a second.
        self._timers["idle"] = self._loop.call_later(self._idle_timeout - idle, self._idle_check)
