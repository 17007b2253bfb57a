"""Simulated SAM ID-card reader module: the *reader side* of the serial protocol.

It answers frames exactly as a reader module would, so the real
:class:`devices.idcard.IdCardReader` can be tested end to end over
``socket://127.0.0.1:PORT`` and the kiosk can run without hardware.

API
---
``fixture_card(card_type=CardType.RESIDENT) -> IdCardData``
    a made-up person per layout (' ', 'J', 'I', 'Y') whose number has a valid check
    character; region code ``340000`` (a province code, never given to a person).
``card_read_data(card, *, fingerprint=False) -> bytes``   data of a ``30 01``/``30 10`` answer
``SamResponder(card=None)``  the protocol state machine, no I/O:
    ``respond(request: bytes) -> bytes``; ``card`` (settable; ``None`` = no card on the
    reader); ``force_status(command, status | None)`` makes a command fail with a status;
    ``corrupt_next(kind)`` with kind ``"checksum" | "preamble" | "truncate" | "length"``
    damages the next answer; ``requests: list[Command]`` seen so far.
``IdCardSimulator(responder=None, *, port=0)``  asyncio TCP server on 127.0.0.1 only:
    ``async start()``, ``async stop()`` (twice is fine), ``port``, ``url`` ("socket://...")
``SimulatedIdCardReader(IdCardReader)``  ("idcard" / "sim" in the registry): an
    ``IdCardReader`` wired to its own ``IdCardSimulator``; options ``card_type``
    (" ", "J", "I", "Y"), ``present`` (card on the reader), ``timeout``; ``responder``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import date
from typing import Final, Literal

from devices.errors import DeviceConfigError, DeviceStateError, FrameError
from devices.idcard import IdCardReader
from devices.idcard_protocol import (
    FIND,
    HEADER_LEN,
    MAX_LENGTH,
    MIN_LENGTH,
    PREAMBLE,
    READ,
    READ_WITH_FINGERPRINT,
    SAM_ID,
    SAM_STATUS,
    SELECT,
    STATUS_BAD_CHECKSUM,
    STATUS_BAD_COMMAND,
    STATUS_BAD_LENGTH,
    STATUS_FOUND,
    STATUS_NO_CARD,
    STATUS_OK,
    STATUS_READ_FAILED,
    STATUS_SELECT_FAILED,
    Command,
    build_response,
    parse_command,
)
from devices.idcard_text import PHOTO_LENGTH, CardType, Gender, IdCardData, encode_text
from devices.idnumber import check_character

logger = logging.getLogger(__name__)

Corruption = Literal["checksum", "preamble", "truncate", "length"]
LOCALHOST: Final = "127.0.0.1"


def _with_check(first17: str) -> str:
    return first17 + check_character(first17)


def _fake_photo(seed: int) -> bytes:
    # Not a real WLT image (that format is proprietary), just 1,024 stable bytes.
    return bytes((i * 37 + seed * 11 + (i >> 3)) & 0xFF for i in range(PHOTO_LENGTH))


def fixture_card(card_type: CardType = CardType.RESIDENT) -> IdCardData:
    """A made-up card of the given layout; the numbers pass the GB 11643 check."""
    if card_type is CardType.RESIDENT:
        return IdCardData(
            card_type=card_type,
            name="测试样例",
            gender=Gender.FEMALE,
            nation_code="01",
            birth_date=date(1958, 3, 14),
            address="安徽省黄山市测试县样例镇模拟村1号",
            id_number=_with_check("34000019580314002"),
            authority="测试县公安局",
            valid_from=date(2016, 5, 20),
            valid_to=None,
            photo_wlt=_fake_photo(1),
        )
    if card_type is CardType.HMT_RESIDENCE:
        return IdCardData(
            card_type=card_type,
            name="陈模拟",
            gender=Gender.MALE,
            birth_date=date(1990, 1, 1),
            address="广东省深圳市测试区样例路8号",
            id_number=_with_check("81000019900101003"),
            authority="深圳市公安局测试分局",
            valid_from=date(2019, 7, 1),
            valid_to=date(2024, 7, 1),
            pass_number="H60000000",
            issue_count="01",
            photo_wlt=_fake_photo(2),
        )
    if card_type is CardType.FOREIGNER_2017:
        return IdCardData(
            card_type=card_type,
            name="样例",
            english_name="SAMPLE, TEST PERSON",
            gender=Gender.MALE,
            id_number="USA000085061599",
            nationality="USA",
            birth_date=date(1985, 6, 15),
            valid_from=date(2018, 1, 2),
            valid_to=date(2028, 1, 1),
            card_version="01",
            authority="0000",
            photo_wlt=_fake_photo(3),
        )
    return IdCardData(
        card_type=CardType.FOREIGNER_2023,
        name="样例",
        english_name="EXAMPLE-LONGNAME, ALEXANDRA MARIA THEODORA",
        gender=Gender.FEMALE,
        id_number=_with_check("90084019850615998"),
        nationality="USA",
        birth_date=date(1985, 6, 15),
        valid_from=date(2024, 1, 2),
        valid_to=date(2034, 1, 1),
        issue_count="01",
        previous_card_link="",
        photo_wlt=_fake_photo(4),
    )


def card_read_data(card: IdCardData, *, fingerprint: bool = False) -> bytes:
    """The data of a read answer carrying ``card``."""
    text = encode_text(card)
    photo = card.photo_wlt
    lengths = len(text).to_bytes(2, "big") + len(photo).to_bytes(2, "big")
    if not fingerprint:
        return lengths + text + photo
    fp = card.fingerprint
    return lengths + len(fp).to_bytes(2, "big") + text + photo + fp


class SamResponder:
    """The reader module's side of the protocol, without any I/O."""

    def __init__(self, card: IdCardData | None = None) -> None:
        self.card = card
        self.requests: list[Command] = []
        self._found = False
        self._selected = False
        self._forced: dict[Command, int] = {}
        self._corrupt: Corruption | None = None

    def force_status(self, command: Command, status: int | None) -> None:
        """Answer ``command`` with ``status`` from now on (``None`` restores normal)."""
        if status is None:
            self._forced.pop(command, None)
        else:
            self._forced[command] = status

    def corrupt_next(self, kind: Corruption) -> None:
        self._corrupt = kind

    def respond(self, request: bytes) -> bytes:
        return self._damage(self._answer(request))

    def _answer(self, request: bytes) -> bytes:
        try:
            command, _data = parse_command(request)
        except FrameError as err:
            status = STATUS_BAD_CHECKSUM if "checksum" in err.message else STATUS_BAD_LENGTH
            return build_response(status)
        self.requests.append(command)
        forced = self._forced.get(command)
        if forced is not None:
            return build_response(forced)
        if command == SAM_STATUS:
            return build_response(STATUS_OK)
        if command == SAM_ID:
            return build_response(STATUS_OK, bytes(16))
        if command == FIND:
            self._found = self.card is not None
            self._selected = False
            return (
                build_response(STATUS_FOUND, bytes(4))
                if self._found
                else (build_response(STATUS_NO_CARD))
            )
        if command == SELECT:
            if not self._found or self.card is None:
                return build_response(STATUS_SELECT_FAILED)
            self._selected = True
            return build_response(STATUS_OK, bytes(8))
        if command in (READ, READ_WITH_FINGERPRINT):
            card = self.card
            if not self._selected or card is None:
                return build_response(STATUS_READ_FAILED)
            self._found = self._selected = False
            data = card_read_data(card, fingerprint=command == READ_WITH_FINGERPRINT)
            return build_response(STATUS_OK, data)
        return build_response(STATUS_BAD_COMMAND)

    def _damage(self, frame: bytes) -> bytes:
        kind, self._corrupt = self._corrupt, None
        if kind == "checksum":
            return frame[:-1] + bytes([frame[-1] ^ 0x5A])
        if kind == "preamble":
            return b"\x55" * len(PREAMBLE) + frame[len(PREAMBLE) :]
        if kind == "truncate":
            return frame[: max(HEADER_LEN, len(frame) // 2)]
        if kind == "length":
            return frame[:5] + (MAX_LENGTH + 1).to_bytes(2, "big") + frame[7:]
        return frame


class IdCardSimulator:
    """Serves a :class:`SamResponder` over TCP on 127.0.0.1 (``socket://`` for pyserial)."""

    def __init__(self, responder: SamResponder | None = None, *, port: int = 0) -> None:
        self.responder = responder if responder is not None else SamResponder(fixture_card())
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._port is None:
            raise DeviceStateError("ID-card simulator is not 'started'")
        return self._port

    @property
    def url(self) -> str:
        return f"socket://{LOCALHOST}:{self.port}"

    async def start(self) -> None:
        if self._server is not None:
            raise DeviceStateError("ID-card simulator is already 'started'")
        self._server = await asyncio.start_server(self._serve, LOCALHOST, self._requested_port)
        self._port = int(self._server.sockets[0].getsockname()[1])
        logger.info("ID-card simulator listening on %s:%d", LOCALHOST, self._port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await server.wait_closed()
        self._port = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                writer.write(self.responder.respond(request))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    """Next request frame; ``None`` at end of stream. Noise before a preamble is skipped."""
    window = b""
    while window != PREAMBLE:
        byte = await reader.read(1)
        if not byte:
            return None
        window = (window + byte)[-len(PREAMBLE) :]
    raw_len = await reader.readexactly(2)
    length = int.from_bytes(raw_len, "big")
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        # Answered as "bad length" by the responder; nothing more to read for it.
        return PREAMBLE + raw_len
    return PREAMBLE + raw_len + await reader.readexactly(length)


class SimulatedIdCardReader(IdCardReader):
    """An :class:`IdCardReader` talking to its own simulator: no hardware needed."""

    def __init__(
        self,
        *,
        name: str | None = None,
        card_type: str = " ",
        present: bool = True,
        timeout: float = 2.0,
        read_fingerprint: bool = False,
    ) -> None:
        super().__init__(
            name=name, url="socket://", timeout=timeout, read_fingerprint=read_fingerprint
        )
        try:
            kind = CardType(card_type)
        except ValueError:
            raise DeviceConfigError(
                f"card_type {card_type!r} is not one of ' ', 'J', 'I', 'Y'"
            ) from None
        self.responder = SamResponder(fixture_card(kind) if present else None)
        self._simulator = IdCardSimulator(self.responder)

    async def _start(self) -> None:
        await self._simulator.start()
        self._url = self._simulator.url
        try:
            await super()._start()
        except BaseException:
            await self._simulator.stop()
            raise

    async def _stop(self) -> None:
        try:
            await super()._stop()
        finally:
            await self._simulator.stop()
