"""Fixtures of the insights tests: code figures are computed from repositories the tests make."""

from __future__ import annotations

from tests.repos.conftest import root

__all__ = ["root"]
