"""Writes to tasks. The one path for every change, whatever its source (admin, API, commit, batch job).

Each change records a ``TaskEvent`` naming its source, updates the metrics and invalidates the
project's caches, so history, dashboards and reports react the same way to every source.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from monitoring.metrics import TASK_TRANSITIONS, TASKS_CREATED
from projects.models import Membership, Project
from projects.selectors import project_writer_by_username
from projects.services import project_cache_invalidate
from tasks.models import Task, TaskDependency, TaskEvent, TimeEntry
from webhooks.services import webhook_event_emit

Source = TaskEvent.Source

# Fields task_update may change. Status, assignee and dependencies have their own services because
# they carry rules and history of their own.
TASK_UPDATABLE_FIELDS = frozenset(
    {"title", "description", "priority", "due_date", "estimate_hours", "parent"}
)


def _event(
    *,
    task: Task,
    kind: str,
    source: str,
    actor: User | None,
    from_status: str = "",
    to_status: str = "",
    commit_sha: str = "",
    data: dict[str, Any] | None = None,
) -> TaskEvent:
    if source not in Source.values:
        raise ValidationError({"source": [f"{source!r} is not an event source."]})
    return TaskEvent.objects.create(
        task=task,
        project_id=task.project_id,
        kind=kind,
        source=source,
        actor=actor if actor is not None and actor.is_authenticated else None,
        from_status=from_status,
        to_status=to_status,
        commit_sha=commit_sha,
        data=data or {},
    )


def _status_validate(status: str) -> None:
    if status not in Task.Status.values:
        raise ValidationError(
            {"status": [f"{status!r} is not a task status; choose one of {', '.join(Task.Status.values)}."]}
        )


def _assignee_refusal(project: Project) -> ValidationError:
    # One message for every refused assignee, naming no one: an unknown username, an account outside
    # the project, a viewer and an inactive member read alike, so the answer says nothing about which
    # accounts exist (tests/tasks/api/test_assignee_enumeration.py).
    return ValidationError({"assignee": [f"No member of {project.key} with write access has this username."]})


def task_assignee_resolve(*, project: Project, username: str) -> User:
    """The member of ``project`` with write access named ``username``; ``ValidationError`` otherwise.

    One query on the project's memberships whatever the name, never a lookup among all accounts.
    """
    assignee = project_writer_by_username(project=project, username=username)
    if assignee is None:
        raise _assignee_refusal(project)
    return assignee


def task_assignee_validate(*, project: Project, assignee: User | None) -> None:
    """Raise ``ValidationError`` unless ``assignee`` is empty or a member of ``project`` who may write."""
    if assignee is None:
        return
    role = Membership.objects.filter(project=project, user=assignee).values_list("role", flat=True).first()
    if role is None or role == Membership.Role.VIEWER:
        raise _assignee_refusal(project)


def task_parent_validate(*, task: Task, parent: Task | None) -> None:
    """Raise ``ValidationError`` unless ``parent`` is empty or a task of the same project above ``task``."""
    if parent is None:
        return
    if parent.project_id != task.project_id:
        raise ValidationError({"parent": ["The parent task must belong to the same project."]})
    if task.pk is None:
        return
    # Walk up from the proposed parent: reaching the task itself would make a loop of subtasks.
    ancestor: Task | None = parent
    seen: set[int] = set()
    while ancestor is not None and ancestor.pk not in seen:
        if ancestor.pk == task.pk:
            raise ValidationError({"parent": ["A task cannot be its own parent or ancestor."]})
        seen.add(ancestor.pk)
        ancestor = ancestor.parent


def _task_number_next(*, project: Project) -> int:
    """Reserve the next task number of ``project``.

    The UPDATE takes the project's row lock (on SQLite, the database write lock), which is held until the
    surrounding transaction ends, so concurrent creations are serialised and each reads its own number.
    """
    Project.objects.filter(pk=project.pk).update(last_task_number=F("last_task_number") + 1)
    return Project.objects.filter(pk=project.pk).values_list("last_task_number", flat=True).get()


@transaction.atomic
def task_create(
    *,
    project: Project,
    title: str,
    source: str,
    actor: User | None = None,
    description: str = "",
    status: str = Task.Status.TODO,
    priority: int = Task.Priority.MEDIUM,
    assignee: User | None = None,
    due_date: datetime.date | None = None,
    estimate_hours: Decimal | None = None,
    parent: Task | None = None,
    depends_on: Iterable[Task] = (),
) -> Task:
    """Create a task numbered ``KEY-N`` in ``project``, with its ``created`` event."""
    _status_validate(status)
    task = Task(
        project=project,
        number=0,  # placeholder so validation passes; the real number is reserved below
        title=title,
        description=description,
        status=status,
        priority=priority,
        assignee=assignee,
        reporter=actor if actor is not None and actor.is_authenticated else None,
        due_date=due_date,
        estimate_hours=estimate_hours,
        parent=parent,
    )
    task.full_clean(exclude=["number"], validate_unique=False)
    task_assignee_validate(project=project, assignee=assignee)
    task_parent_validate(task=task, parent=parent)
    now = timezone.now()
    if status in (Task.Status.IN_PROGRESS, Task.Status.IN_REVIEW, Task.Status.DONE):
        task.started_at = now
    if status in Task.CLOSED_STATUSES:
        task.closed_at = now
    task.number = _task_number_next(project=project)
    task.save(force_insert=True)
    _event(
        task=task,
        kind=TaskEvent.Kind.CREATED,
        source=source,
        actor=actor,
        to_status=status,
        data={"assignee": assignee.pk} if assignee is not None else None,
    )
    for dependency in depends_on:
        task_dependency_add(task=task, depends_on=dependency, source=source, actor=actor)
    transaction.on_commit(lambda: TASKS_CREATED.labels(source=source).inc())
    project_cache_invalidate(project_id=project.pk)
    webhook_event_emit(
        project_id=project.pk,
        event="task.created",
        data={
            "key": task.key,
            "title": task.title,
            "status": task.status,
            "priority": task.priority,
            "assignee": assignee.get_username() if assignee is not None else None,
            "source": source,
        },
    )
    return task


@transaction.atomic
def task_update(*, task: Task, source: str, actor: User | None = None, **fields: Any) -> Task:
    """Change a task's title, description, priority, due date, estimate or parent."""
    unknown = set(fields) - TASK_UPDATABLE_FIELDS
    if unknown:
        raise ValidationError(
            {
                name: ["This field is changed through its own operation or not at all."]
                for name in sorted(unknown)
            }
        )
    changed = {name: value for name, value in fields.items() if getattr(task, name) != value}
    if not changed:
        return task
    before = {name: getattr(task, name) for name in changed}
    for name, value in changed.items():
        setattr(task, name, value)
    task.full_clean(validate_unique=False)
    if "parent" in changed:
        task_parent_validate(task=task, parent=changed["parent"])
    task.save(update_fields=[*changed, "updated_at"])
    _event(
        task=task,
        kind=TaskEvent.Kind.UPDATED,
        source=source,
        actor=actor,
        data={
            name: {"from": _jsonable(before[name]), "to": _jsonable(value)} for name, value in changed.items()
        },
    )
    project_cache_invalidate(project_id=task.project_id)
    return task


