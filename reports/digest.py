"""Reports: the weekly digest of a project and the CSV exports of its tasks and commits.

Reads only. The digest gathers what the analytics compute (progress, health, hotspots, contributors)
and what happened in the period (tasks closed, tasks that slipped, time logged) into one dictionary,
rendered as Markdown or HTML by templates. The CSV writers stream: rows are read with ``iterator`` and
written as they come, so an export of millions of commits holds one chunk in memory.

Filters are plain dictionaries (what an ``ExportJob`` stores), checked by ``export_filters_clean``.
"""

from __future__ import annotations

import csv
import datetime
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from django.core.exceptions import ValidationError
from django.db.models import Q, Sum
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.dateparse import parse_date

from apm.dates import DAY_RANGE_MESSAGE, day_in_range
from insights.analytics import project_health, project_last_activity, project_progress
from insights.code import AnalyticsWindow, contributor_stats, file_hotspots, window_resolve
from projects.models import Project
from reports.models import ExportJob
from repos.models import Commit
from tasks.models import Task, TaskEvent, TimeEntry

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

DIGEST_FORMATS = ("md", "html")
DIGEST_LIMIT = 10
DIGEST_DAYS = 7
_CHUNK = 2000


def _start_of(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time.min, tzinfo=timezone.get_current_timezone())


def digest_period(
    *,
    project: Project,
    since: datetime.date | None = None,
    until: datetime.date | None = None,
    today: datetime.date | None = None,
) -> AnalyticsWindow:
    """The days a digest covers: ``since`` to ``until`` (today by default), both included.

    Given neither, the 7 days up to today, or up to the day of the project's last activity (a commit or
    a task change) when nothing happened since: a digest of a quiet project shows its last week of work
    and says so, instead of an empty week.
    """
    last = None
    if since is None and until is None:
        last = project_last_activity(project=project)["last_activity_at"]
    try:
        return window_resolve(
            since=since,
            until=until,
            last_activity_at=last,
            today=today or timezone.localdate(),
            default_days=DIGEST_DAYS,
            tz=timezone.get_current_timezone(),
        )
    except ValidationError as exc:  # the one thing that can be wrong with two days: their order
        raise ValidationError({"since": ["The start of the period is after its end."]}) from exc


def project_digest(
    *, project: Project, since: datetime.date | None = None, until: datetime.date | None = None
) -> dict[str, Any]:
    """What happened in ``project`` in the ``digest_period`` of ``since`` and ``until``."""
    period = digest_period(project=project, since=since, until=until)
    since, until = period.first_day, period.last_day
    start, end = _start_of(since), _start_of(until + datetime.timedelta(days=1))
    closed = list(
        TaskEvent.objects.filter(
            project=project,
            kind=TaskEvent.Kind.STATUS_CHANGED,
            to_status=Task.Status.DONE,
            created_at__gte=start,
            created_at__lt=end,
        )
        .select_related("task", "actor")
        .order_by("created_at", "id")
    )
    # Slipped: due in the period and still open, or due before it and still open at its end.
    slipped = list(
        Task.objects.filter(project=project, due_date__lte=until)
        .exclude(status__in=Task.CLOSED_STATUSES)
        .select_related("assignee")
        .order_by("due_date", "number")
    )
    created = Task.objects.filter(project=project, created_at__gte=start, created_at__lt=end).count()
    minutes = (
        TimeEntry.objects.filter(task__project=project, spent_on__gte=since, spent_on__lte=until).aggregate(
            total=Sum("minutes")
        )["total"]
        or 0
    )
    # Not the commits of a repository being deleted (repos.deletion), as no page or figure shows them.
    commits = Commit.objects.filter(
        repository__project=project,
        repository__deleting_since__isnull=True,
        timestamp__gte=start,
        timestamp__lt=end,
    )
    return {
        "project": project,
        "since": since,
        "until": until,
        "period": period,
        "period_text": period.describe(
            zone=timezone.get_current_timezone_name(),
            last="the last activity",
            quiet="no commit and no task change since",
        ),
        "generated_at": timezone.now(),
        "progress": project_progress(project=project),
        "health": project_health(project=project),
        "closed": [
            {
                "key": f"{project.key}-{event.task.number}",
                "title": event.task.title,
                "at": event.created_at,
                "source": event.get_source_display(),
                "by": event.actor.get_username() if event.actor else "",
                "commit": event.commit_sha[:12],
            }
            for event in closed
        ],
        "slipped": [
            {
                "key": f"{project.key}-{task.number}",
                "title": task.title,
                "due_date": task.due_date,
                "days_late": (until - cast(datetime.date, task.due_date)).days,  # due_date__lte: never None
                "status": task.get_status_display(),
                "assignee": task.assignee.get_username() if task.assignee else "",
            }
            for task in slipped
        ],
        "tasks_created": created,
        "hours_logged": round(minutes / 60, 2),
        "commits": commits.count(),
        "hotspots": file_hotspots(project=project, since=start, until=end, limit=DIGEST_LIMIT),
        "contributors": contributor_stats(project=project, since=start, until=end, limit=DIGEST_LIMIT),
    }


