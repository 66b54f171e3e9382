"""Ingestion speed against git itself, measured in one run.

    .venv/bin/python benchmarks/ingest.py                     # generated 20,000-commit history
    .venv/bin/python benchmarks/ingest.py --commits 100000    # a longer one (memory must stay flat)
    .venv/bin/python benchmarks/ingest.py --files 80000 --initial-files 200   # a tree that keeps widening
    .venv/bin/python benchmarks/ingest.py /path/to/repo       # any repository

Prints, for each repository:
  (a) git log --numstat of the whole history to /dev/null (the baseline: one git process),
  (b) APM's full ingestion end to end (mirror, plan, commits, files, finish) and the ratio b/a,
  (c) an incremental run with nothing new,
  (d) peak resident memory of this process and of the git processes it started,
      and the time link_commits takes to read that history again (it finds every link there),
  (e) an incremental run of --requests new commits that each close a task and log time ("fixes APM-12
      @1h"), carried out one by one through the task services: the cost of a commit's request,
  (f) one new commit on top of the whole history: its run's time and the rows it wrote (its cost must
      follow the new work, not the history).

The generated messages name tasks (``work on APM-123``), and the project has --tasks tasks, so every
commit of the first run is linked to a task (``links``, part of the commit chunks); --tasks 0 leaves the
keys unknown (parsed, no links).

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.repogen import history_stream, repository_create  # noqa: E402

# Pipeline order. The chunk steps (commits, links within them, files) are summed over chunks that run
# in parallel, so they can add up to more than the run took.
STEP_ORDER = ["mirror", "plan", "files_plan", "commits", "links", "files", "finish", "requests"]


def steps_text(timings: dict[str, float]) -> str:
    ordered = sorted(timings.items(), key=lambda item: ([*STEP_ORDER, item[0]]).index(item[0]))
    return ", ".join(
        f"{step} {seconds:.2f} s{' (summed over chunks)' if step in ('commits', 'links', 'files') else ''}"
        for step, seconds in ordered
    )


def git_log_measure(repo: Path) -> tuple[float, float]:
    """(seconds, peak MiB) of ``git log --numstat`` to /dev/null, measured on that process alone.

    Spawned directly (no fork of this process, whose memory the child's peak would otherwise include).
    """
    git = shutil.which("git") or "git"
    started = time.perf_counter()
    with open(os.devnull, "wb") as devnull:
        pid = os.posix_spawn(
            git,
            [git, "-C", str(repo), "log", "--numstat"],
            os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, devnull.fileno(), 1)],
        )
        _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("git log --numstat failed")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


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


def database_row(url: str, sql: str) -> tuple[Any, ...] | None:
    """The one row ``sql`` answers in the scratch database of ``url``; None when the database does not
    exist or cannot answer it (not migrated yet, a schema of an older release)."""
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return None
    try:
        with psycopg.connect(url) as connection:
            row = connection.execute(sql).fetchone()
    except psycopg.Error:
        return None
    return None if row is None else tuple(row)


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
    parser.add_argument("--tasks", type=int, default=500, help="Tasks APM-1..N of the benchmark project.")
    parser.add_argument("--requests", type=int, default=200, help="New commits with a request, for (e).")
    return parser.parse_args()


def main() -> None:
    options = arguments()

    workdir = Path(tempfile.mkdtemp(prefix="apm-bench-"))
    repo = repository_prepare(options, workdir)

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
    from repos.linking import commits_link_tasks
    from repos.models import Commit, CommitTaskLink, FileChange, IngestionRun
    from repos.services import ingestion_request, repository_register
    from tasks.services import task_create

    call_command("migrate", verbosity=0)

    # (a) the baseline: git's own log with line counts, written nowhere.
    baseline, git_peak = git_log_measure(repo)

    project = project_create(name="Benchmark", key="APM")
    with transaction.atomic():
        for number in range(options.tasks):
            task_create(project=project, title=f"Task {number + 1}", source="batch")
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
    print(f"    steps: {steps_text(full.timings)}")
    print(f"(c) incremental, nothing new     {again_seconds:8.2f} s")
    print(
        f"(d) peak memory: this process {peak_mib(resource.RUSAGE_SELF):.0f} MiB; "
        f"git log --numstat on its own {git_peak:.0f} MiB"
    )
    links = CommitTaskLink.objects.filter(commit__repository=repository).count()
    started = time.perf_counter()
    relinked = commits_link_tasks(repository=repository, mode="history")  # what link_commits does
    print(
        f"    links: {links} commit-task links written by the first run; link_commits over the stored "
        f"history {time.perf_counter() - started:.2f} s ({relinked.links_created} new)"
    )

    if not options.repository and options.requests:
        requests_measure(repo, options, ingest)
    if not options.repository:
        one_commit_measure(repo, repository, ingest)
    if not options.keep and not options.repository:
        shutil.rmtree(workdir, ignore_errors=True)


def repository_prepare(options: argparse.Namespace, workdir: Path) -> Path:
    """The repository given, or a generated history of --commits commits."""
    if options.repository:
        return Path(options.repository).resolve()
    repo = workdir / f"history-{options.commits}"
    started = time.perf_counter()
    repository_create(
        repo,
        history_stream(commits=options.commits, files=options.files, initial_files=options.initial_files),
    )
    print(f"generated {options.commits} commits in {time.perf_counter() - started:.1f} s: {repo}")
    return repo


def requests_measure(
    repo: Path, options: argparse.Namespace, ingest: Callable[[], tuple[float, Any]]
) -> None:
    """(e) New commits, each asking to close a task and log an hour: carried out one by one."""
    identity = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.com"}
    environment = {
        **os.environ,
        **identity,
        "GIT_COMMITTER_NAME": "Bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
    }
    for number in range(options.requests):
        task = number % max(options.tasks, 1) + 1
        subprocess.run(
            ["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", f"fixes APM-{task} @1h"],
            check=True,
            env=environment,
        )
    seconds, run = ingest()
    applying = run.timings.get("requests", 0)
    per_request = applying / max(run.task_requests_applied, 1) * 1000
    print(
        f"(e) {options.requests} commits with requests {seconds:8.2f} s   "
        f"{run.task_requests_applied} carried out, {run.task_requests_refused} refused; "
        f"requests step {applying:.2f} s = {per_request:.1f} ms a request"
    )


def one_commit_measure(repo: Path, repository: Any, ingest: Callable[[], tuple[float, Any]]) -> None:
    """(f) One new commit changing two files: the run's time and every row it wrote."""
    from repos.models import File, FileChange, FileHistory

    paths = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "-r", "--name-only", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")[:2]
    for path in paths:
        with open(repo / path, "a") as handle:
            handle.write("one more line\n")
    environment = {**os.environ, "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
                   "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}  # fmt: skip
    subprocess.run(
        ["git", "-C", str(repo), "commit", "-q", "-am", "One more line"], check=True, env=environment
    )
    seconds, run = ingest()
    written = {
        "commits": run.commits_done,
        "file changes": FileChange.objects.filter(
            commit__repository=repository, commit__sha=run.to_sha
        ).count(),
        "file histories": FileHistory.objects.filter(repository=repository, updated_in_run=run.pk).count(),
        "files": File.objects.filter(repository=repository, seen_in_run=run.pk).count(),
    }
    print(
        f"(f) one new commit                {seconds:8.2f} s   rows written: "
        + ", ".join(f"{count} {table}" for table, count in written.items())
        + f"; steps: {steps_text(run.timings)}"
    )


if __name__ == "__main__":
    main()
