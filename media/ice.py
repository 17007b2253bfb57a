"""ICE host addresses for the hub.

aioice gathers a host candidate on every interface except loopback. A hub must offer
exactly the addresses clients can reach (the public IP behind a NAT, or 127.0.0.1 in a
test or demo), so the hub replaces ``aioice.ice.get_host_addresses`` while it runs.
That module attribute is private API; ``tests/unit/media/test_private_hooks.py``
fails loudly if an aioice upgrade removes or renames it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aioice.ice

logger = logging.getLogger(__name__)

_HOOK = "get_host_addresses"


class HostAddresses:
    """While started, aioice gathers host candidates only on ``addresses``."""

    def __init__(self, addresses: tuple[str, ...]) -> None:
        self.addresses = addresses
        self._original: Callable[[bool, bool], list[str]] | None = None

    def _gather(self, use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in self.addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    def start(self) -> None:
        if not self.addresses or self._original is not None:
            return
        original = getattr(aioice.ice, _HOOK, None)
        if original is None:
            raise RuntimeError(f"aioice.ice.{_HOOK} is gone: the ICE address hook needs updating")
        self._original = original
        setattr(aioice.ice, _HOOK, self._gather)
        logger.info("hub ICE host addresses: %s", ", ".join(self.addresses))

    def stop(self) -> None:
        if self._original is not None:
            setattr(aioice.ice, _HOOK, self._original)
            self._original = None
