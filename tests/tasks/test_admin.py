"""The admin for tasks, their history and time entries, driven through its HTTP views."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.messages import ERROR, SUCCESS
from django.db.models import Model
from django.urls import reverse

from projects.models import Membership, Project
from repos.models import CommitTaskLink
from tasks.models import Task, TaskDependency, TaskEvent
from tasks.services import task_dependency_add
from tests.admin_helpers import (
    admin_form_data,
    assert_changelist_queries_fixed,
    inline_formset,
)
from tests.factories import (
    CommitFactory,
    MembershipFactory,
    ProjectFactory,
    RepositoryFactory,
    TaskFactory,
    TimeEntryFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

Status = Task.Status
Kind = TaskEvent.Kind


@pytest.fixture
def project() -> Project:
    return ProjectFactory(key="APM")


def _depend(task: Task, on: Task) -> None:
    task_dependency_add(task=task, depends_on=on, source=TaskEvent.Source.SYSTEM)


@pytest.fixture
def rows(project, admin_user) -> dict[str, Model]:
    """A task with something in every inline of its change page: dependency, time, commit link, events."""
    member = MembershipFactory(project=project, role=Membership.Role.MEMBER).user
    task = TaskFactory(project=project, assignee=member, actor=admin_user)
    _depend(task, TaskFactory(project=project))
    entry = TimeEntryFactory(task=task, user=member)
    commit = CommitFactory(repository=RepositoryFactory(project=project))
    CommitTaskLink.objects.create(commit=commit, task=task, action=CommitTaskLink.Action.REFERENCE)
    return {"task": task, "taskevent": task.events.get(kind=Kind.CREATED), "timeentry": entry}


def _change_url(task: Task) -> str:
    return reverse("admin:tasks_task_change", args=[task.pk])


# --- Smoke: every page of every registered model renders for a superuser ------------------------------


@pytest.mark.parametrize("model", ["task", "taskevent", "timeentry"])
def test_changelist_lists_the_row(admin_client, rows, model):
    response = admin_client.get(reverse(f"admin:tasks_{model}_changelist"))

    assert response.status_code == 200
    assert rows[model] in response.context["cl"].result_list


@pytest.mark.parametrize("model", ["task", "timeentry"])
def test_add_page_renders(admin_client, model):
    response = admin_client.get(reverse(f"admin:tasks_{model}_add"))

    assert response.status_code == 200
    assert response.context["add"] is True


@pytest.mark.parametrize("model", ["task", "timeentry"])
def test_change_page_renders(admin_client, rows, model):
    obj = rows[model]

    response = admin_client.get(reverse(f"admin:tasks_{model}_change", args=[obj.pk]))

    assert response.status_code == 200
    assert response.context["original"] == obj
    assert response.context["has_change_permission"] is True


def test_task_event_admin_is_read_only(admin_client, rows):
    event = rows["taskevent"]
    change_url = reverse("admin:tasks_taskevent_change", args=[event.pk])

    view = admin_client.get(change_url)

    assert view.status_code == 200
    assert view.context["original"] == event
    assert view.context["has_change_permission"] is False
    assert admin_client.get(reverse("admin:tasks_taskevent_add")).status_code == 403
    assert admin_client.post(change_url, {"kind": Kind.UPDATED}).status_code == 403
    event.refresh_from_db()
    assert event.kind == Kind.CREATED


# --- Query counts: a changelist costs the same number of queries for 1 row and for 50 ------------------


def _tasks(count: int) -> None:
    for _ in range(count):
        membership = MembershipFactory(role=Membership.Role.MEMBER)  # a project and a member of its own
        TaskFactory(project=membership.project, assignee=membership.user)


def _task_events(count: int) -> None:
    for _ in range(count):
        TaskFactory(actor=UserFactory())  # one "created" event each, with an actor


def _time_entries(count: int) -> None:
    for _ in range(count):
        TimeEntryFactory(user=UserFactory())


@pytest.mark.parametrize(
    ("model", "add_rows", "expected"),
    [
        # 1 session, 2 user, 3 the projects that have tasks (the RelatedOnlyFieldListFilter on project),
        # 4 COUNT for the paginator, 5 COUNT of all rows ("50 total", show_full_result_count),
        # 6 the rows with project and assignee joined (list_select_related)
        pytest.param("task", _tasks, 6, id="task"),
        # 1 session, 2 user, 3 COUNT for the paginator (no second COUNT: show_full_result_count = False),
        # 4 the rows with task, the task's project (for its key) and actor joined
        pytest.param("taskevent", _task_events, 4, id="taskevent"),
        # 1 session, 2 user, 3 COUNT for the paginator (no second COUNT),
        # 4 the rows with task, the task's project and user joined
        pytest.param("timeentry", _time_entries, 4, id="timeentry"),
    ],
)
def test_changelist_queries_do_not_grow_with_rows(
    admin_client, django_assert_num_queries, model: str, add_rows: Callable[[int], None], expected: int
):
    url = reverse(f"admin:tasks_{model}_changelist")
    assert_changelist_queries_fixed(admin_client, django_assert_num_queries, url, add_rows, expected)


# --- Behaviour -------------------------------------------------------------------------------------------


def test_add_task_takes_the_next_number_and_records_its_creation(admin_client, admin_user, project):
    TaskFactory(project=project)  # APM-1
    url = reverse("admin:tasks_task_add")
    data = admin_form_data(admin_client.get(url), project=project.pk, title="Write the admin tests")

    response = admin_client.post(url, data)

    assert response.status_code == 302
    task = Task.objects.get(project=project, title="Write the admin tests")
    assert task.number == 2
    assert task.reporter == admin_user
    event = task.events.get()
    assert (event.kind, event.source, event.actor, event.to_status) == (
        Kind.CREATED,
        TaskEvent.Source.ADMIN,
        admin_user,
        Status.TODO,
    )


def test_add_subtask(admin_client, project):
    parent = TaskFactory(project=project)
    url = reverse("admin:tasks_task_add")
    data = admin_form_data(admin_client.get(url), project=project.pk, title="Child", parent=parent.pk)

    response = admin_client.post(url, data)

    assert response.status_code == 302
    assert Task.objects.get(title="Child").parent == parent


def test_status_change_records_the_transition(admin_client, admin_user, project):
    task = TaskFactory(project=project)
    data = admin_form_data(admin_client.get(_change_url(task)), status=Status.IN_PROGRESS)

    response = admin_client.post(_change_url(task), data)

    assert response.status_code == 302
    task.refresh_from_db()
    assert task.status == Status.IN_PROGRESS
    assert task.started_at is not None
    event = task.events.get(kind=Kind.STATUS_CHANGED)
    assert (event.source, event.actor, event.from_status, event.to_status) == (
        TaskEvent.Source.ADMIN,
        admin_user,
        Status.TODO,
        Status.IN_PROGRESS,
    )
    # Only the status changed: no "updated" event for fields posted back as they were.
    assert not task.events.filter(kind=Kind.UPDATED).exists()


def test_done_is_refused_while_a_dependency_is_open(admin_client, project):
    blocker = TaskFactory(project=project, status=Status.TODO)
    task = TaskFactory(project=project, status=Status.IN_PROGRESS)
    _depend(task, blocker)
    data = admin_form_data(admin_client.get(_change_url(task)), status=Status.DONE)

    response = admin_client.post(_change_url(task), data)

    assert response.status_code == 200  # the form again, not a redirect
    [error] = response.context["adminform"].form.errors["status"]
    assert blocker.key in error
    assert blocker.key in response.content.decode()
    task.refresh_from_db()
    assert task.status == Status.IN_PROGRESS
    assert not task.events.filter(kind=Kind.STATUS_CHANGED).exists()


def test_dependency_added_in_the_inline_is_recorded(admin_client, admin_user, project):
    blocker = TaskFactory(project=project)
    task = TaskFactory(project=project)
    response = admin_client.get(_change_url(task))
    prefix = inline_formset(response, TaskDependency).prefix
    data = admin_form_data(
        response, **{f"{prefix}-TOTAL_FORMS": "1", f"{prefix}-0-depends_on": str(blocker.pk)}
    )

    response = admin_client.post(_change_url(task), data)

    assert response.status_code == 302
    assert list(task.depends_on.all()) == [blocker]
    event = task.events.get(kind=Kind.DEPENDENCY_ADDED)
    assert (event.source, event.actor, event.data["key"]) == (TaskEvent.Source.ADMIN, admin_user, "APM-1")


def test_action_moves_free_tasks_to_done_and_reports_blocked_ones(admin_client, project):
    blocker = TaskFactory(project=project, status=Status.TODO)  # APM-1
    free = TaskFactory(project=project, status=Status.IN_PROGRESS)  # APM-2
    blocked = TaskFactory(project=project, status=Status.IN_PROGRESS)  # APM-3
    _depend(blocked, blocker)

    response = admin_client.post(
        reverse("admin:tasks_task_changelist"),
        {"action": "transition_to_done", "_selected_action": [free.pk, blocked.pk]},
        follow=True,
    )

    assert response.status_code == 200
    free.refresh_from_db()
    blocked.refresh_from_db()
    assert (free.status, blocked.status) == (Status.DONE, Status.IN_PROGRESS)
    assert free.events.get(kind=Kind.STATUS_CHANGED).source == TaskEvent.Source.ADMIN
    messages = [(message.level, message.message) for message in response.context["messages"]]
    assert messages == [
        (SUCCESS, "1 task(s) moved to Done."),
        (ERROR, "APM-3 cannot be done while it waits on APM-1 (To do)."),
    ]


def test_search_by_key_finds_exactly_that_task(admin_client, project):
    tasks = [TaskFactory(project=project) for _ in range(3)]  # APM-1 .. APM-3
    other = ProjectFactory(key="APMX")
    TaskFactory(project=other)
    TaskFactory(project=other)  # APMX-2: same number, and its project key starts with APM

    response = admin_client.get(reverse("admin:tasks_task_changelist"), {"q": "apm-2"})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [tasks[1]]
