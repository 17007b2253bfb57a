"""Serial scanners: line framing, and the driver over loop:// and socket://."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
import serial

from devices.errors import (
    DeviceConfigError,
    DeviceIOError,
    DeviceNotFoundError,
    ScannerOverflowError,
    ScannerPayloadError,
)
from devices.scanner import ScannedCode
from devices.scanner_serial import LineFramer, SerialScanner

LICENCE = "营业执照 91340100MA2NXXXX1X"


def frames(out: list[bytes | ScannerOverflowError]) -> list[bytes | str]:
    return [item if isinstance(item, bytes) else "overflow" for item in out]


@pytest.mark.parametrize("ending", [b"\r", b"\n", b"\r\n"])
def test_auto_suffix_takes_cr_lf_and_crlf(ending: bytes) -> None:
    framer = LineFramer()
    assert frames(framer.feed(b"A1" + ending + b"B2" + ending)) == [b"A1", b"B2"]
    assert framer.pending == 0


@pytest.mark.parametrize(
    ("suffix", "data", "expected"),
    [
        ("cr", b"a\nb\rc\r", [b"a\nb", b"c"]),
        ("lf", b"a\rb\nc\n", [b"a\rb", b"c"]),
        ("crlf", b"a\rb\nc\r\nd\r\n", [b"a\rb\nc", b"d"]),
    ],
)
def test_configured_suffix_keeps_other_line_ends(
    suffix: str, data: bytes, expected: list[bytes]
) -> None:
    assert frames(LineFramer(suffix=suffix).feed(data)) == expected


def test_frames_split_across_reads() -> None:
    framer = LineFramer(suffix="crlf")
    assert framer.feed(b"ABC") == []
    assert framer.feed(b"DEF\r") == []
    assert frames(framer.feed(b"\nGH")) == [b"ABCDEF"]
    assert frames(framer.feed(b"\r\n")) == [b"GH"]
    auto = LineFramer()
    assert frames(auto.feed(b"XY\r")) == [b"XY"]
    assert auto.feed(b"\n") == []  # the LF of that CR LF is not an empty code


def test_overlong_code_is_discarded_once_with_bounded_memory() -> None:
    framer = LineFramer(max_length=10)
    out = framer.feed(b"0123456789ABCDEF")
    assert out == []
    assert framer.pending == 0
    for _ in range(100):
        framer.feed(b"x" * 50)
        assert framer.pending <= 10
    out = framer.feed(b"tail\rnext\r")
    assert frames(out) == ["overflow", b"next"]
    assert "longer than 10 bytes" in str(out[0])


def test_overlong_complete_frame_in_one_read() -> None:
    assert frames(LineFramer(max_length=3).feed(b"abcd\rabc\r")) == ["overflow", b"abc"]


def test_crlf_limit_keeps_a_trailing_cr() -> None:
    framer = LineFramer(suffix="crlf", max_length=3)
    assert framer.feed(b"abc\r") == []
    assert frames(framer.feed(b"\n")) == [b"abc"]


def test_bad_suffix_is_named() -> None:
    with pytest.raises(DeviceConfigError, match="'tab'"):
        SerialScanner(url="loop://", suffix="tab")


class LoopPorts:
    """A port factory handing out loop:// ports that the test writes into."""

    def __init__(self) -> None:
        self.ports: list[serial.SerialBase] = []

    def __call__(self) -> serial.SerialBase:
        port = serial.serial_for_url("loop://", timeout=0.05)
        self.ports.append(port)
        return port

    @property
    def current(self) -> serial.SerialBase:
        return self.ports[-1]


@pytest.fixture
async def loop_ports() -> AsyncIterator[LoopPorts]:
    ports = LoopPorts()
    yield ports
    for port in ports.ports:
        port.close()


def make_scanner(
    ports: LoopPorts, *, suffix: str = "auto", payload: str = "text", max_length: int = 4096
) -> SerialScanner:
    return SerialScanner(
        url="loop://",
        port_factory=ports,
        read_timeout=0.05,
        reopen_interval=0.05,
        suffix=suffix,
        payload=payload,
        max_length=max_length,
    )


async def next_code(scanner: SerialScanner) -> ScannedCode:
    async with asyncio.timeout(2):
        return await scanner.read_code()


async def test_codes_with_cr_lf_and_crlf_arrive_in_order(loop_ports: LoopPorts) -> None:
    async with make_scanner(loop_ports) as scanner:
        loop_ports.current.write(b"6901234567892\rhttps://example.cn/a?b=1\nABC-123\r\n")
        texts = [(await next_code(scanner)).text for _ in range(3)]
    assert texts == ["6901234567892", "https://example.cn/a?b=1", "ABC-123"]


