"""The node's media service: the hubs of the sessions live on this node."""

from __future__ import annotations

import logging

from media.forwarding import ForwardingHook
from media.hub import MemberState, Notify, SessionHub
from media.ice import HostAddresses

logger = logging.getLogger(__name__)


class MediaService:
    def __init__(self, notify: Notify, *, ice_addresses: tuple[str, ...],
                 video_codec: str = "VP8", forward: bool = True,
                 on_member_state: MemberState | None = None) -> None:
        self._notify = notify
        self.on_member_state = on_member_state
        self._ice = HostAddresses(ice_addresses)
        self._forwarding = ForwardingHook() if forward else None
        self.video_codec = video_codec
        self._hubs: dict[int, SessionHub] = {}

    async def start(self) -> None:
        self._ice.start()
        if self._forwarding is not None:
            self._forwarding.start()

    async def stop(self) -> None:
        for session_id in list(self._hubs):
            await self.close_hub(session_id)
        self._ice.stop()
        if self._forwarding is not None:
            self._forwarding.stop()

    def hub(self, session_id: int) -> SessionHub:
        """The session's hub, created on first use."""
        hub = self._hubs.get(session_id)
        if hub is None:
            hub = SessionHub(session_id, self._notify, video_codec=self.video_codec,
                             forwarding=self._forwarding,
                             on_member_state=self.on_member_state)
            self._hubs[session_id] = hub
            logger.info("session %s: hub opened", session_id)
        return hub

    def find(self, session_id: int) -> SessionHub | None:
        return self._hubs.get(session_id)

    async def close_hub(self, session_id: int) -> None:
        hub = self._hubs.pop(session_id, None)
        if hub is not None:
            await hub.stop()
            logger.info("session %s: hub closed", session_id)

    @property
    def live_sessions(self) -> list[int]:
        return list(self._hubs)
