"""Bulk writers for ingestion: the fastest path each database offers, idempotent on every one.

PostgreSQL gets ``COPY`` into a transaction-scoped temporary table followed by one
``INSERT ... SELECT ... ON CONFLICT DO NOTHING``; MariaDB and SQLite get multi-row inserts with
conflicts ignored. Either way a chunk written twice (a redelivered Celery task) adds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import IntegrityError, OperationalError, connection, transaction

from repos.gitlog import ParsedChange, ParsedCommit
from repos.models import Commit, CommitTaskLink, File, FileChange, FileHistory

# Text columns are bounded by the schema; git values longer than that are cut, never rejected.
_COMMIT_LIMITS = {"author_name": 255, "author_email": 255, "committer_name": 255, "committer_email": 255}
_PATH_LIMIT = 1024


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[:limit]


def _commit_row(repository_id: int, commit: ParsedCommit) -> dict[str, Any]:
    return {
        "repository_id": repository_id,
        "sha": commit.sha,
        "parents": commit.parents,
        "author_name": _cut(commit.author_name, _COMMIT_LIMITS["author_name"]),
        "author_email": _cut(commit.author_email, _COMMIT_LIMITS["author_email"]),
        "authored_at": commit.authored_at,
        "committer_name": _cut(commit.committer_name, _COMMIT_LIMITS["committer_name"]),
        "committer_email": _cut(commit.committer_email, _COMMIT_LIMITS["committer_email"]),
        "timestamp": commit.timestamp,
        "message": commit.message,
        "additions": commit.additions,
        "deletions": commit.deletions,
        "files_changed": len(commit.changes),
        "is_merge": len(commit.parents) > 1,
    }


def _commit_paths(commit: ParsedCommit) -> Iterable[tuple[str, ParsedChange]]:
    """The paths a commit changed, each once (git can list a path twice, for copies), cut to the schema."""
    seen: set[str] = set()
    for change in commit.changes:
        path = _cut(change.path, _PATH_LIMIT)
        if path not in seen:
            seen.add(path)
            yield path, change


def _change_rows(
    repository_id: int, commits: Sequence[ParsedCommit], ids: dict[str, int]
) -> Iterable[dict[str, Any]]:
    for commit in commits:
        for path, change in _commit_paths(commit):
            yield {
                "commit_id": ids[commit.sha],
                "repository_id": repository_id,
                "path": path,
                "old_path": _cut(change.old_path, _PATH_LIMIT),
                "change_type": change.change_type,
                "added": change.added,
                "deleted": change.deleted,
                "is_binary": change.is_binary,
            }


_COMMIT_COLUMNS = [
    "repository_id", "sha", "parents", "author_name", "author_email", "authored_at", "committer_name",
    "committer_email", "timestamp", "message", "additions", "deletions", "files_changed", "is_merge",
]  # fmt: skip
_CHANGE_COLUMNS = [
    "commit_id",
    "repository_id",
    "path",
    "old_path",
    "change_type",
    "added",
    "deleted",
    "is_binary",
]


@dataclass(frozen=True)
class CommitsWritten:
    """What ``commits_write`` did: every commit's row id, the shas it added, and what those brought."""

    changes: int  # file changes of the commits it added
    ids: dict[str, int]
    added: frozenset[str]
    lines_added: int
    lines_deleted: int


