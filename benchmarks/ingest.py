"""Ingestion speed against git itself, measured in one run.

    .venv/bin/python benchmarks/ingest.py                     # generated 20,000-commit history
    .venv/bin/python benchmarks/ingest.py --commits 100000    # a longer one (memory must stay flat)
    .venv/bin/python benchmarks/ingest.py --files 80000 --initial-files 200   # a tree that keeps widening
    .venv/bin/python benchmarks/ingest.py /path/to/repo       # any repository

Prints, for each repository:
  (a) git log --numstat of the whole history to /dev/null (the baseline: one git process),
  (b) APM's full ingestion end to end (mirror, plan, commits, files, finish) and the ratio b/a,
  (c) an incremental run with nothing new,
  (d) peak resident memory of this process and of the git processes it started.

The database is PostgreSQL by default (a scratch database ``apm_bench`` is dropped and recreated);
``--database-url`` points elsewhere. Celery runs eagerly, in this process, so (b) is a single-process
figure; workers on more cores split the commit chunks between them.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.repogen import history_stream, repository_create  # noqa: E402


def peak_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def database_reset(url: str) -> None:
    """Drop and recreate the scratch database named in ``url`` (PostgreSQL only)."""
    if not url.startswith("postgres"):
        return
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("repository", nargs="?", help="An existing repository (default: a generated one).")
    parser.add_argument("--commits", type=int, default=20_000, help="Length of the generated history.")
    parser.add_argument("--files", type=int, default=2000, help="Distinct paths of the generated history.")
    parser.add_argument("--initial-files", type=int, default=None, help="Files of its first commit.")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/apm_bench")
    parser.add_argument("--keep", action="store_true", help="Keep the generated repository.")
    return parser.parse_args()


def main() -> None:
    options = arguments()

    workdir = Path(tempfile.mkdtemp(prefix="apm-bench-"))
    if options.repository:
        repo = Path(options.repository).resolve()
    else:
        repo = workdir / f"history-{options.commits}"
        started = time.perf_counter()
        repository_create(
            repo,
            history_stream(commits=options.commits, files=options.files, initial_files=options.initial_files),
        )
        print(f"generated {options.commits} commits in {time.perf_counter() - started:.1f} s: {repo}")

    database_reset(options.database_url)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DJANGO_DEBUG": "false",  # DEBUG keeps every query in memory
            "APM_DEBUG_TOOLBAR": "false",
            "DJANGO_LOG_LEVEL": "WARNING",
            "DATABASE_URL": options.database_url,
            "DATABASE_POOL_SIZE": "2",
            "APM_REPO_ROOTS": str(repo.parent),
            "APM_WORKSPACE": str(workdir / "workspace"),
        }
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    from projects.services import project_create
    from repos.models import Commit, FileChange, IngestionRun
    from repos.services import ingestion_request, repository_register

    call_command("migrate", verbosity=0)

    # (a) the baseline: git's own log with line counts, written nowhere.
    started = time.perf_counter()
    subprocess.run(["git", "-C", str(repo), "log", "--numstat"], stdout=subprocess.DEVNULL, check=True)
    baseline = time.perf_counter() - started

    project = project_create(name="Benchmark")
    repository = repository_register(project=project, source=str(repo))

    def ingest() -> tuple[float, IngestionRun]:
        started = time.perf_counter()
        with transaction.atomic():
            request = ingestion_request(repository=repository, trigger=IngestionRun.Trigger.COMMAND)
        request.run.refresh_from_db()
        return time.perf_counter() - started, request.run

    full_seconds, full = ingest()
    again_seconds, again = ingest()
    if full.status != "succeeded" or again.status != "succeeded":
        sys.exit(f"ingestion failed: {full.error or again.error}")

    commits = Commit.objects.filter(repository=repository).count()
    changes = FileChange.objects.filter(repository=repository).count()
    print(f"repository: {repo} ({commits} commits, {changes} file changes, {full.files_indexed} files)")
    print(f"(a) git log --numstat            {baseline:8.2f} s")
    ratio = full_seconds / baseline
    print(f"(b) APM full ingestion           {full_seconds:8.2f} s   ratio b/a = {ratio:.2f}")
    print(f"    steps: {', '.join(f'{step} {seconds:.2f} s' for step, seconds in full.timings.items())}")
    print(f"(c) incremental, nothing new     {again_seconds:8.2f} s")
    print(
        f"(d) peak memory: this process {peak_mib(resource.RUSAGE_SELF):.0f} MiB, "
        f"largest git child {peak_mib(resource.RUSAGE_CHILDREN):.0f} MiB"
    )
    if not options.keep and not options.repository:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
