"""Evidence stamps: time, place, case and inspection number burnt into a snapshot.

A remote site inspection's snapshot is evidence, so what it shows must carry when and
where it was taken: a dark band along the bottom of the picture with one line of text
per fact, drawn with a CJK-capable font (Pillow, since OpenCV's fonts are ASCII only).
The stamped JPEG is a new file; the unstamped still is not kept.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from media.errors import MediaError
from vwindow.fonts import CJK_FONTS

logger = logging.getLogger(__name__)

class WatermarkError(MediaError):
    code = "watermark"


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in CJK_FONTS:
        if Path(path).is_file():
            try:
                return ImageFont.truetype(path, size)
            except OSError:
                continue
    logger.warning("no CJK font found (%s); stamps fall back to Pillow's ASCII font",
                   ", ".join(CJK_FONTS))
    return ImageFont.load_default(size)


def stamp(jpeg: bytes, lines: Sequence[str], *, quality: int = 90) -> bytes:
    """``jpeg`` with ``lines`` written in a band along its bottom edge."""
    try:
        opened = Image.open(io.BytesIO(jpeg))
        opened.load()
    except (OSError, ValueError) as err:
        raise WatermarkError(f"snapshot is not a readable image: {err}") from err
    image = opened.convert("RGB")
    width, height = image.size
    size = max(12, min(width, height) // 28)
    font = _font(size)
    pad = size // 2
    band = pad * 2 + len(lines) * (size + pad // 2)
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rectangle((0, height - band, width, height), fill=(0, 0, 0, 150))
    y = height - band + pad
    for line in lines:
        draw.text((pad, y), line, font=font, fill=(255, 255, 255, 255))
        y += size + pad // 2
    stamped = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
    out = io.BytesIO()
    stamped.save(out, format="JPEG", quality=quality)
    return out.getvalue()
