"""Kiosk screen share and consented remote control end to end, under a real Xvfb: the
agent sees the kiosk desktop as a screen track; its clicks land in the kiosk window only
after the citizen said yes on the kiosk's own page, and stop when the kiosk stops."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devices.screen import ScreenCapture
from devices.sim.doccam import SimulatedDocumentCamera
from signaling.client import ClientError, HubPeer
from signaling.kioskagent import KioskAgent
from tests.conftest import Server
from tests.helpers import answered_call, first_frame, wait_for
from tests.unit.devices.xvfb import BLUE, Press, ProbeWindow, XServer, xvfb
from vwindow.config import RemoteControlConfig

KIOSK_CLASS = ("vwindow-kiosk", "VWindowKiosk")


@pytest.fixture
def xserver() -> Iterator[XServer]:
    with xvfb(640, 480) as x:
        yield x


def _click(x: float, y: float) -> list[dict[str, Any]]:
    return [{"type": "pointerdown", "x": x, "y": y, "button": "left"},
            {"type": "pointerup", "x": x, "y": y, "button": "left"}]


async def _presses(window: ProbeWindow, want: int) -> list[Press]:
    for _ in range(40):
        found = window.presses()
        if len(found) >= want:
            return found
        await asyncio.sleep(0.05)
    return window.presses()


async def test_screen_share_and_remote_control_with_consent(
        server: Server, xserver: XServer, tmp_path: Path) -> None:
    kiosk_window = ProbeWindow(xserver.display, 100, 50, 200, 150, name="kiosk",
                               wm_class=KIOSK_CLASS)
    other = ProbeWindow(xserver.display, 300, 50, 200, 150, colour=BLUE, name="other")
    devices = KioskAgent(
        server.url, "kiosk-tx01", "demo-kiosk-key", SimulatedDocumentCamera(seed=1),
        screen=ScreenCapture(display=xserver.display, fps=5),
        remote=RemoteControlConfig(enabled=True, display=xserver.display,
                                   window_class=KIOSK_CLASS[0]),
        spool_dir=tmp_path / "spool")
    await devices.start()
    try:
        await asyncio.wait_for(devices.connected.wait(), 10)
        kiosk, staff, call_id, _ = await answered_call(server)
        agent_peer = HubPeer(staff, call_id, {})
        await agent_peer.join()

        # The agent looks at the kiosk desktop.
        await staff.request("device.screen", call_id=call_id, on=True)
        frame = await first_frame(agent_peer, "screen", "devices")
        assert (frame.width, frame.height) == (640, 480)

        # Before consent, the agent's click goes nowhere.
        for event in _click(0.5, 0.5):
            await staff.request("remote.input", call_id=call_id, event=event)
        await asyncio.sleep(0.3)
        assert kiosk_window.presses() == []

        await staff.request("remote.request", call_id=call_id)
        asking = await wait_for(kiosk, "remote.state",
                                pred=lambda m: m["state"] == "awaiting_consent")
        assert asking["agent_name"]
        # An agent cannot answer for the citizen.
        with pytest.raises(ClientError) as refused:
            await staff.request("remote.consent", call_id=call_id, granted=True)
        assert refused.value.code == "forbidden"
        await kiosk.request("remote.consent", call_id=call_id, granted=True)
        await wait_for(staff, "remote.state", pred=lambda m: m["state"] == "active")

        for event in _click(0.5, 0.5) + _click(1.5, -1):
            await staff.request("remote.input", call_id=call_id, event=event)
        # The centre of the kiosk window, and the clamped corner; nothing next door.
        assert await _presses(kiosk_window, 2) == [Press(100, 75, 1), Press(199, 0, 1)]
        assert other.input_events() == []

        # The citizen stops it from the kiosk: nothing more gets through.
        await kiosk.request("remote.stop", call_id=call_id)
        stopped = await wait_for(staff, "remote.state", pred=lambda m: m["state"] == "stopped")
        assert stopped["reason"] == "kiosk"
        for event in _click(0.2, 0.2):
            await staff.request("remote.input", call_id=call_id, event=event)
        await asyncio.sleep(0.3)
        assert len(kiosk_window.presses()) == 2
        await agent_peer.close()
        for c in (kiosk, staff):
            await c.close()
    finally:
        await devices.stop()
        kiosk_window.close()
        other.close()


async def test_remote_control_off_unless_enabled(server: Server, tmp_path: Path) -> None:
    devices = KioskAgent(server.url, "kiosk-tx01", "demo-kiosk-key",
                         SimulatedDocumentCamera(seed=1), spool_dir=tmp_path / "spool")
    await devices.start()
    try:
        await asyncio.wait_for(devices.connected.wait(), 10)
        kiosk, staff, call_id, _ = await answered_call(server)
        await asyncio.sleep(0.5)  # the device agent joins the call
        await staff.request("remote.request", call_id=call_id)
        state = await wait_for(staff, "remote.state")
        assert (state["state"], state["reason"]) == ("stopped", "not_enabled")
        for c in (kiosk, staff):
            await c.close()
    finally:
        await devices.stop()
