"""The kiosk device agent's screen share and remote control (远程操控协办).

The agent asks (``device.screen``): the kiosk desktop is published into the call as a
``screen`` track. The agent asks to operate the kiosk (``remote.request``): a
:class:`devices.remote_control.RemoteControl` session opens and waits for the citizen's
answer on the kiosk's own screen (``remote.consent``, accepted only from the kiosk's
page, never from an agent); every state change is reported to the call as
``remote.state`` so the kiosk shows its banner and the agent console its status.
Pointer and key events (``remote.input``) are injected only while the session is
active, inside the kiosk window, rate-limited; the local stop key, the kiosk's stop
button, the agent, or the end of the call stop it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from devices.errors import DeviceError
from devices.remote_control import (
    RemoteControl,
    RemoteControlState,
    RemoteControlStatus,
    StopReason,
)
from devices.screen import ScreenCapture
from devices.x11 import WindowSpec
from media.tracks import FrameSourceTrack
from signaling.client import HubPeer
from vwindow.config import RemoteControlConfig

logger = logging.getLogger(__name__)

SendState = Callable[[int, dict[str, Any]], Coroutine[Any, Any, None]]
"""(call id, remote.state fields) -> sent to the server."""


class RemoteDesk:
    """Screen share and remote control for one kiosk; one session at a time."""

    def __init__(self, screen: ScreenCapture | None, config: RemoteControlConfig,
                 send_state: SendState) -> None:
        self.screen = screen
        self.config = config
        self.send_state = send_state
        self.control: RemoteControl | None = None
        self._call_id: int | None = None
        self._sending: set[asyncio.Task[None]] = set()

    # -- screen share -----------------------------------------------------------------

    async def share_screen(self, peer: HubPeer | None, on: bool) -> str | None:
        """Publish or stop the kiosk desktop; an error text for the agent, or None."""
        if peer is None:
            return "no live call"
        if not on:
            await peer.unpublish("screen")
            return None
        if self.screen is None:
            return "本终端未配置屏幕共享 / screen sharing is not configured on this kiosk"
        if not self.screen.started:
            try:
                await self.screen.start()
            except DeviceError as err:
                return f"屏幕共享不可用 / screen share unavailable: {err.message}"
        await peer.publish("screen", FrameSourceTrack(self.screen.frame_source(),
                                                      fps=self.screen.fps))
        return None

    # -- remote control ---------------------------------------------------------------

    async def request(self, call_id: int, agent_name: str) -> None:
        if not self.config.enabled:
            await self.send_state(call_id, {"state": "stopped", "reason": "not_enabled"})
            return
        if self.control is not None and self.control.state in (
                RemoteControlState.AWAITING_CONSENT, RemoteControlState.ACTIVE):
            return  # already asked or running: the agent sees the state it is in
        self._call_id = call_id
        control = RemoteControl(
            display=self.config.display,
            window=WindowSpec(name=self.config.window_name or None,
                              wm_class=self.config.window_class or None),
            stop_key=self.config.stop_key, consent_timeout=self.config.consent_timeout_s)
        control.add_listener(self._changed)
        self.control = control
        try:
            await control.request(agent_name)
        except DeviceError as err:
            logger.warning("call %s: remote control unavailable: %s", call_id, err.message)
            self.control = None
            await self.send_state(call_id, {"state": "stopped", "reason": "unavailable"})

    def _changed(self, status: RemoteControlStatus) -> None:
        call_id = self._call_id
        if call_id is None:
            return
        fields: dict[str, Any] = {"state": status.state.value}
        if status.reason is not None:
            fields["reason"] = status.reason.value
        if status.agent_name:
            fields["agent_name"] = status.agent_name[:100]
        task = asyncio.get_running_loop().create_task(self.send_state(call_id, fields))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def consent(self, granted: bool) -> None:
        control = self.control
        if control is None or control.state is not RemoteControlState.AWAITING_CONSENT:
            return
        if granted:
            control.grant()
        else:
            control.deny()

    def stop(self, by: str) -> None:
        if self.control is not None:
            self.control.stop(StopReason.KIOSK if by == "kiosk" else StopReason.AGENT)

    def inject(self, event: dict[str, Any]) -> None:
        control = self.control
        if control is None or control.state is not RemoteControlState.ACTIVE:
            return  # without consent nothing is injected (and nothing is said)
        try:
            control.inject_message(event)
        except DeviceError as err:
            logger.debug("remote event refused: %s", err.code)

    async def call_ended(self, peer: HubPeer | None) -> None:
        if self.control is not None:
            self.control.stop(StopReason.CALL_ENDED)
            self.control = None
        if self.screen is not None and self.screen.started:
            await self.screen.stop()
        self._call_id = None
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