def _jsonable(value: Any) -> Any:
    if isinstance(value, Task):
        return value.pk
    if isinstance(value, datetime.date | Decimal):
        return str(value)
    return value


@transaction.atomic
def task_assign(*, task: Task, assignee: User | None, source: str, actor: User | None = None) -> Task:
    """Give the task to ``assignee`` (a member with write access), or unassign it with ``None``."""
    if task.assignee_id == (assignee.pk if assignee is not None else None):
        return task
    task_assignee_validate(project=task.project, assignee=assignee)
    previous = task.assignee_id
    task.assignee = assignee
    task.save(update_fields=["assignee", "updated_at"])
    _event(
        task=task,
        kind=TaskEvent.Kind.ASSIGNED,
        source=source,
        actor=actor,
        data={"from": previous, "to": assignee.pk if assignee is not None else None},
    )
    project_cache_invalidate(project_id=task.project_id)
    return task


def task_open_dependencies(*, task: Task) -> list[Task]:
    """The tasks ``task`` waits on that are not closed yet (one query)."""
    return list(
        Task.objects.filter(dependent_links__task=task)
        .exclude(status__in=Task.CLOSED_STATUSES)
        .select_related("project")
        .order_by("number")
    )


def task_transition_check(*, task: Task, status: str) -> None:
    """Raise ``ValidationError`` if ``task`` may not move to ``status`` now; return quietly otherwise."""
    _status_validate(status)
    if status == Task.Status.DONE and task.status != Task.Status.DONE:
        waiting_on = task_open_dependencies(task=task)
        if waiting_on:
            listed = ", ".join(
                f"{dependency.key} ({dependency.get_status_display()})" for dependency in waiting_on
            )
            raise ValidationError(
                {"status": [f"{task.key} cannot be done while it waits on {listed}."]},
                code="blocked",
            )


