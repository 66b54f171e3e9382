"""A generated slice of the full size APM plans for (10,000 repositories, 100 million commits, 1 billion
file changes), written by PostgreSQL itself into a migrated scratch database.

Used by ``manage.py explain_hot_queries --generate`` (the hot queries' plans on a dataset of a known
shape) and by ``benchmarks/scale.py`` (sizes, plans and the projection to the full size, docs/scale.md).

How the slice is made: rows shaped like ingested ones (40-hex shas, a parent each, a message of about
115 bytes naming a task, paths of about 33 bytes, ten file changes a commit, a link a commit) are
inserted by ``INSERT ... SELECT FROM generate_series``, repository by repository, newest commit first
as ingestion writes them, into the migrated tables with every index in place, so indexes grow by
insertion as they do under ingestion (not packed by CREATE INDEX). PostgreSQL only.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import connection

# The full size the slice is a share of.
FULL_REPOSITORIES = 10_000
FULL_COMMITS = 100_000_000
FULL_FILE_CHANGES = 1_000_000_000
CHANGES_PER_COMMIT = FULL_FILE_CHANGES // FULL_COMMITS  # 10
HISTORY_DAYS = 5 * 365  # each repository's commits span five years up to now
CHUNK_COMMITS = 2000  # APM_INGEST_CHUNK_COMMITS: the ingestion chunk the lookups are sized for
# The tables the slice fills, the five that grow with history.
TABLES = ["commits", "file_changes", "files", "file_histories", "commit_task_links"]
# The tables the slice writes, whose statistics the plans are estimated from: the big five, the tasks
# (their subtask tree) and the tasks' events (the history-based analytics). Analyzed before explaining.
SETTLED_TABLES = [*TABLES, "tasks", "task_events", "projects", "repositories"]
# The smallest share a slice can be: 1,000 commits.
FRACTION_MIN = 0.00001


@dataclass
class Slice:
    """The size of the slice: ``repositories`` of ``commits_each`` commits, ``files_each`` files."""

    fraction: float
    repositories: int
    commits_each: int
    files_each: int
    tasks_each: int

    @property
    def commits(self) -> int:
        return self.repositories * self.commits_each

    @property
    def paths_each(self) -> int:
        # Paths ever touched: the files at the tip and a sixth more that were deleted on the way.
        return self.files_each + self.files_each // 5


# 1/20,000: 2 repositories x 2,500 commits, 50,000 file changes; seconds to fill (CI).
QUICK_SLICE = Slice(fraction=1 / 20_000, repositories=2, commits_each=2500, files_each=500, tasks_each=100)


def slice_of_fraction(fraction: float, *, files_each: int = 5000) -> Slice:
    """The slice of ``fraction`` of the full size, at its shape: 10,000 commits a repository, 10 file
    changes a commit, ``files_each`` files a tree. ValueError when ``fraction`` is out of range."""
    if not FRACTION_MIN <= fraction <= 1:
        raise ValueError(f"the fraction must be from {FRACTION_MIN} (1,000 commits) to 1, not {fraction}")
    commits = round(FULL_COMMITS * fraction)
    repositories = max(1, round(FULL_REPOSITORIES * fraction))
    return Slice(
        fraction=fraction,
        repositories=repositories,
        commits_each=commits // repositories,
        files_each=files_each,
        tasks_each=1000,
    )


def slice_tables_analyze() -> None:
    """Fresh statistics on the slice's tables (the fill leaves autovacuum off until the caller's VACUUM)."""
    with connection.cursor() as cursor:
        for table in SETTLED_TABLES:
            cursor.execute(f"ANALYZE {table}")


def slice_autovacuum_reset() -> None:
    """Autovacuum back on for the slice's tables (the fill switches it off)."""
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")


# Every statement is parameterised by the slice; %% is a literal % for the driver.

# A commit's path number k of K: distinct within a commit (stride <= 3, K * 3 < paths), so the
# (commit_id, path) key holds; repeated across commits, so files have histories.
_PATH_NUMBER = "((c.id * 7919) %% %(paths)s + k * (1 + c.id %% 3)) %% %(paths)s"

