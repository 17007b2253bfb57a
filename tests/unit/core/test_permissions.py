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
from vwindow.privacy import mask_birth_date

NAME, ADDRESS, NUMBER = "欧阳明华", "安徽省黄山市黄山区汤口镇某村", "340104199003071234"
BIRTH = "1990-03-07"  # the number's digits 7-14
MASKED_READ = ("欧**华", "安徽省黄山市…", "1990-**-**", "3401**********1234")
NAME_ONLY = ("欧阳明华", "安徽省黄山市…", "1990-**-**", "3401**********1234")
NAME_AND_ADDRESS = ("欧阳明华", ADDRESS, "1990-**-**", "3401**********1234")
ALL_BUT_NUMBER = ("欧阳明华", ADDRESS, BIRTH, "3401**********1234")
BIRTH_ONLY = ("欧**华", "安徽省黄山市…", BIRTH, "3401**********1234")
Seen = tuple[str, str, str, str]


def _seen(config: PrivacyConfig, role: Role | str | None, view: View) -> Seen:
    shown = disclosure(config, role, view)
    return (shown.name(NAME), shown.address(ADDRESS), shown.birth_date(BIRTH),
            shown.id_number(NUMBER))


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
def test_default_table(role: Role | str | None, view: View, expected: Seen) -> None:
    assert _seen(PrivacyConfig(), role, view) == expected


CONFIGURED = PrivacyConfig.model_validate({
    "unmasked_in_lists": {"agent": ["name", "address", "birth_date"], "supervisor": ["name"],
                          "surveyor": ["birth_date"]},
    "unmasked_in_exports": {},
})


@pytest.mark.parametrize(("role", "view", "expected"), [
    (Role.KIOSK, "list", MASKED_READ),
    (Role.AGENT, "list", ALL_BUT_NUMBER),
    (Role.SUPERVISOR, "list", NAME_ONLY),
    (Role.SURVEYOR, "list", BIRTH_ONLY),
    # The table given replaces the default whole: supervisors' exports are masked now.
    (Role.SUPERVISOR, "export", MASKED_READ),
    (Role.AGENT, "export", MASKED_READ),
    ("admin", "list", MASKED_READ),
])
def test_configured_table(role: Role | str | None, view: View, expected: Seen) -> None:
    assert _seen(CONFIGURED, role, view) == expected


def test_masked_shows_nothing() -> None:
    assert not any(MASKED.shows(f) for f in ("name", "address", "birth_date", "id_number"))
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


@pytest.mark.parametrize(("birth_date", "masked"), [
    ("1958-03-07", "1958-**-**"),
    ("2001-12-31", "2001-**-**"),
    # Not a date as the kiosk sends them (the server refuses those): nothing shown.
    ("", ""),
    ("58-3-7", "******"),
    ("１９５８-03-07", "**********"),
])
def test_birth_date_masked_to_its_year(birth_date: str, masked: str) -> None:
    assert mask_birth_date(birth_date) == masked
    assert MASKED.birth_date(birth_date) == masked


@pytest.mark.parametrize(("privacy", "field", "message"), [
    ({"unmasked_in_exports": {"supervisor": ["id_number"]}}, "privacy.unmasked_in_exports",
     "audited reveal"),
    ({"unmasked_in_lists": {"agent": ["name", "id_number"]}}, "privacy.unmasked_in_lists",
     "audited reveal"),
    ({"unmasked_in_lists": {"admin": ["name"]}}, "privacy.unmasked_in_lists.admin.[key]",
     "'supervisor'"),
    ({"unmasked_in_exports": {"supervisor": ["phone"]}},
     "privacy.unmasked_in_exports.supervisor.0", "'name', 'address' or 'birth_date'"),
    ({"unmasked": {}}, "privacy.unmasked", "unknown config key"),
])
def test_config_refuses(privacy: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_config(environ={}, overrides={"privacy": privacy})
    assert err.value.field == field
