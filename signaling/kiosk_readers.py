"""The kiosk device agent's readers: ID cards and scanned codes into the live case.

``IdCardDesk`` reads a card when the agent asks (waiting up to ``wait_s`` for one to be
placed) and, while a call is live, whenever a card is laid on the reader: the same card
left lying there is read once, and read again only after it has been lifted off. The
read goes to the server as JSON (the 1,024-byte WLT photo as base64, undecoded); the
server masks it before anyone sees it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from devices.errors import DeviceError, IdCardNotFoundError
from devices.idcard import CardType, Gender, IdCardData, IdCardReader
from signaling.client import ClientError

logger = logging.getLogger(__name__)

Post = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
"""(REST path, JSON body) -> the server's answer."""
Report = Callable[[str, float | None, str | None], Awaitable[None]]

_CARD_TYPES = {CardType.RESIDENT: "resident", CardType.HMT_RESIDENCE: "hmt_residence",
               CardType.FOREIGNER_2017: "foreigner_2017",
               CardType.FOREIGNER_2023: "foreigner_2023"}
_GENDERS = {Gender.MALE: "male", Gender.FEMALE: "female", Gender.UNKNOWN: "unknown",
            Gender.UNSPECIFIED: "unspecified"}


def id_read_body(card: IdCardData, call_id: int | None) -> dict[str, Any]:
    """The server's ``IdReadIn`` for one card."""
    body: dict[str, Any] = {
        "card_type": _CARD_TYPES[card.card_type],
        "name": card.name or card.english_name,
        "gender": _GENDERS[card.gender],
        "nation": card.nation or card.nationality,
        "birth_date": card.birth_date.isoformat(),
        "address": card.address,
        "number": card.id_number,
        "authority": card.authority,
        "valid_from": card.valid_from.isoformat(),
        "valid_to": card.valid_to.isoformat() if card.valid_to else "long_term",
    }
    if card.photo_wlt:
        body["photo_wlt_b64"] = base64.b64encode(card.photo_wlt).decode()
    if call_id is not None:
        body["call_id"] = call_id
    return body


class IdCardDesk:
    """ID reads for the kiosk's live call; ``post`` sends them to the server."""

    def __init__(self, reader: IdCardReader, post: Post, *, wait_s: float = 30.0,
                 poll_s: float = 0.5) -> None:
        self.reader = reader
        self.post = post
        self.wait_s = wait_s
        self.poll_s = poll_s
        self._lock = asyncio.Lock()
        self._on_reader: str | None = None
        """Number of the card lying on the reader, already sent (until it is lifted)."""
        self.reads_sent = 0

    async def _send(self, card: IdCardData, case_id: int, call_id: int | None) -> None:
        await self.post(f"/api/v1/cases/{case_id}/id-reads", id_read_body(card, call_id))
        self._on_reader = card.id_number
        self.reads_sent += 1
        logger.info("case %s: ID card %s sent", case_id, card.masked_number)

    async def read_on_request(self, case_id: int, call_id: int, report: Report) -> None:
        """The agent asked: wait for a card (a card already lying there counts)."""
        async with self._lock:
            await report("waiting_card", 10, "请将身份证放在读卡器上 / place the ID card on the "
                         "reader")
            try:
                async with asyncio.timeout(self.wait_s):
                    card = await self.reader.wait_for_card(poll_interval=self.poll_s)
            except TimeoutError:
                await report("failed", None, f"{self.wait_s:.0f} 秒内未放置身份证 / no card "
                             f"within {self.wait_s:.0f} s")
                return
            except DeviceError as err:
                await report("failed", None, f"读卡失败 / card read failed: {err.message}")
                return
            await report("uploading", 70, None)
            await self._send(card, case_id, call_id)
            await report("done", 100, f"已读取 {card.masked_number}")

    async def watch(self, case_id: int, call_id: int) -> None:
        """While a call is live (cancel to stop): send each card laid on the reader."""
        self._on_reader = None
        while True:
            await asyncio.sleep(self.poll_s)
            if self._lock.locked():
                continue
            async with self._lock:
                try:
                    card = await self.reader.read_card()
                except IdCardNotFoundError:
                    self._on_reader = None  # lifted off: the next card is new
                    continue
                except DeviceError as err:
                    logger.warning("ID reader: %s", err.message)
                    await asyncio.sleep(2.0)
                    continue
                if card.id_number == self._on_reader:
                    continue
                try:
                    await self._send(card, case_id, call_id)
                except (aiohttp.ClientError, ClientError, TimeoutError, OSError) as err:
                    # The uplink: the card is still there, the next poll tries again.
                    logger.warning("case %s: ID read not sent (%s)", case_id, err)
