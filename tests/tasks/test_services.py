from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from projects.models import Membership
from tasks.models import Task, TaskDependency, TaskEvent
from tasks.selectors import task_get_by_key, task_history
from tasks.services import (
    task_assign,
    task_create,
    task_dependency_add,
    task_dependency_remove,
    task_transition,
    task_update,
)
from tests.factories import MembershipFactory, ProjectFactory, TaskFactory, UserFactory

pytestmark = pytest.mark.django_db
API = TaskEvent.Source.API


def test_tasks_are_numbered_per_project_and_record_their_creation(user):
    project, other = ProjectFactory(key="APM"), ProjectFactory(key="WEB")

    first = task_create(project=project, title="One", source=API, actor=user)
    second = task_create(project=project, title="Two", source=API)
    elsewhere = task_create(project=other, title="Three", source=API)

    assert [first.key, second.key, elsewhere.key] == ["APM-1", "APM-2", "WEB-1"]
    event = TaskEvent.objects.get(task=first)
    assert (event.kind, event.source, event.actor, event.to_status) == ("created", "api", user, "todo")
    assert first.reporter == user
    assert task_get_by_key(key="apm-2") == second
    assert task_get_by_key(key="APM-0") is None


def test_task_create_rejects_bad_input_without_writing_or_consuming_a_number():
    project = ProjectFactory()

    with pytest.raises(ValidationError) as excinfo:
        task_create(project=project, title="x", status="finished", source=API)
    assert "status" in excinfo.value.message_dict
    with pytest.raises(ValidationError) as excinfo:
        task_create(project=project, title="", source=API)
    assert "title" in excinfo.value.message_dict

    assert not Task.objects.exists()
    assert task_create(project=project, title="First real task", source=API).number == 1


def test_only_members_with_write_access_can_be_assigned():
    project = ProjectFactory()
    member = MembershipFactory(project=project, role=Membership.Role.MEMBER).user
    viewer = MembershipFactory(project=project, role=Membership.Role.VIEWER).user
    outsider = UserFactory()
    task = TaskFactory(project=project)

    task_assign(task=task, assignee=member, source=API)
    for refused in (viewer, outsider):
        with pytest.raises(ValidationError) as excinfo:
            task_assign(task=task, assignee=refused, source=API)
        assert "assignee" in excinfo.value.message_dict

    task.refresh_from_db()
    assert task.assignee == member
    assigned = TaskEvent.objects.filter(task=task, kind="assigned")
    assert [event.data["to"] for event in assigned] == [member.pk]


def test_transition_records_the_change_and_its_source(user):
    task = TaskFactory()

    task_transition(
        task=task, status="in_progress", source=TaskEvent.Source.COMMIT, actor=user, commit_sha="abc123"
    )
    task_transition(task=task, status="done", source=API)

    task.refresh_from_db()
    assert task.status == "done"
    assert task.started_at is not None
    assert task.closed_at is not None
    changes = [
        (event.from_status, event.to_status, event.source, event.commit_sha)
        for event in task_history(task=task).filter(kind="status_changed").order_by("id")
    ]
    assert changes == [("todo", "in_progress", "commit", "abc123"), ("in_progress", "done", "api", "")]


def test_transition_to_the_current_status_changes_nothing():
    task = TaskFactory(status="in_progress")

    task_transition(task=task, status="in_progress", source=API)

    assert not TaskEvent.objects.filter(task=task, kind="status_changed").exists()


def test_transition_rejects_an_unknown_status():
    task = TaskFactory()

    with pytest.raises(ValidationError) as excinfo:
        task_transition(task=task, status="shipped", source=API)

    assert "'shipped' is not a task status" in excinfo.value.message_dict["status"][0]
    task.refresh_from_db()
    assert task.status == "todo"


def test_a_task_cannot_be_done_while_it_waits_on_an_open_task():
    project = ProjectFactory(key="APM")
    blocker = TaskFactory(project=project, status="in_progress")
    task = TaskFactory(project=project)
    task_dependency_add(task=task, depends_on=blocker, source=API)

    with pytest.raises(ValidationError) as excinfo:
        task_transition(task=task, status="done", source=API)

    assert excinfo.value.message_dict["status"] == [
        "APM-2 cannot be done while it waits on APM-1 (In progress)."
    ]
    task.refresh_from_db()
    assert (task.status, task.closed_at) == ("todo", None)
    assert not TaskEvent.objects.filter(task=task, kind="status_changed").exists()
    # Cancelling is not closing as done: it stays possible.
    task_transition(task=task, status="cancelled", source=API)
    task_transition(task=task, status="todo", source=API)
    # Once the dependency is closed, so can the task be.
    task_transition(task=blocker, status="done", source=API)
    task_transition(task=task, status="done", source=API)
    task.refresh_from_db()
    assert task.status == "done"


def test_creating_a_task_as_done_respects_its_dependencies():
    project = ProjectFactory()
    blocker = TaskFactory(project=project)

    with pytest.raises(ValidationError, match="is done; it cannot start waiting on"):
        task_create(project=project, title="Premature", status="done", depends_on=[blocker], source=API)

    assert list(Task.objects.values_list("pk", flat=True)) == [blocker.pk]


