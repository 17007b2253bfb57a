"""The one configuration object: defaults, then a TOML file, then ``VWINDOW_*`` variables.

Environment variables name a section and a key joined by a double underscore, e.g.
``VWINDOW_SERVER__PORT=8443`` or ``VWINDOW_DB__URL=postgresql+asyncpg://…``. Unknown keys
anywhere are rejected at start-up with the key named.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic import ValidationError as PydanticValidationError

from vwindow.errors import ConfigError
from vwindow.permissions import PrivacyConfig
from vwindow.retention import RetentionConfig
from vwindow.sla_config import SlaConfig

ENV_PREFIX = "VWINDOW_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    node_id: str = "node-1"
    public_url: str = ""
    """Origin used in links handed to people (surveyor links); empty: from the request."""
    web_root: str = ""
    """Directory of the static pages; empty: the ``web/`` folder beside the packages."""
    max_ws_frame: int = 64 * 1024
    max_upload_bytes: int = 50 * 1024 * 1024
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per log line (for log shippers); ``text``: for people."""


class DbConfig(_Section):
    url: str = "sqlite+aiosqlite:///vwindow-data/vwindow.db"
    echo: bool = False


class StorageConfig(_Section):
    root: str = "vwindow-data/files"


class AuthConfig(_Section):
    secret: str = ""
    """HS256 signing key for tokens; empty: a random key per run (tokens die on restart)."""
    previous_secrets: tuple[str, ...] = ()
    """Keys still accepted for verification during a rotation."""
    token_ttl_s: int = Field(default=12 * 3600, gt=0)
    kiosk_token_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    surveyor_link_ttl_s: int = Field(default=30 * 60, gt=0)
    surveyor_token_ttl_s: int = Field(default=4 * 3600, gt=0)
    max_failed_logins: int = Field(default=5, ge=1)
    """Failed logins of one account within ``failed_login_window_s`` before it must wait."""
    max_failed_logins_per_address: int = Field(default=30, ge=1)
    """Failed logins from one client address within the window before it must wait."""
    failed_login_window_s: float = Field(default=300.0, gt=0)


class MediaConfig(_Section):
    ice_addresses: tuple[str, ...] = ("127.0.0.1",)
    """Host addresses the hub offers as ICE candidates (the server's reachable IPs)."""
    video_codec: str = "VP8"
    forward: bool = True
    """Forward encoded frames (no transcoding); false: decode and re-encode (slow)."""
    record: bool = True
    """Record every session (needs ``forward``); the file becomes a case material."""
    recordings_dir: str = ""
    """Where recordings are written while live; empty: ``recordings`` beside the store."""
    turn_urls: tuple[str, ...] = ()
    turn_secret: str = ""
    turn_ttl_s: int = Field(default=6 * 3600, gt=0)
    ice_transport_policy: Literal["all", "relay"] = "all"
    """Handed to clients: ``"relay"`` makes them reach the hub only through TURN."""

    @field_validator("ice_transport_policy")
    @classmethod
    def _relay_needs_turn(cls, value: str, info: ValidationInfo) -> str:
        if value == "relay" and not (info.data.get("turn_urls") and info.data.get("turn_secret")):
            raise ValueError("'relay' needs media.turn_urls and media.turn_secret")
        return value


class RoutingConfig(_Section):
    """How waiting calls reach agents (see ``vwindow.routing``)."""

    strategy: Literal["longest_idle", "round_robin", "ring_all"] = "longest_idle"
    offer_timeout_s: float = Field(default=20.0, gt=0)
    """An offer not accepted in time goes to the next agent; the first is set away."""
    wrap_up_s: float = Field(default=30.0, ge=0)
    """After a call the agent finishes notes for this long before being offered the next."""
    overflow_s: float = Field(default=60.0, ge=0)
    dialect_overflow_s: float = Field(default=120.0, ge=0)
    callback_after_s: float = Field(default=180.0, ge=0)
    """A call waiting this long is offered a callback (0: never)."""
    elderly_age: int = Field(default=65, ge=0, le=150)
    elderly_boost: int = 10
    appointment_boost: int = 5
    callback_boost: int = 0
    transfer_boost: int = 20
    """A transferred caller has waited once already: served before new calls."""
    transfer_timeout_s: float = Field(default=60.0, gt=0)
    """A call transferred to a named agent who does not take it goes to the queue after this."""
    default_handle_s: float = Field(default=300.0, gt=0)
    """Handle time assumed for wait estimates until real calls have been measured."""
    tick_s: float = Field(default=1.0, gt=0)
    """How often the router re-checks timeouts, overflow and wait estimates."""
    node_timeout_s: float = Field(default=15.0, gt=0)
    """A node whose heartbeat is older than this is dead: its calls are re-queued."""