def digest_render(digest: dict[str, Any], *, fmt: str) -> str:
    """The digest as Markdown (``md``) or a standalone HTML page (``html``)."""
    if fmt not in DIGEST_FORMATS:
        raise ValidationError({"format": [f"{fmt!r} is not a digest format; choose md or html."]})
    return render_to_string(f"reports/digest.{fmt}", digest)


# --- CSV exports --------------------------------------------------------------------------------------

TASK_COLUMNS = [
    "key", "title", "status", "priority", "assignee", "reporter", "parent", "due_date", "estimate_hours",
    "started_at", "closed_at", "created_at", "updated_at",
]  # fmt: skip
COMMIT_COLUMNS = [
    "repository", "sha", "timestamp", "author_name", "author_email", "committer_email", "additions",
    "deletions", "files_changed", "is_merge", "subject",
]  # fmt: skip
_FILTERS: dict[str, set[str]] = {
    ExportJob.Kind.TASKS_CSV: {"status", "since", "until"},
    ExportJob.Kind.COMMITS_CSV: {"repository", "author", "since", "until"},
    ExportJob.Kind.DIGEST_MD: {"since", "until"},
    ExportJob.Kind.DIGEST_HTML: {"since", "until"},
}


def export_filters_clean(*, project: Project, kind: str, filters: dict[str, Any]) -> dict[str, Any]:
    """Check ``filters`` for an export of ``kind``; return them normalised (dates as ISO text).

    Raises ``ValidationError`` naming each bad filter. Stored as given on the job, so the export reads
    the rows as they are when it runs.
    """
    if kind not in _FILTERS:
        raise ValidationError({"kind": [f"{kind!r} is not an export; choose one of {', '.join(_FILTERS)}."]})
    if not isinstance(filters, dict):
        raise ValidationError({"filters": ["Give the filters as an object."]})
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(filters) - _FILTERS[kind])
    if unknown:
        errors["filters"] = [f"{kind} takes no filter {name!r}." for name in unknown]
    given = {name: value for name, value in filters.items() if value not in (None, "", [])}
    clean: dict[str, Any] = {}
    for name, check in _FILTER_CHECKS.items():
        if name in given:
            try:
                clean[name] = check(project, given[name])
            except ValueError as exc:
                errors[name] = [str(exc)]
    if "since" in clean and "until" in clean and clean["until"] < clean["since"]:
        errors["until"] = ["The end of the period is before its start."]
    if errors:
        raise ValidationError(errors)
    if kind in (ExportJob.Kind.DIGEST_MD, ExportJob.Kind.DIGEST_HTML) and "since" not in clean:
        clean["since"] = (timezone.localdate() - datetime.timedelta(days=7)).isoformat()
    return clean


def _date_check(project: Project, value: Any) -> str:
    try:
        day = parse_date(value) if isinstance(value, str) else None
    except ValueError:  # well formed, but no such day (2026-02-30)
        day = None
    if day is None:
        raise ValueError("Give a date as YYYY-MM-DD.")
    if not day_in_range(day):
        raise ValueError(DAY_RANGE_MESSAGE)
    return day.isoformat()


def _status_check(project: Project, value: Any) -> list[str]:
    statuses = value if isinstance(value, list) else [value]
    bad = [str(status) for status in statuses if status not in Task.Status.values]
    if bad:
        raise ValueError(f"{', '.join(bad)}: not a task status.")
    return statuses


