"""Task-side analytics of a project: progress and its trend, health and risk, priorities, burndown.

Selectors (reads), computed in bulk SQL: every function costs a fixed, small number of queries whatever
the number of tasks, events or commits (tests/insights/test_analytics.py pins the counts). They are read
through the cache by insights.selectors; the health assessment is stored by insights.services. Formulas and
thresholds are documented in docs/analytics.md ("Progress, health and priorities").
"""

from __future__ import annotations

import datetime
import statistics
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import (
    Case,
    CharField,
    Count,
    DecimalField,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    TextChoices,
    Value,
    When,
)
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from apm.replicas import read_connection
from projects.models import HealthLevel, Project
from repos.models import Commit, CommitTaskLink
from tasks.models import Task, TaskDependency, TaskEvent

# --- Progress -----------------------------------------------------------------------------------------

# How far along a task is, from its status alone. Cancelled tasks are left out of every total.
STATUS_PROGRESS = {
    "backlog": 0.0,
    "todo": 0.0,
    "in_progress": 0.5,
    "in_review": 0.8,
    "done": 1.0,
}
# The weight of a task without an estimate when no task of the project has one.
FALLBACK_ESTIMATE_HOURS = Decimal(1)
TREND_DAYS = 28
TREND_WEEKS = 8


def _progress_case(column: str) -> str:
    # Built from the constants above only, never from input.
    whens = " ".join(f"WHEN '{status}' THEN {value}" for status, value in STATUS_PROGRESS.items() if value)
    return f"(CASE {column} {whens} ELSE 0.0 END)"


# The median estimate of the project's tasks that are not cancelled, in one query on every database:
# ROW_NUMBER and COUNT(*) OVER () rank the estimates; the middle one (or the middle two) satisfy
# 2 * rank in (n, n + 1, n + 2), which needs no integer division (MariaDB's "/" is decimal).
_MEDIAN_ESTIMATE_SQL = """
SELECT AVG(e) FROM (
    SELECT estimate_hours AS e,
           ROW_NUMBER() OVER (ORDER BY estimate_hours) AS rn,
           COUNT(*) OVER () AS n
    FROM tasks
    WHERE project_id = %s AND status <> 'cancelled' AND estimate_hours IS NOT NULL
) ranked
WHERE rn * 2 IN (n, n + 1, n + 2)
"""


def _rollup_sql(tasks_of: str) -> str:
    """The weighted progress of every point in one pass, from ``tasks_of``: a FROM item, with ``{tree}``
    where a condition on ``tk.parent_id`` goes, of the points' tasks (k: which point in time, id,
    parent_id, status, w: weight, p: progress of the task from its status).

    Subtasks are rolled up into their parent in one grouped subquery (one level: a sub-subtask counts
    through its status), a done parent counts as done, and only top-level tasks enter the project's
    totals so no hour is counted twice. The top-level tasks and the subtasks are two readings of
    ``tasks_of``, each filtered on the tasks table's own ``parent_id``: the planner estimates them from
    that column's statistics (most tasks have no parent). One CTE read twice with the filter on its
    output instead is estimated at the default 0.5% of its rows for ``parent_id IS NULL``, 200 times too
    few for a project without subtasks (explain_hot_queries, docs/performance.md).
    """
    top = tasks_of.format(tree="tk.parent_id IS NULL")
    sub = tasks_of.format(tree="tk.parent_id IS NOT NULL")
    return f"""
SELECT top.k, COUNT(*), SUM(top.w),
       SUM(top.w * CASE WHEN top.status = 'done' THEN 1.0
                        WHEN sub.ws > 0 THEN sub.wp / sub.ws
                        ELSE top.p END)
FROM {top} top
LEFT JOIN (
    SELECT s.k, s.parent_id, SUM(s.w * s.p) AS wp, SUM(s.w) AS ws FROM {sub} s
    GROUP BY s.k, s.parent_id
) sub ON sub.k = top.k AND sub.parent_id = top.id
GROUP BY top.k
"""  # noqa: S608 (constant text, no input)


# Today's statuses; parameters: the default estimate and the project, for the top-level tasks and again
# for the subtasks. Both readings go through idx_tasks_project_status.
_CURRENT_PROGRESS_SQL = _rollup_sql(
    f"""(
    SELECT 0 AS k, tk.id, tk.parent_id, tk.status, COALESCE(tk.estimate_hours, %s) AS w,
           {_progress_case("tk.status")} AS p
    FROM tasks tk WHERE tk.project_id = %s AND tk.status <> 'cancelled' AND {{tree}}
)"""  # noqa: S608 (constant text, no input)
)


