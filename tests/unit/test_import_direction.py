"""Imports point one way (DESIGN.md): vwindow ← devices, media ← signaling; only the CLI
wires everything."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {
    "vwindow": {"vwindow"},
    "devices": {"vwindow", "devices"},
    "media": {"vwindow", "media"},
    "signaling": {"vwindow", "devices", "media", "signaling"},
}
OURS = set(ALLOWED)
EXEMPT = {Path("vwindow/cli.py")}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel in EXEMPT or "migrations" in rel.parts:
            continue
        wrong = _imports(path) - ALLOWED[package]
        if wrong:
            bad.append(f"{rel} imports {sorted(wrong)}")
    assert not bad, "\n".join(bad)
