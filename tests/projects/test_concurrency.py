"""Projects created at the same moment with the same name (the load test's POST /projects) all succeed.

Each derives its key from the name (TP, TP2, ...); when two derive the same key, the unique index picks
one and the other derives again. Real threads and real connections, on every database of the suite.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from projects.models import Membership, Project
from projects.services import project_create
from tests.factories import UserFactory

THREADS = 8
PROJECTS_PER_THREAD = 5


@pytest.mark.django_db(transaction=True)
def test_concurrent_creations_with_one_name_get_distinct_keys():
    owner = UserFactory()
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def create_projects() -> None:
        try:
            barrier.wait()
            for _ in range(PROJECTS_PER_THREAD):
                project_create(name="Test Project", owner=owner)
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=create_projects) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    keys = set(Project.objects.values_list("key", flat=True))
    assert keys == {"TP", *(f"TP{n}" for n in range(2, THREADS * PROJECTS_PER_THREAD + 1))}
    assert Membership.objects.filter(user=owner, role="owner").count() == THREADS * PROJECTS_PER_THREAD
