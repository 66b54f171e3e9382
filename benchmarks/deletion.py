"""A project's deletion in batches against Django's collector, on two identical projects.

    .venv/bin/python benchmarks/deletion.py                      # 2 repositories x 100,000 file changes
    .venv/bin/python benchmarks/deletion.py --changes 300000 --repositories 3

A scratch PostgreSQL database (``apm_bench_deletion``) gets two projects with the same rows: each has
``--repositories`` repositories of ``--changes`` file changes (5 per commit) and a file index, plus 1,000
tasks with 5 events each and links from commits to them. Then, in one run, it deletes:

  (a) the first project as APM does (projects.deletion): the request marks it (the task's message is
      dropped, so the batches are timed alone), then ``project_delete_batches`` deletes everything in
      batches of ``APM_DELETE_BATCH_ROWS`` (10,000);
  (b) the second project through Django's collector, ``project.delete()``, what the admin and the API
      did before (every row of every repository read into memory, then deleted, in one transaction).

For each: the wall time, the statements sent, the longest transaction (the time locks were held), and
how much the process's peak memory (maximum RSS) grew. (a) runs first, so the growth measured for (b)
is what the collector needs beyond the batches' own peak.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import database_reset  # noqa: E402

CHANGES_PER_COMMIT = 5
TASKS = 1000


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--changes", type=int, default=100_000, help="file changes per repository")
    parser.add_argument("--repositories", type=int, default=2)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/apm_bench_deletion")
    return parser.parse_args()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def project_fill(name: str, *, repositories: int, changes: int) -> int:
    """A project with ``repositories`` repositories of ``changes`` file changes each; its id."""
    from django.db import connection

    from projects.services import project_create
    from repos.models import Repository
    from tasks.models import Task, TaskEvent

    project = project_create(name=name)
    tasks = Task.objects.bulk_create(
        Task(project=project, number=n, title=f"Task {n}") for n in range(1, TASKS + 1)
    )
    TaskEvent.objects.bulk_create(
        TaskEvent(task=task, project=project, kind=TaskEvent.Kind.UPDATED, source=TaskEvent.Source.API)
        for task in tasks
        for _ in range(5)
    )
    commits = changes // CHANGES_PER_COMMIT
    with connection.cursor() as cursor:
        for number in range(repositories):
            repository = Repository.objects.create(
                project=project, name=f"repo{number}", kind="remote", source=f"https://x/{name}/{number}.git"
            )
            cursor.execute(
                """
                INSERT INTO commits (repository_id, sha, parents, author_name, author_email, authored_at,
                                     committer_name, committer_email, timestamp, message, additions,
                                     deletions, files_changed, is_merge)
                SELECT %s, md5(n::text) || substr(md5((n + 1)::text), 1, 8), '[]'::jsonb, 'Author',
                       'a@example.com', timestamp '2020-01-01' + n * interval '1 minute', 'Committer',
                       'c@example.com', timestamp '2020-01-01' + n * interval '1 minute',
                       'Change ' || n, 5, 1, 5, false
                FROM generate_series(1, %s) AS n
                """,
                [repository.pk, commits],
            )
            cursor.execute(
                """
                INSERT INTO file_changes (commit_id, repository_id, path, old_path, change_type, added,
                                          deleted, is_binary)
                SELECT c.id, c.repository_id, 'src/module' || f || '/file' || (c.id %% 400) || '.py', '',
                       'M', 3, 1, false
                FROM commits c CROSS JOIN generate_series(1, %s) AS f
                WHERE c.repository_id = %s
                """,
                [CHANGES_PER_COMMIT, repository.pk],
            )
            cursor.execute(
                """
                INSERT INTO files (repository_id, project_id, path, language, size, lines, churn,
                                   commit_count, is_binary)
                SELECT %s, %s, 'src/module' || (n %% 5 + 1) || '/file' || n || '.py', 'Python', 1000, 40,
                       10, 3, false
                FROM generate_series(0, 1999) AS n
                """,
                [repository.pk, project.pk],
            )
            cursor.execute(
                """
                INSERT INTO commit_task_links (commit_id, task_id, action, status, minutes, outcome, note,
                                               created_at)
                SELECT c.id, t.id, 'reference', '', 0, 'linked', '', now()
                FROM (SELECT id, row_number() OVER (ORDER BY id) AS r FROM commits
                      WHERE repository_id = %s ORDER BY id LIMIT 2000) c
                JOIN (SELECT id, row_number() OVER (ORDER BY id) AS r FROM tasks WHERE project_id = %s) t
                  ON t.r = (c.r - 1) %% %s + 1
                """,
                [repository.pk, project.pk, TASKS],
            )
        cursor.execute("ANALYZE")
    return project.pk


@contextmanager
def counting() -> Iterator[dict[str, Any]]:
    """Count the statements sent and time the longest transaction (COMMIT to its BEGIN or first
    statement after the previous one)."""
    from django.db import connection

    figures: dict[str, Any] = {"statements": 0, "longest_transaction_s": 0.0}
    opened: list[float] = []

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        figures["statements"] += 1
        if not opened:
            opened.append(time.perf_counter())
        try:
            return execute(sql, params, many, context)
        finally:
            if connection.get_autocommit() and not connection.in_atomic_block:
                # Autocommit: the statement was its own transaction.
                figures["longest_transaction_s"] = max(
                    figures["longest_transaction_s"], time.perf_counter() - opened.pop()
                )

    def committed() -> None:
        if opened:
            figures["longest_transaction_s"] = max(
                figures["longest_transaction_s"], time.perf_counter() - opened.pop()
            )

    # The end of every transaction: Django's commit goes through the connection, not a statement.
    original_commit = connection.commit

    def commit() -> None:
        original_commit()
        committed()

    connection.commit = commit  # type: ignore[method-assign]
    try:
        with connection.execute_wrapper(wrapper):
            yield figures
    finally:
        connection.commit = original_commit  # type: ignore[method-assign]


def main() -> None:
    options = arguments()
    if not options.database_url.startswith("postgres"):
        sys.exit("this benchmark fills the tables with PostgreSQL's generate_series: give a postgres:// URL")
    database_reset(options.database_url)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DJANGO_DEBUG": "false",
            "APM_DEBUG_TOOLBAR": "false",
            "DJANGO_LOG_LEVEL": "WARNING",
            "DATABASE_URL": options.database_url,
            "DATABASE_POOL_SIZE": "2",
        }
    )
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import transaction

    from projects.deletion import project_delete_batches, project_delete_request
    from projects.models import Project
    from repos.models import FileChange

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    batched_id = project_fill("Batched", repositories=options.repositories, changes=options.changes)
    collector_id = project_fill("Collector", repositories=options.repositories, changes=options.changes)
    total = FileChange.objects.count()
    print(
        f"filled 2 projects x {options.repositories} repositories x {options.changes:,} file changes "
        f"({total:,} in all) in {time.perf_counter() - started:.1f} s; batches of "
        f"{settings.APM_DELETE_BATCH_ROWS:,} rows"
    )

    results: dict[str, dict[str, Any]] = {}
    base = peak_rss_mib()
    with transaction.atomic():
        project_delete_request(project=Project.objects.get(pk=batched_id))
        # The task's message is dropped (eager Celery would run it at the commit): timed alone below.
        transaction.get_connection().run_on_commit.clear()
    with counting() as figures:
        started = time.perf_counter()
        deleted = project_delete_batches(project_id=batched_id)
        figures["seconds"] = time.perf_counter() - started
    figures["rows"] = sum(deleted.values())
    figures["peak_rss_growth_mib"] = peak_rss_mib() - base
    results["(a) batched (projects.deletion)"] = figures

    base = peak_rss_mib()
    with counting() as figures:
        started = time.perf_counter()
        counts = Project.all_objects.get(pk=collector_id).delete()
        figures["seconds"] = time.perf_counter() - started
    figures["rows"] = counts[0]
    figures["peak_rss_growth_mib"] = peak_rss_mib() - base
    results["(b) Django's collector (project.delete())"] = figures

    assert not Project.all_objects.exists()
    assert not FileChange.objects.exists()
    print(f"{'':44} {'seconds':>8} {'rows':>9} {'statements':>10} {'longest tx s':>12} {'peak RSS +MiB':>13}")
    for name, row in results.items():
        print(
            f"{name:44} {row['seconds']:8.1f} {row['rows']:9,} {row['statements']:10,} "
            f"{row['longest_transaction_s']:12.2f} {row['peak_rss_growth_mib']:13.0f}"
        )


if __name__ == "__main__":
    main()