# About 33 bytes: src/<area>/[internal/]<layer>/<name>_<n>.<ext>, like a mid-sized project's tree.
_PATH_SQL = """
'src/' || (ARRAY['core','api','ui','storage','net','auth','search','billing','reports','admin','cli',
                 'utils'])[1 + {p} %% 12]
 || CASE WHEN {p} %% 3 = 0 THEN '/internal' ELSE '' END
 || '/' || (ARRAY['handlers','models','views','services','tests','helpers','schema'])[1 + ({p} / 12) %% 7]
 || '/' || (ARRAY['module','widget','client','record','parser'])[1 + ({p} / 84) %% 5] || '_' || {p}
 || (ARRAY['.py','.ts','.go','.rs','.java','.md'])[1 + ({p} / 7) %% 6]
"""

# 40 hex characters, unique across repositories.
_SHA_SQL = "md5({r} || ':' || {n}) || substr(md5({n} || ':' || {r}), 1, 8)"

_COMMITS_SQL = f"""
INSERT INTO commits (repository_id, sha, parents, author_name, author_email, authored_at,
                     committer_name, committer_email, timestamp, message, additions, deletions,
                     files_changed, is_merge)
SELECT r.id, {_SHA_SQL.format(r="r.id", n="i")},
       CASE WHEN i = 1 THEN '[]'::jsonb
            WHEN i %% 20 = 0 THEN jsonb_build_array({_SHA_SQL.format(r="r.id", n="i - 1")},
                                                    {_SHA_SQL.format(r="r.id", n="i - 2")})
            ELSE jsonb_build_array({_SHA_SQL.format(r="r.id", n="i - 1")}) END,
       (ARRAY['Alice','Bruno','Chen','Dana','Emeka','Fatima','Goran','Hana'])[1 + a %% 8] || ' '
           || (ARRAY['Martin','Okafor','Lindqvist','Nakamura','Silva','Kowalski'])[1 + a %% 6],
       'dev' || a || '@example.org', at - interval '7 minutes',
       (ARRAY['Alice','Bruno','Chen','Dana','Emeka','Fatima','Goran','Hana'])[1 + a %% 8] || ' '
           || (ARRAY['Martin','Okafor','Lindqvist','Nakamura','Silva','Kowalski'])[1 + a %% 6],
       'dev' || a || '@example.org', at,
       (ARRAY['Fix','Add','Refactor','Handle','Speed up','Document'])[1 + i %% 6] || ' '
           || (ARRAY['retries','pagination','the cache key','time zones','empty input','errors'])[1 + i %% 5]
           || ' in the ' || (ARRAY['core','api','ui','storage','net','auth'])[1 + i %% 6]
           || ' layer (' || p.key || '-' || (1 + (i * 7) %% %(tasks)s) || ')'
           || CASE WHEN i %% 3 = 0 THEN E'\\n\\nThe previous behaviour dropped the request when '
              'the upstream answered slowly; this keeps it, retries twice with a backoff, and logs '
              'the reason once. Tests cover the slow and the failing upstream. Change ' || i || '.'
              ELSE '' END,
       CASE WHEN i %% 20 = 0 THEN 0 ELSE %(changes)s * 31 END,
       CASE WHEN i %% 20 = 0 THEN 0 ELSE %(changes)s * 12 END,
       CASE WHEN i %% 20 = 0 THEN 0 WHEN i %% 20 = 10 THEN 2 * %(changes)s ELSE %(changes)s END,
       i %% 20 = 0
FROM unnest(%(repositories)s::bigint[]) WITH ORDINALITY AS r(id, ordinal)
JOIN repositories rp ON rp.id = r.id
JOIN projects p ON p.id = rp.project_id
CROSS JOIN generate_series(%(commits_each)s, 1, -1) AS i
CROSS JOIN LATERAL (
    -- Whole seconds, as git records them, and a few hours apart between repositories: commits of
    -- different repositories at the same instant would be deduplicated by the time indexes, which
    -- real histories are not.
    SELECT (i * 13 + r.ordinal) %% 40 AS a,
           date_trunc('second', now()
               - (%(commits_each)s - i)::float / %(commits_each)s * %(days)s * interval '1 day'
               - ((r.ordinal * 7919 + i * 104729) %% 14400) * interval '1 second') AS at
) AS pick
ORDER BY r.ordinal, i DESC
"""  # noqa: S608 (constant fragments; the values are parameters)

