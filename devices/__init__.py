"""Kiosk devices: one :class:`~devices.base.Device` interface, drivers and simulators.

Modules: ``base`` (the interface), ``registry`` (lazy driver table, ``create_device``),
``errors``, ``doccam`` (document camera interface), ``uvc`` (real camera),
``idcard`` (SAM ID-card reader driver) with ``idcard_protocol`` (frames, statuses) and
``idcard_text`` (card text layouts), ``idnumber`` (GB 11643 checks, masking),
``qr`` (QR/barcode decoding) and ``sim`` (simulators: ``sim.doccam``, ``sim.idcard``).
Importing this package imports no driver and no vendor library. ``devices`` imports
only ``vwindow``.
"""

from __future__ import annotations

from devices.base import Device, DeviceState
from devices.errors import DeviceError
from devices.registry import DeviceRegistry, available_drivers, create_device

__all__ = [
    "Device",
    "DeviceError",
    "DeviceRegistry",
    "DeviceState",
    "available_drivers",
    "create_device",
]
