"""Where a CJK-capable font is found on the machine (for stamps and PDF reports).

Debian: ``fonts-droid-fallback`` (a TrueType font, which every PDF library can embed)
first, then Noto CJK and WenQuanYi collections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

CJK_FONTS: Final = (
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)


def cjk_font(*, truetype_only: bool = False) -> Path | None:
    """The first CJK font present; ``truetype_only`` skips OpenType/CFF collections."""
    for name in CJK_FONTS:
        path = Path(name)
        if truetype_only and path.suffix != ".ttf":
            continue
        if path.is_file():
            return path
    return None
