"""A worker killed with SIGKILL in the middle of an ingestion loses nothing and duplicates nothing.

A real ``celery -A config worker`` ingests through a real Redis broker into the test database; it is
killed mid-run. The next run (once the dead one is recognised as abandoned) must finish with exactly
the rows git describes: the chunks the dead worker committed are skipped by their unique keys, the
one it was writing was rolled back with its transaction.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from benchmarks.repogen import history_stream, repository_create
from repos.models import Commit, IngestionRun
from repos.services import ingestion_request, repository_register
from tests.conftest import require_service
from tests.factories import ProjectFactory
from tests.isolation import broker_flush, celery_client, redis_broker
from tests.processes import celery_worker_start, wait_for, worker_database_env
from tests.repos.gitrepo import GitRepo
from tests.repos.test_ingestion import assert_matches_git

pytestmark = pytest.mark.django_db(transaction=True)

BROKER = redis_broker()  # keyed under this test process's namespace (tests/isolation.py)
ROOT = Path(__file__).resolve().parents[2]


def test_a_killed_worker_leaves_a_state_the_next_run_finishes_exactly(tmp_path: Path, settings):
    require_service(BROKER)
    broker_flush(BROKER)
    settings.APM_REPO_ROOTS = [str(tmp_path)]
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    path = repository_create(tmp_path / "history", history_stream(commits=1200, files=200))
    repo = GitRepo.existing(path)
    repository = repository_register(project=ProjectFactory(), source=str(path))
    run = IngestionRun.objects.create(repository=repository, trigger="command")
    queue = f"apm-crash-{os.getpid()}"
    worker = celery_worker_start(
        queue=queue,
        env={
            **worker_database_env(home=str(tmp_path), broker=BROKER, queue=queue),
            "APM_REPO_ROOTS": str(tmp_path),
            "APM_WORKSPACE": str(tmp_path / "workspace"),
            "APM_INGEST_CHUNK_COMMITS": "40",
        },
    )
    client = celery_client("apm-crash-client", BROKER)
    try:
        client.send_task("repos.ingest", args=[run.pk], queue=queue)
        # Let it get well into the history, then kill it without warning.
        wait_for(
            lambda: IngestionRun.objects.get(pk=run.pk).commits_done >= 200,
            timeout=120,
            what="the worker to ingest its first chunks",
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
        client.close()
        broker_flush(BROKER)

    killed = IngestionRun.objects.get(pk=run.pk)
    assert killed.status == "running"
    assert 200 <= killed.commits_done < 1200
    partial = Commit.objects.filter(repository=repository).count()
    assert partial == killed.commits_done  # whole chunks only: the interrupted one was rolled back

    settings.APM_INGEST_STALE_SECONDS = 0  # the dead worker's run is recognised as abandoned
    settings.APM_INGEST_THREADS = 2
    request = ingestion_request(repository=repository, trigger="command")
    request.run.refresh_from_db()
    killed.refresh_from_db()

    assert killed.status == "failed"
    assert (request.run.status, request.run.commits_total) == ("succeeded", 1200)
    assert_matches_git(repo, repository)
