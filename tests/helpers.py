"""Test helpers: synthetic media tracks and waiting for pushed messages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack

from media.tracks import FrameSourceTrack
from signaling.client import HubPeer, SignalClient

if TYPE_CHECKING:
    from tests.conftest import Server


def color_track(width: int, height: int, bgr: tuple[int, int, int], fps: float = 15) -> \
        FrameSourceTrack:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:] = bgr

    async def source() -> np.ndarray:
        return image

    return FrameSourceTrack(source, fps=fps)


def camera_and_mic(width: int = 320, height: int = 240,
                   bgr: tuple[int, int, int] = (0, 128, 255)) -> dict[str, MediaStreamTrack]:
    return {"camera": color_track(width, height, bgr), "mic": AudioStreamTrack()}


async def wait_for(client: SignalClient, msg_type: str, timeout: float = 10.0,
                   pred: Callable[[dict[str, Any]], bool] = lambda m: True) -> dict[str, Any]:
    """The first message of ``msg_type`` received so far or arriving within ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    seen = 0
    while True:
        for msg in client.received[seen:]:
            if msg.get("type") == msg_type and pred(msg):
                client.received.remove(msg)
                return msg
        seen = 0
        if asyncio.get_running_loop().time() > deadline:
            types = [m.get("type") for m in client.received]
            raise TimeoutError(f"no {msg_type!r} within {timeout}s (got {types})")
        await asyncio.sleep(0.02)


async def first_frame(peer: HubPeer, role: str, kind: str, timeout: float = 15.0) -> Any:
    """Receive the first frame of the remote track with ``role`` from a participant ``kind``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for info, track in reversed(list(peer.remote.values())):  # newest first
            if info["role"] == role and info["participant"]["kind"] == kind:
                remaining = deadline - asyncio.get_running_loop().time()
                return await asyncio.wait_for(track.recv(), max(remaining, 0.1))
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"no {kind} {role} track (have {list(peer.remote)})")
        await asyncio.sleep(0.05)


async def answered_call(server: Server, service_code: str = "SB-001", agent: str = "agent1",
                        ) -> tuple[SignalClient, SignalClient, int, int]:
    """The demo kiosk calls; ``agent`` comes on duty and answers. Returns the connected
    kiosk and agent clients, the call id and the case id."""
    kiosk = SignalClient(server.http, server.url, await server.kiosk_token())
    staff = SignalClient(server.http, server.url, await server.login(agent))
    await kiosk.connect()
    await staff.connect()
    queued = await kiosk.request("call.start", service_code=service_code)
    call_id, case_id = queued["call"]["call_id"], queued["call"]["case_id"]
    await staff.request("agent.state", state="ready")
    await wait_for(staff, "call.ringing")
    await staff.request("call.accept", call_id=call_id)
    return kiosk, staff, call_id, case_id


async def connected(*peers: HubPeer, timeout: float = 15.0) -> None:
    """Until every peer's connection to the hub is up."""
    changed = asyncio.Event()
    for peer in peers:
        peer.pc.on("connectionstatechange", changed.set)
    async with asyncio.timeout(timeout):
        while any(p.pc.connectionState != "connected" for p in peers):
            changed.clear()
            await changed.wait()
