"""The broker is down: nothing answers "queued" that was not queued, and nothing is left half-created.

The web process (in this test) publishes to a real Redis broker: one at a port where nothing listens,
one redis-server of this test's own that is stopped in the middle and started again, and one that hangs
(SIGSTOP: its port accepts connections and nothing answers on them) with a real worker on it. Ingestion
requests (API and ``manage.py ingest_repo``, a real process) and exports are answered 503 with
``Retry-After`` and leave no run or job behind; the schedule's ingest-all skips every repository and
says why. Publishing fails in seconds, not after a minute of reconnecting.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import current_app
from django.db import connection

from apm.jobs import BrokerUnavailable
from config import topology
from reports.models import ExportJob
from repos.models import IngestionRun, Repository
from repos.services import ingestion_request, repositories_ingest_all, repository_register
from repos.tasks import repositories_ingest_all_task
from tests.faults.test_redis_hung import HungRedis
from tests.monitoring.test_cache_outage import RedisServer, free_port, redis_server, redis_server_running  # noqa: F401
from tests.processes import (
    celery_worker_start,
    celery_worker_stop,
    database_url,
    manage,
    wait_for,
    worker_database_env,
)
from tests.repos.gitrepo import GitRepo
from tests.world import World, world  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE = "celery"  # CELERY_TASK_DEFAULT_QUEUE of the web process: its messages are a list of this name
# Where the web process routes ingestion (config/topology.py; a worker on QUEUE consumes it as well).
INGESTION_QUEUE = topology.ingestion_queue_default(QUEUE)
# What "fails fast" means here: the broker's refusal is known in a few seconds (retry policy, timeouts).
FAST = 10.0


@contextmanager
def publishing_to(url: str, *, results: bool = False) -> Iterator[None]:
    """This process publishes to the broker at ``url``, as the web tier of a deployment does.

    With ``results``, the result backend is the same server, as in a deployment whose one Redis
    (REDIS_URL) is broker and result backend: publishing a task subscribes to its result there too.
    """
    app = current_app
    saved = {
        "broker_url": app.conf.broker_url,
        "task_always_eager": app.conf.task_always_eager,
        "broker_transport_options": app.conf.broker_transport_options,
        "task_default_queue": app.conf.task_default_queue,
        "result_backend": app.conf.result_backend,
        "result_backend_transport_options": app.conf.result_backend_transport_options,
    }

    # Celery keeps its connection and producer pools for the process's life, made from the broker URL of
    # the time: set aside, the next publish connects to the broker configured now. The process's own are
    # put back afterwards, untouched (the eager tests after this one take their producers from them;
    # closed, they would fail with "Acquire on closed pool").
    kept = (getattr(app, "_pool", None), getattr(app.amqp, "_producer_pool", None))
    setattr(app, "_pool", None)  # noqa: B010 (private to Celery, hence no typed attribute)
    setattr(app.amqp, "_producer_pool", None)  # noqa: B010

    def backend_drop() -> None:
        # The result backend is made once per process (or thread) from the URL of the time, too.
        setattr(app, "_backend_cache", None)  # noqa: B010
        local: Any = getattr(app, "_local")  # noqa: B009 (private to Celery)
        setattr(local, "backend", None)  # noqa: B010

    backend_drop()
    unprefixed = {
        key: value for key, value in app.conf.broker_transport_options.items() if key != "global_keyprefix"
    }
    app.conf.update(
        broker_url=url, task_always_eager=False, broker_transport_options=unprefixed, task_default_queue=QUEUE
    )
    if results:
        app.conf.update(
            result_backend=url,
            result_backend_transport_options={
                key: value
                for key, value in app.conf.result_backend_transport_options.items()
                if key != "global_keyprefix"
            },
        )
    try:
        yield
    finally:
        pool: Any = getattr(app, "_pool", None)
        if pool is not None:
            pool.force_close_all()  # this broker's connections
        setattr(app, "_pool", kept[0])  # noqa: B010
        setattr(app.amqp, "_producer_pool", kept[1])  # noqa: B010
        backend_drop()
        app.conf.update(saved)


def repository_of(world: World, tmp_path: Path, settings, name: str) -> Repository:  # noqa: F811
    settings.APM_REPO_ROOTS = [str(tmp_path)]
    repo = GitRepo(tmp_path / name)
    repo.write("README.md", "hello\n")
    repo.commit("Start")
    return repository_register(project=world.project, source=str(repo.path))


def test_with_nothing_listening_ingest_and_export_answer_503_and_keep_nothing(
    world: World,  # noqa: F811
    tmp_path: Path,
    settings,
):
    repository = repository_of(world, tmp_path, settings, "shop")
    client = world.client("maintainer")
    port = free_port()

    with publishing_to(f"redis://127.0.0.1:{port}/0"):
        started = time.monotonic()
        ingest = client.post(f"/api/v1/repositories/{repository.pk}/ingest/", {}, format="json")
        ingest_seconds = time.monotonic() - started
        export = client.post(
            f"/api/v1/projects/{world.project.key}/exports/", {"kind": "tasks_csv"}, format="json"
        )
        again = client.post(f"/api/v1/repositories/{repository.pk}/ingest/", {}, format="json")

    assert ingest.status_code == 503, ingest.content
    assert ingest["Retry-After"] == "30"
    assert "nothing was queued" in ingest.json()["detail"]
    assert ingest_seconds < FAST
    assert (export.status_code, export["Retry-After"]) == (503, "30")
    # Nothing that would block the next request or wait for ever for a worker: no run, no job.
    assert again.status_code == 503
    assert not IngestionRun.objects.filter(repository=repository).exists()
    assert not ExportJob.objects.exists()


def test_the_schedule_skips_every_repository_and_says_why(world: World, tmp_path: Path, settings):  # noqa: F811
    first = repository_of(world, tmp_path, settings, "one")
    second = repository_of(world, tmp_path, settings, "two")
    port = free_port()
    runs_before = IngestionRun.objects.count()

    with publishing_to(f"redis://127.0.0.1:{port}/0"):
        started = time.monotonic()
        queued = repositories_ingest_all_task()
        entries = list(repositories_ingest_all())
        seconds = time.monotonic() - started

    assert queued == 0
    active = list(Repository.objects.filter(is_active=True).order_by("pk").values_list("pk", flat=True))
    assert {first.pk, second.pk} <= set(active)
    assert [entry.repository.pk for entry in entries] == active
    assert all(entry.request is None and "unavailable" in entry.refusal for entry in entries)
    assert f"127.0.0.1:{port}" in entries[0].refusal
    assert IngestionRun.objects.count() == runs_before  # not one new run
    assert seconds < 2 * FAST  # the first refusal stops the pass: one wait, not one per repository


def test_ingest_repo_names_the_broker_and_records_no_run(world: World, tmp_path: Path, settings):  # noqa: F811
    settings.APM_REPO_ROOTS = [str(tmp_path)]
    repo = GitRepo(tmp_path / "cli")
    repo.write("README.md", "hello\n")
    repo.commit("Start")
    port = free_port()

    started = time.monotonic()
    result = manage(
        "ingest_repo",
        str(repo.path),
        "--project",
        world.project.key,
        CELERY_BROKER_URL=f"redis://127.0.0.1:{port}/0",
        DATABASE_URL=database_url(),
        APM_REPO_ROOTS=str(tmp_path),
        APM_WORKSPACE=str(tmp_path / "workspace"),
    )
    seconds = time.monotonic() - started

    assert result.returncode == 1, result.stdout
    assert f"broker (redis://127.0.0.1:{port}) is unavailable" in result.stderr
    assert "Traceback" not in result.stderr
    assert seconds < 3 * FAST  # the command's own start included
    registered = Repository.objects.get(project=world.project, name="cli")
    assert not IngestionRun.objects.filter(repository=registered).exists()


def test_a_broker_stopped_and_started_again(
    world: World,  # noqa: F811
    tmp_path: Path,
    settings,
    redis_server: RedisServer,  # noqa: F811
):
    up = repository_of(world, tmp_path, settings, "up")
    during = repository_of(world, tmp_path, settings, "during")
    client = world.client("maintainer")
    raw = redis.Redis(port=redis_server.port)

    with publishing_to(redis_server.url):
        before = client.post(f"/api/v1/repositories/{up.pk}/ingest/", {}, format="json")
        assert (before.status_code, before.json()["status"]) == (202, "queued")
        assert raw.llen(INGESTION_QUEUE) == 1

        redis_server.stop()  # the producer's pooled connection now leads nowhere
        started = time.monotonic()
        down = client.post(f"/api/v1/repositories/{during.pk}/ingest/", {}, format="json")
        seconds = time.monotonic() - started
        export = client.post(
            f"/api/v1/projects/{world.project.key}/exports/", {"kind": "tasks_csv"}, format="json"
        )
        with pytest.raises(BrokerUnavailable):
            ingestion_request(repository=during, trigger=IngestionRun.Trigger.COMMAND)

        redis_server.start()  # saved on its clean shutdown: the first message is still there
        after = client.post(f"/api/v1/repositories/{during.pk}/ingest/", {}, format="json")

    assert (down.status_code, down["Retry-After"]) == (503, "30")
    assert seconds < FAST
    assert export.status_code == 503
    assert not ExportJob.objects.exists()
    # The run accepted while the broker was up is the only one of its repository; the refused ones left
    # nothing, so the request after the restart starts a run and queues it.
    assert list(IngestionRun.objects.filter(repository=up).values_list("pk", flat=True)) == [
        before.json()["run"]
    ]
    assert (after.status_code, after.json()["created"], after.json()["status"]) == (202, True, "queued")
    assert list(IngestionRun.objects.filter(repository=during).values_list("pk", flat=True)) == [
        after.json()["run"]
    ]
    assert raw.llen(INGESTION_QUEUE) == 2


@pytest.fixture
def hung_broker(tmp_path: Path) -> Iterator[HungRedis]:
    yield from redis_server_running(HungRedis, tmp_path)


def test_a_hung_broker_is_a_503_in_seconds_and_the_worker_on_it_runs_what_follows(
    world: World,  # noqa: F811
    tmp_path: Path,
    settings,
    hung_broker: HungRedis,
):
    """A broker frozen, not killed: every connection to it stays open and silent. The request waits out
    the socket timeouts (publishing, and subscribing to the task's result on the same Redis), not for
    ever; the worker idle on the broker through the hang takes the next run once it resumes."""
    if connection.vendor == "sqlite":
        pytest.skip("a worker process shares the test's rows through a database server")
    before_hang = repository_of(world, tmp_path, settings, "before")
    during = repository_of(world, tmp_path, settings, "during")
    client = world.client("maintainer")
    worker = celery_worker_start(
        queue=QUEUE,
        env={
            **worker_database_env(home=str(tmp_path), broker=hung_broker.url, queue=QUEUE),
            "APM_REPO_ROOTS": str(tmp_path),
            "APM_WORKSPACE": str(tmp_path / "worker-workspace"),
        },
    )

    def finished(repository: Repository) -> bool:
        return IngestionRun.objects.filter(
            repository=repository, status=IngestionRun.Status.SUCCEEDED
        ).exists()

    try:
        with publishing_to(hung_broker.url, results=True):
            # Up first: the producer's pooled connection and the result subscription are open at the hang.
            before = client.post(f"/api/v1/repositories/{before_hang.pk}/ingest/", {}, format="json")
            assert before.status_code == 202, before.content
            wait_for(lambda: finished(before_hang), timeout=120, what="the run queued before the hang")

            hung_broker.pause()
            try:
                started = time.monotonic()
                down = client.post(f"/api/v1/repositories/{during.pk}/ingest/", {}, format="json")
                ingest_seconds = time.monotonic() - started
                started = time.monotonic()
                export = client.post(
                    f"/api/v1/projects/{world.project.key}/exports/", {"kind": "tasks_csv"}, format="json"
                )
                export_seconds = time.monotonic() - started
                half_created = (
                    IngestionRun.objects.filter(repository=during).exists() or ExportJob.objects.exists()
                )
            finally:
                hung_broker.resume()

            after = client.post(f"/api/v1/repositories/{during.pk}/ingest/", {}, format="json")
            assert after.status_code == 202, after.content
            wait_for(lambda: finished(during), timeout=120, what="the run queued after the hang")
    finally:
        celery_worker_stop(worker)

    assert (down.status_code, down["Retry-After"]) == (503, "30"), down.content
    assert ingest_seconds < FAST
    assert (export.status_code, export["Retry-After"]) == (503, "30"), export.content
    assert export_seconds < FAST
    assert not half_created
    # The refused request left nothing: the one after the hang made the repository's only run.
    assert list(IngestionRun.objects.filter(repository=during).values_list("pk", flat=True)) == [
        after.json()["run"]
    ]
