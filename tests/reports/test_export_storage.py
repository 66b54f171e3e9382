"""Exports in S3-compatible object storage: a real moto server (tests/reports/conftest.py), real workers.

A ``celery -A config worker`` process, with a MEDIA_ROOT of its own, writes the export through a real
Redis broker; gunicorn, with another MEDIA_ROOT, answers the download with a redirect that the client
follows to the store. The bucket is the only thing they share. A store that does not answer, and a
local MEDIA_ROOT that cannot be written, fail the job with its reason and the task with it, and count
once in apm_exports_total.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import os
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from botocore.exceptions import BotoCoreError
from celery import Celery
from celery.result import AsyncResult
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from reports.digest import csv_write
from reports.exports import EXPORT_TASK, ExportFailed, export_run, exports_purge
from reports.models import ExportJob
from tests.conftest import require_service
from tests.isolation import celery_client, redis_broker
from tests.processes import (
    celery_worker_start,
    celery_worker_stop,
    database_url,
    free_port,
    gunicorn_serve,
    process_stop,
    worker_database_env,
)
from tests.reports.conftest import PREFIX, Bucket
from tests.repos.test_commands import broker_queue_remove

BROKER = redis_broker()  # keyed under this test process's namespace (tests/isolation.py)


@dataclass
class ExportWorker:
    """A worker process of the test, and what the test reads of it: task results and its metrics."""

    client: Celery
    queue: str
    registry: CollectorRegistry

    def run(self, job: ExportJob) -> AsyncResult:
        """Send the export task of ``job``, as export_request does (again: a redelivered message)."""
        return self.client.send_task(EXPORT_TASK, args=[job.pk], queue=self.queue)

    def metric(self, name: str, labels: dict[str, str]) -> float | None:
        # A worker process creates a metrics file the first time it sets a metric of a new kind (the
        # gauge of the last task it finished, as the task ends): read at that moment the file is still
        # empty, and prometheus_client fails to read it. The next read finds it written.
        for _ in range(50):
            try:
                return self.registry.get_sample_value(name, labels)
            except struct.error:
                time.sleep(0.1)
        return self.registry.get_sample_value(name, labels)


@contextlib.contextmanager
def export_worker(tmp_path: Path, env: dict[str, str]) -> Iterator[ExportWorker]:
    """``celery -A config worker`` on this test's database and queue, with ``env`` (its storage)."""
    require_service(BROKER)
    queue = f"apm-exports-{os.getpid()}"
    metrics = tmp_path / "worker-metrics"
    metrics.mkdir()
    process = celery_worker_start(
        queue=queue,
        env={
            **worker_database_env(home=str(tmp_path), broker=BROKER, queue=queue),
            # As in the worker pods: the metrics container adds up what the processes write here.
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            "APM_TEST_MEDIA_ROOT": str(tmp_path / "worker-media"),
            **env,
        },
    )
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics))
    client = celery_client("apm-exports-client", BROKER)
    try:
        yield ExportWorker(client=client, queue=queue, registry=registry)
    finally:
        celery_worker_stop(process)
        client.close()
        broker_queue_remove(BROKER, queue)


def tasks_csv(world) -> bytes:  # type: ignore[no-untyped-def]
    """The tasks export of the world's project, written here: what the worker's file must hold."""
    out = io.StringIO(newline="")
    csv_write(out=out, kind=ExportJob.Kind.TASKS_CSV, project=world.project, filters={})
    return out.getvalue().encode()


def exports_counted(status: str) -> float:
    return REGISTRY.get_sample_value("apm_exports_total", {"status": status}) or 0.0


@contextlib.contextmanager
def web_process(tmp_path: Path, env: dict[str, str]) -> Iterator[str]:
    """APM's web process, gunicorn as in production, on this test's database: its URL."""
    port = free_port()
    process = gunicorn_serve(
        {
            **{key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}},
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": database_url(),
            "DATABASE_POOL_SIZE": "1",
            **env,
        },
        port=port,
        log=tmp_path / "gunicorn.log",
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process_stop(process)


