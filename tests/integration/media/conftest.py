"""Fixtures for the forwarding tests: the hook installed around each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from media.forwarding import ForwardingHook


@pytest.fixture
def hook() -> Iterator[ForwardingHook]:
    hook = ForwardingHook()
    hook.start()
    try:
        yield hook
    finally:
        hook.stop()
