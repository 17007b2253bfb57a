"""The role → personal data table (``vwindow.permissions``, the ``[privacy]`` section):
what each role sees of an ID-card read in a list and in an export, by default and as
configured, and what the config refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from vwindow.config import load_config
from vwindow.errors import ConfigError
from vwindow.models import Role
from vwindow.permissions import MASKED, PrivacyConfig, View, disclosure

NAME, ADDRESS, NUMBER = "欧阳明华", "安徽省黄山市黄山区汤口镇某村", "340104199003071234"
MASKED_READ = ("欧**华", "安徽省黄山市…", "3401**********1234")
NAME_ONLY = ("欧阳明华", "安徽省黄山市…", "3401**********1234")
NAME_AND_ADDRESS = ("欧阳明华", ADDRESS, "3401**********1234")


def _seen(config: PrivacyConfig, role: Role | str | None, view: View) -> tuple[str, str, str]:
    shown = disclosure(config, role, view)
    return shown.name(NAME), shown.address(ADDRESS), shown.id_number(NUMBER)


@pytest.mark.parametrize(("role", "view", "expected"), [
    (Role.KIOSK, "list", MASKED_READ),
    (Role.AGENT, "list", MASKED_READ),
    (Role.SUPERVISOR, "list", MASKED_READ),
    (Role.SURVEYOR, "list", MASKED_READ),
    (Role.KIOSK, "export", MASKED_READ),
    (Role.AGENT, "export", MASKED_READ),
    (Role.SUPERVISOR, "export", NAME_ONLY),
    (Role.SURVEYOR, "export", MASKED_READ),
    # Roles the table does not know, or no role at all: everything masked.
    ("admin", "list", MASKED_READ),
    ("admin", "export", MASKED_READ),
    ("", "export", MASKED_READ),
    (None, "list", MASKED_READ),
    (None, "export", MASKED_READ),
])
def test_default_table(role: Role | str | None, view: View,
                       expected: tuple[str, str, str]) -> None:
    assert _seen(PrivacyConfig(), role, view) == expected


CONFIGURED = PrivacyConfig.model_validate({
    "unmasked_in_lists": {"agent": ["name", "address"], "supervisor": ["name"]},
    "unmasked_in_exports": {},
})


@pytest.mark.parametrize(("role", "view", "expected"), [
    (Role.KIOSK, "list", MASKED_READ),
    (Role.AGENT, "list", NAME_AND_ADDRESS),
    (Role.SUPERVISOR, "list", NAME_ONLY),
    (Role.SURVEYOR, "list", MASKED_READ),
    # The table given replaces the default whole: supervisors' exports are masked now.
    (Role.SUPERVISOR, "export", MASKED_READ),
    (Role.AGENT, "export", MASKED_READ),
    ("admin", "list", MASKED_READ),
])
def test_configured_table(role: Role | str | None, view: View,
                          expected: tuple[str, str, str]) -> None:
    assert _seen(CONFIGURED, role, view) == expected


def test_masked_shows_nothing() -> None:
    assert not any(MASKED.shows(f) for f in ("name", "address", "id_number"))
    assert disclosure(PrivacyConfig(), Role.SUPERVISOR, "export").shows("name")
    assert not disclosure(PrivacyConfig(), Role.SUPERVISOR, "export").shows("id_number")


def test_config_from_toml_and_environment(tmp_path: Path) -> None:
    toml = tmp_path / "vwindow.toml"
    toml.write_text('[privacy]\nunmasked_in_exports = { supervisor = [] }\n', encoding="utf-8")
    config = load_config(toml, environ={
        "VWINDOW_PRIVACY__UNMASKED_IN_LISTS": '{"agent": ["name"]}'})
    assert config.privacy.unmasked_in_lists == {Role.AGENT: ("name",)}
    assert config.privacy.unmasked_in_exports == {Role.SUPERVISOR: ()}
    assert _seen(config.privacy, Role.SUPERVISOR, "export") == MASKED_READ
    assert _seen(config.privacy, Role.AGENT, "list") == NAME_ONLY


@pytest.mark.parametrize(("privacy", "field", "message"), [
    ({"unmasked_in_exports": {"supervisor": ["id_number"]}}, "privacy.unmasked_in_exports",
     "audited reveal"),
    ({"unmasked_in_lists": {"agent": ["name", "id_number"]}}, "privacy.unmasked_in_lists",
     "audited reveal"),
    ({"unmasked_in_lists": {"admin": ["name"]}}, "privacy.unmasked_in_lists.admin.[key]",
     "'supervisor'"),
    ({"unmasked_in_exports": {"supervisor": ["phone"]}},
     "privacy.unmasked_in_exports.supervisor.0", "'name' or 'address'"),
    ({"unmasked": {}}, "privacy.unmasked", "unknown config key"),
])
def test_config_refuses(privacy: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_config(environ={}, overrides={"privacy": privacy})
    assert err.value.field == field
