"""Text formatting shared by subcommands."""

from __future__ import annotations


def percent(value: float | None) -> str:
    return "   n/a" if value is None else f"{100 * value:6.2f}%"