def test_a_done_task_cannot_start_waiting_on_an_open_one():
    project = ProjectFactory(key="APM")
    done = TaskFactory(project=project, status="done")
    still_open = TaskFactory(project=project)

    with pytest.raises(ValidationError) as excinfo:
        task_dependency_add(task=done, depends_on=still_open, source=API)

    assert excinfo.value.message_dict["depends_on"] == [
        "APM-1 is done; it cannot start waiting on APM-2, which is open."
    ]
    assert not TaskDependency.objects.exists()


def test_transition_works_on_the_stored_row_not_a_stale_copy():
    task = TaskFactory()
    stale = Task.objects.get(pk=task.pk)
    task_transition(task=task, status="in_progress", source=API)
    started_at = Task.objects.get(pk=task.pk).started_at

    task_transition(task=stale, status="in_review", source=API)

    stored = Task.objects.get(pk=task.pk)
    assert (stored.status, stored.started_at) == ("in_review", started_at)
    assert stale.started_at == started_at
    last = TaskEvent.objects.filter(task=task, kind="status_changed").latest("id")
    assert (last.from_status, last.to_status) == ("in_progress", "in_review")


def test_reopening_a_task_clears_its_closing_time():
    task = TaskFactory(status="done")
    assert task.closed_at is not None

    task_transition(task=task, status="todo", source=API)

    task.refresh_from_db()
    assert task.closed_at is None


def test_dependencies_reject_self_other_projects_and_cycles():
    project = ProjectFactory(key="APM")
    a, b, c = (TaskFactory(project=project) for _ in range(3))
    foreign = TaskFactory()
    task_dependency_add(task=a, depends_on=b, source=API)
    task_dependency_add(task=b, depends_on=c, source=API)

    with pytest.raises(ValidationError, match="cannot depend on itself"):
        task_dependency_add(task=a, depends_on=a, source=API)
    with pytest.raises(ValidationError, match="belongs to another project"):
        task_dependency_add(task=a, depends_on=foreign, source=API)
    with pytest.raises(ValidationError) as excinfo:
        task_dependency_add(task=c, depends_on=a, source=API)  # c -> a -> b -> c
    assert excinfo.value.message_dict["depends_on"] == [
        "APM-3 cannot wait on APM-1: APM-1 already waits on APM-3."
    ]
    assert sorted(TaskDependency.objects.values_list("task", "depends_on")) == sorted(
        [(a.pk, b.pk), (b.pk, c.pk)]
    )


def test_adding_a_dependency_twice_is_harmless_and_removal_is_recorded():
    project = ProjectFactory()
    a, b = TaskFactory(project=project), TaskFactory(project=project)

    first = task_dependency_add(task=a, depends_on=b, source=API)
    again = task_dependency_add(task=a, depends_on=b, source=API)
    task_dependency_remove(task=a, depends_on=b, source=API)
    task_dependency_remove(task=a, depends_on=b, source=API)

    assert first.pk == again.pk
    assert not TaskDependency.objects.exists()
    kinds = list(TaskEvent.objects.filter(task=a).order_by("id").values_list("kind", flat=True))
    assert kinds == ["created", "dependency_added", "dependency_removed"]


def test_task_update_changes_plain_fields_and_refuses_managed_ones():
    task = TaskFactory(title="Old")

    task_update(task=task, source=API, title="New", priority=Task.Priority.HIGH)
    with pytest.raises(ValidationError) as excinfo:
        task_update(task=task, source=API, status="done", number=7)

    task.refresh_from_db()
    assert (task.title, task.priority, task.status, task.number) == ("New", Task.Priority.HIGH, "todo", 1)
    assert set(excinfo.value.message_dict) == {"status", "number"}
    (event,) = TaskEvent.objects.filter(task=task, kind="updated")
    assert event.data == {"title": {"from": "Old", "to": "New"}, "priority": {"from": 2, "to": 3}}


def test_parents_stay_in_the_project_and_never_loop():
    project = ProjectFactory()
    epic = TaskFactory(project=project)
    story = TaskFactory(project=project, parent=epic)

    with pytest.raises(ValidationError) as excinfo:
        task_update(task=epic, source=API, parent=story)
    assert "parent" in excinfo.value.message_dict
    with pytest.raises(ValidationError, match="same project"):
        task_update(task=story, source=API, parent=TaskFactory())


def test_keep_closed_reads_the_locked_row_not_the_callers_copy(db) -> None:
    stale = TaskFactory(title="Closed meanwhile")
    task_transition(task=Task.objects.get(pk=stale.pk), status="done", source="api")  # by a person
    assert stale.status == "todo"  # the caller's copy still says so

    with pytest.raises(ValidationError) as error:
        task_transition(task=stale, status="in_progress", source="commit", keep_closed=True)

    assert error.value.message_dict["status"] == [f"{stale.key} is done: it stays closed."]
    assert Task.objects.get(pk=stale.pk).status == "done"