def _historic_progress_sql(points: int) -> str:
    """Progress at ``points`` moments, each task's status being its latest status event at that moment.

    ``created`` and ``status_changed`` events carry the status a task moved to; ROW_NUMBER picks the
    latest one per task and moment (idx_task_events_project_time reads the project's events). ``latest``
    is read twice (top-level tasks, subtasks), so it is computed once. The latest is kept with
    ``rn <= 1``, not ``rn = 1`` (the same rows, numbers start at 1): the planner knows nothing of a
    window function's values and takes an equality for 0.5% of the rows, an inequality for a third, and a
    task has a few status events per moment, not two hundred. ``rn = 1`` was estimated 300 times too few
    on the large slice (explain_hot_queries, docs/performance.md). Estimates and the subtask tree are
    today's: only statuses come from history. Parameters: the moments, the project, the default estimate
    twice.
    """
    moments = " UNION ALL ".join("SELECT %s AS k, %s AS at" for _ in range(points))
    tasks_then = f"""(
    SELECT latest.k, tk.id, tk.parent_id, latest.to_status AS status,
           COALESCE(tk.estimate_hours, %s) AS w, {_progress_case("latest.to_status")} AS p
    FROM latest JOIN tasks tk ON tk.id = latest.task_id
    WHERE latest.rn <= 1 AND latest.to_status <> 'cancelled' AND {{tree}}
)"""  # noqa: S608 (constant text, no input)
    return f"""
WITH d AS ({moments}),
latest AS (
    SELECT d.k, e.task_id, e.to_status,
           ROW_NUMBER() OVER (PARTITION BY d.k, e.task_id ORDER BY e.created_at DESC, e.id DESC) AS rn
    FROM d JOIN task_events e ON e.created_at <= d.at
    WHERE e.project_id = %s AND e.kind IN ('created', 'status_changed')
)
{_rollup_sql(tasks_then)}
"""  # noqa: S608 (constant text and placeholders, no input)


def task_counts() -> dict[str, Count]:
    """Aggregates of tasks by state; grouped by project they read idx_tasks_project_status."""
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


def project_default_estimate(*, project: Project) -> Decimal:
    """The weight of a task without an estimate: the project's median estimate, 1 h when none has one."""
    with read_connection().cursor() as cursor:
        cursor.execute(_MEDIAN_ESTIMATE_SQL, [project.pk])
        row = cursor.fetchone()
    if row is None or row[0] is None:
        return FALLBACK_ESTIMATE_HOURS
    return Decimal(str(row[0])).quantize(Decimal("0.01"))


def _rollups(sql: str, params: list[Any]) -> dict[int, tuple[int, float, float]]:
    with read_connection().cursor() as cursor:
        cursor.execute(sql, params)
        return {
            int(k): (int(count), float(total or 0), float(done or 0))
            for k, count, total, done in cursor.fetchall()
        }


def _ratio(done: float, total: float) -> float:
    return round(done / total, 4) if total > 0 else 0.0


def project_progress(
    *, project: Project, now: datetime.datetime | None = None, days: int = TREND_DAYS
) -> dict[str, Any]:
    """Progress of ``project`` weighted by estimate, with its trend.

    ``progress`` = hours done / hours in scope over top-level tasks that are not cancelled; a task's
    hours are its estimate (or the default estimate), its share done comes from its status or, when it
    has subtasks, from its subtasks' progress weighted by their estimates. ``trend`` is the change of
    that measure per week over the last ``days`` days, statuses being rebuilt from TaskEvent history;
    ``weekly`` holds the same measure 8, 7, ... 1 weeks ago and now.

    Four queries: task counts, the median estimate, today's progress, the historic points.
    """
    now = now or timezone.now()
    counts = project.tasks.aggregate(**task_counts())
    default = project_default_estimate(project=project)
    current = _rollups(_CURRENT_PROGRESS_SQL, [default, project.pk] * 2).get(0, (0, 0.0, 0.0))
    # Point 0: ``days`` ago; points 1..TREND_WEEKS: that many weeks ago.
    moments = {0: now - datetime.timedelta(days=days)}
    moments.update({week: now - datetime.timedelta(weeks=week) for week in range(1, TREND_WEEKS + 1)})
    params: list[Any] = []
    for k, at in moments.items():
        params += [k, connection.ops.adapt_datetimefield_value(at)]
    history = _rollups(_historic_progress_sql(len(moments)), [*params, project.pk, default, default])
    progress = _ratio(current[2], current[1])
    nothing = (0, 0.0, 0.0)

    def progress_at(k: int) -> float:
        _count, total, done = history.get(k, nothing)
        return _ratio(done, total)

    progress_then = progress_at(0)
    weekly = [
        {"date": timezone.localdate(moments[week]), "progress": progress_at(week)}
        for week in range(TREND_WEEKS, 0, -1)
    ]
    weekly.append({"date": timezone.localdate(now), "progress": progress})
    return {
        **counts,
        "tasks_counted": current[0],
        "progress": progress,
        "estimate_hours_total": round(current[1], 2),
        "estimate_hours_done": round(current[2], 2),
        "default_estimate_hours": float(default),
        "trend_days": days,
        "progress_then": progress_then,
        "trend": round((progress - progress_then) * 7 / days, 4),
        "weekly": weekly,
    }