def commits_write(*, repository_id: int, commits: Sequence[ParsedCommit]) -> CommitsWritten:
    """Store ``commits`` and their file changes (those already stored are left as they are)."""
    if not commits:
        return CommitsWritten(0, {}, frozenset(), 0, 0)
    shas = [commit.sha for commit in commits]
    if connection.vendor == "postgresql":
        written = _commits_copy_new(repository_id, commits)
        if written is not None:
            return written
        commit_rows = [_commit_row(repository_id, commit) for commit in commits]
        # Some commits are stored already (a chunk delivered again, history walked again after a
        # force push): the conflict-skipping path, which says which rows it inserted.
        inserted = _copy_insert(
            "commits",
            _COMMIT_COLUMNS,
            commit_rows,
            conflict="(repository_id, sha)",
            json_columns={"parents"},
            returning="sha, id",
        )
        added = frozenset(sha for sha, _ in inserted)
        ids = _commit_ids(repository_id, shas)
        change_rows = list(_change_rows(repository_id, commits, ids))
        _copy_insert("file_changes", _CHANGE_COLUMNS, change_rows, conflict="(commit_id, path)")
        return _written(commits, ids, added)
    else:
        before = _commit_ids(repository_id, shas)
        new_rows = [_commit_row(repository_id, c) for c in commits if c.sha not in before]
        stored = _commits_insert_ignoring(new_rows)
        if stored != len(new_rows):
            # Another transaction stored some of these commits between the look-up and the insert (two
            # runs at once after a stale takeover): which ones cannot be told, and the running totals
            # must count each commit once. Undone and retried as a transient error, it sees them stored.
            raise OperationalError(
                f"{len(new_rows) - stored} of the chunk's commits were stored meanwhile by another run"
            )
        ids = _commit_ids(repository_id, shas)
        added = frozenset(row["sha"] for row in new_rows)
        change_rows = list(_change_rows(repository_id, commits, ids))
        FileChange.objects.bulk_create(
            [FileChange(**row) for row in change_rows], ignore_conflicts=True, batch_size=500
        )
    return _written(commits, ids, added)


def _written(commits: Sequence[ParsedCommit], ids: dict[str, int], added: frozenset[str]) -> CommitsWritten:
    """What the chunk stored: a commit's file changes are written with it, so they are new with it."""
    new = [commit for commit in commits if commit.sha in added]
    return CommitsWritten(
        changes=sum(sum(1 for _ in _commit_paths(commit)) for commit in new),
        ids=ids,
        added=added,
        lines_added=sum(commit.additions for commit in new),
        lines_deleted=sum(commit.deletions for commit in new),
    )


def _commits_insert_ignoring(rows: list[dict[str, Any]]) -> int:
    """MariaDB and SQLite: insert commit rows, skipping those already there; return how many went in."""
    if not rows:
        return 0
    verb = "INSERT IGNORE" if connection.vendor == "mysql" else "INSERT OR IGNORE"
    columns = ", ".join(connection.ops.quote_name(column) for column in _COMMIT_COLUMNS)
    adapt = connection.ops.adapt_datetimefield_value
    inserted = 0
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 500):
            batch = rows[start : start + 500]
            values = ", ".join([f"({', '.join(['%s'] * len(_COMMIT_COLUMNS))})"] * len(batch))
            parameters = [
                json.dumps(row[column])
                if column == "parents"
                else adapt(row[column])
                if column in ("authored_at", "timestamp")
                else row[column]
                for row in batch
                for column in _COMMIT_COLUMNS
            ]
            cursor.execute(f"{verb} INTO commits ({columns}) VALUES {values}", parameters)
            inserted += cursor.rowcount
    return inserted


def _commits_copy_new(repository_id: int, commits: Sequence[ParsedCommit]) -> CommitsWritten | None:
    """PostgreSQL, when none of ``commits`` is stored yet (the usual case): the fastest path there is.

    Their ids are taken from the table's sequence first, so commits and file changes are both copied
    straight into their tables, as COPY text built here without a Python object per row. None when a
    commit is stored already, or when another delivery of the chunk stored one meanwhile (the unique
    key refuses the copy, which is undone to its savepoint): the caller takes the conflict-skipping
    path.
    """
    shas = [commit.sha for commit in commits]
    if _commit_ids(repository_id, shas):
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence('commits', 'id')) FROM generate_series(1, %s)",
            [len(commits)],
        )
        ids = {sha: row[0] for sha, row in zip(shas, cursor.fetchall(), strict=True)}
        commit_text, change_text = _copy_text_of(repository_id, commits, ids)
        try:
            with transaction.atomic():
                with cursor.cursor.copy(
                    f"COPY commits (id, {', '.join(_COMMIT_COLUMNS)}) FROM STDIN"
                ) as copy:
                    copy.write(commit_text)
                with cursor.cursor.copy(
                    f"COPY file_changes ({', '.join(_CHANGE_COLUMNS)}) FROM STDIN"
                ) as copy:
                    copy.write(change_text)
        except (IntegrityError, psycopg.IntegrityError):  # the COPY runs on psycopg's own cursor
            return None
    return _written(commits, ids, frozenset(shas))


