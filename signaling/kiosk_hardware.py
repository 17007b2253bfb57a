"""The kiosk's devices as configured (``[kiosk]``): build them, list what is there.

``build_devices`` makes the configured document camera, ID-card reader and scanner
through the driver registry (a driver whose library is missing fails alone, with the
reason). ``list_devices`` is ``vwindow kiosk --list-devices``: which drivers can load
here, and which camera, serial and input nodes the machine has, so an operator can
fill in the config.
"""

from __future__ import annotations

import glob
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from devices.base import Device
from devices.doccam import DocumentCamera
from devices.errors import DeviceError
from devices.idcard import IdCardReader
from devices.registry import DeviceRegistry
from devices.scanner import CodeScanner

if TYPE_CHECKING:
    from devices.screen import ScreenCapture
from vwindow.config import DeviceSlotConfig, KioskConfig

logger = logging.getLogger(__name__)


@dataclass
class KioskDevices:
    camera: DocumentCamera | None = None
    idcard: IdCardReader | None = None
    scanner: CodeScanner | None = None
    screen: ScreenCapture | None = None
    errors: dict[str, str] = field(default_factory=dict)
    """Kind -> why it could not be made (unknown driver, missing library, bad options)."""


def _make(registry: DeviceRegistry, kind: str, slot: DeviceSlotConfig,
          cls: type, devices: KioskDevices) -> Device | None:
    if slot.driver == "none":
        return None
    try:
        device = registry.create(kind, slot.driver, **slot.options)
    except DeviceError as err:
        devices.errors[kind] = err.message
        logger.warning("kiosk: %s driver %r not available: %s", kind, slot.driver, err.message)
        return None
    if not isinstance(device, cls):
        devices.errors[kind] = f"driver {slot.driver!r} is not a {kind} driver"
        return None
    return device


def build_devices(config: KioskConfig, registry: DeviceRegistry | None = None) -> KioskDevices:
    registry = registry or DeviceRegistry.default()
    devices = KioskDevices()
    camera = _make(registry, "doccam", config.doccam, DocumentCamera, devices)
    idcard = _make(registry, "idcard", config.idcard, IdCardReader, devices)
    scanner = _make(registry, "scanner", config.scanner, CodeScanner, devices)
    devices.camera = camera if isinstance(camera, DocumentCamera) else None
    devices.idcard = idcard if isinstance(idcard, IdCardReader) else None
    devices.scanner = scanner if isinstance(scanner, CodeScanner) else None
    if config.screen.driver != "none":
        # x11grab and python-xlib load only when the kiosk shares its screen.
        from devices.screen import ScreenCapture as Screen

        screen = _make(registry, "screen", config.screen, Screen, devices)
        devices.screen = screen if isinstance(screen, Screen) else None
    return devices


def _input_devices() -> list[str]:
    try:
        import evdev
    except ImportError as err:
        return [f"(evdev unavailable: {err})"]
    found = []
    for path in sorted(evdev.list_devices()):
        try:
            dev = evdev.InputDevice(path)
        except OSError as err:
            found.append(f"{path}  (cannot open: {err.strerror})")
            continue
        try:
            found.append(f"{path}  {dev.name!r}  usb {dev.info.vendor:04x}:"
                         f"{dev.info.product:04x}")
        finally:
            dev.close()
    return found


def _serial_ports() -> list[str]:
    from serial.tools import list_ports

    return [f"{p.device}  {p.description}" + (f"  usb {p.vid:04x}:{p.pid:04x}" if p.vid else "")
            for p in sorted(list_ports.comports(), key=lambda p: p.device)]


def list_devices(config: KioskConfig, registry: DeviceRegistry | None = None) -> str:
    """A report for people: drivers, configured slots, and the nodes found."""
    registry = registry or DeviceRegistry.default()
    lines = ["Drivers 驱动:"]
    missing = registry.unavailable()
    for kind, names in sorted(registry.drivers().items()):
        for name in names:
            reason = missing.get((kind, name))
            lines.append(f"  {kind:8} {name:7} " + (f"unavailable: {reason}" if reason
                                                    else "available"))
    lines.append("Configured 已配置:")
    for kind in ("doccam", "idcard", "scanner", "screen"):
        slot: DeviceSlotConfig = getattr(config, kind)
        opts = ", ".join(f"{k}={v!r}" for k, v in slot.options.items())
        lines.append(f"  {kind:8} {slot.driver}" + (f" ({opts})" if opts else ""))
    lines.append("Cameras 摄像头 (/dev/video*):")
    lines += [f"  {p}  {_video_name(p)}" for p in sorted(glob.glob("/dev/video*"))] or ["  none"]
    lines.append("Serial ports 串口 (ID reader, serial scanner):")
    lines += [f"  {p}" for p in _serial_ports()] or ["  none"]
    lines.append("Input devices 输入设备 (keyboard-wedge scanner):")
    lines += [f"  {p}" for p in _input_devices()] or ["  none"]
    return "\n".join(lines)


def _video_name(path: str) -> str:
    name = Path("/sys/class/video4linux") / Path(path).name / "name"
    try:
        return repr(name.read_text().strip())
    except OSError:
        return ""
