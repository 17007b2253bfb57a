"""Document camera (高拍仪) interface: full-resolution JPEG stills and a live preview.

API
---
``Size(width: int, height: int)``  NamedTuple
``Still``  frozen dataclass ``(jpeg: bytes, width: int, height: int, captured_at: datetime)``
    ``captured_at`` is timezone-aware UTC. ``jpeg`` is a complete JPEG file as the camera
    produced it (no re-encode on the UVC/PyAV path).
``DocumentCamera(Device)``, ``kind = "doccam"`` (abstract)
    ``async capture_still() -> Still``        full resolution (``still_size``)
    ``async preview_frame() -> numpy.ndarray`` BGR ``uint8``, shape ``(h, w, 3)`` at
                                               ``preview_size``; cheap, call it per video frame
    ``preview_size -> Size``, ``still_size -> Size``  properties
    Both operations raise ``DeviceStateError`` before ``start()`` / after ``stop()``.

Drivers: ``devices.sim.doccam.SimulatedDocumentCamera`` ("sim"),
``devices.uvc.UvcDocumentCamera`` ("uvc").
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt

from devices.base import Device

BgrImage = npt.NDArray[np.uint8]


class Size(NamedTuple):
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Still:
    """One full-resolution photograph from the document camera, JPEG-encoded."""

    jpeg: bytes
    width: int
    height: int
    captured_at: datetime

    def __repr__(self) -> str:
        # The JPEG may show a citizen's documents: keep it out of reprs and logs.
        return (
            f"Still({self.width}x{self.height}, {len(self.jpeg)} bytes, "
            f"captured_at={self.captured_at.isoformat()})"
        )


class DocumentCamera(Device):
    """A camera looking down at the desk: stills for the case file, frames for the call."""

    kind: ClassVar[str] = "doccam"

    @property
    @abc.abstractmethod
    def preview_size(self) -> Size:
        """Size of :meth:`preview_frame` images."""

    @property
    @abc.abstractmethod
    def still_size(self) -> Size:
        """Size of :meth:`capture_still` images."""

    @abc.abstractmethod
    async def capture_still(self) -> Still:
        """Take one full-resolution photograph."""

    @abc.abstractmethod
    async def preview_frame(self) -> BgrImage:
        """The current live view, BGR ``uint8`` at :attr:`preview_size`."""