async def test_utf8_and_gb18030_chinese_payloads(loop_ports: LoopPorts) -> None:
    async with make_scanner(loop_ports) as scanner:
        loop_ports.current.write(LICENCE.encode("utf-8") + b"\r\n")
        loop_ports.current.write(LICENCE.encode("gb18030") + b"\r\n")
        first, second = await next_code(scanner), await next_code(scanner)
    assert (first.text, first.encoding) == (LICENCE, "utf-8")
    assert (second.text, second.encoding) == (LICENCE, "gb18030")
    assert second.raw == LICENCE.encode("gb18030")
    assert second.source == "scanner-serial"
    assert LICENCE not in repr(second)
    assert "91340100" not in repr(second)


async def test_frame_split_across_reads(loop_ports: LoopPorts) -> None:
    async with make_scanner(loop_ports, suffix="crlf") as scanner:
        encoded = LICENCE.encode("utf-8")
        loop_ports.current.write(encoded[:5])  # cuts 营 in the middle
        await asyncio.sleep(0.15)  # several read timeouts pass in between
        loop_ports.current.write(encoded[5:] + b"\r")
        await asyncio.sleep(0.15)
        loop_ports.current.write(b"\n")
        code = await next_code(scanner)
    assert code.text == LICENCE


async def test_overlong_input_is_reported_and_the_next_code_reads(loop_ports: LoopPorts) -> None:
    async with make_scanner(loop_ports, max_length=16) as scanner:
        loop_ports.current.write(b"9" * 40 + b"\r" + b"short\r")
        with pytest.raises(ScannerOverflowError, match="longer than 16 bytes"):
            await next_code(scanner)
        assert (await next_code(scanner)).text == "short"
        assert isinstance(scanner.last_error, ScannerOverflowError)


async def test_hex_payload_mode_and_bad_hex(loop_ports: LoopPorts) -> None:
    async with make_scanner(loop_ports, payload="hex") as scanner:
        loop_ports.current.write(b"ABC\r" + LICENCE.encode().hex().encode() + b"\r")
        with pytest.raises(ScannerPayloadError, match="odd number"):
            await next_code(scanner)
        assert (await next_code(scanner)).text == LICENCE


async def test_unplugged_port_is_reported_then_reopened(loop_ports: LoopPorts) -> None:
    async with make_scanner(loop_ports) as scanner:
        loop_ports.current.close()  # what a pulled USB cable looks like to pyserial
        with pytest.raises(DeviceIOError, match="reading failed"):
            await next_code(scanner)
        await wait_for(lambda: scanner.connected and len(loop_ports.ports) == 2)
        loop_ports.current.write(b"after\r")
        assert (await next_code(scanner)).text == "after"


async def test_codes_iterator_skips_errors_and_ends_on_stop(loop_ports: LoopPorts) -> None:
    scanner = make_scanner(loop_ports, max_length=4)
    await scanner.start()
    loop_ports.current.write(b"one\rtoolong\rtwo\r")
    seen: list[str] = []

    async def consume() -> None:
        async for code in scanner.codes():
            seen.append(code.text)

    consumer = asyncio.create_task(consume())
    await wait_for(lambda: len(seen) == 2)
    await scanner.stop()
    async with asyncio.timeout(2):
        await consumer
    assert seen == ["one", "two"]


async def test_missing_port_is_not_found() -> None:
    scanner = SerialScanner(url="/dev/ttyACM_no_such_port")
    with pytest.raises(DeviceNotFoundError, match="does not exist"):
        await scanner.start()
    assert not scanner.started


async def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll: the states watched here (reconnects, consumers) have no event to await."""
    async with asyncio.timeout(timeout):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


class DroppingServer:
    """A TCP "scanner" on 127.0.0.1 that sends lines and can drop the connection."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return f"socket://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _accept(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)

    async def stop(self) -> None:
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_socket_url_reconnects_after_the_line_drops() -> None:
    server = DroppingServer()
    url = await server.start()
    scanner = SerialScanner(url=url, read_timeout=0.05, reopen_interval=0.05)
    try:
        await scanner.start()
        await wait_for(lambda: len(server.writers) == 1)
        server.writers[0].write(LICENCE.encode("gb18030") + b"\r")
        assert (await next_code(scanner)).text == LICENCE
        server.writers[0].close()
        with pytest.raises(DeviceIOError):
            await next_code(scanner)
        await wait_for(lambda: len(server.writers) == 2 and scanner.connected)
        server.writers[1].write(b"back\n")
        assert (await next_code(scanner)).text == "back"
    finally:
        await scanner.stop()
        await server.stop()
