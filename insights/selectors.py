"""Reads of insights, cached: what the API, the dashboard and the admin show.

Every figure a page or an answer shows is read here, through the cache, so the API and the admin share
one entry per figure and neither recomputes what the other just computed. Two kinds of entries:

* a project's summary and the portfolio, in the project's and the portfolio's cache generations, which
  the services that change what they count bump (``projects.services.project_cache_invalidate``);
* the analytics (progress, health, priorities, burndown, hotspots, coupling, contributors), kept in the
  project's cache generation, which every change to its tasks and every ingestion of its repositories
  bumps (``apm.cache``), and keyed by the day and by every parameter the figure depends on.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Count, F, Max, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from apm.cache import PORTFOLIO_NAMESPACE, cached, generation_key, project_key
from apm.replicas import PRIMARY, replica_reads
from insights.analytics import (
    TREND_DAYS,
    progress_of,
    project_burndown,
    project_health,
    project_progress,
    project_progress_series,
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
from repos.models import Commit, CommitTaskLink, File, IngestionRun, Repository
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
# sharing one cache (a rolling deploy) never read each other's entries: raise it when a shape changes, or
# what an entry counts (4: the figures leave out the repositories being deleted, repos.deletion).
ANALYTICS_FORMAT = 4


# health_level/health_score: the last recorded assessment (insights.services.project_health_record).
_PROJECT_SUMMARY_FIELDS = ("id", "key", "name", "status", "health_level", "health_score")


RECENT_ACTIVITY_ROWS = 10


@replica_reads
def project_summary_cached(*, project: Project) -> dict[str, Any]:
    """A project's figures and recent activity, cached in the project's generation.

    The entry is left behind whenever the project, one of its tasks or one of its repositories' ingestions
    changes (``project_cache_invalidate``), so it is never stale. Computing it costs a fixed number of
    queries, whatever the size of the project: task aggregates, repository and commit aggregates, the
    latest events and the latest commits.
    """

    def compute() -> dict[str, Any]:
        # The row as of now, not as the caller loaded it before the generation was read (a rename or a
        # health record committed in between would be stored under the newer generation).
        summary: dict[str, Any] = Project.objects.values(*_PROJECT_SUMMARY_FIELDS).get(pk=project.pk)
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
        # Without the repositories being deleted (repos.deletion): gone for people at once.
        commits = Commit.objects.filter(repository__project=project, repository__deleting_since__isnull=True)
        summary.update(
            repositories=project.repositories.filter(deleting_since__isnull=True).count(),
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

    key = generation_key(project_key(project.pk), "summary", f"v{ANALYTICS_FORMAT}")
    return cached(key, compute, family="summary")


@replica_reads
def project_portfolio_cached() -> list[dict[str, Any]]:
    """Every project with its task counts, cached in the portfolio's generation.

    Each row also holds ``activity``: commits and tasks closed in each of the last ``ACTIVITY_WEEKS``
    weeks, oldest first (the dashboard's sparklines). Four queries whatever the number of projects: the
    projects, one grouped count of their tasks, commits and closed tasks grouped by project and day.
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
        activity = _portfolio_activity()
        return [
            {
                **project,
                **counts.get(project["id"], zeros),
                "activity": activity.get(
                    project["id"], {"commits": [0] * ACTIVITY_WEEKS, "closed": [0] * ACTIVITY_WEEKS}
                ),
            }
            for project in Project.objects.order_by("key").values(*_PROJECT_SUMMARY_FIELDS)
        ]

    return cached(
        generation_key(PORTFOLIO_NAMESPACE, "list", f"v{ANALYTICS_FORMAT}"), compute, family="portfolio"
    )


ACTIVITY_WEEKS = 12


def _portfolio_activity() -> dict[int, dict[str, list[int]]]:
    """Commits and closed tasks per project in each of the last ``ACTIVITY_WEEKS`` weeks (7-day spans
    ending today), oldest first. Two grouped queries over the span (idx_commits_timestamp,
    idx_task_events_project_time), a row per project and active day."""
    today = timezone.localdate()
    first = today - datetime.timedelta(days=7 * ACTIVITY_WEEKS - 1)
    since = datetime.datetime.combine(first, datetime.time.min, tzinfo=timezone.get_current_timezone())
    activity: dict[int, dict[str, list[int]]] = {}

    # Not the commits of a repository being deleted (repos.deletion): gone for people at once.
    commits = Commit.objects.filter(timestamp__gte=since, repository__deleting_since__isnull=True).values(
        pid=F("repository__project_id"), day=TruncDate("timestamp")
    )
    closed = portfolio_closed_per_day(since=since)
    for kind, rows in (("commits", commits.annotate(number=Count("id")).order_by()), ("closed", closed)):
        for row in rows:
            week = (row["day"] - first).days // 7
            if 0 <= week < ACTIVITY_WEEKS:
                weeks = activity.setdefault(
                    row["pid"], {"commits": [0] * ACTIVITY_WEEKS, "closed": [0] * ACTIVITY_WEEKS}
                )
                weeks[kind][week] += row["number"]
    return activity


def portfolio_closed_per_day(*, since: datetime.datetime) -> QuerySet[Any, Any]:
    """Tasks moved to done since ``since``, per project (``pid``) and day (``number`` of them).

    Every project at once: idx_task_events_kind_time reads the window's status changes to done and
    nothing else, and counts them from the index alone (COUNT(*) needs no column of the row).
    """
    return (
        TaskEvent.objects.filter(
            created_at__gte=since, kind=TaskEvent.Kind.STATUS_CHANGED, to_status=Task.Status.DONE
        )
        .values(pid=F("project_id"), day=TruncDate("created_at"))
        .annotate(number=Count("*"))
        .order_by()
    )


def project_dashboard(*, user: User | AnonymousUser) -> list[dict[str, Any]]:
    """The portfolio rows ``user`` may see, each with its progress (done over all but cancelled)."""
    visible = project_ids_visible(user=user)
    rows = project_portfolio_cached()
    if visible is not None:
        # From the primary, even when the rows come from a replica: who may see what never lags.
        allowed = set(visible.using(PRIMARY).values_list("project_id", flat=True))
        rows = [row for row in rows if row["id"] in allowed]
    return [{**row, "progress": progress_of(row)} for row in rows]


# --- Analytics ----------------------------------------------------------------------------------------


@replica_reads
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


@replica_reads
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


# --- Pages (insights.views) ---------------------------------------------------------------------------

# A project page's windows, in days; "all" is the whole history.
PAGE_WINDOWS = ("30", "90", "365", "all")
PAGE_WINDOW_DEFAULT = "90"
# Points of the progress trend: weekly up to a year, then monthly-ish so the query stays small.
PROGRESS_POINTS_MAX = 53


def page_window_days(window: str) -> int | None:
    """Days of a page window (None for "all")."""
    return None if window == "all" else int(window)


# The longest history a page shows ("all"): the code figures' longest window too.
HISTORY_MAX_DAYS = 3650


@replica_reads
def project_history_start(*, project: Project) -> datetime.date:
    """The first day of ``project``'s history: its start date or its first task event or commit, and
    not more than ``HISTORY_MAX_DAYS`` ago."""
    first_event = (
        TaskEvent.objects.filter(project=project)
        .order_by("created_at")
        .values_list("created_at", flat=True)[:1]
    )
    first_commit = (
        Commit.objects.filter(repository__project=project, repository__deleting_since__isnull=True)
        .order_by("timestamp")
        .values_list("timestamp", flat=True)[:1]
    )
    candidates = [timezone.localdate(moment) for moment in (*first_event, *first_commit)]
    if project.start_date:
        candidates.append(project.start_date)
    today = timezone.localdate()
    # At most ten years back: a start date of year 1, or a commit dated 1970, must not make "all" a
    # window of hundreds of thousands of days.
    return max(min(candidates, default=today), today - datetime.timedelta(days=HISTORY_MAX_DAYS - 1))


def _window_start(project: Project, window: str) -> datetime.date:
    """The first day of a page window: never before the project's history starts (a burndown over empty
    weeks would start from nothing remaining, and its ideal line would be flat at zero)."""
    days = page_window_days(window)
    today = timezone.localdate()
    first = min(project_history_start(project=project), today)
    return first if days is None else max(first, today - datetime.timedelta(days=days - 1))


@replica_reads
def project_charts_cached(*, project: Project, window: str) -> dict[str, Any]:
    """The burndown/burnup days and the progress trend of ``project`` over a page window, cached.

    ``burndown`` is ``insights.analytics.project_burndown`` over the window (any length for "all"), from
    the day the project's history starts when that is later; ``progress`` holds the project's progress at
    the end of evenly spaced days of the window (weekly up to a year). Seven queries on a miss.
    """

    def compute() -> dict[str, Any]:
        start = _window_start(project, window)
        end = timezone.localdate()
        burndown = project_burndown(project=project, start=start, end=end, bounded=False)
        span = (end - start).days
        step = max(7, -(-span // (PROGRESS_POINTS_MAX - 1)))
        dates = [end - datetime.timedelta(days=offset) for offset in range(0, span + 1, step)]
        # The window's first day too, unless a point already falls within half a step of it.
        if (dates[-1] - start).days * 2 >= step:
            dates.append(start)
        dates.reverse()
        return {
            "window": window,
            "start": start,
            "end": end,
            "burndown": burndown,
            "progress": project_progress_series(project=project, dates=dates),
        }

    return analytics_cached(project=project, name="charts", parts=(window,), compute=compute)


@replica_reads
def project_commits_recent_cached(*, project: Project, limit: int = 15) -> list[dict[str, Any]]:
    """The latest commits of ``project`` with the tasks each one links to, cached. Two queries."""

    def compute() -> list[dict[str, Any]]:
        commits: list[dict[str, Any]] = list(
            # Not those of a repository being deleted (repos.deletion), nor, below, their links.
            Commit.objects.filter(  # type: ignore[arg-type]
                repository__project=project, repository__deleting_since__isnull=True
            )
            .order_by("-timestamp", "-id")
            .values("id", "sha", "repository_id", "repository__name", "author_name", "timestamp", "message")[
                :limit
            ]
        )
        links: dict[int, list[dict[str, Any]]] = {}
        for link in (
            CommitTaskLink.objects.filter(commit_id__in=[commit["id"] for commit in commits])
            .order_by("task__number")
            .values("commit_id", "task__number", "task__title", "task__status", "action")
        ):
            links.setdefault(link["commit_id"], []).append(
                {
                    "key": f"{project.key}-{link['task__number']}",
                    "title": link["task__title"],
                    "status": link["task__status"],
                    "action": link["action"],
                }
            )
        for commit in commits:
            commit["subject"] = commit.pop("message").split("\n", 1)[0]
            commit["tasks"] = links.get(commit["id"], [])
        return commits

    return analytics_cached(project=project, name="commits", parts=(limit,), compute=compute)


@replica_reads
def repository_languages_cached(*, repository: Repository) -> list[dict[str, Any]]:
    """Files and lines per language in ``repository``'s tree, most lines first, cached. One query."""

    def compute() -> list[dict[str, Any]]:
        rows = (
            File.objects.filter(repository=repository, is_binary=False)
            .values("language")
            .annotate(files=Count("id"), lines=Sum("lines"))
            .order_by("-lines", "language")
        )
        return [{**row, "language": row["language"] or "Other", "lines": row["lines"] or 0} for row in rows]

    project = repository.project
    return analytics_cached(
        project=project, name="languages", parts=(repository.pk,), compute=compute, timeout=CACHE_TIMEOUT
    )


def tasks_assigned_open(*, user: User | AnonymousUser, limit: int = 10) -> list[Task]:
    """``user``'s open tasks in the projects they may see, most urgent priority first, then by due date.

    Not cached: one indexed query, and a person expects their own list to move the moment they act.
    """
    if not user.is_authenticated:
        return []
    tasks = Task.objects.filter(assignee=user).exclude(status__in=Task.CLOSED_STATUSES)
    visible = project_ids_visible(user=user)
    if visible is not None:
        tasks = tasks.filter(project__in=visible)
    return list(
        tasks.select_related("project").order_by("-priority", F("due_date").asc(nulls_last=True), "id")[
            :limit
        ]
    )


def ingestion_runs_recent(
    *, user: User | AnonymousUser, repository: Repository | None = None, limit: int = 8
) -> list[IngestionRun]:
    """The latest ingestion runs ``user`` may see (of one repository, or of every visible project).

    Not cached: a run in progress reports its progress as it goes. One query.
    """
    runs = (
        IngestionRun.objects.filter(repository__deleting_since__isnull=True)
        .select_related("repository__project")
        .order_by("-created_at", "-id")
    )
    if repository is not None:
        runs = runs.filter(repository=repository)
    else:
        visible = project_ids_visible(user=user)
        if visible is not None:
            runs = runs.filter(repository__project__in=visible)
    return list(runs[:limit])


@replica_reads
def repository_counts_cached(*, repository: Repository) -> dict[str, int]:
    """The commits of ``repository`` and the files of its tree, cached in its project's generation."""

    def compute() -> dict[str, int]:
        return {
            "commits": Commit.objects.filter(repository=repository).count(),
            "files": File.objects.filter(repository=repository).count(),
        }

    return analytics_cached(
        project=repository.project, name="repository", parts=(repository.pk,), compute=compute
    )
