"""Quality gates: blur after calibration, glare, and the messages the kiosk shows."""

from __future__ import annotations

import math

import pytest

from devices.scan import (
    PageDetector,
    RetakeReason,
    ScanConfigError,
    ScanPipeline,
    calibrate,
)
from devices.scan.jpeg import decode_jpeg
from devices.scan.quality import QualityGate, measure_glare, measure_sharpness
from devices.scan.rectify import Rectifier
from tests.unit.devices.scan.conftest import SimStills
from tests.unit.devices.scan.scenes import a4_quad, render_scene


def test_calibration_separates_sharp_from_blurred(sim_stills: SimStills) -> None:
    pipeline = ScanPipeline()
    calibration = pipeline.calibrate(sim_stills.calibration())
    sharp = [pipeline.measure(j).sharpness for j in sim_stills.sharp.values()]
    blurred = [pipeline.measure(j).sharpness for j in sim_stills.blurred.values()]
    assert calibration.samples == 3
    assert calibration.threshold == pytest.approx(0.25 * calibration.median)
    assert max(blurred) < calibration.threshold < min(sharp)
    # A wide margin both ways, so a little camera-to-camera variation does not flip it.
    assert max(blurred) * 10 < calibration.threshold < min(sharp) / 2


def test_sharp_stills_pass_and_blurred_fail_after_calibration(
    sim_stills: SimStills, blur_threshold: float
) -> None:
    pipeline = ScanPipeline(blur_threshold=blur_threshold)
    held_out = sim_stills.sharp[3]  # not among the calibration stills
    assert pipeline.measure(held_out).reasons == ()
    for jpeg in sim_stills.blurred.values():
        report = pipeline.measure(jpeg)
        assert report.reasons == (RetakeReason.BLUR,)
        assert report.needs_retake
        (message,) = report.messages
        assert message == f"画面模糊，请保持稳定后重拍 / {RetakeReason.BLUR.en}"
        assert RetakeReason.BLUR.en == "The page is blurred. Please hold still and take it again."


def test_glare_stills_fail_the_glare_gate(sim_stills: SimStills, blur_threshold: float) -> None:
    pipeline = ScanPipeline(blur_threshold=blur_threshold)
    for jpeg in sim_stills.glare.values():
        report = pipeline.measure(jpeg)
        assert RetakeReason.GLARE in report.reasons
        assert RetakeReason.BLUR not in report.reasons
        assert report.glare_fraction > 0.05
    for jpeg in sim_stills.sharp.values():
        assert pipeline.measure(jpeg).glare_fraction < 0.001


def test_sharpness_does_not_depend_on_camera_resolution() -> None:
    scores = []
    for size in ((2592, 1944), (3264, 2448), (4000, 3000)):
        scene = render_scene(a4_quad(size), size=size)
        image = decode_jpeg(scene.jpeg)
        # Measured as the pipeline measures: on the rectifier's fixed-width preview.
        preview = Rectifier().rectify(image, PageDetector().detect(image).quad).preview
        scores.append(measure_sharpness(preview).score)
    # A camera with more pixels on the page does show it a little sharper (~1.36x from
    # 5 to 12 MP here); a blurred page scores ~100x lower, and each device is calibrated.
    assert max(scores) / min(scores) < 1.4, scores


def test_blank_white_page_has_no_glare() -> None:
    scene = render_scene(a4_quad((2592, 1944)))
    image = decode_jpeg(scene.jpeg)
    page = Rectifier().rectify(image, PageDetector().detect(image).quad).image
    assert measure_glare(page) == 0.0
    report = QualityGate(blur_threshold=0).assess(page)
    assert report.reasons == ()


def test_retake_reasons_speak_chinese_and_english() -> None:
    assert RetakeReason.BLUR.zh == "画面模糊，请保持稳定后重拍"
    assert RetakeReason.BLUR.en.startswith("The page is blurred")
    assert RetakeReason.GLARE.zh.startswith("有反光")
    assert "glare" in RetakeReason.GLARE.en
    assert RetakeReason.NO_PAGE.message.startswith("未检测到文件")
    assert [r.value for r in RetakeReason] == ["blur", "glare", "no_page"]


def test_calibrate_uses_the_median() -> None:
    result = calibrate([1000.0, 1200.0, 20.0], fraction=0.5)
    assert result.median == 1000.0
    assert result.threshold == 500.0
    assert (result.minimum, result.maximum, result.samples) == (20.0, 1200.0, 3)


@pytest.mark.parametrize(
    ("samples", "fraction", "match"),
    [
        ([], 0.25, "at least one sharp sample"),
        ([100.0, -1.0], 0.25, "positive sharpness figures, got -1.0"),
        ([100.0, math.nan], 0.25, "got nan"),
        ([100.0], 1.5, "fraction 1.5"),
    ],
)
def test_calibrate_refuses_bad_input(samples: list[float], fraction: float, match: str) -> None:
    with pytest.raises(ScanConfigError, match=match):
        calibrate(samples, fraction=fraction)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"blur_threshold": -1.0}, "blur_threshold -1.0"),
        ({"blur_threshold": math.nan}, "blur_threshold nan"),
        ({"max_glare_fraction": 2.0}, "max_glare_fraction 2.0"),
        ({"glare_level": 300}, "glare_level 300"),
    ],
)
def test_bad_gate_options_are_named(options: dict[str, float], match: str) -> None:
    with pytest.raises(ScanConfigError, match=match):
        QualityGate(**options)  # type: ignore[arg-type]