# Mostly modifications; additions, deletions, renames (with the old path) and binary files (no line
# counts) in the proportions of a real history.
_CHANGES_SQL = f"""
INSERT INTO file_changes (commit_id, repository_id, path, old_path, change_type, added, deleted, is_binary)
SELECT c.id, c.repository_id, {_PATH_SQL.format(p="pn")},
       CASE WHEN kind = 2 THEN {_PATH_SQL.format(p="((pn + 1) %% %(paths)s)")} ELSE '' END,
       (ARRAY['M','A','R','D'])[1 + kind], CASE WHEN bin THEN NULL ELSE 1 + (c.id * 7 + k * 13) %% 60 END,
       CASE WHEN bin THEN NULL ELSE (c.id * 3 + k * 5) %% 25 END, bin
FROM commits c
CROSS JOIN LATERAL generate_series(0, c.files_changed - 1) AS k
CROSS JOIN LATERAL (
    SELECT {_PATH_NUMBER} AS pn,
           CASE WHEN (c.id + k) %% 50 < 44 THEN 0 WHEN (c.id + k) %% 50 < 48 THEN 1
                WHEN (c.id + k) %% 50 = 48 THEN 2 ELSE 3 END AS kind,
           (c.id + k * 11) %% 100 = 0 AS bin
) AS pick
ORDER BY c.id, k
"""  # noqa: S608 (constant fragments; the values are parameters)

# What ingestion's grouped pass leaves (repos.ingestion.writers.file_histories_rebuild).
_HISTORIES_SQL = """
INSERT INTO file_histories (repository_id, path, churn, commit_count, last_changed_at, updated_in_run)
SELECT fc.repository_id, fc.path, SUM(COALESCE(fc.added, 0) + COALESCE(fc.deleted, 0)), COUNT(*),
       MAX(c.timestamp), 1
FROM file_changes fc JOIN commits c ON c.id = fc.commit_id
GROUP BY fc.repository_id, fc.path
ORDER BY fc.repository_id, fc.path
"""

# The tree at the tip: five paths in six (the rest were deleted on the way), with their figures.
_FILES_SQL = """
INSERT INTO files (project_id, repository_id, path, language, size, lines, is_binary, churn,
                   commit_count, last_changed_at, seen_in_run)
SELECT r.project_id, h.repository_id, h.path,
       (ARRAY['Python','TypeScript','Go','Rust','Java','Markdown'])[1 + h.id %% 6],
       (40 + h.churn %% 1500) * 32, 40 + h.churn %% 1500, false, h.churn, h.commit_count,
       h.last_changed_at, 1
FROM file_histories h JOIN repositories r ON r.id = h.repository_id
WHERE h.id %% 6 <> 0
ORDER BY h.id
"""

# The task each message names (``... layer (S0001-123)``), as ingestion links it.
_LINKS_SQL = """
INSERT INTO commit_task_links (commit_id, task_id, action, status, minutes, outcome, note, created_at)
SELECT c.id, t.id, 'reference', '', 0, 'history', '', c.timestamp
FROM commits c
JOIN repositories r ON r.id = c.repository_id
JOIN tasks t ON t.project_id = r.project_id
 AND t.number = split_part(split_part(split_part(split_part(c.message, E'\\n', 1), ' layer (', 2),
                                      ')', 1), '-', 2)::int
ORDER BY c.id
"""

