"""Projects created at the same moment with the same name (the load test's POST /projects) all succeed;
identical invitations at once are one invitation, and one accepted at once is one membership.

Each derives its key from the name (TP, TP2, ...); when two derive the same key, the unique index picks
one and the other derives again. Real threads and real connections, on every database of the suite.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connections

from projects.models import Invitation, Membership, Project
from projects.services import invitation_accept, invitation_create, project_create
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


def _at_once(work: Callable[[], object]) -> tuple[list[object], list[BaseException]]:
    """Run ``work`` in THREADS threads released together, each on its own connection."""
    barrier = threading.Barrier(THREADS)
    results: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(work())
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results, errors


@pytest.mark.django_db(transaction=True)
def test_identical_invitations_at_once_are_one_pending_invitation():
    project = project_create(key="INV", name="Invitations", owner=UserFactory(username="olivia"))

    results, errors = _at_once(
        lambda: invitation_create(project=project, username="ghost", role="member", invited_by=None)
    )

    assert errors == []
    assert list(Invitation.objects.values_list("username", "status")) == [("ghost", "pending")]
    # Exactly one of them created it; the others renewed it.
    assert sorted(renewed for _invitation, renewed in results) == [False] + [True] * (THREADS - 1)


@pytest.mark.django_db(transaction=True)
def test_one_invitation_accepted_at_once_makes_one_membership():
    project = project_create(key="INV", name="Invitations", owner=UserFactory(username="olivia"))
    invitee = UserFactory(username="ada")
    invitation, _renewed = invitation_create(
        project=project, username="ada", role="maintainer", invited_by=None
    )

    results, errors = _at_once(
        lambda: invitation_accept(invitation=Invitation.objects.get(pk=invitation.pk), user=invitee)
    )

    assert errors == []
    assert len({membership.pk for membership in results}) == 1
    assert list(Membership.objects.filter(user=invitee).values_list("project__key", "role")) == [
        ("INV", "maintainer")
    ]
    assert Invitation.objects.get().status == "accepted"
