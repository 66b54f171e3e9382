"""The commit list on a table of millions of rows: APM's cursor pages against the database's own answer.

    .venv/bin/python benchmarks/api_commits.py                    # 2,000,000 commits in 4 repositories
    .venv/bin/python benchmarks/api_commits.py --commits 5000000

A scratch PostgreSQL database (``apm_bench_api``) is filled with generated commits (one INSERT ...
SELECT FROM generate_series, so filling is fast). Then, in one run, it prints the median time of:

  (a) the bare SQL a page needs: ``... WHERE repository_id = %s ORDER BY timestamp DESC, id DESC LIMIT 50``
      (the baseline);
  (b) ``GET /api/v1/commits/?repository=<id>``: the first page through the whole API (token lookup,
      permissions, filters, serialization); the ratio b/a;
  (c) the same, 2,000 pages deep, from the cursor the API handed out;
  (d) what page-number pagination would cost at that depth: ``COUNT(*)`` + ``OFFSET``, in bare SQL.

The API calls go through Django's test client in this process, so no web server or network is measured.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import database_reset  # noqa: E402
from benchmarks.measure import median_ms  # noqa: E402

PAGE = 50
DEEP_PAGES = 2000


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commits", type=int, default=2_000_000)
    parser.add_argument("--repositories", type=int, default=4)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/apm_bench_api")
    return parser.parse_args()


def main() -> None:  # noqa: PLR0915 (one linear script)
    options = arguments()
    if not options.database_url.startswith("postgres"):
        sys.exit("this benchmark fills the table with PostgreSQL's generate_series: give a postgres:// URL")
    database_reset(options.database_url)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DJANGO_DEBUG": "false",
            "APM_DEBUG_TOOLBAR": "false",
            "DJANGO_LOG_LEVEL": "WARNING",
            "DATABASE_URL": options.database_url,
            "DATABASE_POOL_SIZE": "2",
            "DJANGO_ALLOWED_HOSTS": "testserver",
            "APM_API_RATE_USER": "1000000/min",  # this measures pages, not the rate limit
        }
    )
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from apm.services import api_token_create
    from projects.models import Membership
    from projects.services import membership_set, project_create
    from repos.models import Repository

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench", "bench@example.com", "x")
    project = project_create(name="Benchmark")
    membership_set(project=project, user=user, role=Membership.Role.VIEWER)
    repositories = [
        Repository.objects.create(
            project=project, name=f"repo{n}", kind="remote", source=f"https://x/{n}.git"
        )
        for n in range(options.repositories)
    ]
    target = repositories[0].pk

    started = time.perf_counter()
    with connection.cursor() as cursor:
        # Commits spread over the repositories, one a minute, with messages and authors of typical size.
        cursor.execute(
            """
            INSERT INTO commits (repository_id, sha, parents, author_name, author_email, authored_at,
                                 committer_name, committer_email, timestamp, message, additions, deletions,
                                 files_changed, is_merge)
            SELECT %s + (n %% %s), md5(n::text) || substr(md5((n + 1)::text), 1, 8), '[]'::jsonb,
                   'Author ' || (n %% 97), 'author' || (n %% 97) || '@example.com',
                   timestamp '2020-01-01' + n * interval '1 minute', 'Committer', 'c@example.com',
                   timestamp '2020-01-01' + n * interval '1 minute',
                   'Change ' || n || E'\\n\\nA body of a few words describing change ' || n || '.',
                   n %% 50, n %% 7, 1 + n %% 5, false
            FROM generate_series(1, %s) AS n
            """,
            [repositories[0].pk, options.repositories, options.commits],
        )
        cursor.execute("ANALYZE commits")
    print(f"filled {options.commits:,} commits in {time.perf_counter() - started:.1f} s")

    _token, raw = api_token_create(user=user, name="bench")
    client = Client(HTTP_AUTHORIZATION=f"Token {raw}")

    def bare_page() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT * FROM commits WHERE repository_id = %s ORDER BY timestamp DESC, id DESC LIMIT %s",
                [target, PAGE],
            )
            cursor.fetchall()

    def api(url: str) -> Callable[[], None]:
        def call() -> None:
            response = client.get(url)
            assert response.status_code == 200, response.content[:200]

        return call

    first_url = f"/api/v1/commits/?repository={target}&page_size={PAGE}"
    url = first_url
    for _ in range(DEEP_PAGES):
        url = client.get(url).json()["next"]
    deep = urlsplit(url)
    deep_url = f"{deep.path}?{deep.query}"
    assert parse_qs(deep.query)["cursor"]

    def offset_page() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM commits WHERE repository_id = %s", [target])
            cursor.fetchone()
            cursor.execute(
                "SELECT * FROM commits WHERE repository_id = %s ORDER BY timestamp DESC, id DESC "
                "LIMIT %s OFFSET %s",
                [target, PAGE, PAGE * DEEP_PAGES],
            )
            cursor.fetchall()

    bare = median_ms(bare_page)
    first = median_ms(api(first_url))
    deep_ms = median_ms(api(deep_url))
    offset = median_ms(offset_page, repeat=5)
    per_repo = options.commits // options.repositories
    print(f"table: {options.commits:,} commits, {per_repo:,} in the listed repository, {PAGE} a page")
    print(f"(a) bare SQL, first page                        {bare:8.2f} ms")
    print(f"(b) GET /api/v1/commits/, first page            {first:8.2f} ms   b/a = {first / bare:.1f}")
    deep_label = f"page {DEEP_PAGES:,}"
    print(
        f"(c) GET /api/v1/commits/, {deep_label} by cursor  {deep_ms:8.2f} ms   c/b = {deep_ms / first:.2f}"
    )
    print(f"(d) COUNT(*) + OFFSET, {deep_label} (bare SQL)   {offset:8.2f} ms   d/c = {offset / deep_ms:.1f}")


if __name__ == "__main__":
    main()