# Each task's history as the task services write it: created in the backlog (the project's tasks spread
# over the five years, oldest first), two in three started three days later, one in three done ten days
# after that (never after now), so the task analytics and the portfolio's closings read real events.
# The statuses match the tasks' (slice_fill). The moments are whole seconds apart between tasks.
_TASK_EVENTS_SQL = """
INSERT INTO task_events (task_id, project_id, kind, source, from_status, to_status, commit_sha, data,
                         created_at)
SELECT t.id, t.project_id, step.kind, 'system', step.from_status, step.to_status, '', '{}'::jsonb,
       LEAST(now(), born.at + step.after)
FROM tasks t
JOIN repositories r ON r.project_id = t.project_id
CROSS JOIN LATERAL (
    SELECT date_trunc('second', now() - (%(tasks)s - t.number)::float / %(tasks)s * %(days)s
                                        * interval '1 day') AS at
) AS born
CROSS JOIN LATERAL (VALUES
    ('created', '', 'backlog', interval '0 days', true),
    ('status_changed', 'backlog', 'in_progress', interval '3 days', t.number %% 3 <> 0),
    ('status_changed', 'in_progress', 'done', interval '13 days', t.number %% 3 = 1)
) AS step(kind, from_status, to_status, after, happened)
WHERE r.id = ANY(%(repositories)s) AND step.happened
ORDER BY 9, t.id
"""


# One task in eight is a subtask, as real projects split work: every eighth task, two by two under a
# top-level task of the same project created just before them (8 and 16 under 7, 24 and 32 under 23, ...).
# One level deep, as the progress rollup reads it; tasks.services.task_parent_validate holds. Their
# history is written like every other task's (_TASK_EVENTS_SQL), so the rollup's subtask side is
# explained on real rows, not on an empty set.
_SUBTASKS_SQL = """
UPDATE tasks t SET parent_id = p.id
FROM tasks p
WHERE t.project_id = ANY(%(projects)s) AND t.number %% 8 = 0
  AND p.project_id = t.project_id AND p.number = t.number - 1 - 8 * ((t.number / 8 + 1) %% 2)
"""