def project_progress_series(*, project: Project, dates: list[datetime.date]) -> list[dict[str, Any]]:
    """Progress of ``project`` at the end of each of ``dates`` (ascending), from TaskEvent history.

    The same measure as ``project_progress`` (statuses from history, today's estimates and subtask tree),
    in two queries whatever the number of dates: the median estimate, then every point at once.
    """
    if not dates:
        return []
    tz = timezone.get_current_timezone()
    default = project_default_estimate(project=project)
    params: list[Any] = []
    for k, day in enumerate(dates):
        at = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time.min, tzinfo=tz)
        params += [k, connection.ops.adapt_datetimefield_value(at)]
    history = _rollups(_historic_progress_sql(len(dates)), [*params, project.pk, default, default])
    nothing = (0, 0.0, 0.0)
    return [
        {"date": day, "progress": _ratio(history.get(k, nothing)[2], history.get(k, nothing)[1])}
        for k, day in enumerate(dates)
    ]


# --- Health and risk ----------------------------------------------------------------------------------

# Penalties, in points taken from 100 (the score stops at 0).
OVERDUE_MAX = 25
STALE_MAX = 15
BLOCKED_MAX = 15
BLOCKED_PER_LINK = 5  # a chain of 2 tasks costs 5 points, of 3 costs 10, of 4 or more 15
ACTIVITY_MAX = 15
BUS_FACTOR_MAX = 15
CHURN_MAX = 15
# A project with no commit and no task event for this long is dormant: its figures describe the past,
# and "nothing is late, nothing churns" is not health. 90 days is the default window of the code
# analytics: a dormant project is one whose last 90 days hold no work at all.
DORMANT_DAYS = 90
DORMANT_PENALTY = 30  # alone it makes a project at risk (70)
# Projects whose status says they are not being worked on are expected to be quiet.
QUIET_STATUSES = frozenset({Project.Status.ON_HOLD, Project.Status.COMPLETED, Project.Status.ARCHIVED})
# Levels by score: at least HEALTHY_FROM is healthy, at least AT_RISK_FROM at risk, critical below.
HEALTHY_FROM = 75
AT_RISK_FROM = 50
ACTIVITY_RECENT_DAYS = 14
ACTIVITY_BASELINE_WEEKS = 8
ACTIVITY_DROP_BELOW = 0.5  # recent activity under half its usual rate is a drop
BUS_FACTOR_DAYS = 180
BUS_FACTOR_ABOVE = 0.5  # more than half the files with a single author is a risk
CHURN_WEEKS = 12
CHURN_SPIKE_PENALTY = 5
# Bounds the dependency walk; chains are tens of tasks long at worst.
CHAIN_DEPTH_LIMIT = 100
EXAMPLES = 5


def stale_days() -> int:
    """Days without an event or a linked commit after which an open task is stale (APM_STALE_DAYS)."""
    days: int = settings.APM_STALE_DAYS
    return days


def _signal(  # noqa: PLR0917 (one row of a table of signals)
    name: str, penalty: int, max_penalty: int, value: float, reason: str, examples: list[str] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "penalty": max(0, min(max_penalty, penalty)),
        "max_penalty": max_penalty,
        "value": value,
        "reason": reason,
        "examples": examples or [],
    }


def _keys(project: Project, numbers: list[int]) -> list[str]:
    return [f"{project.key}-{number}" for number in numbers]


