from __future__ import annotations

from pathlib import Path

import pytest

from vwindow.config import load_config
from vwindow.errors import ConfigError


def test_defaults_then_toml_then_env(tmp_path: Path) -> None:
    toml = tmp_path / "vw.toml"
    toml.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n[media]\nvideo_codec = "H264"\n')
    cfg = load_config(toml, environ={"VWINDOW_SERVER__PORT": "9100"})
    assert cfg.server.port == 9100 and cfg.server.host == "0.0.0.0"
    assert cfg.media.video_codec == "H264"
    assert cfg.db.url.startswith("sqlite+aiosqlite://")


def test_unknown_toml_key_named(tmp_path: Path) -> None:
    toml = tmp_path / "vw.toml"
    toml.write_text("[server]\nprot = 9000\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'server\.prot'"):
        load_config(toml, environ={})


def test_unknown_env_section_named() -> None:
    with pytest.raises(ConfigError, match="'sevrer'"):
        load_config(environ={"VWINDOW_SEVRER__PORT": "1"})


def test_env_list_and_bad_value() -> None:
    cfg = load_config(environ={"VWINDOW_MEDIA__ICE_ADDRESSES": '["10.0.0.5"]'})
    assert cfg.media.ice_addresses == ("10.0.0.5",)
    with pytest.raises(ConfigError, match=r"server.port.*'banana'"):
        load_config(environ={"VWINDOW_SERVER__PORT": "banana"})


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, environ={})


def test_the_deployment_example_config_loads() -> None:
    example = Path(__file__).resolve().parents[3] / "deploy" / "vwindow.example.toml"
    config = load_config(example, environ={})
    assert config.db.url.startswith("postgresql+asyncpg://")
    assert config.routing.strategy == "longest_idle" and config.routing.wrap_up_s == 30
