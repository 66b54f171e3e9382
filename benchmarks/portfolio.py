"""A generated portfolio for the page benchmark: many projects with a year of task and commit history.

    .venv/bin/python benchmarks/portfolio.py                 # 50 projects, 50,000 tasks, 500,000 commits
    .venv/bin/python benchmarks/portfolio.py --rebuild       # drop the database and fill it again
    .venv/bin/python benchmarks/portfolio.py --projects 100 --tasks 100000 --commits 1000000

Fills a scratch PostgreSQL database (``apm_bench_pages``; migrated with ``manage.py migrate``), and
leaves it for the next run: a later run reuses it when it holds the same sizes and its history ends
within the last two days (the windows of the pages are counted back from today). ``benchmarks/pages.py``
calls ``portfolio_ensure`` before it serves the database with gunicorn.

What it holds (every figure of the project and repository pages has real work to do):

* ``--projects`` projects (keys ``PF01``...), each with ``--tasks / --projects`` tasks created evenly over
  the last year; every 20th task is an epic with nine subtasks; older tasks are more often done. Every
  task has its ``created`` event and one event per status change (to do, in progress, in review, done or
  cancelled) at believable times, so burndowns and progress trends replay a year of history; a task in
  ten waits on another.
* one repository per project, two for every third project, sharing ``--commits`` commits evenly
  (rounded up to a multiple of the repositories, as tasks are to one of the projects); a commit every
  hour or so per repository over the last year, from 30 authors, three changed files a commit (a merge
  every 50th, a 40-file commit every 1,000th) among 800 files in 30 directories; the file index and the
  per-path totals that ingestion would have left; each commit names a task of its project (``work on
  PF01-123``) and is linked to it.
* ``bench`` (password ``bench-pages``): staff, member of every project; ``bench-few`` (same password):
  not staff, member of three projects.

Rows are written by PostgreSQL itself (``INSERT ... SELECT FROM generate_series``), so nothing crosses
the connection row by row: 50 projects, 50,000 tasks and 500,000 commits take a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import database_reset, database_row  # noqa: E402

DATABASE_URL = "postgres://postgres@127.0.0.1:5432/apm_bench_pages"
PASSWORD = "bench-pages"  # noqa: S105 (a scratch database's documented password)
USERNAME = "bench"
FEW_USERNAME = "bench-few"
FEW_PROJECTS = 3
DEVELOPERS = 8
FILES = 800
DIRECTORIES = 30
AUTHORS = 30
DAYS = 365
EPIC_EVERY = 20
SUBTASKS = 9


@dataclass(frozen=True)
class Portfolio:
    """What the benchmark needs to know about the generated portfolio."""

    database_url: str
    project_keys: list[str]
    repository_ids: list[int]
    projects: int
    tasks: int
    commits: int


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sizes_add(parser)
    return parser.parse_args()


def sizes_add(parser: argparse.ArgumentParser) -> None:
    """The portfolio's options, shared with benchmarks/pages.py."""
    parser.add_argument("--projects", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=50_000, help="Tasks in all (split evenly).")
    parser.add_argument("--commits", type=int, default=500_000, help="Commits in all (split evenly).")
    parser.add_argument("--rebuild", action="store_true", help="Drop and fill the scratch database again.")
    parser.add_argument("--database-url", default=DATABASE_URL)


def repositories_count(projects: int) -> int:
    """One repository a project, two for every third project."""
    return projects + projects // 3


def sizes_rounded(*, projects: int, tasks: int, commits: int) -> tuple[int, int]:
    """Tasks and commits in all, each split evenly and rounded up (never fewer than asked for)."""
    repositories = repositories_count(projects)
    return -(-tasks // projects) * projects, -(-commits // repositories) * repositories


def _present(url: str, projects: int, tasks: int, commits: int) -> bool:
    """Whether ``url`` holds a portfolio of these sizes whose history ends within the last two days."""
    row = database_row(
        url,
        "SELECT (SELECT COUNT(*) FROM projects), (SELECT COUNT(*) FROM tasks), "
        "(SELECT COUNT(*) FROM commits), "
        "(SELECT MAX(timestamp) > now() - interval '2 days' FROM commits)",
    )
    return row == (projects, tasks, commits, True)


def migrate(url: str) -> None:
    """``manage.py migrate`` on ``url``, in its own process, as an operator would run it."""
    env = {**os.environ, **_django_env(url)}
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"], env=env, check=True
    )


