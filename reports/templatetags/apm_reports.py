"""Template filters of the reports."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def md_cell(value: Any) -> str:
    """``value`` as the text of one Markdown table cell: pipes escaped, on one line."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


@register.filter
def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


@register.filter
def signed_percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f} pts"
