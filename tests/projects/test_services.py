from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from insights.selectors import project_portfolio_cached, project_summary_cached
from projects.models import Membership, Project
from projects.services import (
    invitation_accept,
    invitation_create,
    invitation_decline,
    membership_remove,
    membership_set,
    project_create,
    project_key_suggest,
    project_update,
)
from tests.factories import ProjectFactory, TaskFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_project_create_makes_the_owner_a_member(user):
    project = project_create(key="APM", name="AutoProjectManagement", owner=user)

    assert project.key == "APM"
    assert Membership.objects.get(project=project).role == Membership.Role.OWNER


def test_project_key_is_derived_from_the_name_and_never_reused():
    first = project_create(name="Test Project")
    second = project_create(name="Test Project")
    third = project_create(name="Tiny Platform")

    assert [first.key, second.key, third.key] == ["TP", "TP2", "TP3"]
    assert project_key_suggest(name="kernel") == "KERN"
    assert project_key_suggest(name="!!") == "PRJ"


def test_derived_keys_stay_within_ten_characters_past_a_hundred_projects():
    name = "Alpha Beta Gamma Delta Epsilon Zeta Eta Theta"
    keys = [project_create(name=name).key for _ in range(101)]

    assert keys[:2] == ["ABGDEZET", "ABGDEZET2"]
    assert keys[-1] == "ABGDEZE101"
    assert len(set(keys)) == 101
    assert max(len(key) for key in keys) == 10


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"key": "apm", "name": "Lower-case key"}, "key"),
        ({"key": "A", "name": "Too short"}, "key"),
        ({"key": "OK", "name": "Bad status", "status": "sleeping"}, "status"),
        ({"key": "OK", "name": ""}, "name"),
    ],
)
def test_project_create_rejects_bad_fields_by_name(fields, bad_field):
    with pytest.raises(ValidationError) as excinfo:
        project_create(**fields)

    assert bad_field in excinfo.value.message_dict
    assert not Project.objects.exists()


def test_project_create_rejects_a_taken_key_without_writing_anything(user):
    project_create(key="APM", name="First")

    with pytest.raises(ValidationError) as excinfo:
        project_create(key="APM", name="Second", owner=user)

    assert "key" in excinfo.value.message_dict
    assert Project.objects.count() == 1
    assert not Membership.objects.exists()


def test_project_dates_must_be_in_order():
    with pytest.raises(ValidationError, match="target date cannot be before the start date"):
        project_create(
            key="APM",
            name="Backwards",
            start_date=datetime.date(2026, 5, 1),
            target_date=datetime.date(2026, 4, 1),
        )


def test_project_update_changes_allowed_fields_only():
    project = ProjectFactory()

    project_update(project=project, name="Renamed", status=Project.Status.ON_HOLD)
    project.refresh_from_db()
    assert (project.name, project.status) == ("Renamed", Project.Status.ON_HOLD)

    with pytest.raises(ValidationError) as excinfo:
        project_update(project=project, key="NEW")
    assert "key" in excinfo.value.message_dict


def test_project_update_invalidates_the_cached_summary_once_committed(django_capture_on_commit_callbacks):
    project = ProjectFactory(name="Before")
    assert project_summary_cached(project=project)["name"] == "Before"
    assert [row["name"] for row in project_portfolio_cached()] == ["Before"]

    with django_capture_on_commit_callbacks(execute=True):
        project_update(project=project, name="After")

    assert project_summary_cached(project=project)["name"] == "After"
    assert [row["name"] for row in project_portfolio_cached()] == ["After"]


def test_cached_summary_counts_tasks_by_state(django_capture_on_commit_callbacks):
    project = ProjectFactory()
    with django_capture_on_commit_callbacks(execute=True):
        TaskFactory(project=project)
        TaskFactory(project=project, status="done")
        TaskFactory(project=project, status="cancelled")

    summary = project_summary_cached(project=project)

    assert (summary["tasks_total"], summary["tasks_open"], summary["tasks_done"]) == (3, 1, 1)
    (row,) = project_portfolio_cached()
    assert (row["tasks_total"], row["tasks_open"], row["tasks_done"]) == (3, 1, 1)


def test_membership_set_adds_and_changes_roles():
    owner, other = UserFactory(), UserFactory()
    project = project_create(key="APM", name="APM", owner=owner)

    membership_set(project=project, user=other, role=Membership.Role.VIEWER)
    membership_set(project=project, user=other, role=Membership.Role.MAINTAINER)

    assert Membership.objects.get(project=project, user=other).role == Membership.Role.MAINTAINER
    with pytest.raises(ValidationError) as excinfo:
        membership_set(project=project, user=other, role="emperor")
    assert "role" in excinfo.value.message_dict


def test_the_last_owner_can_neither_leave_nor_be_demoted():
    owner, successor = UserFactory(), UserFactory()
    project = project_create(key="APM", name="APM", owner=owner)

    with pytest.raises(ValidationError, match="last owner"):
        membership_set(project=project, user=owner, role=Membership.Role.MEMBER)
    with pytest.raises(ValidationError, match="last owner"):
        membership_remove(project=project, user=owner)

    membership_set(project=project, user=successor, role=Membership.Role.OWNER)
    membership_remove(project=project, user=owner)
    assert list(Membership.objects.filter(project=project).values_list("user", "role")) == [
        (successor.pk, Membership.Role.OWNER)
    ]


def test_without_owner_rights_nobody_is_made_or_unmade_an_owner(user):
    project = project_create(key="APM", name="APM", owner=user)
    maintainer = UserFactory()
    membership_set(project=project, user=maintainer, role="maintainer")

    with pytest.raises(PermissionDenied):
        membership_set(project=project, user=maintainer, role="owner", may_change_owners=False)
    with pytest.raises(PermissionDenied):
        membership_set(project=project, user=user, role="member", may_change_owners=False)
    with pytest.raises(PermissionDenied):
        membership_remove(project=project, user=user, may_change_owners=False)
    membership_set(project=project, user=maintainer, role="member", may_change_owners=False)

    roles = dict(Membership.objects.filter(project=project).values_list("user_id", "role"))
    assert roles == {user.pk: "owner", maintainer.pk: "member"}


def test_an_invitation_is_stored_by_the_username_as_accounts_spell_it():
    project = ProjectFactory(key="INV")

    invitation, renewed = invitation_create(
        project=project, username="  \uff41\uff44\uff41 ", role="member", invited_by=None
    )
    again, renewed_again = invitation_create(project=project, username="ada", role="viewer", invited_by=None)

    assert (invitation.username, renewed) == ("ada", False)
    assert (again.pk, again.role, renewed_again) == (invitation.pk, "viewer", True)
    with pytest.raises(ValidationError) as excinfo:
        invitation_create(project=project, username="a" * 151, role="member", invited_by=None)
    assert "username" in excinfo.value.message_dict


def test_only_the_invitee_answers_an_invitation():
    project = ProjectFactory(key="INV")
    invitee, other = UserFactory(username="ada"), UserFactory(username="bob")
    invitation, _renewed = invitation_create(project=project, username="ada", role="member", invited_by=None)

    for answer in (invitation_accept, invitation_decline):
        with pytest.raises(PermissionDenied):
            answer(invitation=invitation, user=other)

    assert invitation_accept(invitation=invitation, user=invitee).user == invitee
    assert not Membership.objects.filter(user=other).exists()
