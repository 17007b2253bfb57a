"""The one interface every device driver implements: :class:`Device`.

API
---
``Device`` (abstract)
    ``kind: ClassVar[str]``   -- "doccam", "idcard", ... (set by each interface class)
    ``name: str``             -- instance name for logs and config ("doccam0"), default = kind
    ``state: DeviceState``    -- "new" -> "started" -> "stopped" (may start again)
    ``async start() -> None`` -- open the hardware; raises ``DeviceStateError`` if already started
    ``async stop() -> None``  -- release it; safe to call twice and before ``start()``
    ``async with device:``    -- start on enter, stop on exit
    ``require_started(action)`` -- subclasses call this first in every operation; it raises
                                 ``DeviceStateError("... 'new' ...")`` quoting the state.

Subclasses implement ``_start()`` and ``_stop()``; the base class owns the state machine
so every driver guards the same way (like aiortc's ``InvalidStateError``).
"""

from __future__ import annotations

import abc
import enum
import logging
from types import TracebackType
from typing import ClassVar, Self

from devices.errors import DeviceStateError

logger = logging.getLogger(__name__)


class DeviceState(enum.StrEnum):
    """Life-cycle state of a :class:`Device`."""

    NEW = "new"
    STARTED = "started"
    STOPPED = "stopped"


class Device(abc.ABC):
    """A piece of kiosk hardware (or its simulator) with a ``start()/stop()`` life cycle."""

    kind: ClassVar[str] = "device"

    def __init__(self, *, name: str | None = None) -> None:
        self.name: str = name if name is not None else self.kind
        self._state = DeviceState.NEW

    @property
    def state(self) -> DeviceState:
        return self._state

    @property
    def started(self) -> bool:
        return self._state is DeviceState.STARTED

    async def start(self) -> None:
        """Open the device. Raises :class:`DeviceStateError` if it is already started."""
        if self._state is DeviceState.STARTED:
            raise DeviceStateError(f"{self.kind} device {self.name!r} is already 'started'")
        await self._start()
        self._state = DeviceState.STARTED
        logger.info("device %s (%s) started", self.name, self.kind)

    async def stop(self) -> None:
        """Release the device. Calling it twice, or before ``start()``, does nothing."""
        if self._state is not DeviceState.STARTED:
            return
        # Mark stopped first: a failing _stop() must not leave a half-open device
        # that a second stop() would try to close again.
        self._state = DeviceState.STOPPED
        try:
            await self._stop()
        finally:
            logger.info("device %s (%s) stopped", self.name, self.kind)

    def require_started(self, action: str) -> None:
        """Raise :class:`DeviceStateError` quoting the state unless the device is started."""
        if self._state is not DeviceState.STARTED:
            raise DeviceStateError(
                f"cannot {action}: {self.kind} device {self.name!r} is {self._state.value!r}, "
                "call start() first"
            )

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @abc.abstractmethod
    async def _start(self) -> None:
        """Open the hardware. Raise a :class:`DeviceError` subclass on failure."""

    @abc.abstractmethod
    async def _stop(self) -> None:
        """Release the hardware. Called at most once per successful ``_start()``."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} state={self._state.value!r}>"
