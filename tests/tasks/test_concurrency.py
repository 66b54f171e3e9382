"""Task numbers under concurrent creation: every thread gets its own number, none is lost or repeated.

Runs on every database of the suite (PostgreSQL and MariaDB with row locks; SQLite with its write
lock and IMMEDIATE transactions), with real threads and real connections.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from tasks.models import Task, TaskEvent
from tasks.services import task_create
from tests.factories import ProjectFactory

THREADS = 8
TASKS_PER_THREAD = 5


@pytest.mark.django_db(transaction=True)
def test_concurrent_task_creation_numbers_every_task_once():
    project = ProjectFactory(key="RACE")
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def create_tasks(worker: int) -> None:
        try:
            barrier.wait()
            for index in range(TASKS_PER_THREAD):
                task_create(
                    project=project, title=f"worker {worker} task {index}", source=TaskEvent.Source.API
                )
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=create_tasks, args=(worker,)) for worker in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    numbers = sorted(Task.objects.filter(project=project).values_list("number", flat=True))
    assert numbers == list(range(1, THREADS * TASKS_PER_THREAD + 1))
    project.refresh_from_db()
    assert project.last_task_number == THREADS * TASKS_PER_THREAD
    assert connection.vendor in {"postgresql", "mysql", "sqlite"}
