"""UVC driver: only the paths that need no camera are testable here."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.errors import DeviceConfigError, DeviceError, DeviceNotFoundError, DeviceStateError
from devices.uvc import UvcDocumentCamera


async def test_missing_device_names_the_path() -> None:
    camera = UvcDocumentCamera(device="/dev/video-vwindow-missing")
    with pytest.raises(DeviceNotFoundError, match="/dev/video-vwindow-missing") as info:
        await camera.start()
    assert isinstance(info.value, DeviceError)
    assert not camera.started
    await camera.stop()


async def test_path_that_is_not_a_camera_names_the_path_and_backends(tmp_path: Path) -> None:
    fake = tmp_path / "video0"
    fake.write_bytes(b"not a camera")
    camera = UvcDocumentCamera(device=str(fake))
    with pytest.raises(DeviceError) as info:
        await camera.start()
    message = str(info.value)
    assert str(fake) in message
    assert "pyav" in message and "opencv" in message


async def test_use_before_start_is_a_state_error() -> None:
    camera = UvcDocumentCamera(device="/dev/video-vwindow-missing")
    with pytest.raises(DeviceStateError, match="'new'"):
        await camera.capture_still()


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(DeviceConfigError, match="gstreamer"):
        UvcDocumentCamera(backend="gstreamer")  # type: ignore[arg-type]
