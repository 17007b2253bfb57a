"""Why a still should be taken again, worded for the kiosk screen in Chinese and English."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType


class RetakeReason(enum.Enum):
    """A reason to ask the citizen for another photo; ``value`` is the stable code."""

    BLUR = "blur"
    GLARE = "glare"
    NO_PAGE = "no_page"

    @property
    def zh(self) -> str:
        return _ZH[self]

    @property
    def en(self) -> str:
        return _EN[self]

    @property
    def message(self) -> str:
        """Both languages, as the kiosk shows them: ``"中文 / English"``."""
        return f"{self.zh} / {self.en}"


# Read-only tables: the wording lives in one place, next to the codes.
_ZH: Mapping[RetakeReason, str] = MappingProxyType(
    {
        RetakeReason.BLUR: "画面模糊，请保持稳定后重拍",
        RetakeReason.GLARE: "有反光，请调整文件或灯光角度后重拍",
        RetakeReason.NO_PAGE: "未检测到文件，请将文件完整放在拍摄区域内后重拍",
    }
)
_EN: Mapping[RetakeReason, str] = MappingProxyType(
    {
        RetakeReason.BLUR: "The page is blurred. Please hold still and take it again.",
        RetakeReason.GLARE: (
            "There is glare on the page. Please tilt the page or move the light and take it again."
        ),
        RetakeReason.NO_PAGE: (
            "No page was found. Please place the whole page in the camera area and take it again."
        ),
    }
)
