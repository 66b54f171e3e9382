"""Reads of projects and memberships."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from projects.models import Membership, Project


def project_list(*, user: User | AnonymousUser) -> QuerySet[Project]:
    """Projects ``user`` may see: all of them for staff, the ones they are a member of otherwise."""
    visible = project_ids_visible(user=user)
    projects = Project.objects.all()
    return projects if visible is None else projects.filter(pk__in=visible)


def project_role(*, project: Project, user: User | AnonymousUser) -> str | None:
    """``user``'s role in ``project``, or None when they are not a member."""
    if not user.is_authenticated:
        return None
    return Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()


def project_ids_visible(*, user: User | AnonymousUser) -> QuerySet[Membership, Any] | None:
    """A subquery of the ids of the projects ``user`` is a member of; None for staff, who see them all.

    Used as ``filter(project__in=...)`` by every list, so a non-member's lists never hold the project's
    rows and its objects answer 404.
    """
    if user.is_authenticated and user.is_staff:
        return None
    if not user.is_authenticated:
        return Membership.objects.none().values("project_id")
    return Membership.objects.filter(user=user).values("project_id")


def project_get_by_key(*, key: str) -> Project | None:
    """The project with ``key``, in any case ("apm" finds APM), or None."""
    return Project.objects.filter(key=key.strip().upper()).first()
