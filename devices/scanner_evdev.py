"""Keyboard-wedge scanner on Linux through evdev (``python-evdev``): the driver.

The scanner is an input device that types each code and presses Enter. The driver
opens its ``/dev/input/eventN`` node (given, or found by name or USB vendor:product
among ``evdev.list_devices()``), grabs it (``EVIOCGRAB``) so the keystrokes never reach
the kiosk's browser, and decodes the key events with
:class:`devices.scanner_keys.KeyDecoder`. The kiosk user needs read access to the
node (group ``input`` or a udev rule). An unplugged scanner (``ENODEV``) is reported
as ``DeviceIOError`` and looked for again every ``reopen_interval`` seconds.

API
---
``EvdevScanner(KeyboardScanner)``  ("scanner" / "evdev" in the registry)
    ``EvdevScanner(*, name=None, path=None, device_name=None, vendor=None, product=None,
    input_dir="/dev/input", payload="text", suffix="enter", max_length=4096,
    key_timeout=1.0, reopen_interval=3.0, max_pending=64, require_present=True,
    open_source=None)``
    ``path`` wins; otherwise the first node whose name contains ``device_name``
    (case-insensitive) and/or whose ``vendor``/``product`` (int or hex string such as
    "0c2e") match, preferring nodes that have an Enter key (scanners often expose a
    second, consumer-control node). ``open_source`` (a callable returning a
    :class:`devices.scanner.KeyEventSource`) replaces the device lookup: tests and
    other event sources use it.
    Codes, errors and life cycle: see :class:`devices.scanner.CodeScanner`.
``open_input_device(path) -> evdev.InputDevice``  with errors translated
``find_input_device(*, input_dir, device_name, vendor, product) -> evdev.InputDevice``
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import ClassVar

import evdev

from devices.errors import DeviceConfigError, DeviceIOError, DeviceNotFoundError
from devices.scanner import KeyboardScanner, KeyEventSource, open_in_thread
from devices.scanner_keys import KEY_ENTER

logger = logging.getLogger(__name__)


def _usb_id(value: int | str | None, what: str) -> int | None:
    if value is None or isinstance(value, int):
        number = value
    else:
        try:
            number = int(value.removeprefix("0x"), 16)
        except ValueError:
            raise DeviceConfigError(f"scanner {what} {value!r} is not a hex USB id") from None
    if number is not None and not 0 <= number <= 0xFFFF:
        raise DeviceConfigError(f"scanner {what} {value!r} is not a 16-bit USB id")
    return number


def open_input_device(path: str) -> evdev.InputDevice[str]:
    """Open one ``/dev/input/eventN`` node."""
    try:
        return evdev.InputDevice(path)
    except FileNotFoundError as err:
        raise DeviceNotFoundError(f"scanner input device {path!r} does not exist") from err
    except PermissionError as err:
        raise DeviceIOError(
            f"no permission to read scanner input device {path!r} (add the kiosk user to "
            "group 'input' or install a udev rule)"
        ) from err
    except OSError as err:
        if err.errno in (errno.ENODEV, errno.ENXIO):
            raise DeviceNotFoundError(f"scanner input device {path!r} is gone") from err
        raise DeviceIOError(f"cannot open scanner input device {path!r}: {err}") from err


def find_input_device(
    *,
    input_dir: str = "/dev/input",
    device_name: str | None = None,
    vendor: int | None = None,
    product: int | None = None,
) -> evdev.InputDevice[str]:
    """The first input device matching name and USB ids, preferring ones with Enter."""
    wanted = device_name.casefold() if device_name is not None else None
    fallback: evdev.InputDevice[str] | None = None
    for path in sorted(evdev.list_devices(input_dir)):
        try:
            device: evdev.InputDevice[str] = evdev.InputDevice(path)
        except OSError:
            continue  # unreadable or vanished meanwhile; not ours to report
        matches = (
            (wanted is None or wanted in device.name.casefold())
            and (vendor is None or device.info.vendor == vendor)
            and (product is None or device.info.product == product)
        )
        if matches and KEY_ENTER in device.capabilities().get(evdev.ecodes.EV_KEY, []):
            if fallback is not None:
                fallback.close()
            return device
        if matches and fallback is None:
            fallback = device
        else:
            device.close()
    if fallback is not None:
        return fallback
    what = ", ".join(
        part
        for part in (
            f"name containing {device_name!r}" if device_name is not None else "",
            f"vendor {vendor:04x}" if vendor is not None else "",
            f"product {product:04x}" if product is not None else "",
        )
        if part
    )
    raise DeviceNotFoundError(f"no scanner input device in {input_dir!r} with {what}")


def _close_device(device: evdev.InputDevice[str]) -> None:
    device.close()


class EvdevScanner(KeyboardScanner):
    """A keyboard-wedge scanner read through evdev; see the module docstring."""

    source: ClassVar[str] = "scanner-evdev"

    def __init__(
        self,
        *,
        name: str | None = None,
        path: str | None = None,
        device_name: str | None = None,
        vendor: int | str | None = None,
        product: int | str | None = None,
        input_dir: str = "/dev/input",
        payload: str = "text",
        suffix: str = "enter",
        max_length: int = 4096,
        key_timeout: float = 1.0,
        reopen_interval: float = 3.0,
        max_pending: int = 64,
        require_present: bool = True,
        open_source: Callable[[], KeyEventSource] | None = None,
    ) -> None:
        super().__init__(
            name=name,
            payload=payload,
            suffix=suffix,
            max_length=max_length,
            key_timeout=key_timeout,
            reopen_interval=reopen_interval,
            max_pending=max_pending,
            require_present=require_present,
        )
        self._path = path
        self._device_name = device_name
        self._vendor = _usb_id(vendor, "vendor")
        self._product = _usb_id(product, "product")
        self._input_dir = input_dir
        self._open = open_source
        if open_source is None and path is None and device_name is None and self._vendor is None:
            raise DeviceConfigError(
                "evdev scanner needs a path, a device_name or a vendor (and product) to find it"
            )

    async def _open_source(self) -> KeyEventSource:
        if self._open is not None:
            try:
                return self._open()
            except OSError as err:
                raise DeviceIOError(f"scanner {self.name!r}: cannot open: {err}") from err
        # ioctls on every node: cheap, but blocking, so keep them off the event loop.
        path = self._path
        if path is not None:
            device = await open_in_thread(lambda: open_input_device(path), _close_device)
        else:
            device = await open_in_thread(
                lambda: find_input_device(
                    input_dir=self._input_dir,
                    device_name=self._device_name,
                    vendor=self._vendor,
                    product=self._product,
                ),
                _close_device,
            )
        logger.info(
            "scanner %s: opened input device %s (%04x:%04x)",
            self.name,
            device.path,
            device.info.vendor,
            device.info.product,
        )
        return device
