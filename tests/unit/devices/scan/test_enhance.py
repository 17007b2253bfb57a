"""Enhancement: shadows and colour casts removed, the seal stays red, B/W is binary."""

from __future__ import annotations

import numpy as np
import pytest

from devices.scan import ScanConfigError, ScanMode
from devices.scan.enhance import enhance, enhance_bw, enhance_color
from tests.unit.devices.scan.scenes import SEAL, render_page

PAGE_W, PAGE_H = 1240, 1754


def lit(page: np.ndarray, *, shadow: float = 0.4, cast: tuple[float, float, float] = (1, 1, 1)):
    """The page under a lamp: a soft shadow over the left third and a colour cast."""
    ramp = np.clip(1.0 - np.arange(PAGE_W) / (0.35 * PAGE_W), 0, 1).astype(np.float32)
    light = 1.0 - shadow * ramp
    out = page.astype(np.float32) * light[None, :, None] * np.array(cast, np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def paper_level(image: np.ndarray, xs: slice) -> np.ndarray:
    """Per-channel paper brightness in a column band (rows of the empty bottom margin)."""
    region = image[PAGE_H - 120 : PAGE_H - 40, xs].reshape(
        -1, image.shape[2] if image.ndim == 3 else 1
    )
    return np.median(region, axis=0)


def test_shadow_is_removed_in_colour_mode() -> None:
    page = lit(render_page(), shadow=0.45)
    before = paper_level(page, slice(20, 120)) / paper_level(page, slice(1100, 1200))
    assert before.max() < 0.65  # the shadow is there...
    out = enhance_color(page)
    assert out.shape == page.shape
    shaded, bright = paper_level(out, slice(20, 120)), paper_level(out, slice(1100, 1200))
    assert np.all(shaded >= 250) and np.all(bright >= 250)  # ...and gone: white paper


def test_lamp_colour_cast_is_neutralised() -> None:
    warm = lit(render_page(), shadow=0.0, cast=(0.78, 0.92, 1.0))  # BGR: yellowish light
    level = paper_level(warm, slice(300, 900))
    assert level[2] - level[0] > 40
    out = paper_level(enhance_color(warm), slice(300, 900))
    assert np.ptp(out) <= 3


def test_red_seal_stays_red_in_colour_mode() -> None:
    page = lit(render_page(), shadow=0.3, cast=(0.9, 0.95, 1.0))
    out = enhance_color(page).astype(int)
    b, g, r = out[..., 0], out[..., 1], out[..., 2]
    red = (r > 150) & (g < 110) & (b < 110) & (r - g > 80)
    # The seal ring and star cover several thousand pixels at this size.
    seal_in_page = np.all(np.abs(render_page().astype(int) - SEAL) < 10, axis=2).sum()
    assert red.sum() > 0.7 * seal_in_page
    # Black print stays neutral, not tinted.
    ink = (r < 90) & (g < 90) & (b < 90)
    assert ink.sum() > 10_000
    assert abs(float(r[ink].mean()) - float(b[ink].mean())) < 15


def test_black_and_white_is_binary_with_print() -> None:
    page = lit(render_page(), shadow=0.45)
    out = enhance_bw(page)
    assert out.ndim == 2 and out.dtype == np.uint8
    assert set(np.unique(out).tolist()) <= {0, 255}
    black = float((out == 0).mean())
    assert 0.01 < black < 0.2
    # The shadowed third is not blackened: its paper is white like the rest.
    assert (out[PAGE_H - 120 : PAGE_H - 40, 20:120] == 255).mean() > 0.99


def test_enhance_dispatches_on_mode() -> None:
    page = render_page()
    assert enhance(page, "color").ndim == 3
    assert enhance(page, ScanMode.BW).ndim == 2
    with pytest.raises(ScanConfigError, match="scan mode 'sepia'"):
        enhance(page, "sepia")
