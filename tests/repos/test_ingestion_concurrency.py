"""Two writers of the same commits at once: a chunk delivered twice at the same moment, and an abandoned
run whose worker is still alive beside the run that replaced it. Each commit counts once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from celery.exceptions import Retry
from django.db import OperationalError, connections, transaction

from repos.gitlog import commits_read
from repos.ingestion import pipeline
from repos.ingestion.pipeline import repository_git_dir
from repos.ingestion.writers import commits_write
from repos.models import FileHistory, IngestionRun, Repository
from repos.services import repository_register
from repos.tasks import repository_commits_chunk_task
from tests.factories import ProjectFactory
from tests.repos.gitrepo import GitRepo

pytestmark = pytest.mark.django_db(transaction=True)


def three_commits(tmp_path: Path, settings) -> tuple[GitRepo, Repository]:
    settings.APM_REPO_ROOTS = [str(tmp_path)]
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    repo = GitRepo(tmp_path / "src")
    for n in range(3):
        repo.write("a.txt", f"{n}\n")
        repo.commit(f"c{n}")
    return repo, repository_register(project=ProjectFactory(), source=str(repo.path))


def writes_held_open(monkeypatch, *, thread: str) -> threading.Event:
    """Make the chunk writes of ``thread`` keep their transaction open 2 s after writing (set: written),
    so that another writer of the same commits comes meanwhile."""
    original = pipeline.commits_write
    wrote = threading.Event()

    def slow_commits_write(**kwargs):
        written = original(**kwargs)
        if threading.current_thread().name == thread:
            wrote.set()
            time.sleep(2)
        return written

    monkeypatch.setattr(pipeline, "commits_write", slow_commits_write)
    return wrote


def test_the_second_writer_of_the_same_commits_adds_none_of_them(tmp_path: Path, settings):
    repo, repository = three_commits(tmp_path, settings)
    git_dir = repository_git_dir(repository=repository, fetch=True)
    commits = commits_read(git_dir=git_dir, revisions=[repo.head()], skip=0, max_count=10)
    inserted = threading.Event()
    results: dict[str, object] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                results["first"] = commits_write(repository_id=repository.pk, commits=commits).added
                inserted.set()
                time.sleep(2)  # B is blocked on our unique keys meanwhile
        finally:
            connections.close_all()

    def second() -> None:
        try:
            inserted.wait()
            try:
                with transaction.atomic():
                    results["second"] = commits_write(repository_id=repository.pk, commits=commits).added
            except OperationalError:
                # MariaDB cannot tell which rows the other writer stored: the chunk is undone and
                # retried (the Celery task retries transient errors), and then finds them stored.
                with transaction.atomic():
                    results["second"] = commits_write(repository_id=repository.pk, commits=commits).added
        except Exception as exc:
            results["second"] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results["first"]) == 3
    # Only one writer inserted them; the other must not add their figures to the running totals again.
    assert results["second"] == frozenset()


def test_two_deliveries_of_a_chunk_at_once_write_it_once(tmp_path: Path, settings, monkeypatch):

    _, repository = three_commits(tmp_path, settings)
    run = IngestionRun.objects.create(repository=repository, trigger="command")
    pipeline.ingestion_plan(run_id=run.pk)

    wrote = writes_held_open(monkeypatch, thread="first")

    def deliver():
        try:
            if threading.current_thread().name == "second":
                wrote.wait()
            repository_commits_chunk_task.apply(args=(run.pk, 0, 3))
        except Retry:
            pass  # MariaDB: the late delivery asked to be retried; in eager mode its retry already ran
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver, name=name) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.refresh_from_db()
    assert (run.status, run.error) == ("running", "")
    assert run.chunks_done == [0]


def test_an_abandoned_run_and_its_successor_count_each_commit_once(tmp_path: Path, settings, monkeypatch):

    _, repository = three_commits(tmp_path, settings)
    stale = IngestionRun.objects.create(repository=repository, trigger="command")
    pipeline.ingestion_plan(run_id=stale.pk)

    wrote = writes_held_open(monkeypatch, thread="stale")
    errors = []

    def stale_chunk():
        try:
            pipeline.ingestion_commits_chunk(run_id=stale.pk, skip=0, count=3)
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    def successor_chunk(run_id):
        try:
            pipeline.ingestion_commits_chunk(run_id=run_id, skip=0, count=3)
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    first = threading.Thread(target=stale_chunk, name="stale")
    first.start()
    wrote.wait()
    pipeline.ingestion_fail(run_id=stale.pk, reason="abandoned: its worker stopped reporting progress")
    successor = IngestionRun.objects.create(repository=repository, trigger="command")
    pipeline.ingestion_plan(run_id=successor.pk)
    second = threading.Thread(target=successor_chunk, args=(successor.pk,), name="successor")
    second.start()
    first.join()
    second.join()
    assert not errors, errors
    pipeline.ingestion_finish(run_id=successor.pk)
    assert FileHistory.objects.get(repository=repository, path="a.txt").commit_count == 3
