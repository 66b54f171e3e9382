"""Push deliveries racing the end of an ingestion run, each in a thread of its own on a database server.

A push locks the repository's row (ingestion_request) and, at its commit, the key of the run it joined
(the delivery's foreign key). A finish that locked the run first and then updated the repository made
the opposite order: the database broke the deadlock by failing one of them, and a push answered 500 and
was lost. Here the finish holds the run while each push arrives, so every round meets that window.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone

from repos.ingestion import pipeline
from repos.ingestion.pipeline import ingestion_finish
from repos.models import IngestionRun, PushDelivery, Repository
from repos.services import push_delivery_receive, repository_register
from tests.factories import ProjectFactory
from tests.repos.gitrepo import GitRepo

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 6


def body_of(round_number: int) -> str:
    return hashlib.sha256(f"push {round_number}".encode()).hexdigest()


def in_thread(name: str, call: Any, failures: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            call()
        except BaseException as exc:  # the test reports it: a deadlock is an OperationalError here
            failures.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


def test_pushes_racing_a_runs_finish_are_each_recorded_once_and_none_fails(
    tmp_path: Path, settings, monkeypatch
):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no row locks: one writer at a time, no lock order to invert")
    settings.APM_REPO_ROOTS = [str(tmp_path)]
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    repo = GitRepo(tmp_path / "src")
    repo.write("a.txt", "1\n")
    repo.commit("Start")
    repository: Repository = repository_register(project=ProjectFactory.create(), source=str(repo.path))

    # The finish keeps the run locked a moment after taking it (the file history refresh of a long
    # history takes that long), and says when it is there.
    holding = threading.Event()
    original = pipeline.files_history_refresh

    def slow_refresh(**kwargs: Any) -> int:
        kept = original(**kwargs)
        if threading.current_thread().name == "finish":
            holding.set()
            time.sleep(0.5)
        return kept

    monkeypatch.setattr(pipeline, "files_history_refresh", slow_refresh)

    failures: list[BaseException] = []
    for round_number in range(ROUNDS):
        run = IngestionRun.objects.create(
            repository=repository,
            trigger=IngestionRun.Trigger.API,
            status=IngestionRun.Status.RUNNING,
            started_at=timezone.now(),
            heartbeat_at=timezone.now(),
        )
        holding.clear()
        finish = in_thread("finish", lambda run_id=run.pk: ingestion_finish(run_id=run_id), failures)
        assert holding.wait(30), "the finish never reached its file history"
        push = in_thread(
            "push",
            lambda n=round_number: push_delivery_receive(
                repository=repository, delivery_id=f"delivery-{n}", body_sha256=body_of(n), ingest=True
            ),
            failures,
        )
        finish.join(120)
        push.join(120)

    assert failures == []
    assert set(PushDelivery.objects.filter(repository=repository).values_list("delivery_id", flat=True)) == {
        f"delivery-{n}" for n in range(ROUNDS)
    }
    assert not IngestionRun.objects.filter(
        repository=repository, status__in=[IngestionRun.Status.RUNNING, IngestionRun.Status.QUEUED]
    ).exists()

    # Sent again, each is recognised: N deliveries of one push are one.
    for round_number in range(ROUNDS):
        again = push_delivery_receive(
            repository=repository,
            delivery_id=f"delivery-{round_number}",
            body_sha256=body_of(round_number),
            ingest=True,
        )
        assert again.replayed
    assert PushDelivery.objects.filter(repository=repository).count() == ROUNDS
