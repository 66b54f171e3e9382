"""A task's assignee is looked up among its project's writing members only, never among all accounts.

Every name that cannot be assigned gets the same answer, byte for byte and with the same queries: an
unknown name, an account outside the project, an inactive member, a viewer, a staff account, another
spelling of a member's name. Otherwise any signed-in user could create a project and probe usernames.
"""

from __future__ import annotations

from typing import Any

import pytest

from tasks.models import Task
from tests.enumeration import answer_of, assert_all_alike
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

REFUSED = ("ghost", "outsider", "newcomer", "dormant", "viewer", "staff", "MEMBER")
MESSAGE = (
    b'{"detail":"Invalid input.",'
    b'"errors":{"assignee":["No member of ALPHA with write access has this username."]}}'
)


@pytest.fixture
def names(world: Any) -> Any:
    UserFactory(username="newcomer")  # an account in no project at all
    MembershipFactory(
        project=world.project, user=UserFactory(username="dormant", is_active=False), role="member"
    )
    return world


@pytest.mark.parametrize("who", ["member", "owner", "staff"])
def test_creating_a_task_refuses_every_unassignable_name_alike(names, who):
    client = names.client(who)
    client.get("/api/v1/me/")  # the token's last use is written on the first request only

    answers = {
        name: answer_of(
            client, "post", "/api/v1/tasks/", {"project": "ALPHA", "title": "x", "assignee": name}
        )
        for name in REFUSED
    }
    assigned = client.post(
        "/api/v1/tasks/", {"project": "ALPHA", "title": "x", "assignee": "member"}, format="json"
    )

    assert_all_alike(answers)
    assert answers["ghost"][:2] == (400, MESSAGE)
    assert (assigned.status_code, assigned.json()["assignee"]) == (201, "member")
    assert Task.objects.filter(project=names.project).count() == 3


@pytest.mark.parametrize("who", ["member", "owner", "staff"])
def test_assigning_a_task_refuses_every_unassignable_name_alike(names, who):
    client = names.client(who)
    client.get("/api/v1/me/")

    answers = {
        name: answer_of(client, "patch", "/api/v1/tasks/ALPHA-1/", {"assignee": name}) for name in REFUSED
    }
    assigned = client.patch("/api/v1/tasks/ALPHA-1/", {"assignee": "maintainer"}, format="json")

    assert_all_alike(answers)
    assert answers["ghost"][:2] == (400, MESSAGE)
    assert (assigned.status_code, assigned.json()["assignee"]) == (200, "maintainer")


def test_other_field_errors_come_with_every_name_alike(names):
    # A name is judged only once the other fields are valid, for every name: the set of reported fields
    # does not tell an unknown name from an account either.
    client = names.client("member")
    client.get("/api/v1/me/")

    answers = {
        name: answer_of(client, "post", "/api/v1/tasks/", {"project": "ALPHA", "title": "", "assignee": name})
        for name in (*REFUSED, "member")
    }

    assert_all_alike(answers)
    assert answers["ghost"][:2] == (
        400,
        b'{"detail":"Invalid input.","errors":{"title":["This field may not be blank."]}}',
    )