def _repository_check(project: Project, value: Any) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not project.repositories.filter(pk=value, deleting_since__isnull=True).exists()
    ):
        raise ValueError(f"{project.key} has no repository with the id {value!r}.")
    return value


def _author_check(project: Project, value: Any) -> str:
    return str(value)[:255]


_FILTER_CHECKS = {
    "since": _date_check,
    "until": _date_check,
    "status": _status_check,
    "repository": _repository_check,
    "author": _author_check,
}


def _day(value: str | None) -> datetime.date | None:
    return datetime.date.fromisoformat(value) if value else None


def tasks_for_export(*, project: Project, filters: dict[str, Any]) -> Iterator[list[Any]]:
    """Rows of the tasks CSV (one query, streamed): tasks updated in the period, by number."""
    tasks = Task.objects.filter(project=project).select_related("assignee", "reporter", "parent")
    if filters.get("status"):
        tasks = tasks.filter(status__in=filters["status"])
    if since := _day(filters.get("since")):
        tasks = tasks.filter(updated_at__gte=_start_of(since))
    if until := _day(filters.get("until")):
        tasks = tasks.filter(updated_at__lt=_start_of(until + datetime.timedelta(days=1)))
    for task in tasks.order_by("number").iterator(chunk_size=_CHUNK):
        yield [
            f"{project.key}-{task.number}",
            task.title,
            task.status,
            task.get_priority_display(),
            task.assignee.get_username() if task.assignee else "",
            task.reporter.get_username() if task.reporter else "",
            f"{project.key}-{task.parent.number}" if task.parent else "",
            task.due_date or "",
            task.estimate_hours if task.estimate_hours is not None else "",
            _iso(task.started_at),
            _iso(task.closed_at),
            _iso(task.created_at),
            _iso(task.updated_at),
        ]


def commits_for_export(*, project: Project, filters: dict[str, Any]) -> Iterator[list[Any]]:
    """Rows of the commits CSV (one query, streamed), newest first (idx_commits_repo_time per repository)."""
    # Not the commits of a repository being deleted (repos.deletion), even when the export was asked
    # for before it was: the file is written now, and shows what people see now.
    commits = Commit.objects.filter(repository__project=project, repository__deleting_since__isnull=True)
    if filters.get("repository"):
        commits = commits.filter(repository_id=filters["repository"])
    if filters.get("author"):
        author = filters["author"]
        commits = commits.filter(Q(author_email__iexact=author) | Q(author_name__iexact=author))
    if since := _day(filters.get("since")):
        commits = commits.filter(timestamp__gte=_start_of(since))
    if until := _day(filters.get("until")):
        commits = commits.filter(timestamp__lt=_start_of(until + datetime.timedelta(days=1)))
    rows = commits.order_by("-timestamp", "-id").values_list(
        "repository__name",
        "sha",
        "timestamp",
        "author_name",
        "author_email",
        "committer_email",
        "additions",
        "deletions",
        "files_changed",
        "is_merge",
        "message",
    )
    for row in rows.iterator(chunk_size=_CHUNK):
        *head, message = row
        head[2] = _iso(row[2])
        yield [*head, message.split("\n", 1)[0]]


def _iso(value: datetime.datetime | None) -> str:
    return value.isoformat() if value else ""


def _safe_cell(value: Any) -> Any:
    # A cell starting with = + - @ (or a tab/CR) is a formula to spreadsheets: a commit subject such as
    # "=HYPERLINK(...)" must stay text when an operator opens the export.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_write(*, out: SupportsWrite[str], kind: str, project: Project, filters: dict[str, Any]) -> int:
    """Write the CSV export ``kind`` of ``project`` to ``out``; return the number of data rows."""
    if kind == ExportJob.Kind.TASKS_CSV:
        header, rows = TASK_COLUMNS, tasks_for_export(project=project, filters=filters)
    elif kind == ExportJob.Kind.COMMITS_CSV:
        header, rows = COMMIT_COLUMNS, commits_for_export(project=project, filters=filters)
    else:
        raise ValidationError({"kind": [f"{kind!r} is not a CSV export."]})
    writer = csv.writer(out)
    writer.writerow(header)
    count = 0
    for row in rows:
        writer.writerow([_safe_cell(value) for value in row])
        count += 1
    return count
