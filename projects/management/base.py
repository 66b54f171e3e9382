"""Helpers of the management commands of every app that names a project (``--project KEY``)."""

from __future__ import annotations

from django.core.management.base import CommandError

from projects.models import Project
from projects.selectors import project_get_by_key


def project_by_key(key: str) -> Project:
    """The project with ``key`` (any case), or a ``CommandError`` naming the key."""
    project = project_get_by_key(key=key)
    if project is None:
        raise CommandError(f"No project has the key {key.strip().upper()!r}.")
    return project