def slice_task_parent(number: int) -> int | None:
    """The number of the parent of task ``number`` of a slice's project, None for a top-level task."""
    if number % 8:
        return None
    return number - 1 - 8 * ((number // 8 + 1) % 2)


def slice_task_status(number: int) -> str:
    """The status of task ``number`` of a slice's project, the last its events moved it to."""
    return ("backlog", "done", "in_progress")[number % 3]


FILL_STEPS = [
    ("commits", _COMMITS_SQL),
    ("file_changes", _CHANGES_SQL),
    ("file_histories", _HISTORIES_SQL),
    ("files", _FILES_SQL),
    ("commit_task_links", _LINKS_SQL),
    ("task_events", _TASK_EVENTS_SQL),
]


@dataclass
class FillStep:
    """One table's fill: its rows, the seconds and the WAL bytes the INSERT took."""

    table: str
    rows: int
    seconds: float
    wal_bytes: int


def cursor_json(sql: str, params: Any = None) -> Any:
    """The first column of the one row ``sql`` answers (an EXPLAIN ... FORMAT JSON)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        value = cursor.fetchone()[0]
    return json.loads(value) if isinstance(value, str) else value


def scalar(sql: str, params: Any = None) -> Any:
    """The one value ``sql`` answers."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def slice_fill(size: Slice) -> tuple[list[int], list[FillStep]]:
    """Projects, repositories and tasks through the ORM, the subtasks' parents, then the five big tables
    and the tasks' events in SQL; returns the repositories' ids and what each table's fill took."""
    # Here, not at the top: benchmarks/scale.py reads this module's sizes before it sets Django up.
    from projects.models import Project  # noqa: PLC0415
    from repos.models import Repository  # noqa: PLC0415
    from tasks.models import Task  # noqa: PLC0415

    repository_ids, project_ids = [], []
    for number in range(1, size.repositories + 1):
        project = Project.objects.create(name=f"Scale project {number}", key=f"S{number:04d}")
        project_ids.append(project.pk)
        Task.objects.bulk_create(
            Task(project=project, number=n, title=f"Task {n} of {project.key}", status=slice_task_status(n))
            for n in range(1, size.tasks_each + 1)
        )
        Project.objects.filter(pk=project.pk).update(last_task_number=size.tasks_each)
        repository = Repository.objects.create(
            project=project,
            name=f"scale-{number:04d}",
            kind=Repository.Kind.REMOTE,
            source=f"https://git.example.com/scale/{number:04d}.git",
            default_branch="main",
        )
        repository_ids.append(repository.pk)
    with connection.cursor() as cursor:
        cursor.execute(_SUBTASKS_SQL, {"projects": project_ids})
    params = {
        "repositories": repository_ids,
        "commits_each": size.commits_each,
        "changes": CHANGES_PER_COMMIT,
        "paths": size.paths_each,
        "tasks": size.tasks_each,
        "days": HISTORY_DAYS,
    }
    steps = []
    with connection.cursor() as cursor:
        for table in TABLES:
            # Until the measurement's own VACUUM: the plans "before VACUUM" are of tables autovacuum has
            # not visited yet (as the rows ingested since its last pass are), not of whenever it came by.
            cursor.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        cursor.execute("SET synchronous_commit = off")  # a scratch database: no flush per statement
        cursor.execute("SET work_mem = '256MB'")  # the grouped pass of file_histories sorts in memory
    for table, sql in FILL_STEPS:
        started = time.perf_counter()
        # EXPLAIN (ANALYZE, WAL) runs the INSERT and reports the WAL this statement wrote, and only it:
        # the cluster's own WAL position moves with every other session on the server.
        plan = cursor_json(f"EXPLAIN (ANALYZE, WAL, TIMING OFF, FORMAT JSON) {sql}", params)[0]["Plan"]
        seconds = time.perf_counter() - started
        rows = scalar(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 (a constant table name)
        steps.append(FillStep(table, rows, seconds, int(plan.get("WAL Bytes", 0))))
    return repository_ids, steps


class ScratchDatabaseRefused(Exception):
    """The scratch database cannot be (re)created: it is somebody's data, or another run holds it."""


def scratch_comment(owner: str) -> str:
    """The comment written on a scratch database when ``owner`` creates it: a database without it is
    somebody's data, never dropped."""
    return f"scratch database of {owner}"


def scratch_database_claim(*, server: str, name: str, owner: str) -> Any:
    """Create database ``name`` afresh on ``server`` (a conninfo of the maintenance database), after
    making sure it is a scratch database: an existing one is dropped only when ``owner`` created it (its
    comment says so), and never while another run of ``owner`` uses it.

    Returns the connection that holds the claim (a session advisory lock on the name): keep it open to
    the end of the run, so a second run on the same name stops at once instead of dropping the first's
    database under it. ScratchDatabaseRefused says why not; psycopg.OperationalError when the server
    cannot be reached.
    """
    comment = scratch_comment(owner)
    holder = psycopg.connect(server, autocommit=True, connect_timeout=10)
    claimed = holder.execute(
        "SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))", [owner, name]
    ).fetchone()
    if not (claimed and claimed[0]):
        holder.close()
        raise ScratchDatabaseRefused(
            f"another run of {owner} is using database {name}: wait for it to end, or give it a database "
            "name of its own."
        )
    try:
        row = holder.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if row is not None and row[0] != comment:
            raise ScratchDatabaseRefused(
                f"database {name} exists and was not created by {owner}: it is not dropped. Give it a "
                "database name of its own."
            )
        quoted = '"' + name.replace('"', '""') + '"'
        holder.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        holder.execute(f"CREATE DATABASE {quoted}")
        holder.execute(f"COMMENT ON DATABASE {quoted} IS '{comment}'")
    except BaseException:
        holder.close()
        raise
    return holder


def scratch_database_drop(*, server: str, name: str) -> None:
    """Drop the scratch database ``name`` (its claim is the caller's)."""
    quoted = '"' + name.replace('"', '""') + '"'
    with psycopg.connect(server, autocommit=True, connect_timeout=10) as maintenance:
        maintenance.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
