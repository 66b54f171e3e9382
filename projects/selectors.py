"""Reads of projects and memberships."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet
from django.utils import timezone

from apm.cache import cache_shared, stamped
from projects.models import Invitation, Membership, Project

# The generation of every remembered answer of project_id_visible: any change to a membership, a project
# or a user leaves them all behind when it commits (projects.apps).
PROJECT_ACCESS_NAMESPACE = "project-access"
# How long such an answer is remembered at most: the bound on what an invalidation lost to a cache
# outage could leave behind (apm.cache).
PROJECT_ACCESS_SECONDS = 60.0


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
    rows and its objects answer 404. A project being deleted (projects.deletion) is no one's.
    """
    if user.is_authenticated and user.is_staff:
        return None
    if not user.is_authenticated:
        return Membership.objects.none().values("project_id")
    return Membership.objects.filter(user=user, project__deleting_since__isnull=True).values("project_id")


def project_id_visible(*, user: User | AnonymousUser, key: str) -> int | None:
    """The id of the project ``key`` (any case) if ``user`` may see it (staff, or a member), else None.

    Every request to a project's figures asks it first: on a shared cache (Redis) the answer is
    remembered per user and key, found in one round trip, so a request served from the cache costs no
    query to check who may read it.
    """
    key = key.strip().upper()

    def lookup() -> int:
        projects = Project.objects.filter(key=key)
        visible = project_ids_visible(user=user)
        if visible is not None:
            projects = projects.filter(pk__in=visible)
        return projects.values_list("pk", flat=True).first() or 0  # 0, not None: an answer to remember

    if not user.is_authenticated or not cache_shared():
        return lookup() or None
    found = stamped(
        f"{PROJECT_ACCESS_NAMESPACE}:{user.pk}:{key}",
        lookup,
        namespace=PROJECT_ACCESS_NAMESPACE,
        family="project-access",
        timeout=PROJECT_ACCESS_SECONDS,
    )
    return found or None


def project_get_by_key(*, key: str) -> Project | None:
    """The project with ``key``, in any case ("apm" finds APM), or None."""
    return Project.objects.filter(key=key.strip().upper()).first()


def project_writer_by_username(*, project: Project, username: str) -> User | None:
    """The active member of ``project`` with write access named ``username``, or None.

    One query whatever the answer, and no other lookup of the name: an unknown username, an account that
    is not a member, a viewer and an inactive member are all the same None, found the same way.
    """
    membership = (
        Membership.objects.filter(
            project=project,
            user__username=username,
            user__is_active=True,
            role__in=Membership.WRITE_ROLES,
        )
        .select_related("user")
        .first()
    )
    # Exactly this spelling: MariaDB compares names without case, and "MEMBER" found member there, where
    # PostgreSQL and SQLite find no one; each database now gives the same None.
    if membership is None or membership.user.get_username() != username:
        return None
    return membership.user


def invitation_list_received(*, user: User) -> QuerySet[Invitation]:
    """The invitations ``user`` may still accept: addressed to their username, pending, not expired."""
    return (
        Invitation.objects.filter(
            username=user.get_username(), status=Invitation.Status.PENDING, expires_at__gt=timezone.now()
        )
        .select_related("project", "invited_by")
        .order_by("created_at", "pk")
    )


def invitation_get_received(*, user: User, project_key: str) -> Invitation | None:
    """``user``'s invitation to the project ``project_key``, in any state, or None.

    Only the invitee finds it: anyone else gets None, as for a project that invited nobody.
    """
    return (
        Invitation.objects.filter(username=user.get_username(), project__key=project_key.strip().upper())
        .select_related("project", "invited_by")
        .first()
    )


def invitation_list_pending(*, project: Project) -> QuerySet[Invitation]:
    """``project``'s pending invitations, expired ones included (their invitee can no longer accept)."""
    return (
        Invitation.objects.filter(project=project, status=Invitation.Status.PENDING)
        .select_related("invited_by")
        .order_by("username")
    )