# COPY's text format: a backslash, a tab, a newline or a carriage return inside a value is escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_NULL = "\\N"


def _copy_value(value: str) -> str:
    return (
        value.translate(_COPY_ESCAPES)
        if ("\\" in value or "\t" in value or "\n" in value or "\r" in value)
        else value
    )


def _copy_text_of(
    repository_id: int, commits: Sequence[ParsedCommit], ids: dict[str, int]
) -> tuple[str, str]:
    """The COPY text of ``commits`` (with their ids) and of their file changes."""
    commit_lines: list[str] = []
    change_lines: list[str] = []
    repository = str(repository_id)
    for commit in commits:
        commit_id = str(ids[commit.sha])
        for path, change in _commit_paths(commit):
            change_lines.append(
                "\t".join(
                    (
                        commit_id,
                        repository,
                        _copy_value(path),
                        _copy_value(_cut(change.old_path, _PATH_LIMIT)),
                        change.change_type,
                        _COPY_NULL if change.added is None else str(change.added),
                        _COPY_NULL if change.deleted is None else str(change.deleted),
                        "t" if change.added is None else "f",
                    )
                )
            )
        commit_lines.append(
            "\t".join(
                (
                    commit_id,
                    repository,
                    commit.sha,
                    _copy_value(json.dumps(commit.parents)),
                    _copy_value(_cut(commit.author_name, _COMMIT_LIMITS["author_name"])),
                    _copy_value(_cut(commit.author_email, _COMMIT_LIMITS["author_email"])),
                    commit.authored_at.isoformat(),
                    _copy_value(_cut(commit.committer_name, _COMMIT_LIMITS["committer_name"])),
                    _copy_value(_cut(commit.committer_email, _COMMIT_LIMITS["committer_email"])),
                    commit.timestamp.isoformat(),
                    _copy_value(commit.message),
                    str(commit.additions),
                    str(commit.deletions),
                    str(len(commit.changes)),
                    "t" if len(commit.parents) > 1 else "f",
                )
            )
        )
    ending = "\n"
    return ending.join(commit_lines) + ending, ending.join(change_lines) + ending if change_lines else ""


def _commit_ids(repository_id: int, shas: list[str]) -> dict[str, int]:
    """{sha: id} of the chunk's commits, whether this chunk or an earlier delivery inserted them."""
    if connection.vendor == "postgresql":
        # One array parameter instead of thousands of placeholders (which the driver must split).
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT sha, id FROM commits WHERE repository_id = %s AND sha = ANY(%s)",
                [repository_id, shas],
            )
            return dict(cursor.fetchall())
    return dict(Commit.objects.filter(repository_id=repository_id, sha__in=shas).values_list("sha", "id"))


def _copy_insert(
    table: str,
    columns: list[str],
    rows: list[dict[str, Any]],
    *,
    conflict: str,
    json_columns: frozenset[str] | set[str] = frozenset(),
    action: str = "DO NOTHING",
    returning: str = "",
) -> list[tuple[Any, ...]]:
    """PostgreSQL: COPY rows into a temporary twin of ``table``, then insert them.

    ``conflict`` names the unique key; ``action`` says what a row that is already there gets (by
    default nothing, so a chunk written twice adds nothing); ``returning`` lists columns of the rows
    actually inserted to return.
    """
    if not rows:
        return []
    staging = f"apm_staging_{table}"
    column_list = ", ".join(columns)
    with connection.cursor() as cursor:
        # Same column types as the target, none of its constraints; emptied again after the insert.
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} AS "  # noqa: S608 (fixed identifiers)
            f"SELECT {column_list} FROM {table} WITH NO DATA"
        )
        _copy_rows(cursor, staging, columns, rows, json_columns)
        cursor.execute(
            f"INSERT INTO {table} ({column_list}) SELECT {column_list} FROM {staging} "  # noqa: S608
            f"ON CONFLICT {conflict} {action}" + (f" RETURNING {returning}" if returning else "")
        )
        inserted = cursor.fetchall() if returning else []
        cursor.execute(f"TRUNCATE {staging}")
    return inserted


