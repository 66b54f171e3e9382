"""Who may see a project is remembered by the shared cache (projects.selectors.project_id_visible), and
every change that can alter the answer forgets it when it commits: the summary route, which asks it on
every request, answers as the database does right after each change."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from apm.cache import stamped_get, stamped_set
from projects.deletion import project_delete_request
from projects.models import Membership
from projects.selectors import PROJECT_ACCESS_NAMESPACE, project_id_visible
from projects.services import membership_remove, membership_set
from tests.authentication import authentication_queries

pytestmark = pytest.mark.django_db

SUMMARY = "/api/v1/projects/{key}/summary/"


def summary_status(world, who: str, key: str = "ALPHA") -> int:
    return world.client(who).get(SUMMARY.format(key=key), HTTP_ACCEPT="application/json").status_code


def test_a_removed_member_is_refused_at_once(world, django_capture_on_commit_callbacks):
    assert summary_status(world, "viewer") == 200
    assert summary_status(world, "viewer") == 200  # now remembered

    with django_capture_on_commit_callbacks(execute=True):
        membership_remove(project=world.project, user=world.users["viewer"])

    assert summary_status(world, "viewer") == 404


def test_a_new_member_is_let_in_at_once(world, django_capture_on_commit_callbacks):
    newcomer = world.users["outsider"]
    assert summary_status(world, "outsider") == 404  # "not visible" is remembered too

    with django_capture_on_commit_callbacks(execute=True):
        membership_set(project=world.project, user=newcomer, role=Membership.Role.VIEWER)

    assert summary_status(world, "outsider") == 200


def test_a_project_being_deleted_is_gone_at_once(world, django_capture_on_commit_callbacks):
    assert summary_status(world, "owner") == 200
    assert summary_status(world, "staff") == 200

    with django_capture_on_commit_callbacks(execute=True):
        project_delete_request(project=world.project, by=world.users["owner"])

    assert summary_status(world, "owner") == 404
    assert summary_status(world, "staff") == 404


def test_staff_taken_away_is_refused_at_once(world, django_capture_on_commit_callbacks):
    staff = world.users["staff"]
    assert summary_status(world, "staff") == 200

    with django_capture_on_commit_callbacks(execute=True):
        staff.is_staff = False
        staff.save(update_fields=["is_staff"])

    assert summary_status(world, "staff") == 404


def test_an_answer_read_before_a_removal_committed_is_never_served_after(
    world, django_capture_on_commit_callbacks
):
    """A request checks membership just before a removal commits and stores the answer just after: it is
    stored under the generation it saw first, which the removal's commit left behind."""
    viewer = world.users["viewer"]
    key = f"{PROJECT_ACCESS_NAMESPACE}:{viewer.pk}:ALPHA"
    _found, stamp = stamped_get(key, namespace=PROJECT_ACCESS_NAMESPACE)

    with django_capture_on_commit_callbacks(execute=True):
        membership_remove(project=world.project, user=viewer)
    stamped_set(key, world.project.pk, stamp=stamp, timeout=60)

    assert project_id_visible(user=viewer, key="ALPHA") is None
    assert summary_status(world, "viewer") == 404


def test_a_remembered_summary_costs_no_query_on_a_shared_cache(world, django_assert_num_queries):
    client = world.client("viewer")
    first = client.get(SUMMARY.format(key="alpha"), HTTP_ACCEPT="application/json")

    # Authentication, then who may see the project: each one query, or none when remembered (Redis).
    with django_assert_num_queries(2 * authentication_queries()):
        again = client.get(SUMMARY.format(key="alpha"), HTTP_ACCEPT="application/json")

    assert again.status_code == first.status_code == 200
    assert again.json() == first.json()


def test_a_deactivated_user_reads_nothing(world, django_capture_on_commit_callbacks):
    viewer = world.users["viewer"]
    client = world.client("viewer")
    assert client.get(SUMMARY.format(key="ALPHA")).status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        get_user_model().objects.get(pk=viewer.pk).delete()

    assert client.get(SUMMARY.format(key="ALPHA")).status_code == 401