class DeviceSlotConfig(_Section):
    """One kiosk device: which driver (``none`` disables it) and the driver's options."""

    driver: str = "none"
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Passed to the driver, e.g. ``{url = "/dev/ttyUSB0"}`` or ``{device_name = "scanner"}``."""


class RemoteControlConfig(_Section):
    """Consented remote control of the kiosk window (off unless enabled)."""

    enabled: bool = False
    display: str = ":0"
    window_class: str = "chromium"
    """WM_CLASS of the kiosk browser window: input lands only inside it."""
    window_name: str = ""
    stop_key: str = "Pause"
    """A key on the kiosk's keyboard that stops remote control at once."""
    consent_timeout_s: float = Field(default=60.0, gt=0)


class KioskConfig(_Section):
    """The kiosk device agent (``vwindow kiosk``) on a township kiosk PC."""

    server: str = "http://127.0.0.1:8080"
    code: str = ""
    """The kiosk's code, as registered on the server."""
    key: str = ""
    """The kiosk's device key (from enrolment)."""
    spool_dir: str = "vwindow-data/kiosk-spool"
    """Captures waiting for the uplink are kept here."""
    doccam: DeviceSlotConfig = DeviceSlotConfig(driver="sim")
    idcard: DeviceSlotConfig = DeviceSlotConfig()
    scanner: DeviceSlotConfig = DeviceSlotConfig()
    screen: DeviceSlotConfig = DeviceSlotConfig()
    """The kiosk desktop for screen sharing, e.g. ``driver = "x11"`` with
    ``options = { display = ":0", window_class = "chromium" }``."""
    remote_control: RemoteControlConfig = RemoteControlConfig()
    blur_threshold: float | None = Field(default=None, gt=0)
    """Calibrated Laplacian-variance threshold of this document camera (None: default)."""
    max_glare_fraction: float = Field(default=0.01, gt=0, le=1)
    hotplug_every_s: float = Field(default=5.0, gt=0)
    """How often a missing or unplugged device is looked for again."""


class Config(_Section):
    server: ServerConfig = ServerConfig()
    db: DbConfig = DbConfig()
    storage: StorageConfig = StorageConfig()
    auth: AuthConfig = AuthConfig()
    media: MediaConfig = MediaConfig()
    routing: RoutingConfig = RoutingConfig()
    sla: SlaConfig = Field(default_factory=SlaConfig)
    kiosk: KioskConfig = Field(default_factory=KioskConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    sections = Config.model_fields
    out: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        if "__" not in rest:
            if rest in {"config"}:
                continue
            raise ConfigError(
                f"environment variable {name!r} is not SECTION__KEY (e.g. VWINDOW_SERVER__PORT)",
                field=name,
            )
        section, key = rest.split("__", 1)
        if section not in sections:
            raise ConfigError(f"unknown config section {section!r} in {name!r}", field=name)
        value: Any = raw
        if raw[:1] in "[{" or raw in {"true", "false"}:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
        out.setdefault(section, {})[key] = value
    return out


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the config from defaults, ``path`` (TOML), the environment and ``overrides``."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is None and env.get("VWINDOW_CONFIG"):
        path = env["VWINDOW_CONFIG"]
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as err:
            raise ConfigError(f"config file {str(path)!r} does not exist") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from err
    data = _merge(data, _env_overrides(env))
    if overrides:
        data = _merge(data, overrides)
    try:
        return Config.model_validate(data)
    except PydanticValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            raise ConfigError(f"unknown config key {where!r}", field=where) from err
        raise ConfigError(
            f"config key {where!r}: {first['msg']} (got {first.get('input')!r})", field=where
        ) from err
