"""Every REST route has an access rule and an OpenAPI entry."""

from __future__ import annotations

from pathlib import Path

import yaml

from signaling import rest
from signaling.app import make_app
from vwindow.config import load_config

SPEC = Path(__file__).resolve().parents[2] / "signaling" / "openapi.yaml"


def _api_routes() -> set[tuple[str, str]]:
    app = make_app(load_config(environ={}, overrides={
        "auth": {"secret": "x" * 40}, "db": {"url": "sqlite+aiosqlite:///:memory:"}}))
    routes = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method in ("HEAD", "*") or not path:
            continue
        if path.startswith("/api/v1/") or path == "/healthz":
            if path != "/api/v1/openapi.yaml":
                routes.add((route.method, path))
    return routes


def test_every_route_has_an_access_rule() -> None:
    missing = _api_routes() - set(rest.ROUTE_ROLES)
    assert not missing, f"routes without a rule in ROUTE_ROLES: {sorted(missing)}"


def test_every_route_is_in_openapi() -> None:
    spec = yaml.safe_load(SPEC.read_text())
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    missing = _api_routes() - documented
    assert not missing, f"routes missing from openapi.yaml: {sorted(missing)}"
    stale = documented - _api_routes()
    assert not stale, f"openapi.yaml documents routes that do not exist: {sorted(stale)}"
