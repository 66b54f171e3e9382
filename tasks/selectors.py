"""Reads of tasks."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from projects.keys import TASK_KEY_RE
from projects.selectors import project_list
from tasks.models import Task, TaskEvent


def task_list(*, user: User | AnonymousUser) -> QuerySet[Task]:
    """Tasks of the projects ``user`` may see, with what every list shows joined in (no N+1)."""
    return Task.objects.filter(project__in=project_list(user=user)).select_related(
        "project", "assignee", "parent__project"
    )


def task_get_by_key(*, key: str, user: User | AnonymousUser | None = None) -> Task | None:
    """The task named ``APM-42``, or None when there is none (or ``user`` may not see it)."""
    match = TASK_KEY_RE.match(key.strip().upper())
    if match is None:
        return None
    tasks = task_list(user=user) if user is not None else Task.objects.select_related("project")
    return tasks.filter(project__key=match["project"], number=int(match["number"])).first()


def task_history(*, task: Task) -> QuerySet[TaskEvent]:
    """Every change to ``task``, newest first (idx_task_events_task_created)."""
    return TaskEvent.objects.filter(task=task).select_related("actor").order_by("-created_at", "-id")
