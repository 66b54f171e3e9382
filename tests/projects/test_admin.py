"""The admin for projects and memberships, driven through its HTTP views."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest
from django.contrib.admin.models import LogEntry
from django.db.models import Model
from django.urls import reverse
from django.utils import timezone

from projects.models import Invitation, Membership, Project
from projects.services import invitation_create, membership_set, project_create
from tests.admin_helpers import (
    admin_form_data,
    assert_changelist_queries_fixed,
    inline_formset,
)
from tests.factories import MembershipFactory, ProjectFactory, TaskFactory, UserFactory

pytestmark = pytest.mark.django_db

OWNER = Membership.Role.OWNER
MEMBER = Membership.Role.MEMBER


@pytest.fixture
def owner():
    return UserFactory(username="olivia")


@pytest.fixture
def project(owner) -> Project:
    project = ProjectFactory(key="APM", name="Auto project management")
    MembershipFactory(project=project, user=owner, role=OWNER)
    TaskFactory(project=project)
    return project


@pytest.fixture
def rows(project, owner) -> dict[str, Model]:
    invitation, _renewed = invitation_create(project=project, username="ada", role=MEMBER, invited_by=owner)
    return {"project": project, "membership": project.memberships.get(), "invitation": invitation}


# --- Smoke: every page of every registered model renders for a superuser ------------------------------


@pytest.mark.parametrize("model", ["project", "membership", "invitation"])
def test_changelist_lists_the_row(admin_client, rows, model):
    response = admin_client.get(reverse(f"admin:projects_{model}_changelist"))

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [rows[model]]


@pytest.mark.parametrize("model", ["project", "membership", "invitation"])
def test_add_page_renders(admin_client, model):
    response = admin_client.get(reverse(f"admin:projects_{model}_add"))

    assert response.status_code == 200
    assert response.context["add"] is True


@pytest.mark.parametrize("model", ["project", "membership", "invitation"])
def test_change_page_renders(admin_client, rows, model):
    obj = rows[model]

    response = admin_client.get(reverse(f"admin:projects_{model}_change", args=[obj.pk]))

    assert response.status_code == 200
    assert response.context["original"] == obj
    assert response.context["has_change_permission"] is True


# --- Query counts: a changelist costs the same number of queries for 1 row and for 50 ------------------


def _projects(count: int) -> None:
    for _ in range(count):
        TaskFactory(project=ProjectFactory())  # an open task, so the open-task count has something to count


def _memberships(count: int) -> None:
    for _ in range(count):
        MembershipFactory()  # a project and a user of its own each


def _invitations(count: int) -> None:
    for number in range(count):
        invitation_create(
            project=ProjectFactory(), username=f"guest{number}", role=MEMBER, invited_by=UserFactory()
        )


@pytest.mark.parametrize(
    ("model", "add_rows", "expected"),
    [
        # 1 session, 2 user, 3 COUNT for the paginator, 4 COUNT of all rows ("50 total",
        # show_full_result_count), 5 the rows with their open-task count (one LEFT JOIN tasks ... GROUP BY)
        pytest.param("project", _projects, 5, id="project"),
        # 1 session, 2 user, 3 COUNT for the paginator, 4 COUNT of all rows,
        # 5 the rows with project and user joined (list_select_related)
        pytest.param("membership", _memberships, 5, id="membership"),
        # 1 session, 2 user, 3 COUNT for the paginator (no full count: show_full_result_count is off),
        # 4 the rows with project and inviter joined (list_select_related)
        pytest.param("invitation", _invitations, 4, id="invitation"),
    ],
)
def test_changelist_queries_do_not_grow_with_rows(
    admin_client, django_assert_num_queries, model: str, add_rows: Callable[[int], None], expected: int
):
    url = reverse(f"admin:projects_{model}_changelist")
    assert_changelist_queries_fixed(admin_client, django_assert_num_queries, url, add_rows, expected)


# --- Behaviour -------------------------------------------------------------------------------------------


def test_add_project_makes_the_admin_user_its_owner(admin_client, admin_user):
    url = reverse("admin:projects_project_add")
    data = admin_form_data(admin_client.get(url), key="NEW", name="New project", status="planning")

    response = admin_client.post(url, data)

    assert response.status_code == 302
    project = Project.objects.get(key="NEW")
    assert (project.name, project.status) == ("New project", "planning")
    assert list(project.memberships.values_list("user", "role")) == [(admin_user.pk, OWNER)]


def test_project_key_cannot_change_once_created(admin_client, project):
    url = reverse("admin:projects_project_change", args=[project.pk])
    data = admin_form_data(admin_client.get(url), key="OTHER", name="Renamed")

    response = admin_client.post(url, data)

    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.key, project.name) == ("APM", "Renamed")


def test_inline_refuses_to_leave_the_project_without_owner(admin_client, project, owner):
    url = reverse("admin:projects_project_change", args=[project.pk])
    response = admin_client.get(url)
    prefix = inline_formset(response, Membership).prefix
    data = admin_form_data(response, **{f"{prefix}-0-role": MEMBER})

    response = admin_client.post(url, data)

    assert response.status_code == 200  # the form again, not a redirect
    assert inline_formset(response, Membership).non_form_errors() == ["A project needs at least one owner."]
    assert Membership.objects.get(project=project, user=owner).role == OWNER


def test_inline_hands_ownership_over_in_one_save(admin_client, admin_user, project, owner):
    newcomer = MembershipFactory(project=project, role=MEMBER).user
    url = reverse("admin:projects_project_change", args=[project.pk])
    response = admin_client.get(url)
    formset = inline_formset(response, Membership)
    prefix = formset.prefix
    forms_by_user = {form.instance.user_id: index for index, form in enumerate(formset.forms)}
    data = admin_form_data(
        response,
        **{
            f"{prefix}-{forms_by_user[owner.pk]}-role": MEMBER,
            f"{prefix}-{forms_by_user[newcomer.pk]}-role": OWNER,
        },
    )

    response = admin_client.post(url, data)

    assert response.status_code == 302
    assert dict(project.memberships.values_list("user", "role")) == {owner.pk: MEMBER, newcomer.pk: OWNER}
    entry = LogEntry.objects.get(user=admin_user, object_id=str(project.pk))
    assert "Changed Role for membership" in entry.get_change_message()


def test_membership_admin_refuses_to_demote_the_last_owner(admin_client, project, owner):
    membership = project.memberships.get(user=owner)
    url = reverse("admin:projects_membership_change", args=[membership.pk])
    data = admin_form_data(admin_client.get(url), role=MEMBER)

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["role"] == [
        "This is the project's last owner; make someone else owner first."
    ]
    membership.refresh_from_db()
    assert membership.role == OWNER


def test_membership_admin_adds_a_member(admin_client, project):
    newcomer = UserFactory()
    url = reverse("admin:projects_membership_add")
    data = admin_form_data(admin_client.get(url), project=project.pk, user=newcomer.pk, role=MEMBER)

    response = admin_client.post(url, data)

    assert response.status_code == 302
    assert Membership.objects.get(project=project, user=newcomer).role == MEMBER


def test_the_last_owner_is_not_offered_for_deletion(admin_client):
    owner, member = UserFactory(), UserFactory()
    project = project_create(key="SOLO", name="Solo", owner=owner)
    membership_set(project=project, user=member, role=Membership.Role.MEMBER)
    last_owner = Membership.objects.get(project=project, user=owner)

    response = admin_client.post(
        reverse("admin:projects_membership_delete", args=[last_owner.pk]), {"post": "yes"}
    )

    assert response.status_code == 403
    assert Membership.objects.filter(pk=last_owner.pk).exists()


def test_bulk_deletion_goes_through_the_service_and_never_takes_the_last_owner(admin_client):
    owner, member, viewer = UserFactory(), UserFactory(), UserFactory()
    project = project_create(key="BULK", name="Bulk", owner=owner)
    membership_set(project=project, user=member, role=Membership.Role.MEMBER)
    membership_set(project=project, user=viewer, role=Membership.Role.VIEWER)
    url = reverse("admin:projects_membership_changelist")
    everyone = list(Membership.objects.filter(project=project).values_list("pk", flat=True))
    others = list(Membership.objects.filter(project=project).exclude(user=owner).values_list("pk", flat=True))

    refused = admin_client.post(
        url, {"action": "delete_selected", "_selected_action": everyone, "post": "yes"}
    )
    assert refused.status_code == 403
    assert Membership.objects.filter(project=project).count() == 3

    admin_client.post(url, {"action": "delete_selected", "_selected_action": others, "post": "yes"})
    assert list(Membership.objects.filter(project=project).values_list("user", flat=True)) == [owner.pk]


def test_operators_set_the_commit_grammar_on_the_project_page(admin_client, project) -> None:
    url = reverse("admin:projects_project_change", args=[project.pk])
    page = admin_client.get(url)
    assert "commit_close_keywords" in page.content.decode()

    bad = admin_client.post(url, admin_form_data(page, commit_status_tags='{"review": "later"}'))
    data = admin_form_data(
        page, commit_close_keywords="ships, lands", commit_status_tags='{"review": "in_review"}'
    )
    data.pop("commit_time_logging")  # an unticked box is not sent
    saved = admin_client.post(url, data)

    assert bad.status_code == 200
    assert "must be a task status" in bad.content.decode()
    assert saved.status_code == 302
    project.refresh_from_db()
    assert (project.commit_close_keywords, project.commit_status_tags) == (
        "ships, lands",
        {"review": "in_review"},
    )
    assert project.commit_time_logging is False


def test_the_project_page_shows_priorities_and_burndown(admin_client) -> None:
    project = ProjectFactory(key="BURN")
    overdue = TaskFactory(
        project=project, title="Late & urgent", due_date=timezone.localdate() - datetime.timedelta(days=2)
    )
    TaskFactory(project=project, title="Someday")

    page = admin_client.get(reverse("admin:projects_project_change", args=[project.pk])).content.decode()

    assert "Priorities" in page
    assert "Burndown (last 4 weeks)" in page
    # The overdue task ranks first, its title escaped.
    assert page.index(f"<td>{overdue.key}</td><td>Late &amp; urgent</td>") < page.index("<td>Someday</td>")
    # Scope 2 by the last week's end, both added that week.
    assert f"<td>{timezone.localdate()}</td><td>2</td><td>0</td><td>2</td>" in page


def test_operators_invite_through_the_service_and_an_invitation_is_read_only(
    admin_client, admin_user, project
):
    url = reverse("admin:projects_invitation_add")
    data = admin_form_data(admin_client.get(url), project=str(project.pk), username="ada", role="maintainer")

    created = admin_client.post(url, data)
    again = admin_client.post(url, {**data, "role": "viewer"})
    member = admin_client.post(url, {**data, "username": "olivia"})
    invitation = Invitation.objects.get()
    change = admin_client.get(reverse("admin:projects_invitation_change", args=[invitation.pk]))

    assert (created.status_code, again.status_code) == (302, 302)
    assert (invitation.username, invitation.role, invitation.status) == ("ada", "viewer", "pending")
    assert invitation.invited_by == admin_user
    assert member.status_code == 200
    assert "olivia is already a member of APM." in member.content.decode()
    assert change.context["adminform"].form.fields == {}
    assert not Membership.objects.filter(user__username="ada").exists()


def test_the_revoke_action_revokes_pending_invitations_only(admin_client, project, owner):
    pending, _ = invitation_create(project=project, username="ada", role=MEMBER, invited_by=owner)
    accepted, _ = invitation_create(project=project, username="bob", role=MEMBER, invited_by=owner)
    Invitation.objects.filter(pk=accepted.pk).update(status=Invitation.Status.ACCEPTED)

    response = admin_client.post(
        reverse("admin:projects_invitation_changelist"),
        {"action": "revoke", "_selected_action": [pending.pk, accepted.pk]},
    )

    assert response.status_code == 302
    assert dict(Invitation.objects.values_list("username", "status")) == {"ada": "revoked", "bob": "accepted"}
