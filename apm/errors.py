"""How errors are told to people in one line (commands, ingestion runs, batch reports)."""

from __future__ import annotations

from django.core.exceptions import ValidationError


def validation_text(exc: ValidationError) -> str:
    """Every message of ``exc``, in order, joined by "; " (field names are left to forms and the API)."""
    return "; ".join(exc.messages)
