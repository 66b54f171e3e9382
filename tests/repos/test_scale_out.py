"""Workers on machines of their own: each has its own workspace, and chunks land on whichever is free.

Two real ``celery -A config worker`` processes consume one queue on a real Redis broker, each with an
``APM_WORKSPACE`` of its own (as two Kubernetes pods with ``emptyDir`` workspaces). A chunk that lands
on a worker whose mirror predates the run fetches the planned tip first; rows still equal git's.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from celery import Celery

from benchmarks.repogen import history_stream, repository_create
from repos.models import IngestionRun, Repository
from repos.services import repository_register
from tests.conftest import require_service
from tests.factories import ProjectFactory
from tests.isolation import broker_flush, celery_client, redis_broker
from tests.processes import celery_worker_start, celery_worker_stop, wait_for, worker_database_env
from tests.repos.gitrepo import GitRepo
from tests.repos.test_ingestion import assert_matches_git

pytestmark = pytest.mark.django_db(transaction=True)

BROKER = redis_broker()  # keyed under this test process's namespace (tests/isolation.py)


def _mirror_has(workspace: Path, repository: Repository, sha: str) -> bool:
    mirror = workspace / f"repository-{repository.pk}-{repository.mirror_key}.git"
    if not mirror.exists():
        return False
    check = subprocess.run(
        ["git", "--git-dir", str(mirror), "cat-file", "-e", f"{sha}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    return check.returncode == 0


def _run_on_workers(client: Celery, repository: Repository, queue: str) -> IngestionRun:
    run = IngestionRun.objects.create(repository=repository, trigger="command")
    client.send_task("repos.ingest", args=[run.pk], queue=queue)
    wait_for(
        lambda: IngestionRun.objects.get(pk=run.pk).status in ("succeeded", "failed"),
        timeout=180,
        what=f"run {run.pk} to end on the workers",
    )
    run.refresh_from_db()
    return run


def test_chunks_on_workers_with_workspaces_of_their_own_fetch_what_they_lack(tmp_path: Path, settings):
    require_service(BROKER)
    broker_flush(BROKER)
    settings.APM_REPO_ROOTS = [str(tmp_path)]
    path = repository_create(tmp_path / "history", history_stream(commits=600, files=80))
    repo = GitRepo.existing(path)
    repository = repository_register(project=ProjectFactory(), source=str(path))
    queue = f"apm-scale-{os.getpid()}"
    workspaces = [tmp_path / "pod-a", tmp_path / "pod-b"]
    workers = [
        celery_worker_start(
            queue=queue,
            env={
                **worker_database_env(home=str(tmp_path), broker=BROKER, queue=queue),
                "APM_REPO_ROOTS": str(tmp_path),
                "APM_WORKSPACE": str(workspace),
                "APM_INGEST_CHUNK_COMMITS": "20",
                "APM_INGEST_CHUNK_FILES": "10",
            },
        )
        for workspace in workspaces
    ]
    client = celery_client("apm-scale-client", BROKER)
    try:
        # Both pods must be consuming before the run starts, or the first could take every chunk.
        wait_for(
            lambda: len(client.control.ping(timeout=1.0) or []) >= 2,
            timeout=60,
            what="both workers to answer a ping",
        )
        full = _run_on_workers(client, repository, queue)
        assert (full.status, full.error, full.commits_done) == ("succeeded", "", 600)
        assert_matches_git(repo, repository)
        # Both pods took chunks, so both made a mirror of their own.
        assert all(_mirror_has(workspace, repository, full.to_sha) for workspace in workspaces)

        for number in range(120):
            repo.write(f"late/{number % 7}.txt", f"change {number}\n")
            repo.commit(f"Late change {number}")
        incremental = _run_on_workers(client, repository, queue)
    finally:
        for worker in workers:
            celery_worker_stop(worker)
        client.close()
        broker_flush(BROKER)

    assert (incremental.status, incremental.error) == ("succeeded", "")
    assert (incremental.commits_done, incremental.files_scope) == (120, "changes")
    assert_matches_git(repo, repository)
    # The pod that did not plan the run fetched the new tip for the chunks it took.
    assert all(_mirror_has(workspace, repository, incremental.to_sha) for workspace in workspaces)
