"""The deployment files hang together: compose structure, env keys the config knows,
nginx WebSocket proxying, coturn's shared secret, systemd units. Nothing is started."""

from __future__ import annotations

import re
from configparser import ConfigParser
from pathlib import Path

import yaml

from vwindow.config import load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

# Keys the deploy files use that the config model is about to gain (wired separately);
# remove an entry once vwindow/config.py has the key.
PENDING_KEYS: set[str] = set()


def _compose() -> dict[str, object]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _interpolate(value: str) -> str:
    """Compose's ${VAR}, ${VAR:?msg} and ${VAR:-default} with test values."""
    return re.sub(r"\$\{([A-Z_]+)[^}]*\}", lambda m: {
        "VWINDOW_AUTH_SECRET": "s" * 40}.get(m.group(1), "example"), value)


def test_compose_runs_two_nodes_on_one_postgres_with_coturn_and_nginx() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    assert set(services) == {"postgres", "node-1", "node-2", "coturn", "nginx"}
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["node-1"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert services["node-2"]["depends_on"]["node-1"]["condition"] == "service_healthy"
    assert services["coturn"]["network_mode"] == "host"
    assert "443:443" in services["nginx"]["ports"]
    for mount in services["nginx"]["volumes"]:
        source = mount.split(":")[0]
        if source.startswith("./"):
            assert (DEPLOY / source).exists(), mount

    env = {name: {k: _interpolate(str(v)) for k, v in services[name]["environment"].items()}
           for name in ("node-1", "node-2")}
    assert env["node-1"]["VWINDOW_SERVER__NODE_ID"] != env["node-2"]["VWINDOW_SERVER__NODE_ID"]
    for name, variables in env.items():
        assert variables["VWINDOW_DB__URL"].startswith("postgresql+asyncpg://"), name
        known = {k: v for k, v in variables.items()
                 if f"{k[8:].lower().replace('__', '.')}" not in PENDING_KEYS}
        config = load_config(environ=known)  # unknown keys would raise here
        assert config.media.ice_transport_policy == "relay"
        assert config.media.turn_urls and config.media.turn_secret
    # The nodes' ICE addresses are what coturn may relay to and nginx proxies to.
    turn = (DEPLOY / "coturn" / "turnserver.conf").read_text()
    upstream = (DEPLOY / "nginx" / "upstream-compose.conf").read_text()
    for name in ("node-1", "node-2"):
        address = services[name]["networks"]["vwindow"]["ipv4_address"]
        assert f'["{address}"]' == services[name]["environment"]["VWINDOW_MEDIA__ICE_ADDRESSES"]
        assert f"server {address}:8080" in upstream
    assert "allowed-peer-ip=172.30.0.11-172.30.0.12" in turn


def test_dockerfile_is_bookworm_python_with_zbar() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim-bookworm" in text
    assert "libzbar0" in text and "USER vwindow" in text and "/readyz" in text


def test_nginx_upgrades_websockets_and_keeps_metrics_inside() -> None:
    text = (DEPLOY / "nginx" / "vwindow.conf").read_text()
    ws = text[text.index("location = /ws"):]
    ws = ws[:ws.index("}")]
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_set_header Connection $connection_upgrade;" in ws
    assert "proxy_http_version 1.1;" in ws
    assert "ip_hash" not in text and "sticky" not in text.replace("nothing is sticky", "")
    for path in ("/metrics", "/readyz"):
        block = text[text.index(f"location = {path}"):]
        assert "deny all;" in block[:block.index("}")]
    assert "ssl_certificate " in text


def test_coturn_uses_the_shared_secret_and_refuses_private_peers() -> None:
    lines = {line.strip() for line in (DEPLOY / "coturn" / "turnserver.conf").read_text()
             .splitlines() if line.strip() and not line.startswith("#")}
    assert {"use-auth-secret", "no-cli", "fingerprint"} <= lines
    assert any(line.startswith("static-auth-secret=") for line in lines)
    denied = {line.split("=", 1)[1] for line in lines if line.startswith("denied-peer-ip=")}
    assert {"10.0.0.0-10.255.255.255", "172.16.0.0-172.31.255.255",
            "192.168.0.0-192.168.255.255", "127.0.0.0-127.255.255.255"} <= denied
    assert any(line.startswith("listening-ip=") for line in lines)


def _unit(path: Path) -> ConfigParser:
    parser = ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def test_systemd_units_are_hardened() -> None:
    for name in ("systemd/vwindow.service", "systemd/vwindow@.service",
                 "systemd/vwindow-kiosk.service", "kiosk/vwindow-kiosk-browser.service"):
        unit = _unit(DEPLOY / name)
        service = unit["Service"]
        assert service["ExecStart"], name
        assert unit["Install"]["WantedBy"], name
        if "browser" not in name:
            assert service["NoNewPrivileges"] == "true", name
            assert service["ProtectSystem"] == "strict", name
    node = _unit(DEPLOY / "systemd/vwindow.service")["Service"]
    assert "vwindow migrate" in node["ExecStartPre"] and "PrivateDevices" in node
    kiosk = _unit(DEPLOY / "systemd/vwindow-kiosk.service")["Service"]
    assert kiosk["DevicePolicy"] == "closed" and "vwindow-dev" in kiosk["SupplementaryGroups"]


def test_kiosk_pc_files() -> None:
    rules = (DEPLOY / "kiosk" / "70-vwindow-kiosk.rules").read_text()
    for subsystem in ("video4linux", "tty", "input"):
        assert f'SUBSYSTEM=="{subsystem}"' in rules
    assert rules.count('GROUP="vwindow-dev"') >= 3
    setup = (DEPLOY / "kiosk" / "setup-kiosk.sh").read_text()
    assert "/api/v1/auth/kiosk/enrol" in setup and "chmod 0640 /etc/vwindow/kiosk.env" in setup
    assert "--kiosk" in (DEPLOY / "kiosk" / "kiosk-session").read_text()


def test_example_config_loads() -> None:
    config = load_config(DEPLOY / "vwindow.example.toml", environ={})
    assert config.db.url.startswith("postgresql+asyncpg://")
