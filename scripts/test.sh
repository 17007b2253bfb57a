#!/usr/bin/env bash
# The whole default test run: lint, types, import direction, then pytest (unit,
# integration, e2e in real Chromium, SQLite and PostgreSQL). Benchmarks are separate.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
mypy
python -m pytest -q "$@"