def _task_signals(project: Project, now: datetime.datetime) -> list[dict[str, Any]]:
    """Overdue and stale open tasks: one aggregate and one query of examples each."""

    today = timezone.localdate(now)
    since = now - datetime.timedelta(days=stale_days())
    # A task is stale when nothing happened to it (idx_task_events_task_created) and no commit mentioned it
    # (commit_task_links' task index) since ``since``. A commit of a repository being deleted
    # (repos.deletion) no longer counts: it is gone for people at once, its rows later.
    quiet = ~Exists(TaskEvent.objects.filter(task=OuterRef("pk"), created_at__gte=since)) & ~Exists(
        CommitTaskLink.objects.filter(
            task=OuterRef("pk"), commit__timestamp__gte=since, commit__repository__deleting_since__isnull=True
        )
    )
    overdue = Q(due_date__lt=today)
    open_tasks = project.tasks.exclude(status__in=Task.CLOSED_STATUSES)
    counts = open_tasks.aggregate(
        open=Count("id"), overdue=Count("id", filter=overdue), stale=Count("id", filter=quiet)
    )
    total = counts["open"]
    late = _keys(
        project,
        list(
            open_tasks.filter(overdue)
            .order_by("due_date", "number")
            .values_list("number", flat=True)[:EXAMPLES]
        ),
    )
    idle = _keys(
        project, list(open_tasks.filter(quiet).order_by("number").values_list("number", flat=True)[:EXAMPLES])
    )
    overdue_share = counts["overdue"] / total if total else 0.0
    stale_share = counts["stale"] / total if total else 0.0
    return [
        _signal(
            "overdue",
            round(OVERDUE_MAX * min(1.0, 2 * overdue_share)),
            OVERDUE_MAX,
            counts["overdue"],
            f"{counts['overdue']} of {total} open tasks are past their due date."
            if counts["overdue"]
            else "No open task is past its due date.",
            late,
        ),
        _signal(
            "stale",
            round(STALE_MAX * min(1.0, 2 * stale_share)),
            STALE_MAX,
            counts["stale"],
            f"{counts['stale']} of {total} open tasks had no change and no commit for {stale_days()} days."
            if counts["stale"]
            else f"Every open task moved or had a commit in the last {stale_days()} days.",
            idle,
        ),
    ]


# Open tasks waiting on open tasks, walked from the tasks that wait on nothing open (the heads: the work
# that unblocks the chain) up to the tasks waiting on them. UNION keeps (head, task, depth) rows distinct,
# so a diamond-shaped graph costs rows per task and depth, not per path. Runs on all three databases.
# ``waits`` starts from the project's open tasks (idx_tasks_project_status) and their dependencies
# (task_dependency_unique), and checks the task waited on through tasks_pkey: its estimate follows the
# dependencies a project has, a few rows when it has none or few, so the walk over it is planned (and
# run) for a few rows. Joining two copies of the project's open tasks to the whole dependency table
# instead was planned for tens of thousands of links and a recursion of 96 million rows whatever the
# project held: a cost that switched JIT compilation on, 0.8 s for a project without a dependency
# (docs/performance.md, "Hot queries and their plans").
_CHAINS_SQL = """
WITH RECURSIVE
waits AS (
    SELECT d.task_id, d.depends_on_id
    FROM tasks a
    JOIN task_dependencies d ON d.task_id = a.id
    JOIN tasks b ON b.id = d.depends_on_id
    WHERE a.project_id = %s AND a.status NOT IN ('done', 'cancelled')
      AND b.project_id = %s AND b.status NOT IN ('done', 'cancelled')
),
chain(head_id, task_id, depth) AS (
    SELECT w.depends_on_id, w.depends_on_id, 1 FROM waits w
    WHERE NOT EXISTS (SELECT 1 FROM waits x WHERE x.task_id = w.depends_on_id)
    UNION
    SELECT c.head_id, w.task_id, c.depth + 1 FROM chain c JOIN waits w ON w.depends_on_id = c.task_id
    WHERE c.depth < %s
)
SELECT DISTINCT c.depth, t.number FROM chain c JOIN tasks t ON t.id = c.head_id
WHERE c.depth = (SELECT MAX(depth) FROM chain)
ORDER BY t.number
"""


def _blocked_signal(project: Project) -> dict[str, Any]:
    with read_connection().cursor() as cursor:
        cursor.execute(_CHAINS_SQL, [project.pk, project.pk, CHAIN_DEPTH_LIMIT])
        rows = cursor.fetchmany(EXAMPLES)
    length = int(rows[0][0]) if rows else 0
    heads = _keys(project, [int(number) for _depth, number in rows])
    return _signal(
        "blocked",
        BLOCKED_PER_LINK * (length - 1) if length >= 2 else 0,
        BLOCKED_MAX,
        length,
        f"The longest chain of open tasks waiting on each other is {length} tasks long; "
        f"it starts at {', '.join(heads)}."
        if length >= 2
        else "No open task waits on another open task.",
        heads,
    )


# The project's last commit and last task event up to a moment. The latest commit of each repository is
# one step down idx_commits_repo_time (repository, time descending), the latest event one step down
# idx_task_events_project_time: the cost grows with the repositories, not with the history. A repository
# being deleted (repos.deletion) is left out: its commits are gone for people at once.
_LAST_ACTIVITY_SQL = """
SELECT
    (SELECT MAX(latest.at) FROM (
        SELECT (SELECT MAX(c.timestamp) FROM commits c
                WHERE c.repository_id = r.id AND c.timestamp <= %s) AS at
        FROM repositories r WHERE r.project_id = %s AND r.deleting_since IS NULL
    ) latest),
    (SELECT MAX(e.created_at) FROM task_events e WHERE e.project_id = %s AND e.created_at <= %s)
"""


