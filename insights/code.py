"""Code analytics of a project, read in bulk SQL: hotspots, change coupling and contributor statistics.

Every selector takes a window of commit time (``since`` inclusive, ``until`` exclusive) and optionally
one repository of the project. Without a window they read ``code_window``'s: the 90 days up to today,
or up to the day of the last commit when the repositories have been quiet since (a library last
changed eight months ago shows its last 90 days of work, not three empty tables). Each selector costs a
fixed number of queries whatever the size of the history (hotspots 1, coupling 1, contributors 3, plus
one for the last commit when the window is left to them), and every query starts from the commits of
the project's repositories in the window (``idx_commits_repo_time``) and reaches their file changes
through ``file_change_commit_path_unique`` (commit id first), so the work grows with the commits in the
window, not with the whole history. docs/analytics.md has the formulas.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Case, Count, Max, Min, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce, Left, Lower, StrIndex, TruncDate
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apm.replicas import read_connection
from projects.models import Project
from repos.models import Commit, FileChange, Repository

DEFAULT_DAYS = 90
DEFAULT_WINDOW = dt.timedelta(days=DEFAULT_DAYS)
# The longest window a caller may ask for in days: ten years, more than any history worth ranking.
MAX_DAYS = 3650
MAIN_AREAS = 3
# Pairs of files changed together by fewer commits are chance, not coupling.
COUPLING_MIN_SHARED = 3
# The area of files at the top of the tree, which have no directory.
ROOT_AREA = "(root)"
# Analytics entries are also dropped by the project's generation bump at the end of every ingestion;
# the timeout only bounds how long entries of windows nobody asks for again stay in the cache.
CACHE_TIMEOUT = 24 * 3600


# --- The window ---------------------------------------------------------------------------------------


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def utc_today() -> dt.date:
    return timezone.now().astimezone(dt.UTC).date()


@dataclass(frozen=True)
class AnalyticsWindow:
    """Whole UTC days ``first_day`` to ``last_day``, both included: the commits of the figures.

    ``anchored_to_last_activity`` says the window was moved back to end on the day of the last commit,
    because nothing was committed after it; ``last_activity_at`` is that commit's time (None without
    commits).
    """

    first_day: dt.date
    last_day: dt.date
    anchored_to_last_activity: bool = False
    last_activity_at: dt.datetime | None = None

    @property
    def since(self) -> dt.datetime:
        """Start of the window, included: 00:00 UTC of the first day."""
        return _day_start(self.first_day)

    @property
    def until(self) -> dt.datetime:
        """End of the window, excluded: 00:00 UTC of the day after the last day."""
        return _day_start(self.last_day + dt.timedelta(days=1))

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    def as_dict(self) -> dict[str, Any]:
        """For API answers: the days to pass back as ``since`` and ``until`` to get the same figures."""
        return {
            "since": self.first_day,
            "until": self.last_day,
            "days": self.days,
            "anchored_to_last_activity": self.anchored_to_last_activity,
            "last_activity_at": self.last_activity_at,
        }

    def describe(
        self,
        *,
        zone: str = "UTC",
        last: str = "the last commit",
        quiet: str = "nothing was committed since",
    ) -> str:
        """The window in words, for pages and reports: its days (in ``zone``), and when it is anchored,
        the ``last`` activity it ends on and that it was ``quiet`` after."""
        span = f"the {self.days} days from {self.first_day} to {self.last_day} ({zone})"
        if self.days == 1:
            span = f"{self.first_day} ({zone})"
        if self.anchored_to_last_activity and self.last_activity_at is not None:
            at = self.last_activity_at.astimezone(dt.UTC)
            return f"{span}, up to {last} ({at:%Y-%m-%d %H:%M} UTC): {quiet}"
        return span


def last_commit_at(*, project: Project, repository: Repository | int | None = None) -> dt.datetime | None:
    """Time of the latest commit of ``project``'s repositories (or of one of them). One query.

    The latest commit of each repository is one step down ``idx_commits_repo_time`` (repository, time
    descending); the answer is the latest of those, so the cost grows with the repositories, not with
    the commits.
    """
    scope, params = _scope_sql(project=project, repository=repository, alias="r")
    sql = f"""
        SELECT MAX(latest.at) FROM (
            SELECT (SELECT MAX(c.timestamp) FROM commits c WHERE c.repository_id = r.id) AS at
            FROM repositories r WHERE {scope}
        ) latest
    """  # noqa: S608 (the scope is built from constants, its values are parameters)
    with read_connection().cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return _aware(row[0]) if row else None


def window_resolve(
    *,
    since: dt.date | None = None,
    until: dt.date | None = None,
    days: int | None = None,
    last_activity_at: dt.datetime | None = None,
    today: dt.date | None = None,
    default_days: int = DEFAULT_DAYS,
    tz: dt.tzinfo = dt.UTC,
) -> AnalyticsWindow:
    """The window asked for, in whole days (of ``tz``, UTC for the code figures), without reading the
    database. ``default_days`` is the length when ``days`` is not given.

    * ``since`` and ``until``: those days (``days`` may not be given too);
    * ``since`` (and ``days``): from ``since``, ``days`` days long, or up to today;
    * ``until`` (and ``days``): the ``days`` (default ``default_days``, 90) days up to ``until``;
    * only ``days``, or nothing: the ``days`` (default 90) days up to today, or up to the day of
      ``last_activity_at`` when that is earlier (the window is then anchored to the last activity).

    Raises ``ValidationError`` naming the parameter for a reversed window, a length outside
    1..MAX_DAYS or ``days`` given with both ends.
    """
    today = today or utc_today()
    if days is not None and not 1 <= days <= MAX_DAYS:
        raise ValidationError({"days": [f"Give a number of days from 1 to {MAX_DAYS}."]})
    if days is not None and since is not None and until is not None:
        raise ValidationError({"days": ["Give days with since or with until, not with both."]})
    anchored = False
    if since is not None:
        last = until or (since + dt.timedelta(days=days - 1) if days is not None else today)
    else:
        last = until or today
        if until is None and last_activity_at is not None:
            active = last_activity_at.astimezone(tz).date()
            if active < last:
                last, anchored = active, True
        since = last - dt.timedelta(days=(days or default_days) - 1)
    if since > last:
        raise ValidationError({"since": ["Must be on or before until."]})
    return AnalyticsWindow(
        first_day=since,
        last_day=last,
        anchored_to_last_activity=anchored,
        last_activity_at=last_activity_at,
    )


def code_window(
    *,
    project: Project,
    repository: Repository | int | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
    days: int | None = None,
    today: dt.date | None = None,
) -> AnalyticsWindow:
    """The window of the code figures of ``project`` (or of one repository): see ``window_resolve``.

    One query (the last commit) when the end of the window is left to it, none otherwise.
    """
    needs_activity = since is None and until is None
    return window_resolve(
        since=since,
        until=until,
        days=days,
        today=today,
        last_activity_at=last_commit_at(project=project, repository=repository) if needs_activity else None,
    )


def analytics_window(
    *,
    project: Project,
    repository: Repository | int | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> tuple[dt.datetime, dt.datetime]:
    """The window ``[since, until)`` of a selector: ``code_window``'s when neither end is given;
    otherwise until defaults to now and since to 90 days before until."""
    if since is None and until is None:
        window = code_window(project=project, repository=repository)
        return window.since, window.until
    until = until or timezone.now()
    return since or until - DEFAULT_WINDOW, until


def coupling_max_files() -> int:
    """Commits touching more files than this (APM_COUPLING_MAX_FILES) are left out of change coupling.

    A mass rename, a reformat or a licence header update would otherwise make every pair of files look
    coupled, and the self-join of a commit's changes grows with the square of its files: 30 files are
    at most 435 pairs a commit.
    """
    files: int = settings.APM_COUPLING_MAX_FILES
    return files


def _repository_id(repository: Repository | int | None) -> int | None:
    return repository.pk if isinstance(repository, Repository) else repository


def _scope_sql(
    *, project: Project, repository: Repository | int | None, alias: str = "c"
) -> tuple[str, list[Any]]:
    """The commits of the project's repositories (or of one of them), as SQL on the alias ``c``; with
    ``alias="r"``, the repositories themselves.

    The repository is matched inside the project, so an id of another project's repository selects
    nothing rather than another project's history; a repository being deleted (repos.deletion) selects
    nothing either: it is gone for people at once, its rows go in the background.
    """
    repository_id = _repository_id(repository)
    sql = "r.project_id = %s AND r.deleting_since IS NULL"
    params: list[Any] = [project.pk]
    if repository_id is not None:
        sql += " AND r.id = %s"
        params.append(repository_id)
    if alias == "r":
        return sql, params
    return f"c.repository_id IN (SELECT r.id FROM repositories r WHERE {sql})", params  # noqa: S608 (constant text)


def _window_sql(since: dt.datetime, until: dt.datetime) -> tuple[str, list[Any]]:
    adapt = connection.ops.adapt_datetimefield_value
    return "c.timestamp >= %s AND c.timestamp < %s", [adapt(since), adapt(until)]


def _aware(value: Any) -> dt.datetime | None:
    """A datetime read by raw SQL as a timezone-aware one (SQLite returns text, MariaDB naive UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = parse_datetime(value)
    if timezone.is_naive(value):
        value = timezone.make_aware(value, dt.UTC)
    aware: dt.datetime = value
    return aware


def _rows(sql: str, params: list[Any]) -> list[dict[str, Any]]:
    with read_connection().cursor() as cursor:
        cursor.execute(sql, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


# Hotspots: the window's file changes grouped by (repository, path), joined to the files still in the
# tree on their unique key (file_repository_path_unique), ranked by changes x lines. A renamed file's
# earlier changes were recorded under its old path, so only its changes under the current path count.
_HOTSPOTS_SQL = """
SELECT f.id AS file, f.repository_id AS repository, f.path AS path, f.language AS language,
       f.lines AS line_count, h.changes AS changes, h.churn AS churn, h.authors AS authors,
       h.last_changed_at AS last_changed_at,
       h.changes * (CASE WHEN f.is_binary = %s OR f.lines < 1 THEN 1 ELSE f.lines END) AS score
FROM (
    SELECT c.repository_id AS repository_id, fc.path AS path, COUNT(*) AS changes,
           SUM(COALESCE(fc.added, 0) + COALESCE(fc.deleted, 0)) AS churn,
           COUNT(DISTINCT LOWER(c.author_email)) AS authors, MAX(c.timestamp) AS last_changed_at
    FROM commits c JOIN file_changes fc ON fc.commit_id = c.id
    WHERE {scope} AND {window}
    GROUP BY c.repository_id, fc.path
) h
JOIN files f ON f.repository_id = h.repository_id AND f.path = h.path
ORDER BY score DESC, h.churn DESC, f.path, f.id
LIMIT %s
"""


def file_hotspots(
    *,
    project: Project,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    repository: Repository | int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The files of ``project`` still in the tree, ranked by changes in the window x size. One query.

    ``score`` = changes (file change rows in the window) x lines (1 for binary or empty files); each row
    also has the churn (lines added + deleted) and the number of distinct authors in the window, and the
    time of the last change.
    """
    since, until = analytics_window(project=project, repository=repository, since=since, until=until)
    scope, scope_params = _scope_sql(project=project, repository=repository)
    window, window_params = _window_sql(since, until)
    rows = _rows(
        _HOTSPOTS_SQL.format(scope=scope, window=window),
        [True, *scope_params, *window_params, limit],
    )
    for row in rows:
        row["lines"] = int(row.pop("line_count"))  # "lines" is a reserved word in MariaDB
        row["last_changed_at"] = _aware(row["last_changed_at"])
        for name in ("changes", "churn", "authors", "score"):
            row[name] = int(row[name])
    return rows


# Change coupling: pairs of files changed by the same commits. The window's eligible changes of files
# still in the tree (files joined on their unique key) are read once, each with its file's number of
# changes (a window function), then joined to themselves on the commit id: the pair's count and both
# files' counts come out of one grouping, with no join after it whose size the planner would have to
# guess. The self-join is bounded by leaving out merges (which have no changes anyway) and commits with
# more than APM_COUPLING_MAX_FILES files (at most 435 pairs a commit); ``a.path < b.path`` counts each
# pair once.
_COUPLING_SQL = """
WITH changes AS (
    SELECT fc.commit_id AS commit_id, c.repository_id AS repository_id, f.id AS file_id, fc.path AS path,
           COUNT(*) OVER (PARTITION BY f.id) AS file_changes
    FROM commits c
    JOIN file_changes fc ON fc.commit_id = c.id
    JOIN files f ON f.repository_id = c.repository_id AND f.path = fc.path
    WHERE {eligible}
)
SELECT a.repository_id AS repository, a.file_id AS file_a, a.path AS path_a, b.file_id AS file_b,
       b.path AS path_b, COUNT(*) AS shared, MAX(a.file_changes) AS changes_a,
       MAX(b.file_changes) AS changes_b
FROM changes a JOIN changes b ON b.commit_id = a.commit_id AND a.path < b.path
GROUP BY a.repository_id, a.file_id, a.path, b.file_id, b.path
HAVING COUNT(*) >= %s
ORDER BY COUNT(*) * 1.0 / (CASE WHEN MAX(a.file_changes) < MAX(b.file_changes)
                               THEN MAX(a.file_changes) ELSE MAX(b.file_changes) END) DESC,
         COUNT(*) DESC, a.path, b.path, a.repository_id
LIMIT %s
"""


def change_coupling(
    *,
    project: Project,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    repository: Repository | int | None = None,
    min_shared: int = COUPLING_MIN_SHARED,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Pairs of files (both still in the tree) changed together by at least ``min_shared`` commits.

    ``degree`` = shared / min(changes_a, changes_b): 1.0 when every change of the less often changed
    file also changed the other. Merges and commits with more than ``APM_COUPLING_MAX_FILES`` files are
    not counted, neither in ``shared`` nor in each file's ``changes``. One query.
    """
    since, until = analytics_window(project=project, repository=repository, since=since, until=until)
    scope, scope_params = _scope_sql(project=project, repository=repository)
    window, window_params = _window_sql(since, until)
    eligible = f"{scope} AND {window} AND c.is_merge = %s AND c.files_changed <= %s"
    eligible_params = [*scope_params, *window_params, False, coupling_max_files()]
    rows = _rows(
        _COUPLING_SQL.format(eligible=eligible),
        [*eligible_params, max(1, min_shared), limit],
    )
    for row in rows:
        for name in ("shared", "changes_a", "changes_b"):
            row[name] = int(row[name])
        row["degree"] = round(row["shared"] / min(row["changes_a"], row["changes_b"]), 4)
    return rows


def _window_filter(
    *,
    prefix: str,
    project: Project,
    since: dt.datetime,
    until: dt.datetime,
    repository: Repository | int | None,
) -> dict[str, Any]:
    """ORM filters for the commits of the window, on ``Commit`` (prefix "") or a relation ("commit__")."""
    repositories = Repository.objects.filter(project=project, deleting_since__isnull=True)
    repository_id = _repository_id(repository)
    if repository_id is not None:
        repositories = repositories.filter(pk=repository_id)
    return {
        f"{prefix}repository_id__in": repositories.values("id"),
        f"{prefix}timestamp__gte": since,
        f"{prefix}timestamp__lt": until,
    }


def contributor_stats(
    *,
    project: Project,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    repository: Repository | int | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Per author e-mail: commits and merges, lines added and deleted, active days, first and last
    commit, main areas.

    ``commits`` leaves merges out (what ``git shortlog -sne --no-merges`` counts), ``merges`` counts
    them: on a forge's history the maintainers who press "merge" would otherwise lead the list with
    commits that wrote no line. Most commits first, then most merges (``limit`` of them, or all).
    Three queries: the aggregates per e-mail, the names each e-mail used (the latest one is shown), and
    the lines changed per e-mail and top-level directory (the first three by lines are the main areas).
    Merges have no file changes, so no lines; they count in active days, first and last commit (merging
    is work on the project too). Active days are distinct UTC dates of the commit time.
    """
    since, until = analytics_window(project=project, repository=repository, since=since, until=until)
    window: dict[str, Any] = {"project": project, "since": since, "until": until, "repository": repository}
    # One author per e-mail whatever its case: MariaDB's collation groups "Ada@x" with "ada@x" anyway,
    # so every database is made to, and each of the three queries keys its rows the same way.
    commits = Commit.objects.filter(**_window_filter(prefix="", **window)).annotate(
        email=Lower("author_email")
    )
    changes = FileChange.objects.filter(**_window_filter(prefix="commit__", **window))
    # values() + annotate(...) sliced: the type checker knows the "email" key only.
    authors = cast(
        "list[dict[str, Any]]",
        list(
            commits.values("email")
            .annotate(
                commits=Count("id", filter=Q(is_merge=False)),
                merges=Count("id", filter=Q(is_merge=True)),
                lines_added=Sum("additions"),
                lines_deleted=Sum("deletions"),
                active_days=Count(TruncDate("timestamp", tzinfo=dt.UTC), distinct=True),
                first_commit_at=Min("timestamp"),
                last_commit_at=Max("timestamp"),
            )
            .order_by("-commits", "-merges", "email")[:limit]
        ),
    )
    if not authors:
        return []
    emails = [row["email"] for row in authors]
    if limit is not None:
        # Only the authors shown; without a limit they are all of them, so no (long) list is sent.
        commits = commits.filter(email__in=emails)
        changes = changes.annotate(email=Lower("commit__author_email")).filter(email__in=emails)

    # The name and the spelling of the e-mail the author used last, as shown (git keeps them as typed).
    names: dict[str, tuple[dt.datetime, str, str]] = {}
    spellings = (
        commits.values("email", "author_email", "author_name").annotate(last=Max("timestamp")).order_by()
    )
    for row in spellings:
        latest = (row["last"], row["author_name"], row["author_email"])
        if row["email"] not in names or latest > names[row["email"]]:
            names[row["email"]] = latest

    areas: dict[str, list[dict[str, Any]]] = {email: [] for email in emails}
    for line in _area_lines(changes):
        areas.setdefault(line["author_email"], []).append(
            {"area": line["area"] or ROOT_AREA, "lines": int(line["changed"])}
        )

    # .get: MariaDB's collation also equates accents and trailing spaces, so a group's key may be spelled
    # differently in each query; such an author shows without a name or areas rather than failing.
    return [
        {
            "author_email": names.get(email, (None, "", email))[2],
            **row,
            "author_name": names.get(email, (None, "", email))[1],
            "lines_added": int(row["lines_added"] or 0),
            "lines_deleted": int(row["lines_deleted"] or 0),
            "main_areas": areas.get(email, []),
        }
        for row in authors
        for email in [row.pop("email")]
    ]


def _area_lines(changes: QuerySet[FileChange]) -> list[dict[str, Any]]:
    """Lines changed per author e-mail and top-level directory, the first ``MAIN_AREAS`` of each author.

    The directory is the path up to and including its first ``/`` (``repos/``); files at the top of the
    tree give an empty string. The grouping is built by the ORM (portable string functions), and the
    ranking is a window function around it (ROW_NUMBER over each author), so only three rows an author
    leave the database. Django cannot put a window over its own GROUP BY without grouping by the window
    too, hence the wrapping SQL.
    """
    area = Case(
        When(path__contains="/", then=Left("path", StrIndex("path", Value("/")))),
        default=Value(""),
    )
    grouped = (
        changes.annotate(author_email=Lower("commit__author_email"), area=area)
        .values("author_email", "area")
        .annotate(changed=Sum(Coalesce("added", 0) + Coalesce("deleted", 0)))
        .order_by()
    )
    inner, params = grouped.query.sql_with_params()
    sql = f"""
        SELECT ranked.author_email AS author_email, ranked.area AS area, ranked.changed AS changed
        FROM (
            SELECT g.author_email AS author_email, g.area AS area, g.changed AS changed,
                   ROW_NUMBER() OVER (PARTITION BY g.author_email ORDER BY g.changed DESC, g.area) AS place
            FROM ({inner}) g
        ) ranked
        WHERE ranked.place <= %s
        ORDER BY ranked.author_email, ranked.place
    """  # noqa: S608 (the inner query is Django's, with its parameters kept apart)
    return _rows(sql, [*params, MAIN_AREAS])