@transaction.atomic
def task_transition(
    *,
    task: Task,
    status: str,
    source: str,
    actor: User | None = None,
    commit_sha: str = "",
    note: str = "",
    keep_closed: bool = False,
) -> Task:
    """Move ``task`` to ``status``, recording who or what did it.

    ``keep_closed`` refuses to move a closed task anywhere else (commits never reopen a task, or close
    it again): the rule is checked on the locked row, so a person closing the task meanwhile wins.

    Moving to the status the task already has changes nothing and records nothing, so a commit that
    says "fixes APM-12" twice, or a retried request, is harmless.
    """
    _status_validate(status)
    # Lock the row and work on the stored state, not on the caller's copy (which may be stale): two
    # concurrent transitions are applied one after the other, each recording the status it moved from.
    locked = Task.objects.select_for_update().get(pk=task.pk)
    locked.project = task.project
    if locked.status == status:
        _task_copy_state(target=task, source=locked)
        return task
    if keep_closed and locked.status in Task.CLOSED_STATUSES:
        _task_copy_state(target=task, source=locked)
        raise ValidationError(
            {"status": [f"{task.key} is {locked.get_status_display().lower()}: it stays closed."]},
            code="closed",
        )
    task_transition_check(task=locked, status=status)
    previous = locked.status
    now = timezone.now()
    locked.status = status
    update_fields = ["status", "updated_at"]
    if (
        status in (Task.Status.IN_PROGRESS, Task.Status.IN_REVIEW, Task.Status.DONE)
        and locked.started_at is None
    ):
        locked.started_at = now
        update_fields.append("started_at")
    if status in Task.CLOSED_STATUSES:
        locked.closed_at = now
        update_fields.append("closed_at")
    elif previous in Task.CLOSED_STATUSES:
        locked.closed_at = None
        update_fields.append("closed_at")
    locked.save(update_fields=update_fields)
    _task_copy_state(target=task, source=locked)
    _event(
        task=task,
        kind=TaskEvent.Kind.STATUS_CHANGED,
        source=source,
        actor=actor,
        from_status=previous,
        to_status=status,
        commit_sha=commit_sha,
        data={"note": note} if note else None,
    )
    transaction.on_commit(lambda: TASK_TRANSITIONS.labels(to_status=status, source=source).inc())
    project_cache_invalidate(project_id=task.project_id)
    webhook_event_emit(
        project_id=task.project_id,
        event="task.status_changed",
        data={
            "key": task.key,
            "from": previous,
            "to": status,
            "source": source,
            "commit_sha": commit_sha or None,
            "actor": actor.get_username() if actor is not None and actor.is_authenticated else None,
        },
    )
    return task


def _task_copy_state(*, target: Task, source: Task) -> None:
    """Bring the caller's instance up to date with the row the service read and wrote."""
    for field in ("status", "started_at", "closed_at", "updated_at"):
        setattr(target, field, getattr(source, field))


# One query answers "does ``depends_on`` already (transitively) wait on ``task``?": a recursive walk of
# the dependency graph that PostgreSQL, MariaDB and SQLite all run. UNION (not UNION ALL) drops rows
# already seen, so the walk ends even on a graph that somehow holds a cycle.
_REACHES_SQL = """
WITH RECURSIVE reachable(id) AS (
    SELECT depends_on_id FROM task_dependencies WHERE task_id = %s
    UNION
    SELECT d.depends_on_id FROM task_dependencies d JOIN reachable r ON d.task_id = r.id
)
SELECT 1 FROM reachable WHERE id = %s LIMIT 1
"""


def task_dependency_reaches(*, start: Task, target: Task) -> bool:
    """Whether ``start`` waits on ``target``, directly or through other tasks."""
    with connection.cursor() as cursor:
        cursor.execute(_REACHES_SQL, [start.pk, target.pk])
        return cursor.fetchone() is not None


def _dependency_changed(*, task: Task, depends_on: Task, kind: str, source: str, actor: User | None) -> None:
    _event(
        task=task,
        kind=kind,
        source=source,
        actor=actor,
        data={"depends_on": depends_on.pk, "key": depends_on.key},
    )
    project_cache_invalidate(project_id=task.project_id)


