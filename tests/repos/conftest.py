"""Fixtures of the repository tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def root(tmp_path: Path, settings) -> Path:
    """A directory the test's repositories live in: the only allowed root, with the workspace inside."""
    settings.APM_REPO_ROOTS = [str(tmp_path)]
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    return tmp_path
