"""UI text: every key exists in Chinese and English, and every key a page uses exists."""

from __future__ import annotations

import re
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "web"
_KEY = re.compile(r"^\s+'([\w.]+)':", re.MULTILINE)


def _keys(name: str) -> set[str]:
    return set(_KEY.findall((WEB / "common" / name).read_text(encoding="utf-8")))


def test_chinese_and_english_have_the_same_keys() -> None:
    zh, en = _keys("messages-zh.js"), _keys("messages-en.js")
    assert len(zh) > 300
    assert sorted(zh - en) == [], "missing in English"
    assert sorted(en - zh) == [], "missing in Chinese"


def test_every_data_i18n_key_in_the_pages_exists() -> None:
    zh = _keys("messages-zh.js")
    used: set[str] = set()
    for page in WEB.rglob("*.html"):
        used |= set(re.findall(r'data-i18n(?:-[a-z-]+)?="([\w.]+)"', page.read_text("utf-8")))
    for script in WEB.rglob("*.js"):
        used |= set(re.findall(r"i18n: \['([\w.]+)'", script.read_text("utf-8")))
    assert sorted(used - zh) == []