@pytest.mark.django_db(transaction=True)
def test_an_export_written_by_a_worker_is_in_the_bucket_and_downloads_through_the_api(
    world, bucket: Bucket, settings, tmp_path: Path
) -> None:
    # A worker and a web process, each with a MEDIA_ROOT of its own: the bucket is all they share.
    settings.STORAGES = {**settings.STORAGES, "default": bucket.storage()}
    job = ExportJob.objects.create(
        project=world.project, kind="tasks_csv", requested_by=world.users["member"]
    )

    with export_worker(tmp_path, bucket.env()) as worker:
        assert worker.run(job).get(timeout=90) == "succeeded"
        # The same message again (a redelivery): nothing is written twice, the job counts once.
        assert worker.run(job).get(timeout=90) == "succeeded"
        succeeded = worker.metric("apm_exports_total", {"status": "succeeded"})
        failed = worker.metric("apm_exports_total", {"status": "failed"})
    job.refresh_from_db()
    assert (job.status, job.error) == ("succeeded", "")
    assert (succeeded, failed) == (1.0, 0.0)
    key = f"{PREFIX}/{job.file.name}"
    assert bucket.keys() == [key]
    assert bucket.read(key) == tasks_csv(world)

    viewer = {"Authorization": f"Token {world.tokens['viewer']}"}
    with web_process(tmp_path, {**bucket.env(), "APM_TEST_MEDIA_ROOT": str(tmp_path / "web-media")}) as web:
        detail = requests.get(f"{web}/api/v1/projects/ALPHA/exports/{job.pk}/", headers=viewer, timeout=30)
        # Followed as clients do: to the store, without APM's Authorization header (another host).
        download = requests.get(f"{web}{detail.json()['download']}", headers=viewer, timeout=30)

    (redirect,) = download.history
    assert redirect.status_code == 302
    assert redirect.headers["Cache-Control"] == "no-store"
    location = redirect.headers["Location"]
    assert location.startswith(f"{bucket.server.url}/{bucket.name}/{key}?")
    assert "X-Amz-Signature=" in location
    assert "X-Amz-Expires=60" in location
    assert (download.status_code, download.url) == (200, location)
    assert download.content == tasks_csv(world)
    assert download.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert download.headers["Content-Disposition"] == f'attachment; filename="alpha-tasks-csv-{job.pk}.csv"'
    assert next(csv.reader(io.StringIO(download.text)))[:2] == ["key", "title"]
    # Nothing went through either process's disk.
    assert not (tmp_path / "web-media").exists()
    assert not (tmp_path / "worker-media").exists()
    # Who may download is checked as before: outside the project the export does not exist.
    outsider = world.client("outsider").get(detail.json()["download"])
    assert (outsider.status_code, outsider.get("Location")) == (404, None)
    assert world.client("anonymous").get(detail.json()["download"]).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_a_store_that_does_not_answer_fails_the_job_and_the_task(
    world, bucket: Bucket, tmp_path: Path
) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    job = ExportJob.objects.create(project=world.project, kind="tasks_csv")

    with export_worker(tmp_path, bucket.env(endpoint_url=unreachable)) as worker:
        result = worker.run(job)
        result.get(timeout=90, propagate=False)
        again = worker.run(job).get(timeout=90)  # redelivered: the job is closed, nothing happens
        counted = {
            status: worker.metric("apm_exports_total", {"status": status})
            for status in ("succeeded", "failed")
        }
        task_failures = worker.metric("apm_celery_task_failures_total", {"task": EXPORT_TASK})

    job.refresh_from_db()
    assert result.state == "FAILURE"
    assert "could not be stored" in str(result.result)
    assert again == "failed"
    assert (job.status, bool(job.file), job.finished_at is not None) == ("failed", False, True)
    # What a member can act on; where the store is (readable by viewers too) stays in the worker's log.
    assert job.error == (
        "The export could not be stored: the file store did not answer (the operators' log has the details)."
    )
    assert counted == {"succeeded": 0.0, "failed": 1.0}
    assert task_failures == 1.0
    assert list(ExportJob.objects.values_list("pk", "status")) == [(job.pk, "failed")]
    assert bucket.keys() == []


