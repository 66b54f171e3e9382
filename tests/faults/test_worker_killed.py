"""A worker killed as a whole (parent and children, SIGKILL) in the middle of a long ingestion.

A real ``celery -A config worker`` (prefork, two children) ingests a generated history through a real
Redis broker into the test database; its whole process group is killed mid-run. The chunk messages it
held stay unacknowledged in Redis: before the schedule's resumption, the run stayed ``running`` until the
broker's visibility timeout (two hours), and every request joined it. Now a new worker, with the
schedule's pass over silent runs (sent by this test every two seconds, as beat would every minute),
finishes the run within the minute; and when Redis hands out the dead worker's messages late (this
test's workers have a short visibility timeout, so that it happens within the test), they change nothing.
The rows equal those of a one-shot ingestion of the same repository, row for row.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from benchmarks.repogen import history_stream, repository_create
from repos.models import Commit, File, FileChange, IngestionRun, Repository
from repos.services import ingestion_request, repository_register
from tests import isolation
from tests.conftest import require_service
from tests.factories import ProjectFactory
from tests.isolation import broker_flush, celery_client, redis_broker
from tests.processes import ROOT, wait_for, worker_database_env, worker_queues

pytestmark = pytest.mark.django_db(transaction=True)

BROKER = redis_broker()  # keyed under this test process's namespace (tests/isolation.py)
COMMITS = 4000
CHUNK = 100


def worker_group_start(*, queue: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``celery -A config worker`` with a prefork pool of two, as a process group of its own (to kill)."""
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "prefork"),
            *(
                "--concurrency",
                "2",
                "--hostname",
                isolation.worker_nodename(),
                "-Q",
                worker_queues(queue, env),
                "-l",
                "warning",
            ),
        ],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", ""),
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            **isolation.worker_environment(BROKER),
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def group_kill(worker: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)


def rows(repository: Repository) -> dict[str, list[tuple[Any, ...]]]:
    """What an ingestion leaves of a repository, without ids: commits, file changes, files."""
    return {
        "commits": sorted(
            Commit.objects.filter(repository=repository).values_list(
                *("sha", "parents", "author_name", "author_email", "authored_at", "committer_name"),
                *("committer_email", "timestamp", "message", "additions", "deletions", "files_changed"),
                "is_merge",
            )
        ),
        "file_changes": sorted(
            FileChange.objects.filter(repository=repository).values_list(
                "commit__sha", "path", "old_path", "change_type", "added", "deleted", "is_binary"
            ),
            key=repr,
        ),
        "files": sorted(
            File.objects.filter(repository=repository).values_list(
                "path", "language", "size", "lines", "is_binary", "churn", "commit_count", "last_changed_at"
            )
        ),
    }


def test_a_run_whose_worker_was_killed_whole_is_finished_by_the_next_worker(tmp_path: Path, settings):
    require_service(BROKER)
    broker_flush(BROKER)
    settings.APM_REPO_ROOTS = [str(tmp_path)]
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    path = repository_create(tmp_path / "history", history_stream(commits=COMMITS, files=300))
    repository = repository_register(project=ProjectFactory.create(), source=str(path))
    run = IngestionRun.objects.create(repository=repository, trigger="command")
    queue = f"apm-killed-{os.getpid()}"
    env = {
        **worker_database_env(home=str(tmp_path), broker=BROKER, queue=queue),
        "APM_REPO_ROOTS": str(tmp_path),
        "APM_WORKSPACE": str(tmp_path / "workspace"),
        "APM_INGEST_CHUNK_COMMITS": str(CHUNK),
        # Short, so that the test takes seconds: the defaults are a beat every 10 s, resumption after 60 s.
        "APM_INGEST_HEARTBEAT_SECONDS": "1",
        "APM_INGEST_RESUME_SECONDS": "5",
        # Redis hands the dead worker's messages out again after this, within the test.
        "CELERY_BROKER_VISIBILITY_TIMEOUT": "30",
    }
    raw = redis.Redis.from_url(str(BROKER))
    unacked = f"{BROKER.keyprefix}unacked"
    client = celery_client("apm-killed-client", BROKER)
    first = worker_group_start(queue=queue, env=env)
    second: subprocess.Popen[bytes] | None = None
    try:
        client.send_task("repos.ingest", args=[run.pk], queue=queue)
        wait_for(
            lambda: IngestionRun.objects.get(pk=run.pk).commits_done >= 8 * CHUNK,
            timeout=180,
            what="the first worker to write its first chunks",
        )
        group_kill(first)
        killed = IngestionRun.objects.get(pk=run.pk)
        held = raw.hlen(unacked)
        killed_at = time.monotonic()

        second = worker_group_start(queue=queue, env=env)

        def finished() -> bool:
            client.send_task("repos.ingestion_runs_resume", queue=queue)  # what beat does every minute
            time.sleep(2)
            return IngestionRun.objects.get(pk=run.pk).status != "running"

        wait_for(finished, timeout=120, what="the new worker to finish the run")
        seconds = time.monotonic() - killed_at
        # The dead worker's messages, handed out again after the visibility timeout, are run and
        # acknowledged: nothing of theirs is left, and nothing waits.
        wait_for(
            lambda: raw.hlen(unacked) == 0 and raw.llen(queue) == 0,
            timeout=120,
            what="the late messages to be delivered and run",
        )
        time.sleep(2)
    finally:
        group_kill(first)
        if second is not None:
            group_kill(second)
        client.close()
        broker_flush(BROKER)

    assert killed.status == "running"
    assert 8 * CHUNK <= killed.commits_done < COMMITS
    assert held >= 1  # the chunks the killed worker held were still unacknowledged in Redis
    run.refresh_from_db()
    assert (run.status, run.error) == ("succeeded", "")
    assert seconds < 90
    assert any(note.startswith("Resumed at ") for note in run.notes)
    # Counted once, although chunks were queued again and delivered late.
    assert (run.commits_total, run.commits_done, run.commits_added) == (COMMITS, COMMITS, COMMITS)
    assert sorted(run.chunks_done) == list(range(0, COMMITS, CHUNK))
    assert run.file_changes_added == FileChange.objects.filter(repository=repository).count()

    once = repository_register(project=ProjectFactory.create(), source=str(path))
    request = ingestion_request(repository=once, trigger="command")  # eager: in this process, one go
    request.run.refresh_from_db()
    assert request.run.status == "succeeded"
    resumed, one_shot = rows(repository), rows(once)
    assert {name: len(table) for name, table in resumed.items()} == {
        name: len(table) for name, table in one_shot.items()
    }
    assert resumed == one_shot
