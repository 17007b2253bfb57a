"""Scanner interface, the simulator, the evdev driver behind its event source, registry."""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import evdev
import pytest
from evdev import ecodes

from devices.errors import (
    DeviceConfigError,
    DeviceIOError,
    DeviceNotFoundError,
    DeviceStateError,
    ScannerOverflowError,
    ScannerPayloadError,
)
from devices.registry import DeviceRegistry, create_device
from devices.scanner import CodeScanner, ScannedCode, open_in_thread
from devices.scanner_evdev import EvdevScanner
from devices.scanner_keys import encode_typed, key_strokes
from devices.scanner_serial import SerialScanner
from devices.sim.scanner import SimulatedScanner

LICENCE = "营业执照 91340100MA2NXXXX1X"


async def next_code(scanner: CodeScanner) -> ScannedCode:
    async with asyncio.timeout(2):
        return await scanner.read_code()


async def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll: the states watched here (reconnects, consumers) have no event to await."""
    async with asyncio.timeout(timeout):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


# --- simulator -------------------------------------------------------------------------


async def test_sim_codes_arrive_in_order_through_the_key_decoder() -> None:
    async with SimulatedScanner() as sim:
        for text in ("6901234567892", "Hello, World!", LICENCE):
            await sim.scan(text)
        codes = [await next_code(sim) for _ in range(3)]
    assert [c.text for c in codes] == ["6901234567892", "Hello, World!", LICENCE]
    assert codes[2].raw == LICENCE.encode("utf-8")
    assert all(c.source == "scanner-sim" for c in codes)
    assert all(c.scanned_at.tzinfo is UTC for c in codes)


@pytest.mark.parametrize("payload", ["text", "hex", "base64"])
async def test_sim_payload_modes(payload: str) -> None:
    async with SimulatedScanner(payload=payload) as sim:
        await sim.scan(LICENCE)
        assert (await next_code(sim)).text == LICENCE


async def test_sim_grabs_its_device_and_releases_it_on_stop() -> None:
    sim = SimulatedScanner()
    await sim.start()
    source = sim.key_source
    assert source is not None
    assert source.grabbed
    await sim.stop()
    assert not source.grabbed
    assert source.closed


async def test_sim_start_stop_twice_and_restart() -> None:
    sim = SimulatedScanner()
    await sim.stop()  # before start: nothing
    await sim.start()
    with pytest.raises(DeviceStateError, match="already 'started'"):
        await sim.start()
    await sim.scan("left unread")
    await sim.stop()
    await sim.stop()
    await sim.start()  # a new run does not see the old run's unread code
    await sim.scan("second run")
    assert (await next_code(sim)).text == "second run"
    await sim.stop()


async def test_read_before_start_and_after_stop_names_the_state() -> None:
    sim = SimulatedScanner(name="desk-scanner")
    with pytest.raises(DeviceStateError, match="'desk-scanner' is 'new'"):
        await sim.read_code()
    with pytest.raises(DeviceStateError, match="'new'"):
        await sim.scan("x")
    await sim.start()
    await sim.stop()
    with pytest.raises(DeviceStateError, match="'stopped'"):
        await sim.read_code()


async def test_stop_wakes_every_waiting_reader() -> None:
    sim = SimulatedScanner()
    await sim.start()
    waiting = [asyncio.create_task(sim.read_code()) for _ in range(2)]
    await asyncio.sleep(0.01)
    await sim.stop()
    for task in waiting:
        with pytest.raises(DeviceStateError, match="was stopped"):
            async with asyncio.timeout(2):
                await task


async def test_bad_codes_are_reported_once_and_scanning_goes_on() -> None:
    async with SimulatedScanner(payload="hex", max_length=64) as sim:
        await sim.type_bytes(b"E890A")
        await sim.type_bytes(b"ZZ")
        await sim.type_bytes(b"41" * 40)
        await sim.scan("ok")
        with pytest.raises(ScannerPayloadError, match="odd number of hex digits"):
            await next_code(sim)
        with pytest.raises(ScannerPayloadError, match="character 1 is not a hex digit"):
            await next_code(sim)
        with pytest.raises(ScannerOverflowError):
            await next_code(sim)
        assert (await next_code(sim)).text == "ok"


async def test_unread_codes_beyond_max_pending_push_out_the_oldest() -> None:
    async with SimulatedScanner(max_pending=2) as sim:
        for text in ("1", "2", "3"):
            await sim.scan(text)
        await asyncio.sleep(0.01)
        assert [(await next_code(sim)).text for _ in range(2)] == ["2", "3"]


async def test_sim_unplug_is_reported_and_replug_reconnects() -> None:
    async with SimulatedScanner(reopen_interval=0.02) as sim:
        first = sim.key_source
        sim.unplug()
        with pytest.raises(DeviceIOError, match="No such device"):
            await next_code(sim)
        assert not sim.connected
        assert first is not None and first.closed
        with pytest.raises(DeviceIOError, match="unplugged"):
            await sim.scan("lost")
        await asyncio.sleep(0.1)  # several reopen attempts fail while unplugged
        assert not sim.connected
        sim.plug_in()
        await wait_for(lambda: sim.connected)
        await sim.scan("back")
        assert (await next_code(sim)).text == "back"


async def test_start_unplugged_fails_unless_told_otherwise() -> None:
    with pytest.raises(DeviceNotFoundError, match="unplugged"):
        await SimulatedScanner(plugged=False).start()
    async with SimulatedScanner(plugged=False, require_present=False, reopen_interval=0.02) as sim:
        assert not sim.connected
        with pytest.raises(DeviceNotFoundError):
            await next_code(sim)
        sim.plug_in()
        await wait_for(lambda: sim.connected)
        await sim.scan("late")
        assert (await next_code(sim)).text == "late"


def test_scanned_code_repr_hides_the_payload() -> None:
    code = ScannedCode(LICENCE, LICENCE.encode(), "utf-8", "scanner-sim", datetime.now(UTC))
    text = repr(code)
    assert "营业执照" not in text
    assert "91340100" not in text
    assert f"{len(LICENCE.encode())} bytes" in text


async def test_open_cancelled_midway_closes_what_the_thread_opened() -> None:
    release = threading.Event()
    closed: list[str] = []

    def slow_open() -> str:
        release.wait(2)
        return "port"

    opening = asyncio.create_task(open_in_thread(slow_open, closed.append))
    await asyncio.sleep(0.02)
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    assert closed == []
    release.set()
    await wait_for(lambda: closed == ["port"])


# --- evdev driver, fed by a stand-in for evdev.InputDevice ----------------------------


class FakeInputDevice:
    """The InputDevice surface the driver uses, yielding real ``evdev.InputEvent``s."""

    def __init__(self, events: Iterable[evdev.InputEvent], *, unplug_after: bool = False) -> None:
        self.events = list(events)
        self.unplug_after = unplug_after
        self.calls: list[str] = []
        self._closed = asyncio.Event()

    def grab(self) -> None:
        self.calls.append("grab")

    def ungrab(self) -> None:
        self.calls.append("ungrab")
        if self.unplug_after:
            raise OSError(errno.ENODEV, "No such device")

    def close(self) -> None:
        self.calls.append("close")
        self._closed.set()

    async def async_read_loop(self) -> AsyncIterator[evdev.InputEvent]:
        for event in self.events:
            yield event
        if self.unplug_after:
            raise OSError(errno.ENODEV, "No such device")
        await self._closed.wait()


def typed_events(text: str, payload: str = "text", t0: float = 1000.0) -> list[evdev.InputEvent]:
    events = []
    for i, (code, value) in enumerate(key_strokes(encode_typed(text, payload))):
        t = t0 + i * 0.002
        events.append(evdev.InputEvent(int(t), int(t % 1 * 1e6), ecodes.EV_KEY, code, value))
        events.append(evdev.InputEvent(int(t), int(t % 1 * 1e6), ecodes.EV_SYN, 0, 0))
    return events


async def test_evdev_driver_grabs_decodes_and_releases() -> None:
    device = FakeInputDevice(typed_events("Ab-12") + typed_events(LICENCE, "hex", t0=1001))
    scanner = EvdevScanner(open_source=lambda: device, payload="hex")
    await scanner.start()
    assert device.calls == ["grab"]
    with pytest.raises(ScannerPayloadError, match="not a hex digit"):
        await next_code(scanner)  # "Ab-12" is not hex
    code = await next_code(scanner)
    assert (code.text, code.source) == (LICENCE, "scanner-evdev")
    await scanner.stop()
    assert device.calls == ["grab", "ungrab", "close"]


async def test_evdev_device_gone_is_reported_and_reopened() -> None:
    devices = [
        FakeInputDevice(typed_events("first"), unplug_after=True),
        FakeInputDevice(typed_events("second", t0=2000)),
    ]
    opened: list[FakeInputDevice] = []

    def open_next() -> FakeInputDevice:
        if not devices:
            raise OSError(errno.ENOENT, "gone")
        opened.append(devices.pop(0))
        return opened[-1]

    async with EvdevScanner(open_source=open_next, reopen_interval=0.02) as scanner:
        assert (await next_code(scanner)).text == "first"
        with pytest.raises(DeviceIOError, match="No such device"):
            await next_code(scanner)
        assert opened[0].calls == ["grab", "ungrab", "close"]
        assert (await next_code(scanner)).text == "second"
        assert scanner.connected
    assert opened[1].calls == ["grab", "ungrab", "close"]


async def test_evdev_grab_refused_closes_the_device() -> None:
    class Busy(FakeInputDevice):
        def grab(self) -> None:
            self.calls.append("grab")
            raise OSError(errno.EBUSY, "Device or resource busy")

    device = Busy([])
    with pytest.raises(DeviceIOError, match="cannot grab"):
        await EvdevScanner(open_source=lambda: device).start()
    assert device.calls == ["grab", "close"]


async def test_evdev_missing_path_is_not_found(tmp_path: Path) -> None:
    scanner = EvdevScanner(path=str(tmp_path / "event99"))
    with pytest.raises(DeviceNotFoundError, match="event99' does not exist"):
        await scanner.start()
    assert not scanner.started


async def test_evdev_path_that_is_not_an_input_device(tmp_path: Path) -> None:
    node = tmp_path / "event0"
    node.write_bytes(b"")
    with pytest.raises(DeviceIOError, match="cannot open scanner input device"):
        await EvdevScanner(path=str(node)).start()


async def test_evdev_search_by_name_and_usb_id_finds_nothing(tmp_path: Path) -> None:
    (tmp_path / "event0").write_bytes(b"")  # not a character device: skipped
    scanner = EvdevScanner(input_dir=str(tmp_path), device_name="Honeywell", vendor="0c2e")
    with pytest.raises(DeviceNotFoundError, match="name containing 'Honeywell', vendor 0c2e"):
        await scanner.start()


def test_evdev_options_are_checked() -> None:
    with pytest.raises(DeviceConfigError, match="needs a path"):
        EvdevScanner()
    with pytest.raises(DeviceConfigError, match="'xyz' is not a hex USB id"):
        EvdevScanner(vendor="xyz")
    with pytest.raises(DeviceConfigError, match="'hexx'"):
        EvdevScanner(path="/dev/input/event0", payload="hexx")
    with pytest.raises(DeviceConfigError, match="'space'"):
        EvdevScanner(path="/dev/input/event0", suffix="space")


# --- registry ---------------------------------------------------------------------------


def test_registry_has_the_three_scanner_drivers() -> None:
    registry = DeviceRegistry.default()
    assert registry.drivers()["scanner"] == ("evdev", "serial", "sim")
    assert registry.load("scanner", "sim") is SimulatedScanner
    assert registry.load("scanner", "evdev") is EvdevScanner
    assert registry.load("scanner", "serial") is SerialScanner
    assert set(registry.available()["scanner"]) == {"evdev", "serial", "sim"}


async def test_create_device_builds_a_working_simulator() -> None:
    sim = create_device("scanner", "sim", name="kiosk-scanner", payload="hex")
    assert isinstance(sim, SimulatedScanner)
    assert sim.kind == "scanner"
    async with sim:
        await sim.scan("你好")
        assert (await next_code(sim)).text == "你好"


def test_create_device_rejects_unknown_scanner_options() -> None:
    with pytest.raises(DeviceConfigError, match="bad options"):
        create_device("scanner", "serial", colour="red")
