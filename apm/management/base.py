"""Helpers shared by APM's management commands."""

from __future__ import annotations

from django.core.management.base import CommandError

from projects.models import Project


def project_by_key(key: str) -> Project:
    """The project with ``key`` (any case), or a ``CommandError`` naming the key."""
    key = key.upper()
    project = Project.objects.filter(key=key).first()
    if project is None:
        raise CommandError(f"No project has the key {key!r}.")
    return project