def _django_env(url: str) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DJANGO_DEBUG": "false",  # DEBUG keeps every query in memory
        "APM_DEBUG_TOOLBAR": "false",
        "DJANGO_LOG_LEVEL": "WARNING",
        "DATABASE_URL": url,
        "DATABASE_POOL_SIZE": "1",
        "DATABASE_MAX_OVERFLOW": "1",
        "APM_CACHE": "none",  # the services' invalidations have nothing to drop here
    }


def django_setup(url: str) -> None:
    """Configure Django in this process for the portfolio database (local settings, DEBUG off).

    ``DJANGO_SECRET_KEY`` is left to the caller: benchmarks/pages.py sets the key its server uses, so the
    sessions it makes here are valid there.
    """
    os.environ.update(_django_env(url))
    import django

    django.setup()


def portfolio_ensure(*, url: str, projects: int, tasks: int, commits: int, rebuild: bool) -> Portfolio:
    """The portfolio in ``url``: reused when present with these sizes, generated otherwise.

    Configures Django in this process for ``url`` (``django_setup``).
    """
    if not url.startswith("postgres"):
        sys.exit("the portfolio is generated with PostgreSQL's generate_series: give a postgres:// URL")
    if projects < FEW_PROJECTS or tasks < projects * EPIC_EVERY or commits < projects * 100:
        sys.exit(f"give at least {FEW_PROJECTS} projects, 20 tasks and 100 commits a project")
    tasks, commits = sizes_rounded(projects=projects, tasks=tasks, commits=commits)
    reuse = not rebuild and _present(url, projects, tasks, commits)
    if not reuse:
        database_reset(url)
    migrate(url)  # also brings a reused database up to the tree's migrations
    django_setup(url)
    name = url.rsplit("/", 1)[1]
    if reuse:
        print(f"portfolio: reusing {name} ({projects} projects, {tasks:,} tasks, {commits:,} commits)")
    else:
        started = time.perf_counter()
        _generate(projects=projects, tasks=tasks, commits=commits)
        print(
            f"portfolio: generated {name} ({projects} projects, {tasks:,} tasks, {commits:,} commits) "
            f"in {time.perf_counter() - started:.0f} s"
        )
    from projects.models import Project
    from repos.models import Repository

    return Portfolio(
        database_url=url,
        project_keys=list(Project.objects.order_by("key").values_list("key", flat=True)),
        repository_ids=list(Repository.objects.order_by("project__key", "id").values_list("id", flat=True)),
        projects=projects,
        tasks=tasks,
        commits=commits,
    )


