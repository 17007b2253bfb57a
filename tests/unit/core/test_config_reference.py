"""deploy/CONFIG.md is generated from the config model and kept up to date."""

from __future__ import annotations

from vwindow.config import Config, MediaConfig
from vwindow.config_reference import (
    REFERENCE_PATH,
    attribute_docstrings,
    reference_markdown,
    type_name,
)


def test_config_md_is_up_to_date() -> None:
    assert REFERENCE_PATH.read_text(encoding="utf-8") == reference_markdown(), (
        "deploy/CONFIG.md is stale: run `python -m vwindow.config_reference --write`")


def test_every_key_is_listed_with_its_environment_variable() -> None:
    text = reference_markdown()
    for section, field in Config.model_fields.items():
        assert f"## `[{section}]`" in text
        model = field.annotation
        assert model is not None
        for key in model.model_fields:  # type: ignore[union-attr]
            assert f"| `{key}` |" in text
            assert f"`VWINDOW_{section.upper()}__{key.upper()}`" in text


def test_descriptions_come_from_the_docstrings_under_the_fields() -> None:
    docs = attribute_docstrings(MediaConfig)
    assert docs["ice_addresses"].startswith("Host addresses the hub offers")
    assert "video_codec" not in docs  # no docstring written under it
    text = reference_markdown()
    assert "| `ice_transport_policy` | \"all\" \\| \"relay\" | `\"all\"` |" in text
    assert "| `turn_ttl_s` | integer | `21600` |" in text and "(> 0)" in text


def test_type_names_read_like_the_toml() -> None:
    assert type_name(tuple[str, ...]) == "list of string"
    assert type_name(int | None) == "integer (optional)"
    assert type_name(bool) == "boolean"
