"""Simulators: ordinary drivers that need no hardware, one per device kind."""

from __future__ import annotations
