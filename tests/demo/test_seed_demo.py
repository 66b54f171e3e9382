"""The ``seed_demo`` command: a complete, consistent demo portfolio, built once, rebuilt on demand."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

import demo.builder
from demo.data import (
    ADMIN_URL,
    ADMIN_USERNAME,
    DEFAULT_PASSWORD,
    DEMO_PROJECT_KEYS,
    DEMO_USERNAMES,
)
from projects.models import Membership, Project
from tasks.models import Task, TaskDependency, TaskEvent

User = get_user_model()


def seed(**options: Any) -> str:
    out = StringIO()
    call_command("seed_demo", allow_production=True, stdout=out, **options)
    return out.getvalue()


def row_counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (User, Project, Membership, Task, TaskDependency, TaskEvent)
    }


def snapshot() -> list[tuple[Any, ...]]:
    """What a person would see of the demo tasks, independent of primary keys."""
    return list(
        Task.objects.order_by("project__key", "number").values_list(
            "project__key",
            "number",
            "title",
            "status",
            "priority",
            "assignee__username",
            "parent__number",
            "due_date",
            "estimate_hours",
        )
    )


@pytest.fixture
def seeded(db: None) -> str:
    return seed()


@pytest.mark.django_db
def test_builds_the_demo_projects(seeded: str) -> None:
    projects = {project.key: project for project in Project.objects.all()}
    assert set(projects) == set(DEMO_PROJECT_KEYS)
    assert 4 <= len(projects) <= 5
    statuses = [project.status for project in projects.values()]
    assert statuses.count(Project.Status.ACTIVE) > len(statuses) / 2
    assert Project.Status.PLANNING in statuses
    assert {Project.Status.ON_HOLD, Project.Status.COMPLETED} & set(statuses)
    for project in projects.values():
        assert project.name
        assert project.description
        assert project.start_date is not None
        assert project.target_date is not None
        assert project.target_date >= project.start_date
        assert 15 <= project.tasks.count() <= 30
        # Task numbers come from the service: consecutive, and the project's counter matches.
        numbers = list(project.tasks.order_by("number").values_list("number", flat=True))
        assert numbers == list(range(1, len(numbers) + 1))
        assert project.last_task_number == len(numbers)
    assert 6 <= User.objects.filter(username__in=DEMO_USERNAMES).count() <= 8


@pytest.mark.django_db
def test_every_task_status_and_every_priority_appears(seeded: str) -> None:
    assert set(Task.objects.values_list("status", flat=True)) == set(Task.Status.values)
    assert set(Task.objects.values_list("priority", flat=True)) == set(Task.Priority.values)
    assert Task.objects.filter(parent__isnull=False).exists()
    assert Task.objects.filter(due_date__isnull=False, estimate_hours__isnull=False).exists()


@pytest.mark.django_db
def test_every_role_appears_in_every_project(seeded: str) -> None:
    for project in Project.objects.all():
        roles = set(project.memberships.values_list("role", flat=True))
        assert roles == set(Membership.Role.values), project.key


@pytest.mark.django_db
def test_dependencies_are_acyclic_and_done_tasks_wait_on_nothing_open(seeded: str) -> None:
    dependencies = list(TaskDependency.objects.select_related("task", "depends_on"))
    assert dependencies
    for dependency in dependencies:
        assert dependency.task.project_id == dependency.depends_on.project_id
        # Every edge points to an earlier task, so there can be no cycle.
        assert dependency.depends_on.number < dependency.task.number
    done_with_dependencies = Task.objects.filter(status=Task.Status.DONE, depends_on__isnull=False).distinct()
    assert done_with_dependencies.exists()
    for task in done_with_dependencies:
        open_dependencies = task.depends_on.exclude(status__in=Task.CLOSED_STATUSES)
        assert not open_dependencies.exists(), task.key


@pytest.mark.django_db
def test_assignees_are_members_with_write_access(seeded: str) -> None:
    assigned = Task.objects.filter(assignee__isnull=False)
    assert assigned.exists()
    for task in assigned:
        role = Membership.objects.get(project=task.project, user=task.assignee).role
        assert role in Membership.WRITE_ROLES, task.key
    # Work that has started always has someone on it.
    started = Task.objects.filter(status__in=[Task.Status.IN_PROGRESS, Task.Status.IN_REVIEW])
    assert not started.filter(assignee__isnull=True).exists()


@pytest.mark.django_db
def test_history_was_written_by_the_services_as_a_batch(seeded: str) -> None:
    created = TaskEvent.objects.filter(kind=TaskEvent.Kind.CREATED, source=TaskEvent.Source.BATCH)
    assert set(created.values_list("task_id", flat=True)) == set(Task.objects.values_list("pk", flat=True))
    assert set(TaskEvent.objects.values_list("source", flat=True)) == {TaskEvent.Source.BATCH}
    assert TaskEvent.objects.filter(kind=TaskEvent.Kind.STATUS_CHANGED).exists()
    assert (
        TaskEvent.objects.filter(kind=TaskEvent.Kind.DEPENDENCY_ADDED).count()
        == TaskDependency.objects.count()
    )
    # Closed tasks got there through transitions, which stamp the times.
    assert not Task.objects.filter(status__in=Task.CLOSED_STATUSES, closed_at__isnull=True).exists()


@pytest.mark.django_db
def test_admin_can_log_in_and_the_login_is_printed(seeded: str, client: Any) -> None:
    admin = User.objects.get(username=ADMIN_USERNAME)
    assert admin.is_staff
    assert admin.is_superuser
    assert client.login(username=ADMIN_USERNAME, password=DEFAULT_PASSWORD)
    assert ADMIN_URL in seeded
    assert f"Username: {ADMIN_USERNAME}" in seeded
    assert f"Password: {DEFAULT_PASSWORD}  (set now)" in seeded


@pytest.mark.django_db
def test_demo_users_cannot_log_in(seeded: str) -> None:
    assert not any(user.has_usable_password() for user in User.objects.filter(username__in=DEMO_USERNAMES))


@pytest.mark.django_db
def test_running_twice_changes_nothing(seeded: str, client: Any) -> None:
    counts, tasks = row_counts(), snapshot()
    session_hash = User.objects.get(username=ADMIN_USERNAME).get_session_auth_hash()

    output = seed()

    assert "already present" in output
    assert row_counts() == counts
    assert snapshot() == tasks
    # The password hash is untouched, so browsers logged in before stay logged in.
    assert User.objects.get(username=ADMIN_USERNAME).get_session_auth_hash() == session_hash
    assert f"Password: {DEFAULT_PASSWORD}  (the demo password seed_demo set, unchanged since)" in output


@pytest.mark.django_db
def test_an_existing_admin_keeps_the_password_its_owner_chose(seeded: str, client: Any) -> None:
    admin = User.objects.get(username=ADMIN_USERNAME)
    admin.set_password("chosen-by-me")
    admin.save()

    output = seed(password="another-demo-pass")

    assert client.login(username=ADMIN_USERNAME, password="chosen-by-me")
    assert not client.login(username=ADMIN_USERNAME, password="another-demo-pass")
    assert "its password was left as it is" in output
    # Neither the password asked for nor the demo one is printed: the account has neither.
    assert "another-demo-pass" not in output.replace("--password", "")
    assert f"Password: {DEFAULT_PASSWORD}" not in output
    assert "Password: the one you set" in output


@pytest.mark.django_db
def test_password_applies_on_creation_only(db: None, client: Any) -> None:
    output = seed(password="first-pass")

    assert client.login(username=ADMIN_USERNAME, password="first-pass")
    assert "Password: first-pass  (set now)" in output

    output = seed(password="second-pass")

    assert client.login(username=ADMIN_USERNAME, password="first-pass")
    # A later run did not set it and cannot read it back: it is not printed.
    assert "first-pass" not in output
    assert "second-pass" not in output.replace("--password", "")


@pytest.mark.django_db
def test_reset_password_sets_it_again_and_restores_the_admin(seeded: str, client: Any) -> None:
    admin = User.objects.get(username=ADMIN_USERNAME)
    admin.set_password("forgotten")
    admin.is_staff = False
    admin.save()

    output = seed(reset_password=True)

    assert client.login(username=ADMIN_USERNAME, password=DEFAULT_PASSWORD)
    assert User.objects.get(username=ADMIN_USERNAME).is_staff
    assert f"Password: {DEFAULT_PASSWORD}  (set now)" in output


@pytest.mark.django_db
def test_no_login_leaves_the_login_to_demo_login(seeded: str) -> None:
    output = seed(no_login=True)

    assert "Admin login" not in output
    assert "Password" not in output


@pytest.mark.django_db
def test_reset_rebuilds_the_same_portfolio(seeded: str) -> None:
    counts, tasks = row_counts(), snapshot()
    old_ids = set(Project.objects.values_list("pk", flat=True))

    seed(reset=True)

    assert row_counts() == counts
    assert snapshot() == tasks  # deterministic: same seed, same portfolio
    assert not old_ids & set(Project.objects.values_list("pk", flat=True))


@pytest.mark.django_db
def test_a_demo_project_being_deleted_is_left_to_its_deletion(seeded: str) -> None:
    # Its key stays taken until the background deletion has deleted its rows (projects.deletion).
    key = DEMO_PROJECT_KEYS[0]
    Project.objects.filter(key=key).update(deleting_since=timezone.now())
    counts = row_counts()

    output = seed()
    again = seed()

    assert f"Demo project(s) {key} are being deleted" in output
    assert again == output
    assert row_counts() == counts
    assert Project.all_objects.filter(key=key).count() == 1

    seed(reset=True)  # rebuilds the whole portfolio, the project being deleted included

    assert Project.objects.filter(key=key, deleting_since__isnull=True).count() == 1


@pytest.mark.django_db
def test_a_missing_demo_project_is_rebuilt_alone(seeded: str) -> None:
    counts, tasks = row_counts(), snapshot()
    Project.objects.get(key=DEMO_PROJECT_KEYS[0]).delete()

    seed()

    assert row_counts() == counts
    assert snapshot() == tasks


@pytest.mark.django_db
def test_another_seed_gives_another_portfolio(seeded: str) -> None:
    tasks = snapshot()

    seed(reset=True, seed=7)

    assert snapshot() != tasks


@pytest.mark.django_db
def test_keeps_other_projects_and_users(seeded: str, user: Any) -> None:
    other = Project.objects.create(key="OTHER", name="Someone else's project")

    seed(reset=True)

    assert Project.objects.filter(pk=other.pk).exists()
    assert User.objects.filter(pk=user.pk).exists()


@pytest.mark.django_db
def test_refuses_to_run_without_debug(settings: Any) -> None:
    settings.DEBUG = False

    with pytest.raises(CommandError, match="--allow-production"):
        call_command("seed_demo", stdout=StringIO())

    assert row_counts() == dict.fromkeys(row_counts(), 0)


@pytest.mark.django_db
def test_runs_without_the_flag_when_debug_is_on(settings: Any) -> None:
    settings.DEBUG = True

    call_command("seed_demo", stdout=StringIO())

    assert Project.objects.filter(key__in=DEMO_PROJECT_KEYS).count() == len(DEMO_PROJECT_KEYS)


@pytest.mark.django_db
def test_a_failure_half_way_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    real_transition = demo.builder.task_transition
    calls = 0

    def failing_transition(**kwargs: Any) -> Task:
        nonlocal calls
        calls += 1
        if calls == 60:
            raise RuntimeError("database went away")
        return real_transition(**kwargs)

    monkeypatch.setattr(demo.builder, "task_transition", failing_transition)

    with pytest.raises(RuntimeError, match="went away"):
        seed()

    assert row_counts() == dict.fromkeys(row_counts(), 0)
