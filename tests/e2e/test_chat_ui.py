"""In-call chat in real Chromium: the kiosk sends a picture and it shows as an image in
the agent's chat log; the agent answers with a recorded voice note that the kiosk can
play; both stay in the case as chat notes."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import select

from tests.conftest import Server
from tests.e2e.pages import answer_on_console, login_kiosk
from vwindow.models import CaseNote

pytestmark = pytest.mark.e2e

BLOB = re.compile(r"^blob:")


def small_png(width: int = 8, height: int = 6) -> bytes:
    """A real (decodable) red PNG, so the receiving page can report its size."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


async def test_chat_picture_reaches_the_agent_and_voice_reaches_the_kiosk(
        server: Server, browser: Browser, tmp_path: Path) -> None:
    base = server.url
    picture = tmp_path / "门牌.png"
    picture.write_bytes(small_png())
    kiosk_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    agent_ctx = await browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        kiosk = await kiosk_ctx.new_page()
        agent = await agent_ctx.new_page()
        await login_kiosk(kiosk, base)
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "idle")
        await kiosk.click('[data-service-code="SB-001"]')
        await kiosk.click("#call-button")
        await answer_on_console(agent, kiosk, base, "agent1")

        # The kiosk picks a picture, with a line of text: it shows as an image there.
        await kiosk.fill("#chat-input", "这是我家的门牌")
        await kiosk.set_input_files("#chat-picture", str(picture))
        message = agent.locator("#chat-log li.chat-msg", has_text="这是我家的门牌")
        await expect(message).to_have_count(1, timeout=15000)
        image = message.locator("img.chat-picture")
        await expect(image).to_be_visible()
        await expect(image).to_have_attribute("src", BLOB)
        size = await image.evaluate("i => i.decode().then(() => [i.naturalWidth, i.naturalHeight])")
        assert size == [8, 6]
        await expect(kiosk.locator("#chat-log li.chat-msg.mine img.chat-picture")).to_be_visible()
        await expect(kiosk.locator("#chat-input")).to_have_value("")

        # The agent records a voice note (Chromium's fake microphone): the kiosk gets a player.
        voice = agent.locator("#chat-voice")
        await voice.click()
        await expect(voice).to_have_attribute("aria-pressed", "true")
        await agent.wait_for_timeout(1200)
        await voice.click()
        player = kiosk.locator("#chat-log li.chat-msg audio.chat-voice")
        await expect(player).to_have_count(1, timeout=15000)
        await expect(player).to_have_attribute("src", BLOB)
        await expect(kiosk.locator("#chat-error")).to_be_hidden()

        # Both are kept in the case as chat notes, each naming its material.
        async with server.services.db.session() as db:
            notes = list(await db.scalars(select(CaseNote.text).where(CaseNote.kind == "chat")
                                          .order_by(CaseNote.id)))
        assert len(notes) == 2
        assert notes[0].startswith("这是我家的门牌 [material:")
        assert notes[1].startswith("[material:")
    finally:
        await kiosk_ctx.close()
        await agent_ctx.close()
