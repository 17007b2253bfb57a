"""Every private aiortc/aioice name in ``media.private_hooks`` still exists, with the
signature and the uses we rely on. An upgrade that breaks one fails here, by name."""

from __future__ import annotations

import ast
import asyncio
import inspect
import textwrap

import pytest
from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpreceiver import RemoteStreamTrack

from media.private_hooks import (
    PRIVATE_HOOKS,
    RECEIVER_JITTER_BUFFER,
    REMOTE_TRACK_QUEUE,
    PrivateHook,
)


def _describe(hook: PrivateHook) -> str:
    return f"{hook.target} ({hook.why})"


def _mentioned_names(func: object) -> set[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))  # type: ignore[arg-type]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.Name):
            names.add(node.id)
    return names


NAMED = [h for h in PRIVATE_HOOKS if h.kind != "attribute"]
INSTANCE_ATTRIBUTES = [h for h in PRIVATE_HOOKS if h.kind == "attribute"]


@pytest.mark.parametrize("hook", NAMED, ids=lambda h: h.target)
def test_private_hook_is_still_there(hook: PrivateHook) -> None:
    try:
        obj = hook.resolve()
    except (ImportError, AttributeError) as err:
        pytest.fail(f"{_describe(hook)} is gone: {err}")
    assert callable(obj), f"{_describe(hook)} is no longer callable"
    if hook.kind == "class":
        assert inspect.isclass(obj), f"{_describe(hook)} is no longer a class"
    if hook.params is not None:
        params = tuple(inspect.signature(obj).parameters)  # type: ignore[arg-type]
        assert params == hook.params, (
            f"{_describe(hook)}: signature changed from {hook.params} to {params}")
    if hook.references:
        mentioned = _mentioned_names(obj)
        missing = [name for name in hook.references if name not in mentioned]
        assert not missing, (
            f"{_describe(hook)}: its body no longer mentions {missing}; re-check how "
            "aiortc uses it before relying on the hook")


def test_every_hook_is_listed_once() -> None:
    targets = [h.target for h in PRIVATE_HOOKS]
    assert len(targets) == len(set(targets))
    assert "aioice.ice.get_host_addresses" in targets
    assert "aiortc.rtcrtpreceiver.decoder_worker" in targets
    # An instance attribute cannot be resolved from its class: each has its own test.
    assert INSTANCE_ATTRIBUTES == [REMOTE_TRACK_QUEUE, RECEIVER_JITTER_BUFFER]


def test_video_receiver_jitter_buffer_is_swappable() -> None:
    class Transport:  # all RTCRtpReceiver.__init__ reads of its transport
        state = "new"

    receiver = RTCRtpReceiver("video", Transport())  # type: ignore[arg-type]
    buffer = getattr(receiver, RECEIVER_JITTER_BUFFER.name, None)
    assert isinstance(buffer, JitterBuffer), (
        f"{_describe(RECEIVER_JITTER_BUFFER)}: found {type(buffer).__name__}")
    assert buffer.capacity == 512


async def test_remote_track_queue_is_the_worker_output_queue() -> None:
    track = RemoteStreamTrack(kind="video")
    queue = getattr(track, REMOTE_TRACK_QUEUE.name, None)
    assert isinstance(queue, asyncio.Queue), (
        f"{_describe(REMOTE_TRACK_QUEUE)}: found {type(queue).__name__}")
    # recv() must hand out whatever the worker put there, packets included.
    queue.put_nowait("anything")
    assert await track.recv() == "anything"
