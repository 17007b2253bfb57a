"""Stills from the real simulator, captured once per test session."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from devices.scan import ScanPipeline
from devices.sim.doccam import SimulatedDocumentCamera

SHARP_SEEDS = (0, 1, 2, 3)
CALIBRATION_SEEDS = (0, 1, 2)  # seed 3 is held out to check the threshold


@dataclass(frozen=True)
class SimStills:
    sharp: dict[int, bytes]
    blurred: dict[int, bytes]
    glare: dict[int, bytes]

    def calibration(self) -> list[bytes]:
        return [self.sharp[seed] for seed in CALIBRATION_SEEDS]


async def capture(seed: int, *, blur: bool = False, glare: bool = False) -> bytes:
    camera = SimulatedDocumentCamera(seed=seed, blur=blur, glare=glare)
    async with camera:
        still = await camera.capture_still()
    return still.jpeg


async def _capture_all() -> SimStills:
    sharp = {seed: await capture(seed) for seed in SHARP_SEEDS}
    blurred = {seed: await capture(seed, blur=True) for seed in (0, 4)}
    glare = {seed: await capture(seed, glare=True) for seed in (1, 4)}
    return SimStills(sharp, blurred, glare)


@pytest.fixture(scope="session")
def sim_stills() -> SimStills:
    # One event loop for the whole capture; the stills are plain bytes afterwards.
    return asyncio.run(_capture_all())


@pytest.fixture(scope="session")
def blur_threshold(sim_stills: SimStills) -> float:
    return ScanPipeline().calibrate(sim_stills.calibration()).threshold