@pytest.mark.django_db(transaction=True)
def test_a_local_media_root_that_cannot_be_written_fails_the_job_and_the_task(world, tmp_path: Path) -> None:
    # What a read-only root filesystem does to the default MEDIA_ROOT. The suite may run as root, whom
    # permission bits do not stop: a file stands where the directory must be created.
    (tmp_path / "read-only").write_text("not a directory")
    media = tmp_path / "read-only" / "media"
    job = ExportJob.objects.create(project=world.project, kind="tasks_csv")

    with export_worker(tmp_path, {"APM_TEST_MEDIA_ROOT": str(media)}) as worker:
        result = worker.run(job)
        result.get(timeout=90, propagate=False)
        failed = worker.metric("apm_exports_total", {"status": "failed"})
        task_failures = worker.metric("apm_celery_task_failures_total", {"task": EXPORT_TASK})

    job.refresh_from_db()
    assert result.state == "FAILURE"
    assert (job.status, bool(job.file)) == ("failed", False)
    assert job.error == (
        "The export could not be stored: the file store refused it (the operators' log has the details)."
    )
    assert (failed, task_failures) == (1.0, 1.0)
    assert list(ExportJob.objects.values_list("pk", "status")) == [(job.pk, "failed")]


@pytest.mark.django_db
def test_a_redelivered_export_counts_once(world, bucket: Bucket, settings) -> None:
    settings.STORAGES = {**settings.STORAGES, "default": bucket.storage()}
    good = ExportJob.objects.create(project=world.project, kind="tasks_csv")
    bad = ExportJob.objects.create(project=world.project, kind="tasks_csv", filters={"since": "not a date"})
    succeeded, failed = exports_counted("succeeded"), exports_counted("failed")

    first = export_run(job_id=good.pk)
    second = export_run(job_id=good.pk)
    with pytest.raises(ExportFailed):
        export_run(job_id=bad.pk)
    assert export_run(job_id=bad.pk).status == "failed"  # no second failure of the task either

    assert (second.status, second.file.name) == ("succeeded", first.file.name)
    assert second.finished_at == first.finished_at
    assert bucket.keys() == [f"{PREFIX}/{first.file.name}"]
    assert (exports_counted("succeeded") - succeeded, exports_counted("failed") - failed) == (1.0, 1.0)


@pytest.mark.django_db
def test_purge_deletes_the_objects_of_the_jobs_it_deletes(world, bucket: Bucket, settings) -> None:
    settings.STORAGES = {**settings.STORAGES, "default": bucket.storage()}
    old = export_run(job_id=ExportJob.objects.create(project=world.project, kind="tasks_csv").pk)
    new = export_run(job_id=ExportJob.objects.create(project=world.project, kind="commits_csv").pk)
    ExportJob.objects.filter(pk=old.pk).update(created_at=timezone.now() - datetime.timedelta(days=30))
    assert len(bucket.keys()) == 2

    assert exports_purge(older_than_days=7) == 1

    assert list(ExportJob.objects.values_list("pk", flat=True)) == [new.pk]
    assert bucket.keys() == [f"{PREFIX}/{new.file.name}"]


