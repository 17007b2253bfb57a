"""The node's media service: the hubs of the sessions live on this node."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from media.bitrate_estimator import EstimatorSpeedup
from media.errors import MediaError
from media.forwarding import ForwardingHook
from media.hub import MemberState, Notify, SessionHub
from media.ice import HostAddresses
from media.recording import NothingRecordedError, RecordingResult, SessionRecorder, recover
from media.speedups import PacketPathSpeedup

logger = logging.getLogger(__name__)


class MediaService:
    def __init__(self, notify: Notify, *, ice_addresses: tuple[str, ...],
                 video_codec: str = "VP8", forward: bool = True,
                 on_member_state: MemberState | None = None,
                 recordings_dir: Path | None = None) -> None:
        self._notify = notify
        self.recordings_dir = recordings_dir if forward else None
        self.on_member_state = on_member_state
        self._ice = HostAddresses(ice_addresses)
        self._forwarding = ForwardingHook() if forward else None
        self._speedups = (EstimatorSpeedup(), PacketPathSpeedup())
        self.video_codec = video_codec
        self._hubs: dict[int, SessionHub] = {}

    async def start(self) -> None:
        self._ice.start()
        for speedup in self._speedups:
            speedup.start()
        if self._forwarding is not None:
            self._forwarding.start()

    async def stop(self) -> None:
        # The switchboard closes live hubs first (to keep their recordings); any left
        # here are closed without.
        for session_id in list(self._hubs):
            hub = self._hubs.pop(session_id)
            await hub.stop()
            if hub.recorder is not None:
                await hub.recorder.abort()
        self._ice.stop()
        for speedup in self._speedups:
            speedup.stop()
        if self._forwarding is not None:
            self._forwarding.stop()

    def hub(self, session_id: int) -> SessionHub:
        """The session's hub, created on first use."""
        hub = self._hubs.get(session_id)
        if hub is None:
            recorder = None
            if self.recordings_dir is not None:
                # Started by the hub at the first publication it records: a hub opened
                # while the call rings records nothing until the answer, and the
                # recording's clock starts then, not at the first ring.
                recorder = SessionRecorder(session_id, self.recordings_dir)
            hub = SessionHub(session_id, self._notify, video_codec=self.video_codec,
                             forwarding=self._forwarding,
                             on_member_state=self.on_member_state, recorder=recorder)
            self._hubs[session_id] = hub
            logger.info("session %s: hub opened", session_id)
        return hub

    def find(self, session_id: int) -> SessionHub | None:
        return self._hubs.get(session_id)

    async def close_hub(self, session_id: int) -> RecordingResult | None:
        """Close the session's hub; its finished recording, if there is one."""
        hub = self._hubs.pop(session_id, None)
        if hub is None:
            return None
        await hub.stop()
        logger.info("session %s: hub closed", session_id)
        if hub.recorder is None:
            return None
        if hub.recorder.state == "new":  # never answered: nothing was to be recorded
            await hub.recorder.abort()
            return None
        try:
            result = await hub.recorder.finish()
        except NothingRecordedError:
            logger.info("session %s: nothing was recorded", session_id)
            return None
        except MediaError:
            logger.exception("session %s: recording could not be finished", session_id)
            return None
        logger.info("session %s: recording finished, %.1f s, %d bytes", session_id,
                    result.duration_s, result.size)
        return result

    async def recover_recordings(self) -> list[RecordingResult]:
        """Finish the recordings a crashed process left behind (at start-up)."""
        if self.recordings_dir is None:
            return []
        return await asyncio.to_thread(recover, self.recordings_dir)

    @property
    def live_sessions(self) -> list[int]:
        return list(self._hubs)
