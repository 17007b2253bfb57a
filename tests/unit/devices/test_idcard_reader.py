"""The ID-card reader driver end to end against the simulator over socket://."""

from __future__ import annotations

import asyncio
import ctypes.util
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from devices.errors import (
    DeviceConfigError,
    DeviceIOError,
    DeviceNotFoundError,
    DeviceStateError,
    FrameError,
    IdCardError,
    IdCardNotFoundError,
    IdCardReadError,
    PhotoDecoderError,
)
from devices.idcard import IdCardReader, WltPhotoDecoder
from devices.idcard_protocol import (
    FIND,
    READ,
    READ_WITH_FINGERPRINT,
    SELECT,
    STATUS_BAD_CHECKSUM,
    STATUS_BAD_COMMAND,
    Command,
    build_command,
    parse_response,
)
from devices.idcard_text import CardType
from devices.registry import create_device
from devices.sim.idcard import (
    Corruption,
    IdCardSimulator,
    SamResponder,
    SimulatedIdCardReader,
    fixture_card,
)


@pytest.fixture
async def simulator() -> AsyncIterator[IdCardSimulator]:
    sim = IdCardSimulator(SamResponder(fixture_card()))
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def reader(simulator: IdCardSimulator) -> AsyncIterator[IdCardReader]:
    device = IdCardReader(url=simulator.url, timeout=0.3)
    await device.start()
    yield device
    await device.stop()


async def test_simulator_listens_on_localhost_only(simulator: IdCardSimulator) -> None:
    assert simulator.url == f"socket://127.0.0.1:{simulator.port}"


@pytest.mark.parametrize("card_type", list(CardType))
async def test_reads_every_card_layout(
    simulator: IdCardSimulator, reader: IdCardReader, card_type: CardType
) -> None:
    simulator.responder.card = fixture_card(card_type)
    card = await reader.read_card()
    assert card == fixture_card(card_type)
    assert len(card.photo_wlt) == 1024
    assert simulator.responder.requests[-3:] == [FIND, SELECT, READ]


async def test_resident_card_fields(reader: IdCardReader) -> None:
    card = await reader.read_card()
    assert card.card_type is CardType.RESIDENT
    assert card.name == "测试样例"
    assert card.nation == "汉"
    assert card.valid_to is None  # 长期
    assert card.masked_number == "3400**********0025"


async def test_two_reads_in_a_row(reader: IdCardReader) -> None:
    first = await reader.read_card()
    assert await reader.read_card() == first


async def test_no_card_is_not_found_with_status(
    simulator: IdCardSimulator, reader: IdCardReader
) -> None:
    simulator.responder.card = None
    with pytest.raises(IdCardNotFoundError, match=r"find card: reader status 00 00 80 \(0x80"):
        await reader.read_card()


@pytest.mark.parametrize(
    ("command", "status", "error", "action"),
    [
        (FIND, 0x80, IdCardNotFoundError, "find card"),
        (SELECT, 0x81, IdCardNotFoundError, "select card"),
        (READ, 0x41, IdCardReadError, "read card"),
        (READ, 0x32, IdCardReadError, "read card"),
        (FIND, 0x66, IdCardReadError, "find card"),
    ],
)
async def test_status_codes_map_to_errors(
    simulator: IdCardSimulator,
    reader: IdCardReader,
    command: Command,
    status: int,
    error: type[IdCardError],
    action: str,
) -> None:
    simulator.responder.force_status(command, status)
    with pytest.raises(error, match=f"{action}: .*0x{status:02X}"):
        await reader.read_card()
    simulator.responder.force_status(command, None)
    assert (await reader.read_card()).card_type is CardType.RESIDENT


@pytest.mark.parametrize(
    ("corruption", "match"),
    [
        ("checksum", "bad checksum"),
        ("preamble", "truncated frame|no preamble"),
        ("truncate", "truncated frame"),
        ("length", "outside"),
    ],
)
async def test_corrupt_answers_are_frame_errors_and_the_reader_recovers(
    simulator: IdCardSimulator, reader: IdCardReader, corruption: Corruption, match: str
) -> None:
    simulator.responder.corrupt_next(corruption)
    with pytest.raises(FrameError, match=match):
        await reader.read_card()
    await asyncio.sleep(0.05)  # let the rest of a damaged answer arrive, then be discarded
    assert (await reader.read_card()).card_type is CardType.RESIDENT


async def test_fingerprint_read(simulator: IdCardSimulator) -> None:
    card = replace(fixture_card(), fingerprint=bytes(range(256)) * 4)
    simulator.responder.card = card
    async with IdCardReader(url=simulator.url, read_fingerprint=True) as device:
        read = await device.read_card()
    assert read.fingerprint == card.fingerprint
    assert simulator.responder.requests[-1] == READ_WITH_FINGERPRINT


