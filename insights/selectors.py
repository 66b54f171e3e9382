"""Reads of insights, cached: what the API, the dashboard and the admin show.

Every figure a page or an answer shows is read here, through the cache, so the API and the admin share
one entry per figure and neither recomputes what the other just computed. Two kinds of entries:

* a project's summary (``project:{id}``) and the portfolio (``projects:list``), dropped by the services
  that change what they count (``projects.services.project_cache_invalidate``);
* the analytics (progress, health, priorities, burndown, hotspots, coupling, contributors), kept in the
  project's cache generation, which every change to its tasks and every ingestion of its repositories
  bumps (``apm.cache``), and keyed by the day and by every parameter the figure depends on.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Count, Max
from django.utils import timezone

from apm.cache import PROJECTS_LIST_KEY, cached, generation_key, project_key
from insights.analytics import (
    TREND_DAYS,
    progress_of,
    project_burndown,
    project_health,
    project_progress,
    task_counts,
    task_priorities,
)
from insights.code import (
    CACHE_TIMEOUT,
    COUPLING_MIN_SHARED,
    AnalyticsWindow,
    change_coupling,
    code_window,
    contributor_stats,
    coupling_max_files,
    file_hotspots,
)
from projects.models import Project
from projects.selectors import project_ids_visible
from repos.models import Commit
from tasks.models import Task, TaskEvent

if TYPE_CHECKING:
    from typing import TypedDict

    from django_stubs_ext import WithAnnotations

    class TaskPriority(TypedDict):
        """What ``insights.analytics.task_priorities`` annotates each task with."""

        blocks_open: int
        urgency: int
        importance: int
        score: int
        quadrant: str

    PrioritizedTask = WithAnnotations[Task, TaskPriority]

T = TypeVar("T")

# Time-dependent results (overdue, stale, trends) are also keyed by day and kept at most this long, on
# top of the project's cache generation, which any task change bumps.
ANALYTICS_CACHE_SECONDS = 3600
# The shape of the cached analytics entries. It is part of their keys, so that processes of two releases
# sharing one cache (a rolling deploy) never read each other's entries: raise it when a shape changes.
ANALYTICS_FORMAT = 2


# health_level/health_score: the last recorded assessment (insights.services.project_health_record).
_PROJECT_SUMMARY_FIELDS = ("id", "key", "name", "status", "health_level", "health_score")


RECENT_ACTIVITY_ROWS = 10


def project_summary_cached(*, project: Project) -> dict[str, Any]:
    """A project's figures and recent activity, cached under ``project:{id}``.

    The entry is dropped whenever the project, one of its tasks or one of its repositories' ingestions
    changes (``project_cache_invalidate``), so it is never stale. Computing it costs a fixed number of
    queries, whatever the size of the project: task aggregates, repository and commit aggregates, the
    latest events and the latest commits.
    """

    def compute() -> dict[str, Any]:
        summary: dict[str, Any] = {
            field: getattr(project, "pk" if field == "id" else field) for field in _PROJECT_SUMMARY_FIELDS
        }
        tasks = Task.objects.filter(project=project)
        summary.update(tasks.aggregate(**task_counts()))
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
            {**event, "task": f"{project.key}-{event['task__number']}"}
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

    return cached(project_key(project.pk), compute, family="summary")


def project_portfolio_cached() -> list[dict[str, Any]]:
    """Every project with its task counts, cached under ``projects:list``.

    Two queries whatever the number of projects: the projects, then one grouped count of their tasks.
    Callers filter the list down to what their user may see.
    """

    def compute() -> list[dict[str, Any]]:
        aggregates = task_counts()
        # values() + annotate(**aggregates): the type checker knows the "project_id" key only.
        rows = cast(
            "list[dict[str, Any]]", Task.objects.values("project_id").annotate(**aggregates).order_by()
        )
        counts = {row.pop("project_id"): row for row in rows}
        zeros = dict.fromkeys(aggregates, 0)
        return [
            {**project, **counts.get(project["id"], zeros)}
            for project in Project.objects.order_by("key").values(*_PROJECT_SUMMARY_FIELDS)
        ]

    return cached(PROJECTS_LIST_KEY, compute, family="portfolio")


def project_dashboard(*, user: User | AnonymousUser) -> list[dict[str, Any]]:
    """The portfolio rows ``user`` may see, each with its progress (done over all but cancelled)."""
    visible = project_ids_visible(user=user)
    rows = project_portfolio_cached()
    if visible is not None:
        allowed = set(visible.values_list("project_id", flat=True))
        rows = [row for row in rows if row["id"] in allowed]
    return [{**row, "progress": progress_of(row)} for row in rows]


# --- Analytics ----------------------------------------------------------------------------------------


def analytics_cached(
    *,
    project: Project,
    name: str,
    parts: tuple[Any, ...],
    compute: Callable[[], T],
    timeout: int = ANALYTICS_CACHE_SECONDS,
) -> T:
    """``compute()`` cached in ``project``'s cache generation: any change to its tasks, and every
    ingestion of its repositories, drops it. ``parts`` names everything else the result depends on.

    The day is part of the key: overdue, stale and windows ending today move with the clock even when
    nothing is written. Task analytics live an hour at most; code analytics (which change only with an
    ingestion) pass a longer ``timeout``.
    """
    key = generation_key(
        project_key(project.pk), "analytics", f"v{ANALYTICS_FORMAT}", name, timezone.localdate(), *parts
    )
    return cached(key, compute, family=name, timeout=timeout)


def project_progress_cached(*, project: Project, days: int = TREND_DAYS) -> dict[str, Any]:
    """``insights.analytics.project_progress``, cached."""
    return analytics_cached(
        project=project,
        name="progress",
        parts=(days,),
        compute=lambda: project_progress(project=project, days=days),
    )


def project_health_cached(*, project: Project) -> dict[str, Any]:
    """``insights.analytics.project_health`` as of now, cached (the recorded level is on the project)."""
    return analytics_cached(
        project=project, name="health", parts=(), compute=lambda: project_health(project=project)
    )


def task_priorities_cached(*, project: Project, quadrant: str | None = None) -> list[PrioritizedTask]:
    """``insights.analytics.task_priorities``, cached (the open tasks with their scores, best first)."""
    return analytics_cached(
        project=project,
        name="priorities",
        parts=(quadrant or "",),
        compute=lambda: list(task_priorities(project=project, quadrant=quadrant or None)),
    )


def project_burndown_cached(*, project: Project, start: datetime.date, end: datetime.date) -> dict[str, Any]:
    """``insights.analytics.project_burndown``, cached."""
    return analytics_cached(
        project=project,
        name="burndown",
        parts=(start, end),
        compute=lambda: project_burndown(project=project, start=start, end=end),
    )


_CODE_FIGURES: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "hotspots": file_hotspots,
    "coupling": change_coupling,
    "contributors": contributor_stats,
}


def code_figures_cached(
    *,
    project: Project,
    figure: str,
    repository: int | None = None,
    since: datetime.date | None = None,
    until: datetime.date | None = None,
    days: int | None = None,
    limit: int,
    **options: Any,
) -> dict[str, Any]:
    """One code figure of ``project`` (``hotspots``, ``coupling`` or ``contributors``) over a window.

    The window is resolved with the figure (its default end is today, or the day of the last commit when
    the repositories have been quiet since). The answer echoes what it covers: ``since``, ``until``,
    ``repository``, ``window`` (the ``AnalyticsWindow``), then ``results``; coupling adds
    ``max_files``. Cached a day at most in the project's generation, which every ingestion bumps.
    """
    if figure == "coupling":
        # The API always names min_shared (its default is this one): the admin's panel shares its entry.
        options.setdefault("min_shared", COUPLING_MIN_SHARED)
        options["max_files"] = coupling_max_files()
    query = {
        "repository": repository,
        "since": since,
        "until": until,
        "days": days,
        "limit": limit,
        **options,
    }
    # Everything the answer depends on, as key parts without spaces (memcached-safe).
    parts = tuple(f"{name}={query[name]}" for name in sorted(query))

    def compute() -> dict[str, Any]:
        window: AnalyticsWindow = code_window(
            project=project, repository=repository, since=since, until=until, days=days
        )
        arguments = {name: value for name, value in options.items() if name != "max_files"}
        rows = _CODE_FIGURES[figure](
            project=project,
            since=window.since,
            until=window.until,
            repository=repository,
            limit=limit,
            **arguments,
        )
        echo = {"since": window.since, "until": window.until, "repository": repository, "window": window}
        if "max_files" in options:
            echo["max_files"] = options["max_files"]
        return {**echo, "results": rows}

    return analytics_cached(project=project, name=figure, parts=parts, compute=compute, timeout=CACHE_TIMEOUT)