@transaction.atomic
def task_dependency_add(
    *, task: Task, depends_on: Task, source: str, actor: User | None = None
) -> TaskDependency:
    """Record that ``task`` waits on ``depends_on``; refuse self-dependencies, other projects and cycles."""
    if depends_on.pk == task.pk:
        raise ValidationError({"depends_on": ["A task cannot depend on itself."]})
    if depends_on.project_id != task.project_id:
        raise ValidationError({"depends_on": [f"{depends_on.key} belongs to another project."]})
    # The project row lock serialises dependency changes within a project: two requests adding A->B
    # and B->A at once cannot both pass the cycle check.
    Project.objects.select_for_update().filter(pk=task.project_id).first()
    existing = TaskDependency.objects.filter(task=task, depends_on=depends_on).first()
    if existing is not None:
        return existing
    if task.status == Task.Status.DONE and depends_on.status not in Task.CLOSED_STATUSES:
        raise ValidationError(
            {
                "depends_on": [
                    f"{task.key} is done; it cannot start waiting on {depends_on.key}, which is open."
                ]
            },
            code="blocked",
        )
    if task_dependency_reaches(start=depends_on, target=task):
        raise ValidationError(
            {
                "depends_on": [
                    f"{task.key} cannot wait on {depends_on.key}: "
                    f"{depends_on.key} already waits on {task.key}."
                ]
            },
            code="cycle",
        )
    dependency = TaskDependency.objects.create(task=task, depends_on=depends_on)
    _dependency_changed(
        task=task, depends_on=depends_on, kind=TaskEvent.Kind.DEPENDENCY_ADDED, source=source, actor=actor
    )
    return dependency


@transaction.atomic
def task_dependency_remove(*, task: Task, depends_on: Task, source: str, actor: User | None = None) -> None:
    """Stop ``task`` waiting on ``depends_on``."""
    deleted, _ = TaskDependency.objects.filter(task=task, depends_on=depends_on).delete()
    if not deleted:
        return
    _dependency_changed(
        task=task, depends_on=depends_on, kind=TaskEvent.Kind.DEPENDENCY_REMOVED, source=source, actor=actor
    )


@transaction.atomic
def task_time_log(
    *,
    task: Task,
    minutes: int,
    spent_on: datetime.date,
    source: str,
    actor: User | None = None,
    user: User | None = None,
    author_email: str = "",
    commit_sha: str = "",
    note: str = "",
) -> TimeEntry | None:
    """Log ``minutes`` spent on ``task``, with a ``time_logged`` event.

    An entry read from a commit is logged once per commit and task (``commit_sha`` is its reference), so
    a commit ingested again, or present in two repositories, adds nothing: ``None`` is returned then.
    """
    if minutes <= 0:
        raise ValidationError({"minutes": ["Time spent must be a positive number of minutes."]})
    time_source = TimeEntry.Source.COMMIT if source == Source.COMMIT else source
    if time_source not in TimeEntry.Source.values:
        raise ValidationError({"source": [f"{source!r} cannot log time."]})
    if commit_sha:
        # The task's row lock serialises loggers of one task: two runs reading the same commit (a sha in
        # two repositories) cannot both find no entry and both log it.
        Task.objects.select_for_update().filter(pk=task.pk).first()
        if TimeEntry.objects.filter(source=time_source, source_ref=commit_sha, task=task).exists():
            return None
    entry = TimeEntry.objects.create(
        task=task,
        user=user,
        author_email=author_email,
        minutes=minutes,
        spent_on=spent_on,
        source=time_source,
        source_ref=commit_sha,
        note=note[:300],
    )
    _event(
        task=task,
        kind=TaskEvent.Kind.TIME_LOGGED,
        source=source,
        actor=actor,
        commit_sha=commit_sha,
        data={"minutes": minutes, "spent_on": str(spent_on), "author_email": author_email},
    )
    project_cache_invalidate(project_id=task.project_id)
    return entry


def task_delete(*, task: Task) -> None:
    """Delete ``task`` with its history, links and time (operators only: people cancel tasks instead).

    The project's cached figures are dropped with it, as for every other change of its tasks.
    """
    with transaction.atomic():
        project_id = task.project_id
        task.delete()
        project_cache_invalidate(project_id=project_id)