async def test_wait_for_card_polls_until_a_card_arrives(
    simulator: IdCardSimulator, reader: IdCardReader
) -> None:
    simulator.responder.card = None

    async def place_card() -> None:
        await asyncio.sleep(0.15)
        simulator.responder.card = fixture_card(CardType.HMT_RESIDENCE)

    placing = asyncio.create_task(place_card())
    async with asyncio.timeout(5):
        card = await reader.wait_for_card(poll_interval=0.05)
    await placing
    assert card.card_type is CardType.HMT_RESIDENCE


async def test_wait_for_card_is_bounded_by_asyncio_timeout(
    simulator: IdCardSimulator, reader: IdCardReader
) -> None:
    simulator.responder.card = None
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await reader.wait_for_card(poll_interval=0.05)


async def test_check_sam(reader: IdCardReader) -> None:
    await reader.check_sam()


async def test_silent_reader_is_an_io_error_naming_the_url(simulator: IdCardSimulator) -> None:
    device = IdCardReader(url=simulator.url, timeout=0.2)
    await device.start()
    await simulator.stop()
    try:
        with pytest.raises(DeviceIOError, match=r"socket://127\.0\.0\.1"):
            await device.read_card()
    finally:
        await device.stop()


async def test_read_before_start_is_a_state_error() -> None:
    with pytest.raises(DeviceStateError, match="'new'"):
        await IdCardReader(url="loop://").read_card()


async def test_missing_port_names_it() -> None:
    device = IdCardReader(url="/dev/ttyVWINDOW-MISSING")
    with pytest.raises(DeviceNotFoundError, match="/dev/ttyVWINDOW-MISSING"):
        await device.start()
    await device.stop()


async def test_refused_socket_names_it() -> None:
    with pytest.raises(DeviceIOError, match=r"socket://127\.0\.0\.1:1"):
        await IdCardReader(url="socket://127.0.0.1:1").start()


async def test_bad_url_is_a_config_error() -> None:
    with pytest.raises(DeviceConfigError, match="bogus"):
        await IdCardReader(url="bogus://x").start()


def test_responder_answers_bad_requests_like_a_module() -> None:
    responder = SamResponder(fixture_card())
    bad = bytearray(build_command(FIND))
    bad[-1] ^= 0xFF
    assert parse_response(responder.respond(bytes(bad))).status == STATUS_BAD_CHECKSUM
    unknown = parse_response(responder.respond(build_command(Command(0x77, 0x01))))
    assert unknown.status == STATUS_BAD_COMMAND
    # Reading without find/select first fails like a real module.
    assert parse_response(responder.respond(build_command(READ))).status == 0x41


async def test_registry_sim_driver_reads_a_card() -> None:
    device = create_device("idcard", "sim", card_type="Y")
    assert isinstance(device, SimulatedIdCardReader)
    async with device:
        card = await device.read_card()
    assert card.card_type is CardType.FOREIGNER_2023
    await device.stop()


async def test_registry_sim_driver_without_card() -> None:
    async with create_device("idcard", "sim", present=False, timeout=0.3) as device:
        assert isinstance(device, IdCardReader)
        with pytest.raises(IdCardNotFoundError):
            await device.read_card()


def test_sim_driver_rejects_unknown_card_type() -> None:
    with pytest.raises(DeviceConfigError, match="'X'"):
        SimulatedIdCardReader(card_type="X")


async def test_configured_decoder_path_missing_fails_start(tmp_path: Path) -> None:
    missing = tmp_path / "libwlt.so"
    device = IdCardReader(url="loop://", photo_decoder_path=str(missing))
    with pytest.raises(PhotoDecoderError, match=r"libwlt\.so"):
        await device.start()
    assert not device.started


def test_decoder_path_missing(tmp_path: Path) -> None:
    with pytest.raises(PhotoDecoderError, match=r"does not exist"):
        WltPhotoDecoder(str(tmp_path / "nowhere" / "libwlt.so"))


def test_decoder_library_without_function(tmp_path: Path) -> None:
    libc = ctypes.util.find_library("c")
    candidates = [
        Path(p) / (libc or "libc.so.6")
        for p in (
            "/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu",
            "/lib64",
            "/usr/lib",
            "/lib/aarch64-linux-gnu",
        )
    ]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        pytest.skip("no libc file found to load")
    with pytest.raises(PhotoDecoderError, match="has no function 'unpack'"):
        WltPhotoDecoder(str(found))
    not_a_library = tmp_path / "libfake.so"
    not_a_library.write_bytes(b"not an ELF file")
    with pytest.raises(PhotoDecoderError, match="cannot load"):
        WltPhotoDecoder(str(not_a_library))


async def test_decode_photo_without_decoder(reader: IdCardReader) -> None:
    card = await reader.read_card()
    with pytest.raises(PhotoDecoderError, match="no WLT decoder configured"):
        await reader.decode_photo(card)
