"""The tasks' part of a project's deletion (projects.deletion): time entries, dependencies, events, tasks.

Registered when the app is loaded (``TasksConfig.ready``). Children first: what points at a task goes
before the tasks, and the tasks' links to their parents are cut before any task goes, so no batch of
tasks deletes a parent whose subtask is still there (a foreign key MariaDB checks at once).
"""

from __future__ import annotations

import time

from django.db import transaction

from projects.deletion import ProjectPart, Record, project_part_register, rows_part
from tasks.models import Task, TaskDependency, TaskEvent, TimeEntry


def _parents_cut(project_id: int, batch_rows: int, deadline: float | None, record: Record) -> bool:
    """Set ``parent`` to null on the project's subtasks (a parent is always of the same project), a batch
    at a time; nothing is counted, the tasks themselves go next."""
    linked = Task.objects.filter(project_id=project_id, parent__isnull=False).order_by()
    while ids := list(linked.values_list("pk", flat=True)[:batch_rows]):
        with transaction.atomic():
            Task.objects.filter(pk__in=ids).update(parent=None)
        if deadline is not None and time.monotonic() > deadline:
            return not linked.exists()
    return True


project_part_register(
    rows_part(300, "time_entries", lambda project_id: TimeEntry.objects.filter(task__project_id=project_id))
)
project_part_register(
    rows_part(
        310,
        "task_dependencies",
        # Both sides are of the same project (tasks.services refuses others).
        lambda project_id: TaskDependency.objects.filter(task__project_id=project_id),
    )
)
project_part_register(
    rows_part(320, "task_events", lambda project_id: TaskEvent.objects.filter(project_id=project_id))
)
project_part_register(ProjectPart(order=330, name="task_parents", delete=_parents_cut))
project_part_register(rows_part(340, "tasks", lambda project_id: Task.objects.filter(project_id=project_id)))