@pytest.mark.django_db
def test_streamed_downloads_and_the_admin(world, bucket: Bucket, settings, admin_client) -> None:
    settings.STORAGES = {**settings.STORAGES, "default": bucket.storage()}
    digest = ExportJob.objects.create(
        project=world.project, kind="digest_html", filters={"since": "2026-11-01"}
    )
    job = export_run(job_id=digest.pk)
    url = f"/api/v1/projects/ALPHA/exports/{job.pk}/download/"

    admin = admin_client.get(reverse("admin:reports_exportjob_download", args=[job.pk]))
    settings.APM_EXPORT_DOWNLOADS = "stream"  # for a store the clients cannot reach
    streamed = world.client("viewer").get(url)

    assert admin.status_code == 302
    assert admin["Location"].startswith(f"{bucket.server.url}/{bucket.name}/{PREFIX}/{job.file.name}?")
    assert streamed.status_code == 200
    assert b"".join(streamed.streaming_content) == bucket.read(f"{PREFIX}/{job.file.name}")
    assert streamed["Content-Type"] == "text/html; charset=utf-8"
    assert streamed["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'; sandbox"


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A port that takes connections (the kernel's backlog) and never answers: a store that hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("outage", ["refused", "hung"])
def test_a_store_that_does_not_answer_fails_within_seconds(outage: str, bucket: Bucket, settings) -> None:
    """The timeouts and retries of config.storages: an export never waits on a store for minutes."""
    with contextlib.ExitStack() as stack:
        endpoint = (
            f"http://127.0.0.1:{free_port()}" if outage == "refused" else stack.enter_context(silent_server())
        )
        settings.STORAGES = {**settings.STORAGES, "default": bucket.storage(endpoint)}
        started = time.monotonic()
        with pytest.raises(BotoCoreError, match=endpoint):
            default_storage.save("exports/probe.csv", ContentFile(b"x"))
        waited = time.monotonic() - started
    # Refused: at once. Hung: two read timeouts of 10 s (an attempt and one retry).
    assert waited < (5 if outage == "refused" else 40)


@pytest.mark.django_db
@pytest.mark.parametrize("failure", ["refused", "no-bucket"])
def test_a_failed_store_is_told_to_members_without_where_the_store_is(
    failure: str, world, bucket: Bucket, settings, caplog
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}" if failure == "refused" else bucket.server.url
    storage = bucket.storage(endpoint)
    if failure == "no-bucket":
        storage["OPTIONS"]["bucket_name"] = f"{bucket.name}-missing"
    settings.STORAGES = {**settings.STORAGES, "default": storage}
    job = ExportJob.objects.create(project=world.project, kind="tasks_csv")

    with pytest.raises(ExportFailed):
        export_run(job_id=job.pk)

    job.refresh_from_db()
    said = "did not answer" if failure == "refused" else "refused it"
    assert job.error == (
        f"The export could not be stored: the file store {said} (the operators' log has the details)."
    )
    assert endpoint not in job.error
    assert bucket.name not in job.error
    # The operators' log keeps where the store is and what it said.
    (logged,) = [
        record.msg
        for record in caplog.records
        if isinstance(record.msg, dict) and record.msg.get("event") == "export_store_failed"
    ]
    assert logged["job_id"] == job.pk
    assert storage["OPTIONS"]["bucket_name"] in logged["storage"]
    assert endpoint in logged["storage"]
    assert logged["error"]


GONE = {"detail": "The file is no longer stored. Request the export again."}


@pytest.mark.django_db
def test_a_streamed_download_whose_object_is_gone_is_410(
    world, bucket: Bucket, settings, admin_client
) -> None:
    settings.STORAGES = {**settings.STORAGES, "default": bucket.storage()}
    settings.APM_EXPORT_DOWNLOADS = "stream"
    job = export_run(job_id=ExportJob.objects.create(project=world.project, kind="tasks_csv").pk)
    bucket.server.client().delete_object(Bucket=bucket.name, Key=f"{PREFIX}/{job.file.name}")

    api = world.client("viewer").get(f"/api/v1/projects/ALPHA/exports/{job.pk}/download/")
    admin = admin_client.get(reverse("admin:reports_exportjob_download", args=[job.pk]))

    assert (api.status_code, api.json()) == (410, GONE)
    assert (admin.status_code, admin.json()) == (410, GONE)


@pytest.mark.django_db
def test_a_local_download_whose_file_is_gone_is_410(world, settings, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    job = export_run(job_id=ExportJob.objects.create(project=world.project, kind="tasks_csv").pk)
    Path(job.file.path).unlink()

    response = world.client("viewer").get(f"/api/v1/projects/ALPHA/exports/{job.pk}/download/")

    assert (response.status_code, response.json()) == (410, GONE)


@pytest.mark.django_db
@pytest.mark.parametrize("outage", ["refused", "hung"])
def test_a_streamed_download_from_a_store_that_does_not_answer_is_503(
    outage: str, world, bucket: Bucket, settings
) -> None:
    settings.STORAGES = {**settings.STORAGES, "default": bucket.storage()}
    settings.APM_EXPORT_DOWNLOADS = "stream"
    job = export_run(job_id=ExportJob.objects.create(project=world.project, kind="tasks_csv").pk)
    with contextlib.ExitStack() as stack:
        endpoint = (
            f"http://127.0.0.1:{free_port()}" if outage == "refused" else stack.enter_context(silent_server())
        )
        # As a web process has it (gunicorn.conf.py; tests/config/test_runtime.py checks that it does).
        web = bucket.storage(endpoint, read_timeout=5, attempts=1)
        settings.STORAGES = {**settings.STORAGES, "default": web}
        started = time.monotonic()
        response = world.client("viewer").get(f"/api/v1/projects/ALPHA/exports/{job.pk}/download/")
        waited = time.monotonic() - started

    assert response.status_code == 503
    # The web thread is held one read timeout of 5 s at most, not the workers' two of 10 s.
    assert waited < (5 if outage == "refused" else 15)
    assert response["Retry-After"] == "60"
    assert response.json() == {"detail": "The file store does not answer. Try again in a minute."}
    assert endpoint not in response.content.decode()