def _aware(value: Any) -> datetime.datetime | None:
    """A datetime read by raw SQL as an aware one (SQLite returns text, MariaDB naive UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    if timezone.is_naive(value):
        value = timezone.make_aware(value, datetime.UTC)
    aware: datetime.datetime = value
    return aware


def project_last_activity(*, project: Project, now: datetime.datetime | None = None) -> dict[str, Any]:
    """When ``project`` last had a commit (``last_commit_at``) and a task event (``last_event_at``), up
    to ``now``; ``last_activity_at`` is the later of the two (None when neither exists). One query.
    """
    now = now or timezone.now()
    at = connection.ops.adapt_datetimefield_value(now)
    with read_connection().cursor() as cursor:
        cursor.execute(_LAST_ACTIVITY_SQL, [at, project.pk, project.pk, at])
        commit_at, event_at = (_aware(value) for value in cursor.fetchone())
    known = [moment for moment in (commit_at, event_at) if moment is not None]
    return {
        "last_commit_at": commit_at,
        "last_event_at": event_at,
        "last_activity_at": max(known) if known else None,
    }


def _dormant_signal(project: Project, now: datetime.datetime) -> dict[str, Any]:
    last = project_last_activity(project=project, now=now)["last_activity_at"]
    if last is None:
        return _signal("dormant", 0, DORMANT_PENALTY, 0, "No commit and no task yet: nothing to judge.")
    idle = (now - last).days
    day = timezone.localdate(last)
    if idle < DORMANT_DAYS:
        return _signal("dormant", 0, DORMANT_PENALTY, idle, f"Last activity on {day} ({idle} days ago).")
    if project.status in QUIET_STATUSES:
        return _signal(
            "dormant",
            0,
            DORMANT_PENALTY,
            idle,
            f"No activity since {day} ({idle} days); expected, the project is "
            f"{project.get_status_display().lower()}.",
        )
    return _signal(
        "dormant",
        DORMANT_PENALTY,
        DORMANT_PENALTY,
        idle,
        f"dormant: no activity since {day} ({idle} days without a commit or a task change).",
        [str(day)],
    )


def _live_commits(project: Project) -> QuerySet[Commit]:
    """The commits of ``project``'s repositories, without those of a repository being deleted
    (repos.deletion): the signals judge what people still see."""
    return Commit.objects.filter(repository__project=project, repository__deleting_since__isnull=True)


def _activity_signal(project: Project, now: datetime.datetime) -> dict[str, Any]:

    recent_from = now - datetime.timedelta(days=ACTIVITY_RECENT_DAYS)
    baseline_from = recent_from - datetime.timedelta(weeks=ACTIVITY_BASELINE_WEEKS)
    counts = _live_commits(project).aggregate(
        recent=Count("id", filter=Q(timestamp__gt=recent_from, timestamp__lte=now)),
        before=Count("id", filter=Q(timestamp__gt=baseline_from, timestamp__lte=recent_from)),
    )
    # The previous 8 weeks, as an average per period of the recent window's length.
    baseline = counts["before"] * ACTIVITY_RECENT_DAYS / (ACTIVITY_BASELINE_WEEKS * 7)
    if not baseline:
        return _signal(
            "activity", 0, ACTIVITY_MAX, counts["recent"], "No commits in the 8 weeks before to compare with."
        )
    ratio = counts["recent"] / baseline
    dropped = ratio < ACTIVITY_DROP_BELOW
    return _signal(
        "activity",
        round(ACTIVITY_MAX * (1 - ratio)) if dropped else 0,
        ACTIVITY_MAX,
        round(ratio, 4),
        f"{counts['recent']} commits in the last {ACTIVITY_RECENT_DAYS} days against {baseline:.1f} usually "
        f"({ratio:.0%})."
        if dropped
        else f"{counts['recent']} commits in the last {ACTIVITY_RECENT_DAYS} days, {baseline:.1f} usually.",
    )


# Paths of the project's repositories changed in the window, each with how many distinct authors (by
# e-mail) changed it. The file's history index (idx_file_changes_repo_path) and the commits' primary key
# serve the join; grouping is per repository and path. Not a repository being deleted (repos.deletion).
_AUTHORS_PER_FILE_SQL = """
SELECT fc.repository_id, fc.path, COUNT(DISTINCT LOWER(c.author_email)) AS authors,
       MAX(LOWER(c.author_email)) AS author, COUNT(*) AS changes
