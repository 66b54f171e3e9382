"""Reads of projects and memberships."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Q, QuerySet

from apm.cache import PROJECTS_LIST_KEY, cached, project_key
from projects.models import Membership, Project


def project_list(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Project]:
    """Projects ``user`` may see: all of them for staff, the ones they are a member of otherwise."""
    projects = Project.objects.all()
    if not user.is_authenticated:
        return projects.none()
    if user.is_staff:
        return projects
    return projects.filter(memberships__user=user)


def project_role(*, project: Project, user: AbstractBaseUser | AnonymousUser) -> str | None:
    """``user``'s role in ``project``, or None when they are not a member."""
    if not user.is_authenticated:
        return None
    return Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()


def project_can_write(*, project: Project, user: AbstractBaseUser | AnonymousUser) -> bool:
    """Whether ``user`` may change ``project``'s tasks and repositories."""
    if user.is_authenticated and user.is_staff:
        return True
    return project_role(project=project, user=user) in Membership.WRITE_ROLES


def _task_counts() -> dict[str, Count]:
    """Aggregates of tasks by state; grouped by project they read idx_tasks_project_status."""
    from tasks.models import Task

    return {
        "tasks_total": Count("id"),
        "tasks_open": Count("id", filter=~Q(status__in=Task.CLOSED_STATUSES)),
        "tasks_done": Count("id", filter=Q(status=Task.Status.DONE)),
    }


_PROJECT_SUMMARY_FIELDS = ("id", "key", "name", "status")


def project_summary_cached(*, project: Project) -> dict[str, Any]:
    """A project's headline figures, cached under ``project:{id}`` until the project or a task changes."""
    from tasks.models import Task

    def compute() -> dict[str, Any]:
        summary = {
            field: getattr(project, "pk" if field == "id" else field) for field in _PROJECT_SUMMARY_FIELDS
        }
        return {**summary, **Task.objects.filter(project=project).aggregate(**_task_counts())}

    return cached(project_key(project.pk), compute)


def project_portfolio_cached() -> list[dict[str, Any]]:
    """Every project with its task counts, cached under ``projects:list``.

    Two queries whatever the number of projects: the projects, then one grouped count of their tasks.
    Callers filter the list down to what their user may see.
    """
    from tasks.models import Task

    def compute() -> list[dict[str, Any]]:
        aggregates = _task_counts()
        counts = {
            row.pop("project_id"): row
            for row in Task.objects.values("project_id").annotate(**aggregates).order_by()
        }
        zeros = dict.fromkeys(aggregates, 0)
        return [
            {**project, **counts.get(project["id"], zeros)}
            for project in Project.objects.order_by("key").values(*_PROJECT_SUMMARY_FIELDS)
        ]

    return cached(PROJECTS_LIST_KEY, compute)