def _copy_direct(table: str, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """PostgreSQL: COPY rows straight into ``table`` (only for rows that cannot exist yet)."""
    with connection.cursor() as cursor:
        _copy_rows(cursor, table, columns, rows, frozenset())


def _copy_rows(
    cursor: Any,
    table: str,
    columns: list[str],
    rows: list[dict[str, Any]],
    json_columns: frozenset[str] | set[str],
) -> None:
    with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(
                [json.dumps(row[column]) if column in json_columns else row[column] for column in columns]
            )


_FILE_COLUMNS = [
    "project_id", "repository_id", "path", "language", "size", "lines", "is_binary", "seen_in_run",
    "churn", "commit_count",
]  # fmt: skip
_FILE_REFRESHED = ["project_id", "language", "size", "lines", "is_binary", "seen_in_run"]


def files_write(*, project_id: int, repository_id: int, run_id: int, rows: list[dict[str, Any]]) -> None:
    """Insert or refresh the files of one slice of the tree, marking them as seen by ``run_id``."""
    if not rows:
        return
    # Two paths cut to the same first 1024 characters are one row (the first): an upsert may not touch
    # a row twice in one statement.
    unique: dict[str, dict[str, Any]] = {}
    for row in rows:
        unique.setdefault(_cut(row["path"], _PATH_LIMIT), row)
    rows = list(unique.values())
    full_rows = [
        {
            **row,
            "path": _cut(row["path"], _PATH_LIMIT),
            "project_id": project_id,
            "repository_id": repository_id,
            "seen_in_run": run_id,
            "churn": 0,
            "commit_count": 0,
        }
        for row in rows
    ]
    if connection.vendor == "postgresql":
        refreshed = ", ".join(f"{column} = EXCLUDED.{column}" for column in _FILE_REFRESHED)
        _copy_insert(
            "files",
            _FILE_COLUMNS,
            full_rows,
            conflict="(repository_id, path)",
            action=f"DO UPDATE SET {refreshed}",
        )
        return
    # MySQL/MariaDB upsert on any unique key (ON DUPLICATE KEY UPDATE) and take no conflict target.
    target = ["repository", "path"] if connection.features.supports_update_conflicts_with_target else None
    File.objects.bulk_create(
        [File(**row) for row in full_rows],
        update_conflicts=True,
        unique_fields=target,
        update_fields=[column.removesuffix("_id") for column in _FILE_REFRESHED],
        batch_size=500,
    )


def files_delete(*, repository_id: int, paths: list[str]) -> int:
    """Remove paths that left the tree from the file index; return how many rows went."""
    deleted = 0
    for start in range(0, len(paths), 500):
        batch = [_cut(path, _PATH_LIMIT) for path in paths[start : start + 500]]
        deleted += File.objects.filter(repository_id=repository_id, path__in=batch).delete()[0]
    return deleted


# The figures of some commits per path, from their file changes, added to the running totals: what is
# there plus what the commits bring; the latest change wins. Grouped in the database (the file changes
# were just written there), read through file_changes' (commit_id, path) key.
_HISTORY_SELECT = """
SELECT fc.repository_id, fc.path, SUM(COALESCE(fc.added, 0) + COALESCE(fc.deleted, 0)), COUNT(*),
       MAX(c.timestamp), %s
FROM file_changes fc JOIN commits c ON c.id = fc.commit_id
WHERE {where}
GROUP BY fc.repository_id, fc.path
"""
_HISTORY_INSERT = (
    "INSERT INTO file_histories "
    "(repository_id, path, churn, commit_count, last_changed_at, updated_in_run) {select} {upsert}"
)
_HISTORY_UPSERT = {
    "postgresql": (
        "ON CONFLICT (repository_id, path) DO UPDATE SET churn = file_histories.churn + EXCLUDED.churn, "
        "commit_count = file_histories.commit_count + EXCLUDED.commit_count, "
        "last_changed_at = GREATEST(file_histories.last_changed_at, EXCLUDED.last_changed_at), "
        "updated_in_run = EXCLUDED.updated_in_run"
    ),
    "mysql": (
        "ON DUPLICATE KEY UPDATE churn = churn + VALUES(churn), "
        "commit_count = commit_count + VALUES(commit_count), "
        "last_changed_at = GREATEST(COALESCE(last_changed_at, VALUES(last_changed_at)), "
        "VALUES(last_changed_at)), "
        "updated_in_run = VALUES(updated_in_run)"
    ),
    "sqlite": (
        "ON CONFLICT (repository_id, path) DO UPDATE SET churn = churn + excluded.churn, "
        "commit_count = commit_count + excluded.commit_count, "
        "last_changed_at = MAX(COALESCE(last_changed_at, excluded.last_changed_at), "
        "excluded.last_changed_at), "
        "updated_in_run = excluded.updated_in_run"
    ),
}


def file_histories_chunk_select(*, run_id: int, commit_ids: Sequence[int]) -> tuple[str, list[Any]]:
    """PostgreSQL: the per-path totals of the commits ``commit_ids``, and its parameters.

    The chunk's ids are named on both sides of the join. With them on ``file_changes`` only, PostgreSQL
    hashed the whole ``commits`` table to join a chunk's 2,000 commits (152 ms against 46 ms through
    its primary key at a 1/1000 slice, 485 against 259 ms at 1/100: benchmarks/scale.py), a cost
    that grows with every repository ingested, paid 50,000 times by a full re-ingestion at scale.
    """
    ids = list(commit_ids)
    return _HISTORY_SELECT.format(where="fc.commit_id = ANY(%s) AND c.id = ANY(%s)"), [run_id, ids, ids]


def file_histories_add(*, run_id: int, commit_ids: Sequence[int]) -> None:
    """Add the figures of the commits ``commit_ids`` to their paths' running totals, marked with ``run_id``.

    Not idempotent by itself: the caller passes the commits it inserted, once per chunk, under the
    run's row lock (``repos.ingestion.pipeline.ingestion_commits_chunk``).
    """
    if not commit_ids:
        return
    upsert = _HISTORY_UPSERT[connection.vendor]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            select, params = file_histories_chunk_select(run_id=run_id, commit_ids=commit_ids)
            cursor.execute(_HISTORY_INSERT.format(select=select, upsert=upsert), params)
            return
        # Batches of ids, each grouped on its own: a path in two batches adds up the same.
        for start in range(0, len(commit_ids), 500):
            batch = list(commit_ids[start : start + 500])
            select = _HISTORY_SELECT.format(where=f"fc.commit_id IN ({', '.join(['%s'] * len(batch))})")
            cursor.execute(_HISTORY_INSERT.format(select=select, upsert=upsert), [run_id, *batch])


def file_histories_rebuild(*, repository_id: int, run_id: int) -> None:
    """Recompute the totals of every path of ``repository_id`` from its stored file changes.

    For runs that walk the whole branch (the first, or after a force push): they read the history
    anyway, and one grouped pass costs less than adding chunk by chunk; it also leaves the totals
    exactly what the stored history says, whatever happened before.
    """
    FileHistory.objects.filter(repository_id=repository_id).delete()
    select = _HISTORY_SELECT.format(where="fc.repository_id = %s")
    with connection.cursor() as cursor:
        cursor.execute(_HISTORY_INSERT.format(select=select, upsert=""), [run_id, repository_id])


# Copy the running totals onto the file index, for the rows a run touched only: the paths its commits
# changed (file_histories.updated_in_run, idx_file_histories_run) and the files it indexed
# (files.seen_in_run, idx_files_repo_seen). Each side is found through its index, the other through
# its (repository_id, path) unique key.
_REFRESH_SET = "churn = h.churn, commit_count = h.commit_count, last_changed_at = h.last_changed_at"
_REFRESH_SQL = {
    "mysql": (
        "UPDATE files JOIN file_histories h ON h.repository_id = files.repository_id AND h.path = files.path "  # noqa: S608
        f"SET files.{_REFRESH_SET.replace(', ', ', files.')} WHERE files.repository_id = %s AND {{where}}"
    ),
    "default": (
        f"UPDATE files SET {_REFRESH_SET} FROM file_histories h "  # noqa: S608 (constant text)
        "WHERE files.repository_id = %s AND h.repository_id = files.repository_id AND h.path = files.path "
        "AND {where}"
    ),
}


def files_history_refresh(*, repository_id: int, run_id: int, whole_tree: bool) -> int:
    """Bring the file index's history figures up to date after run ``run_id``; return the files kept.

    ``whole_tree``: the run listed every path at the tip, so files it did not see have left the tree.
    """
    if whole_tree:
        File.objects.filter(repository_id=repository_id).exclude(seen_in_run=run_id).delete()
    sql = _REFRESH_SQL.get(connection.vendor, _REFRESH_SQL["default"])
    # After a whole tree, every file was indexed by the run: one pass over them covers the paths its
    # commits changed too. Otherwise both: a path can change in history and not in the tree (an edit
    # and its revert), and a path can come back to the tree unchanged by the run's commits.
    filters = (
        ["files.seen_in_run = %s"] if whole_tree else ["h.updated_in_run = %s", "files.seen_in_run = %s"]
    )
    with connection.cursor() as cursor:
        for where in filters:
            cursor.execute(sql.format(where=where), [repository_id, run_id])
    return File.objects.filter(repository_id=repository_id).count()


# A run that adds more than this share of what the planner believes file_changes holds moves the
# estimate far enough to change plans (autovacuum's own rule is 10% plus 50 rows).
ANALYZE_SHARE = 0.2


def statistics_outdated(*, rows_added: int, floor: int) -> bool:
    """PostgreSQL: whether ``rows_added`` (at least ``floor``) outgrow the planner's picture of the tables.

    A table never analyzed is estimated at -1 rows, which the planner takes for "tiny": the analytics over
    a first ingestion of 10,000 commits were planned as nested loops (change coupling: 21-42 s instead
    of milliseconds) until autovacuum came by, and where autovacuum is off, for ever.
    """
    if connection.vendor != "postgresql" or rows_added < floor:
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'file_changes'::regclass")
        (estimated,) = cursor.fetchone()
    return estimated < 0 or rows_added > ANALYZE_SHARE * estimated


def tables_analyze() -> None:
    """PostgreSQL: refresh the planner's statistics of the tables ingestion fills (a sample, not a scan).

    A small sample (3,000 rows a table instead of 30,000) is enough to tell the planner how big the
    tables are, in a third of the time; autovacuum's own analyze refines it later.
    """
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL default_statistics_target = 10")
            cursor.execute("ANALYZE commits, file_changes, files, file_histories, commit_task_links")


def chunk_durability_relax() -> None:
    """PostgreSQL: let the current transaction commit without waiting for its WAL flush.

    Safe for ingestion chunks only: a database crash can lose the last chunks written this way, but
    never corrupts anything, and the run that wrote them is not finished (its tip is recorded by a
    normally committed finish step, which flushes everything before it), so the next run writes
    them again. It saves a disk flush per chunk.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


_LINK_COLUMNS = ["commit_id", "task_id", "action", "status", "minutes", "outcome", "note", "created_at"]


def links_write(*, rows: list[dict[str, Any]], new_commits: bool = False) -> int:
    """Insert commit-task links, skipping any already there; return how many were new.

    A history of 100,000 commits can link as many: on PostgreSQL they are copied in like commits (model
    instances and a multi-row INSERT cost several times more); elsewhere one multi-row insert per 500.
    ``new_commits``: the commits were inserted by the caller's own transaction, so no link to them can
    exist yet, and PostgreSQL copies the links straight into their table.
    """
    if not rows:
        return 0
    if connection.vendor == "postgresql":
        if new_commits:
            _copy_direct("commit_task_links", _LINK_COLUMNS, rows)
            return len(rows)
        inserted = _copy_insert(
            "commit_task_links", _LINK_COLUMNS, rows, conflict="(commit_id, task_id)", returning="id"
        )
        return len(inserted)
    CommitTaskLink.objects.bulk_create(
        [CommitTaskLink(**row) for row in rows], ignore_conflicts=True, batch_size=500
    )
    return len(rows)