def _generate(*, projects: int, tasks: int, commits: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from projects.models import Membership, Project
    from projects.services import membership_set, project_create
    from repos.models import IngestionRun, Repository

    users = get_user_model().objects
    bench = users.create_user(USERNAME, f"{USERNAME}@example.com", PASSWORD, is_staff=True)
    few = users.create_user(FEW_USERNAME, f"{FEW_USERNAME}@example.com", PASSWORD)
    developers = [users.create_user(f"dev{n}", f"dev{n}@example.com", None) for n in range(DEVELOPERS)]
    per_project = -(-tasks // projects)  # rounded up: at least ``tasks`` in all
    statuses = list(Project.Status.values)
    repository_ids: list[int] = []
    for number in range(1, projects + 1):
        # Mostly active projects; a few of every other status, as a real portfolio has.
        status = Project.Status.ACTIVE if number % 5 else statuses[(number // 5) % len(statuses)]
        project = project_create(
            name=f"Portfolio project {number}",
            key=f"PF{number:02d}",
            owner=bench,
            description=f"Generated project {number} of the page benchmark.",
            status=status,
        )
        for developer in developers:
            membership_set(project=project, user=developer, role=Membership.Role.MEMBER)
        if number <= FEW_PROJECTS:
            membership_set(project=project, user=few, role=Membership.Role.VIEWER)
        for copy in range(2 if number % 3 == 0 else 1):  # repositories_count
            repository = Repository.objects.create(
                project=project,
                name=f"pf{number:02d}-{'service' if copy else 'app'}",
                kind=Repository.Kind.REMOTE,
                source=f"https://git.example.com/pf{number:02d}/{'service' if copy else 'app'}.git",
                default_branch="main",
            )
            repository_ids.append(repository.pk)
    Project.objects.update(last_task_number=per_project)
    per_repository = -(-commits // len(repository_ids))
    timings: dict[str, float] = {}

    def step(name: str, sql: str, params: dict[str, Any] | None = None) -> None:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(sql, params or {})
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started

    params = {
        "per_project": per_project,
        "days": DAYS,
        "epic": EPIC_EVERY,
        "subtasks": SUBTASKS,
        "people": [bench.pk, *(developer.pk for developer in developers)],
        "per_repository": per_repository,
        "repositories": repository_ids,
        "files": FILES,
        "directories": DIRECTORIES,
        "authors": AUTHORS,
    }
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
    for name, sql in _FILL_SQL:
        step(name, sql, params)
    first_commit = _first_commit_times()
    runs = [
        IngestionRun(
            repository_id=repository_id,
            status=IngestionRun.Status.SUCCEEDED,
            branch="main",
            to_sha=sha,
            commits_total=per_repository,
            commits_done=per_repository,
            commits_added=per_repository,
            files_indexed=FILES,
            files_scope=IngestionRun.FilesScope.TREE,
            started_at=started_at,
            heartbeat_at=finished_at,
            finished_at=finished_at,
        )
        for repository_id, (sha, started_at, finished_at) in first_commit.items()
    ]
    IngestionRun.objects.bulk_create(runs)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        # Visibility map and statistics, as autovacuum would leave them on a live database.
        for table in _TABLES:
            cursor.execute(f"VACUUM ANALYZE {table}")
    timings["vacuum analyze"] = time.perf_counter() - started
    _health_record()
    print("portfolio: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()))


def _first_commit_times() -> dict[int, tuple[str, Any, Any]]:
    """Each repository's tip and times, for the one succeeded ingestion run it gets."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT ON (repository_id) repository_id, sha, timestamp - interval '1 minute', "
            "timestamp FROM commits ORDER BY repository_id, timestamp DESC, id DESC"
        )
        rows = cursor.fetchall()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE repositories r SET last_ingested_sha = t.sha, last_ingested_at = t.at "
            "FROM (SELECT unnest(%s::bigint[]) AS id, unnest(%s::text[]) AS sha, "
            "unnest(%s::timestamptz[]) AS at) t WHERE r.id = t.id",
            [[row[0] for row in rows], [row[1] for row in rows], [row[3] for row in rows]],
        )
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def _health_record() -> None:
    """Record every project's health, as the hourly schedule would have (the dashboard shows it)."""
    from insights.services import project_health_record
    from projects.models import Project

    started = time.perf_counter()
    for project in Project.objects.all():
        project_health_record(project=project)
    print(f"portfolio: health of every project recorded in {time.perf_counter() - started:.1f} s")


_TABLES = (
    "tasks",
    "task_events",
    "task_dependencies",
    "commits",
    "file_changes",
    "files",
    "file_histories",
    "commit_task_links",
)

# The plan of every task: its status and the times it moved, decided from its number (f: how far into
# the year it was created, r: a pseudo-random 0..99). Older tasks are more often done.
_TASK_PLAN_SQL = """
CREATE TEMP TABLE task_plan AS
WITH base AS (
    SELECT p.id AS project_id, p.key, n,
           (n - 1)::float / %(per_project)s AS f,
           (n * 7919 + p.id * 104729) %% 100 AS r,
           (n * 31 + p.id * 17) %% 1000 AS s
    FROM projects p CROSS JOIN generate_series(1, %(per_project)s) AS n
),
planned AS (
    SELECT *,
           now() - %(days)s * interval '1 day' + f * (%(days)s - 5) * interval '1 day'
               + s * interval '1 minute' AS created,
           CASE WHEN r < 5 + 80 * (1 - f) THEN 'done'
                WHEN r < 9 + 80 * (1 - f) THEN 'cancelled'
                WHEN r < 15 + 80 * (1 - f) THEN 'in_review'
                WHEN r < 25 + 80 * (1 - f) THEN 'in_progress'
                WHEN r < 45 + 80 * (1 - f) THEN 'todo'
                ELSE 'backlog' END AS status
    FROM base
)
SELECT *,
       LEAST(created + (1 + r %% 15) * interval '1 day', now() - interval '3 hours') AS started,
       LEAST(created + (3 + r %% 15 + s %% 10) * interval '1 day', now() - interval '2 hours') AS reviewed,
       LEAST(created + (5 + r %% 15 + s %% 20) * interval '1 day', now() - interval '1 hour') AS closed
FROM planned
"""

_FILL_SQL: list[tuple[str, str]] = [
    ("task plan", _TASK_PLAN_SQL),
    (
        "tasks",
        """
        INSERT INTO tasks (project_id, number, title, description, status, priority, assignee_id,
                           reporter_id, due_date, estimate_hours, parent_id, started_at, closed_at,
                           created_at, updated_at)
        SELECT project_id, n,
               CASE WHEN n %% %(epic)s = 1 THEN 'Epic ' ELSE 'Task ' END || n || ' of ' || key,
               'Generated task ' || n || ' of the page benchmark.',
               status, 1 + r %% 4,
               CASE WHEN status = 'backlog' THEN NULL
                    ELSE (%(people)s::bigint[])[1 + s %% cardinality(%(people)s::bigint[])] END,
               (%(people)s::bigint[])[1 + r %% cardinality(%(people)s::bigint[])],
               CASE WHEN r %% 5 < 3 THEN (created + (14 + s %% 45) * interval '1 day')::date END,
               CASE WHEN r %% 10 = 0 THEN NULL ELSE 1 + s %% 13 END,
               NULL,
               CASE WHEN status IN ('in_progress', 'in_review', 'done') THEN started END,
               CASE WHEN status IN ('done', 'cancelled') THEN closed END,
               created,
               CASE WHEN status IN ('done', 'cancelled') THEN closed
                    WHEN status = 'in_review' THEN reviewed
                    WHEN status = 'in_progress' THEN started
                    ELSE created END
        FROM task_plan
        """,
    ),
    (
        "tasks",
        # Every EPIC_EVERY-th task is an epic; the SUBTASKS tasks after it are its subtasks.
        """
        UPDATE tasks c SET parent_id = e.id
        FROM tasks e
        WHERE e.project_id = c.project_id AND e.number = c.number - (c.number %% %(epic)s) + 1
          AND c.number %% %(epic)s BETWEEN 2 AND %(subtasks)s + 1
        """,
    ),
    (
        "task events",
        # created, then one status_changed event per move, with the actor who made it.
        """
        INSERT INTO task_events (task_id, project_id, kind, source, actor_id, from_status, to_status,
                                 commit_sha, data, created_at)
        SELECT t.id, t.project_id, e.kind, 'batch', t.reporter_id, e.from_status, e.to_status, '',
               '{}'::jsonb, e.at
        FROM task_plan p
        JOIN tasks t ON t.project_id = p.project_id AND t.number = p.n
        CROSS JOIN LATERAL (VALUES
            ('created', '', CASE WHEN p.status = 'backlog' THEN 'backlog' ELSE 'todo' END, p.created,
             true),
            ('status_changed', 'todo', 'in_progress', p.started,
             p.status IN ('in_progress', 'in_review', 'done')),
            ('status_changed', 'in_progress', 'in_review', p.reviewed,
             p.status = 'in_review' OR (p.status = 'done' AND p.r %% 5 <> 0)),
            ('status_changed', CASE WHEN p.r %% 5 <> 0 THEN 'in_review' ELSE 'in_progress' END, 'done',
             p.closed, p.status = 'done'),
            ('status_changed', 'todo', 'cancelled', p.closed, p.status = 'cancelled')
        ) AS e(kind, from_status, to_status, at, happened)
        WHERE e.happened
        """,
    ),
    (
        "task dependencies",
        # One task in ten waits on the task three before it (always earlier: no cycles).
        """
        INSERT INTO task_dependencies (task_id, depends_on_id, created_at)
        SELECT t.id, d.id, t.created_at
        FROM tasks t JOIN tasks d ON d.project_id = t.project_id AND d.number = t.number - 3
        WHERE t.number %% 10 = 5
        """,
    ),
    (
        "commits",
        # Each repository's commits spread evenly over the year up to an hour ago, each naming a task of
        # its project; n numbers them across repositories (shas are unique everywhere).
        """
        INSERT INTO commits (repository_id, sha, parents, author_name, author_email, authored_at,
                             committer_name, committer_email, timestamp, message, additions, deletions,
                             files_changed, is_merge)
        SELECT r.id, md5(n::text) || substr(md5((n + 1)::text), 1, 8), '[]'::jsonb,
               'Developer ' || a, 'dev' || a || '@example.com', at - interval '5 minutes',
               'Developer ' || a, 'dev' || a || '@example.com', at,
               'Change ' || i || ': work on ' || p.key || '-' || (1 + (i * 7 + r.id) %% %(per_project)s)
                   || E'\\n\\nA body of a few words describing change ' || i || '.',
               0, 0,
               CASE WHEN i %% 50 = 0 THEN 0 WHEN i %% 1000 = 1 THEN 40 ELSE 3 END,
               i %% 50 = 0
        FROM unnest(%(repositories)s::bigint[]) WITH ORDINALITY AS r(id, ordinal)
        JOIN repositories rp ON rp.id = r.id
        JOIN projects p ON p.id = rp.project_id
        CROSS JOIN generate_series(1, %(per_repository)s) AS i
        CROSS JOIN LATERAL (
            SELECT (r.ordinal - 1) * %(per_repository)s + i AS n,
                   (i * 13 + r.id * 7) %% %(authors)s AS a,
                   now() - interval '1 hour'
                       - (%(per_repository)s - i)::float / %(per_repository)s * %(days)s * interval '1 day'
                       AS at
        ) AS pick
        """,
    ),
    (
        "file changes",
        # Each commit changes files_changed distinct paths of its repository: a file picked from the
        # commit id and its neighbours at a stride of 1 to 3, so some files keep changing together.
        """
        INSERT INTO file_changes (commit_id, repository_id, path, old_path, change_type, added, deleted,
                                  is_binary)
        SELECT c.id, c.repository_id,
               'src/dir' || (f %% %(directories)s) || '/module_' || f || '.py', '', 'M',
               1 + (c.id * 7 + k) %% 40, (c.id * 3 + k) %% 15, false
        FROM commits c
        CROSS JOIN LATERAL generate_series(0, c.files_changed - 1) AS k
        CROSS JOIN LATERAL (
            SELECT ((c.id * 37) %% %(files)s + k * (1 + c.id %% 3)) %% %(files)s AS f
        ) AS pick
        """,
    ),
    (
        "commits",
        """
        UPDATE commits c SET additions = s.added, deletions = s.deleted
        FROM (SELECT commit_id, SUM(added) AS added, SUM(deleted) AS deleted
              FROM file_changes GROUP BY commit_id) s
        WHERE s.commit_id = c.id
        """,
    ),
    (
        "file histories",
        """
        INSERT INTO file_histories (repository_id, path, churn, commit_count, last_changed_at)
        SELECT fc.repository_id, fc.path, SUM(fc.added + fc.deleted), COUNT(*), MAX(c.timestamp)
        FROM file_changes fc JOIN commits c ON c.id = fc.commit_id
        GROUP BY fc.repository_id, fc.path
        """,
    ),
    (
        "files",
        """
        INSERT INTO files (project_id, repository_id, path, language, size, lines, is_binary, churn,
                           commit_count, last_changed_at)
        SELECT r.project_id, h.repository_id, h.path, 'Python', (40 + h.churn %% 1500) * 32,
               40 + h.churn %% 1500, false, h.churn, h.commit_count, h.last_changed_at
        FROM file_histories h JOIN repositories r ON r.id = h.repository_id
        """,
    ),
    (
        "commit-task links",
        # The task each message names (``work on PF01-123``), as ingestion links it.
        """
        INSERT INTO commit_task_links (commit_id, task_id, action, status, minutes, outcome, note,
                                       created_at)
        SELECT c.id, t.id, 'reference', '', 0, 'history', '', c.timestamp
        FROM commits c
        JOIN repositories r ON r.id = c.repository_id
        JOIN tasks t ON t.project_id = r.project_id
         AND t.number = split_part(split_part(split_part(c.message, E'\\n', 1), ' work on ', 2), '-', 2)::int
        """,
    ),
]


def main() -> None:
    options = arguments()
    portfolio = portfolio_ensure(
        url=options.database_url,
        projects=options.projects,
        tasks=options.tasks,
        commits=options.commits,
        rebuild=options.rebuild,
    )
    keys = portfolio.project_keys
    print(
        f"{len(keys)} projects ({keys[0]}..{keys[-1]}), "
        f"{len(portfolio.repository_ids)} repositories; sign in as {USERNAME} or {FEW_USERNAME}, "
        f"password {PASSWORD}"
    )


if __name__ == "__main__":
    main()
