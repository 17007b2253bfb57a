"""Device life cycle: start/stop guards shared by every driver."""

from __future__ import annotations

import pytest

from devices.base import Device, DeviceState
from devices.errors import DeviceError, DeviceStateError
from devices.sim.doccam import SimulatedDocumentCamera

SMALL = {"still_size": (320, 240), "preview_size": (160, 120)}


class CountingDevice(Device):
    kind = "counter"

    def __init__(self) -> None:
        super().__init__()
        self.opened = 0
        self.closed = 0

    async def _start(self) -> None:
        self.opened += 1

    async def _stop(self) -> None:
        self.closed += 1


async def test_stop_twice_closes_once() -> None:
    device = CountingDevice()
    await device.start()
    await device.stop()
    await device.stop()
    assert (device.opened, device.closed) == (1, 1)
    assert device.state is DeviceState.STOPPED


async def test_stop_before_start_is_a_no_op() -> None:
    device = CountingDevice()
    await device.stop()
    assert device.closed == 0
    assert device.state is DeviceState.NEW


async def test_start_twice_names_the_state() -> None:
    device = CountingDevice()
    await device.start()
    with pytest.raises(DeviceStateError, match="'started'"):
        await device.start()
    await device.stop()


async def test_restart_after_stop() -> None:
    device = CountingDevice()
    await device.start()
    await device.stop()
    await device.start()
    assert device.started
    await device.stop()
    assert (device.opened, device.closed) == (2, 2)


async def test_async_with_starts_and_stops() -> None:
    async with CountingDevice() as device:
        assert device.state is DeviceState.STARTED
    assert device.state is DeviceState.STOPPED


async def test_camera_used_before_start_quotes_state() -> None:
    camera = SimulatedDocumentCamera(**SMALL)
    with pytest.raises(DeviceStateError, match="'new'") as info:
        await camera.capture_still()
    assert isinstance(info.value, DeviceError)
    assert "start()" in str(info.value)
    with pytest.raises(DeviceStateError, match="'new'"):
        await camera.preview_frame()


async def test_camera_used_after_stop_quotes_state() -> None:
    camera = SimulatedDocumentCamera(**SMALL)
    await camera.start()
    await camera.stop()
    await camera.stop()
    with pytest.raises(DeviceStateError, match="'stopped'"):
        await camera.preview_frame()


def test_device_error_is_a_vwindow_error() -> None:
    from vwindow.errors import VWindowError

    assert issubclass(DeviceError, VWindowError)
    assert DeviceStateError("x").message == "x"
