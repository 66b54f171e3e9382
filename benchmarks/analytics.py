"""Hotspots, change coupling and contributor statistics on a large history, against a bare SQL COUNT.

    .venv/bin/python benchmarks/analytics.py                      # 200,000 commits, ~800,000 file changes
    .venv/bin/python benchmarks/analytics.py --commits 1000000 --rebuild

A scratch PostgreSQL database (``apm_bench_analytics``) is filled once with generated history (INSERT ...
SELECT FROM generate_series, so filling takes seconds) and reused by later runs with the same size:
one repository, a commit every 5 minutes up to now (200,000 commits span about 700 days), 150 authors,
5,000 files in 40 directories, 4 file changes a commit, a merge (no changes) every 50th commit and a
mass commit of 40 files every 1,000th. Then, in one run, it prints the median time of each selector over
the default window (the last 90 days) and over the whole history, and as the baseline, measured in the
same run on the same rows, the bare SQL the selectors cannot do without: ``COUNT(*)`` of the window's
commits joined to their file changes. The ratio says what grouping, ranking and pairing cost on top.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import database_reset, database_row  # noqa: E402
from benchmarks.measure import median_ms  # noqa: E402

FILES = 5000
AUTHORS = 150


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commits", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5, help="Timed runs per figure (median).")
    parser.add_argument("--rebuild", action="store_true", help="Drop and refill the scratch database.")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/apm_bench_analytics")
    return parser.parse_args()


def dataset_present(url: str, commits: int) -> bool:
    return database_row(url, "SELECT COUNT(*) FROM commits") == (commits,)


def fill(cursor: object, repository_id: int, project_id: int, commits: int) -> None:
    execute = cursor.execute  # type: ignore[attr-defined]
    # Commits, newest at now; merges every 50th, mass commits (40 files) every 1,000th.
    execute(
        """
        INSERT INTO commits (repository_id, sha, parents, author_name, author_email, authored_at,
                             committer_name, committer_email, timestamp, message, additions, deletions,
                             files_changed, is_merge)
        SELECT %(repo)s, md5(n::text) || substr(md5((n + 1)::text), 1, 8), '[]'::jsonb,
               'Author ' || (n %% %(authors)s), 'author' || (n %% %(authors)s) || '@example.com',
               now() - (%(commits)s - n) * interval '5 minutes', 'Committer', 'c@example.com',
               now() - (%(commits)s - n) * interval '5 minutes',
               'Change ' || n || E'\\n\\nA body of a few words describing change ' || n || '.',
               0, 0,
               CASE WHEN n %% 50 = 0 THEN 0 WHEN n %% 1000 = 1 THEN 40 ELSE 4 END,
               n %% 50 = 0
        FROM generate_series(1, %(commits)s) AS n
        """,
        {"repo": repository_id, "authors": AUTHORS, "commits": commits},
    )
    # Each commit changes files_changed distinct paths: a file picked from the commit number and its
    # neighbours at a stride of 1 to 3, so some files keep changing together.
    execute(
        """
        INSERT INTO file_changes (commit_id, repository_id, path, old_path, change_type, added, deleted,
                                  is_binary)
        SELECT c.id, c.repository_id,
               'dir' || (f %% 40) || '/file' || f || '.py', '', 'M',
               1 + (c.id * 7 + k) %% 40, (c.id * 3 + k) %% 15, false
        FROM commits c
        CROSS JOIN LATERAL generate_series(0, c.files_changed - 1) AS k
        CROSS JOIN LATERAL (
            SELECT ((c.id * 37) %% %(files)s + k * (1 + c.id %% 3)) %% %(files)s AS f
        ) AS pick
        WHERE c.repository_id = %(repo)s
        """,
        {"repo": repository_id, "files": FILES},
    )
    execute(
        """
        UPDATE commits c SET additions = s.added, deletions = s.deleted
        FROM (SELECT commit_id, SUM(added) AS added, SUM(deleted) AS deleted
              FROM file_changes GROUP BY commit_id) s
        WHERE s.commit_id = c.id
        """
    )
    execute(
        """
        INSERT INTO files (project_id, repository_id, path, language, size, lines, is_binary, churn,
                           commit_count)
        SELECT %(project)s, %(repo)s, 'dir' || (f %% 40) || '/file' || f || '.py', 'Python',
               (10 + (f * 13) %% 2000) * 30, 10 + (f * 13) %% 2000, false, 0, 0
        FROM generate_series(0, %(files)s - 1) AS f
        """,
        {"project": project_id, "repo": repository_id, "files": FILES},
    )


def main() -> None:
    options = arguments()
    if not options.database_url.startswith("postgres"):
        sys.exit("this benchmark fills the tables with PostgreSQL's generate_series: give a postgres:// URL")
    reuse = not options.rebuild and dataset_present(options.database_url, options.commits)
    if not reuse:
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
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from insights.code import change_coupling, contributor_stats, file_hotspots
    from projects.models import Project
    from projects.services import project_create
    from repos.models import Repository

    if reuse:
        repository = Repository.objects.select_related("project").get(name="bench")
        project = repository.project
        print(f"reusing {options.commits:,} commits in {options.database_url.rsplit('/', 1)[1]}")
    else:
        call_command("migrate", verbosity=0)
        project = project_create(name="Analytics benchmark")
        repository = Repository.objects.create(
            project=project, name="bench", kind="remote", source="https://x/bench.git"
        )
        started = time.perf_counter()
        with connection.cursor() as cursor:
            fill(cursor, repository.pk, project.pk, options.commits)
        connection.close()
        with connection.cursor() as cursor:
            # Visibility map and statistics, as autovacuum would leave them on a live database.
            cursor.execute("VACUUM ANALYZE commits")
            cursor.execute("VACUUM ANALYZE file_changes")
            cursor.execute("VACUUM ANALYZE files")
        print(f"filled {options.commits:,} commits in {time.perf_counter() - started:.1f} s")
    project = Project.objects.get(pk=project.pk)

    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM file_changes")
        changes_total = cursor.fetchone()[0]
    print(
        f"table: {options.commits:,} commits, {changes_total:,} file changes, {FILES:,} files, "
        f"{AUTHORS} authors"
    )

    now = timezone.now()
    windows = {
        "last 90 days": (now - dt.timedelta(days=90), now),
        "whole history": (now - dt.timedelta(days=3650), now),
    }
    for label, (since, until) in windows.items():

        def bare_count(since: dt.datetime = since, until: dt.datetime = until) -> int:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT COUNT(*) FROM commits c JOIN file_changes fc ON fc.commit_id = c.id "
                    "WHERE c.repository_id IN (SELECT id FROM repositories WHERE project_id = %s) "
                    "AND c.timestamp >= %s AND c.timestamp < %s",
                    [project.pk, since, until],
                )
                return cursor.fetchone()[0]

        rows = bare_count()
        window = {"project": project, "since": since, "until": until}
        figures = {
            "bare SQL COUNT(*) of the window's changes": median_ms(bare_count, options.repeat),
            "file_hotspots (top 50)": median_ms(lambda w=window: file_hotspots(**w), options.repeat),
            "change_coupling (top 50, min_shared 3)": median_ms(
                lambda w=window: change_coupling(**w), options.repeat
            ),
            "contributor_stats (all authors)": median_ms(
                lambda w=window: contributor_stats(**w), options.repeat
            ),
        }
        baseline = figures["bare SQL COUNT(*) of the window's changes"]
        print(f"\nwindow: {label} ({rows:,} file changes)")
        for name, ms in figures.items():
            print(f"  {name:44} {ms:9.1f} ms   x{ms / baseline:5.1f}")


if __name__ == "__main__":
    main()
