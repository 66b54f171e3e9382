"""Reads of projects and memberships."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Max, Q, QuerySet
from django.utils import timezone

from apm.cache import PROJECTS_LIST_KEY, cached, project_key
from projects.models import Membership, Project


def project_list(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Project]:
    """Projects ``user`` may see: all of them for staff, the ones they are a member of otherwise."""
    visible = project_ids_visible(user=user)
    projects = Project.objects.all()
    return projects if visible is None else projects.filter(pk__in=visible)


def project_role(*, project: Project, user: AbstractBaseUser | AnonymousUser) -> str | None:
    """``user``'s role in ``project``, or None when they are not a member."""
    if not user.is_authenticated:
        return None
    return Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()


def _task_counts() -> dict[str, Count]:
    """Aggregates of tasks by state; grouped by project they read idx_tasks_project_status."""
    from tasks.models import Task

    return {
        "tasks_total": Count("id"),
        "tasks_open": Count("id", filter=~Q(status__in=Task.CLOSED_STATUSES)),
        "tasks_done": Count("id", filter=Q(status=Task.Status.DONE)),
        "tasks_cancelled": Count("id", filter=Q(status=Task.Status.CANCELLED)),
    }


def progress_of(row: dict[str, Any]) -> float:
    """Done tasks over all tasks but cancelled ones, 0.0 to 1.0 (0.0 for a project without tasks)."""
    counted = row["tasks_total"] - row["tasks_cancelled"]
    return round(row["tasks_done"] / counted, 4) if counted else 0.0


# health_level/health_score: the last recorded assessment (projects.analytics.project_health_record).
_PROJECT_SUMMARY_FIELDS = ("id", "key", "name", "status", "health_level", "health_score")


RECENT_ACTIVITY_ROWS = 10


def project_summary_cached(*, project: Project) -> dict[str, Any]:
    """A project's figures and recent activity, cached under ``project:{id}``.

    The entry is dropped whenever the project, one of its tasks or one of its repositories' ingestions
    changes (``project_cache_invalidate``), so it is never stale. Computing it costs a fixed number of
    queries, whatever the size of the project: task aggregates, repository and commit aggregates, the
    latest events and the latest commits.
    """
    from repos.models import Commit
    from tasks.models import Task, TaskEvent

    def compute() -> dict[str, Any]:
        summary: dict[str, Any] = {
            field: getattr(project, "pk" if field == "id" else field) for field in _PROJECT_SUMMARY_FIELDS
        }
        tasks = Task.objects.filter(project=project)
        summary.update(tasks.aggregate(**_task_counts()))
        by_status = dict.fromkeys(Task.Status.values, 0)
        by_status.update(
            (row["status"], row["count"])
            for row in tasks.values("status").annotate(count=Count("id")).order_by()
        )
        summary["tasks_by_status"] = by_status
        summary["tasks_overdue"] = (
            tasks.exclude(status__in=Task.CLOSED_STATUSES).filter(due_date__lt=timezone.localdate()).count()
        )
        summary["progress"] = progress_of(summary)
        commits = Commit.objects.filter(repository__project=project)
        summary.update(
            repositories=project.repositories.count(),
            **commits.aggregate(commits=Count("id"), last_commit_at=Max("timestamp")),
        )
        summary["recent_events"] = [
            {**event, "task": f"{project.key}-{event.pop('task__number')}"}
            for event in TaskEvent.objects.filter(project=project)
            .order_by("-created_at", "-id")
            .values(
                "id", "task__number", "kind", "source", "from_status", "to_status", "commit_sha", "created_at"
            )[:RECENT_ACTIVITY_ROWS]
        ]
        summary["recent_commits"] = list(
            commits.order_by("-timestamp", "-id").values(
                "id", "repository_id", "sha", "author_name", "timestamp", "additions", "deletions"
            )[:RECENT_ACTIVITY_ROWS]
        )
        for commit in summary["recent_commits"]:
            commit["repository"] = commit.pop("repository_id")
        return summary

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


def project_ids_visible(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Membership] | None:
    """A subquery of the ids of the projects ``user`` is a member of; None for staff, who see them all.

    Used as ``filter(project__in=...)`` by every list, so a non-member's lists never hold the project's
    rows and its objects answer 404.
    """
    if user.is_authenticated and user.is_staff:
        return None
    if not user.is_authenticated:
        return Membership.objects.none().values("project_id")
    return Membership.objects.filter(user=user).values("project_id")


def project_dashboard(*, user: AbstractBaseUser | AnonymousUser) -> list[dict[str, Any]]:
    """The portfolio rows ``user`` may see, each with its progress (done over all but cancelled)."""
    visible = project_ids_visible(user=user)
    rows = project_portfolio_cached()
    if visible is not None:
        allowed = set(visible.values_list("project_id", flat=True))
        rows = [row for row in rows if row["id"] in allowed]
    return [{**row, "progress": progress_of(row)} for row in rows]
