"""Driver registry: lazy imports, a broken driver disables only itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.doccam import DocumentCamera
from devices.errors import DeviceConfigError, DeviceUnavailableError, UnknownDriverError
from devices.registry import DeviceRegistry, available_drivers, create_device
from devices.sim.doccam import SimulatedDocumentCamera


def test_builtin_drivers_are_registered() -> None:
    drivers = DeviceRegistry.default().drivers()
    assert drivers["doccam"] == ("sim", "uvc")
    assert set(drivers["idcard"]) == {"serial", "sim"}


def test_create_device_builds_the_simulator() -> None:
    camera = create_device("doccam", "sim", seed=7, name="desk")
    assert isinstance(camera, SimulatedDocumentCamera)
    assert isinstance(camera, DocumentCamera)
    assert camera.name == "desk"
    assert camera.kind == "doccam"


def test_available_drivers_lists_importable_builtins() -> None:
    available = available_drivers()
    assert "sim" in available["doccam"]
    assert "uvc" in available["doccam"]


def test_missing_module_names_driver_and_module() -> None:
    registry = DeviceRegistry.default()
    registry.register("doccam", "acme", "vendor_acme_sdk_missing.camera", "AcmeCamera")
    with pytest.raises(DeviceUnavailableError) as info:
        registry.create("doccam", "acme")
    message = str(info.value)
    assert "'acme'" in message
    assert "vendor_acme_sdk_missing" in message
    assert isinstance(info.value.__cause__, ImportError)


def test_missing_vendor_library_disables_only_that_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "acme_doccam_driver.py").write_text(
        "import acme_vendor_sdk_not_installed\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = DeviceRegistry.default()
    registry.register("doccam", "acme", "acme_doccam_driver", "AcmeCamera")
    reasons = registry.unavailable()
    assert "acme_vendor_sdk_not_installed" in reasons[("doccam", "acme")]
    available = registry.available()
    assert "acme" not in available["doccam"]
    assert "sim" in available["doccam"]
    assert isinstance(registry.create("doccam", "sim"), SimulatedDocumentCamera)


def test_missing_class_is_unavailable() -> None:
    registry = DeviceRegistry()
    registry.register("doccam", "ghost", "devices.sim.doccam", "NoSuchCamera")
    with pytest.raises(DeviceUnavailableError, match="NoSuchCamera"):
        registry.load("doccam", "ghost")


def test_class_of_another_kind_is_unavailable() -> None:
    registry = DeviceRegistry()
    registry.register("idcard", "camera", "devices.sim.doccam", "SimulatedDocumentCamera")
    with pytest.raises(DeviceUnavailableError, match="'doccam' device"):
        registry.load("idcard", "camera")


def test_unknown_kind_and_driver_are_named() -> None:
    registry = DeviceRegistry.default()
    with pytest.raises(UnknownDriverError, match="'printer'"):
        registry.create("printer", "sim")
    with pytest.raises(UnknownDriverError, match=r"'v4l'.*known: sim, uvc"):
        registry.create("doccam", "v4l")


def test_bad_option_is_a_config_error() -> None:
    with pytest.raises(DeviceConfigError, match="resolution"):
        create_device("doccam", "sim", resolution=(1, 1))


def test_duplicate_registration_is_refused() -> None:
    registry = DeviceRegistry.default()
    with pytest.raises(DeviceConfigError, match="already registered"):
        registry.register("doccam", "sim", "x", "Y")
    registry.register(
        "doccam", "sim", "devices.sim.doccam", "SimulatedDocumentCamera", replace=True
    )


def test_registries_do_not_share_state() -> None:
    one = DeviceRegistry.default()
    one.register("doccam", "extra", "nowhere", "Nothing")
    assert "extra" not in DeviceRegistry.default().drivers()["doccam"]