FROM file_changes fc
JOIN commits c ON c.id = fc.commit_id
JOIN repositories r ON r.id = fc.repository_id
WHERE r.project_id = %s AND r.deleting_since IS NULL AND c.timestamp > %s AND c.timestamp <= %s
GROUP BY fc.repository_id, fc.path
"""
_FILES_SQL = f"""
SELECT COUNT(*), SUM(CASE WHEN authors = 1 THEN 1 ELSE 0 END) FROM ({_AUTHORS_PER_FILE_SQL}) f
"""  # noqa: S608 (constant text, no input)
_SINGLE_AUTHOR_FILES_SQL = f"""
SELECT path, author FROM ({_AUTHORS_PER_FILE_SQL}) f
WHERE authors = 1 ORDER BY changes DESC, path LIMIT {EXAMPLES}
"""  # noqa: S608 (constant text, no input)


def _bus_factor_signal(project: Project, now: datetime.datetime) -> dict[str, Any]:
    since = now - datetime.timedelta(days=BUS_FACTOR_DAYS)
    params = [
        project.pk,
        connection.ops.adapt_datetimefield_value(since),
        connection.ops.adapt_datetimefield_value(now),
    ]
    with read_connection().cursor() as cursor:
        cursor.execute(_FILES_SQL, params)
        files, single = (int(value or 0) for value in cursor.fetchone())
        cursor.execute(_SINGLE_AUTHOR_FILES_SQL, params)
        examples = [f"{path} ({author})" for path, author in cursor.fetchall()]
    share = single / files if files else 0.0
    risky = share > BUS_FACTOR_ABOVE
    return _signal(
        "bus_factor",
        round(BUS_FACTOR_MAX * share) if risky else 0,
        BUS_FACTOR_MAX,
        round(share, 4),
        f"{single} of {files} files changed in the last {BUS_FACTOR_DAYS} days had one author only."
        if files
        else f"No file changed in the last {BUS_FACTOR_DAYS} days.",
        examples,
    )


def _churn_signal(project: Project, now: datetime.datetime) -> dict[str, Any]:

    # Week 0 is the last 7 days; one conditional sum per week, one query.
    week = datetime.timedelta(weeks=1)
    sums = _live_commits(project).aggregate(
        **{
            f"w{i}": Sum(
                F("additions") + F("deletions"),
                filter=Q(timestamp__gt=now - (i + 1) * week, timestamp__lte=now - i * week),
            )
            for i in range(CHURN_WEEKS)
        }
    )
    lines = [int(sums[f"w{i}"] or 0) for i in range(CHURN_WEEKS)]
    mean = statistics.fmean(lines)
    limit = mean + 2 * statistics.pstdev(lines)
    median = statistics.median(lines)
    spikes = [i for i, value in enumerate(lines) if value > limit or (median > 0 and value > 3 * median)]
    weeks = [str(timezone.localdate(now - (i + 1) * week + datetime.timedelta(days=1))) for i in spikes]
    return _signal(
        "churn",
        CHURN_SPIKE_PENALTY * len(spikes),
        CHURN_MAX,
        len(spikes),
        f"Lines changed spiked in {len(spikes)} of the last {CHURN_WEEKS} weeks (from {', '.join(weeks)})."
        if spikes
        else f"No spike of lines changed in the last {CHURN_WEEKS} weeks.",
        weeks,
    )


def health_level_of(score: int) -> str:
    if score >= HEALTHY_FROM:
        return HealthLevel.HEALTHY
    if score >= AT_RISK_FROM:
        return HealthLevel.AT_RISK
    return HealthLevel.CRITICAL


def project_health(*, project: Project, now: datetime.datetime | None = None) -> dict[str, Any]:
    """Health of ``project``: seven risk signals, a score from 0 (critical) to 100 (healthy) and a level.

    Each signal takes up to its ``max_penalty`` points from 100 and says why in ``reason``. Nine queries:
    the last commit and task event (dormancy), open task counts, overdue and stale examples, the
    dependency chains, commit activity, authors per file (totals and examples), weekly churn.
    """
    now = now or timezone.now()
    signals = [
        _dormant_signal(project, now),
        *_task_signals(project, now),
        _blocked_signal(project),
        _activity_signal(project, now),
        _bus_factor_signal(project, now),
        _churn_signal(project, now),
    ]
    score = max(0, 100 - sum(signal["penalty"] for signal in signals))
    return {
        "score": score,
        "level": str(health_level_of(score)),
        "checked_at": now,
        "signals": signals,
        "reasons": [signal["reason"] for signal in signals if signal["penalty"]],
    }


# --- Priorities ---------------------------------------------------------------------------------------


class Quadrant(TextChoices):
    """Eisenhower quadrants: urgent x important."""

    DO = "do", "Do: urgent and important"
    SCHEDULE = "schedule", "Schedule: important, not urgent"
    DELEGATE = "delegate", "Delegate: urgent, not important"
    ELIMINATE = "eliminate", "Eliminate: neither urgent nor important"


URGENCY_OVERDUE, URGENCY_3_DAYS, URGENCY_14_DAYS = 50, 35, 20
PRIORITY_POINTS = {4: 30, 3: 20, 2: 10, 1: 0}  # Task.Priority critical .. low
BLOCKS_POINTS_EACH, BLOCKS_POINTS_MAX = 5, 20
URGENT_FROM = URGENCY_3_DAYS  # due within 3 days or overdue
IMPORTANT_FROM = 20  # high priority, or medium blocking two open tasks, or low blocking four


def task_priorities(
    *, project: Project, today: datetime.date | None = None, quadrant: str | None = None
) -> QuerySet[Any]:
    """Open tasks of ``project`` with their priority score (0..100) and Eisenhower quadrant, best first.

    ``urgency`` (0..50) comes from the due date, ``importance`` (0..50) from the priority field and the
    number of open tasks waiting on the task (``blocks_open``); ``score`` is their sum. One query
    (plus the count when paginated); everything is computed by the database.
    """

    today = today or timezone.localdate()
    blocks_open = (
        TaskDependency.objects.filter(depends_on=OuterRef("pk"))
        .exclude(task__status__in=Task.CLOSED_STATUSES)
        .order_by()
        .values("depends_on")
        .annotate(n=Count("id"))
        .values("n")
    )
    tasks = (
        project.tasks.exclude(status__in=Task.CLOSED_STATUSES)
        .select_related("project", "assignee")
        .annotate(
            blocks_open=Coalesce(Subquery(blocks_open, output_field=IntegerField()), 0),
            urgency=Case(
                When(due_date__lt=today, then=URGENCY_OVERDUE),
                When(due_date__lte=today + datetime.timedelta(days=3), then=URGENCY_3_DAYS),
                When(due_date__lte=today + datetime.timedelta(days=14), then=URGENCY_14_DAYS),
                default=0,
                output_field=IntegerField(),
            ),
        )
        .annotate(
            importance=Case(
                *(When(priority=value, then=points) for value, points in PRIORITY_POINTS.items()),
                default=0,
                output_field=IntegerField(),
            )
            + Case(
                When(blocks_open__gte=BLOCKS_POINTS_MAX // BLOCKS_POINTS_EACH, then=BLOCKS_POINTS_MAX),
                default=F("blocks_open") * BLOCKS_POINTS_EACH,
                output_field=IntegerField(),
            )
        )
        .annotate(
            score=F("urgency") + F("importance"),
            quadrant=Case(
                When(urgency__gte=URGENT_FROM, importance__gte=IMPORTANT_FROM, then=Value(Quadrant.DO)),
                When(importance__gte=IMPORTANT_FROM, then=Value(Quadrant.SCHEDULE)),
                When(urgency__gte=URGENT_FROM, then=Value(Quadrant.DELEGATE)),
                default=Value(Quadrant.ELIMINATE),
                output_field=CharField(),
            ),
        )
        .order_by("-score", F("due_date").asc(nulls_last=True), "number")
    )
    return tasks.filter(quadrant=quadrant) if quadrant else tasks


# --- Burndown and burnup ------------------------------------------------------------------------------

MAX_BURNDOWN_DAYS = 366


def _burndown_aggregates(weight: Any) -> dict[str, Any]:
    """What one batch of status events changes, from the status each moved from and to.

    A ``created`` event moves from "" (the task did not exist). In scope: existing and not cancelled.
    """

    cancelled, done = Task.Status.CANCELLED, Task.Status.DONE
    outside = ["", cancelled]
    added = ~Q(to_status=cancelled) & Q(from_status__in=outside)
    removed = Q(to_status=cancelled) & ~Q(from_status__in=outside)
    finished = Q(to_status=done) & ~Q(from_status=done)
    unfinished = Q(from_status=done) & ~Q(to_status=done)
    reopened = Q(from_status=done) & ~Q(to_status__in=[done, cancelled])
    hours = DecimalField(max_digits=12, decimal_places=2)
    return {
        "added": Count("id", filter=added),
        "removed": Count("id", filter=removed),
        "finished": Count("id", filter=finished),
        "unfinished": Count("id", filter=unfinished),
        "reopened": Count("id", filter=reopened),
        "added_hours": Sum(weight, filter=added, output_field=hours),
        "removed_hours": Sum(weight, filter=removed, output_field=hours),
        "finished_hours": Sum(weight, filter=finished, output_field=hours),
        "unfinished_hours": Sum(weight, filter=unfinished, output_field=hours),
    }


def burndown_range_validate(*, start: datetime.date, end: datetime.date) -> None:
    """Raise ``ValidationError`` (on ``end``) unless ``start`` <= ``end`` spans at most 366 days."""
    if end < start:
        raise ValidationError({"end": ["The end date is before the start date."]})
    if (end - start).days + 1 > MAX_BURNDOWN_DAYS:
        raise ValidationError(
            {"end": [f"A burndown covers at most {MAX_BURNDOWN_DAYS} days; shorten the range."]}
        )


def _hours(value: Any) -> float:
    return round(float(value or 0), 2)


def project_burndown(
    *, project: Project, start: datetime.date, end: datetime.date, bounded: bool = True
) -> dict[str, Any]:
    """Daily burndown and burnup of ``project`` from ``start`` to ``end`` (both included), from TaskEvents.

    Each day gives the state at its end: ``scope`` (tasks existing and not cancelled), ``done`` and
    ``remaining``, and the day's scope changes (``added``: created or brought back from cancelled;
    ``removed``: cancelled; ``reopened``: done tasks moved back), in tasks and in estimate hours (tasks
    without an estimate weigh the default estimate). ``ideal`` falls linearly from the first day's
    remaining to 0 at the project's target date (or ``end`` when there is none, or it is not after
    ``start``). Three queries: the default estimate, the state before ``start``, the changes per day.
    ``bounded=False`` lifts the 366-day limit (a project page's "all" window; one row per day of history).
    """

    if bounded:
        burndown_range_validate(start=start, end=end)
    tz = timezone.get_current_timezone()
    start_at = datetime.datetime.combine(start, datetime.time.min, tzinfo=tz)
    end_at = datetime.datetime.combine(end + datetime.timedelta(days=1), datetime.time.min, tzinfo=tz)
    default = project_default_estimate(project=project)
    weight = Coalesce(
        F("task__estimate_hours"), Value(default), output_field=DecimalField(max_digits=9, decimal_places=2)
    )
    aggregates = _burndown_aggregates(weight)
    # Status events only, of the project, over a time range: idx_task_events_project_time.
    events = TaskEvent.objects.filter(
        project=project, kind__in=[TaskEvent.Kind.CREATED, TaskEvent.Kind.STATUS_CHANGED]
    ).order_by()
    before = events.filter(created_at__lt=start_at).aggregate(**aggregates)
    # values() + annotate(**aggregates): the type checker knows the "day" key only.
    day_rows = cast(
        "list[dict[str, Any]]",
        events.filter(created_at__gte=start_at, created_at__lt=end_at)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(**aggregates),
    )
    per_day = {row.pop("day"): row for row in day_rows}
    scope = before["added"] - before["removed"]
    done = before["finished"] - before["unfinished"]
    scope_hours = float(before["added_hours"] or 0) - float(before["removed_hours"] or 0)
    done_hours = float(before["finished_hours"] or 0) - float(before["unfinished_hours"] or 0)
    days: list[dict[str, Any]] = []
    for offset in range((end - start).days + 1):
        day = start + datetime.timedelta(days=offset)
        change = per_day.get(day)
        if change is None:
            change = dict.fromkeys(aggregates, 0)
        scope += change["added"] - change["removed"]
        done += change["finished"] - change["unfinished"]
        scope_hours += float(change["added_hours"] or 0) - float(change["removed_hours"] or 0)
        done_hours += float(change["finished_hours"] or 0) - float(change["unfinished_hours"] or 0)
        days.append(
            {
                "date": day,
                "scope": scope,
                "done": done,
                "remaining": scope - done,
                "added": change["added"],
                "removed": change["removed"],
                "reopened": change["reopened"],
                "scope_hours": _hours(scope_hours),
                "done_hours": _hours(done_hours),
                "remaining_hours": _hours(scope_hours - done_hours),
                "added_hours": _hours(change["added_hours"]),
                "removed_hours": _hours(change["removed_hours"]),
            }
        )
    target = project.target_date if project.target_date and project.target_date > start else end
    span = (target - start).days
    first = days[0]
    for offset, row in enumerate(days):
        left = 1 - min(1.0, offset / span) if span else (1.0 if offset == 0 else 0.0)
        row["ideal"] = round(first["remaining"] * left, 2)
        row["ideal_hours"] = round(first["remaining_hours"] * left, 2)
    return {
        "start": start,
        "end": end,
        "target_date": target,
        "default_estimate_hours": float(default),
        "days": days,
    }
