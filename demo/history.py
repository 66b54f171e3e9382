"""A demo project's history spread over the weeks before today, as if its work had really happened then.

The builder replays every change through the services, which stamp it "now". This module plans when each
change would have happened instead (``history_plan``: plain data, no database) and rewrites the stamps in
bulk (``history_write``): tasks are filed mostly in the first weeks, with scope added along the way; work
starts days after a task is filed, review and done follow a few days apart, and the done tasks finish one
after another across the weeks, so the burndown descends and the progress trend is a few points a week.
Only timestamps move: statuses, events and their order are what the services wrote.
"""

from __future__ import annotations

import datetime
import itertools
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from demo.data import Node, Status
from projects.models import Membership, Project
from projects.services import project_cache_invalidate
from tasks.models import Task, TaskDependency, TaskEvent

# When tasks are filed, as (share of the tasks, share of the window) points joined by straight lines: the
# kick-off plan on the first day, most of the rest over the next three weeks, then scope added along the
# way; the last task is filed well before today (later scope has not arrived yet).
FILING_CURVE = ((0.0, 0.0), (0.55, 0.0), (0.8, 0.25), (1.0, 0.9))
# The kick-off plan is filed within the first day's working hours (a burndown starts from it).
KICKOFF_DAY = 0.9
# The first tasks are done this far into the window (the project needs a start).
FIRST_DONE_AT = 0.15
# A working day, in hours of the local day: every change happens between these two.
DAY_STARTS, DAY_HOURS = 9, 9
# The rewrite's bulk UPDATEs, rows per statement.
BATCH = 500
# A task moving to one of these has started (the services stamp ``started_at`` on the first).
STARTED = frozenset({Status.IN_PROGRESS, Status.IN_REVIEW, Status.DONE})


@dataclass
class TaskHistory:
    """When one task was filed and when it moved to each status of its path, in days into the window."""

    created: float
    path: list[str] = field(default_factory=list)
    statuses: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Window:
    """The days a project's history is spread over: ``start`` (day 0) to ``end``, never past ``now``."""

    start: datetime.date
    end: datetime.date
    now: datetime.datetime

    @property
    def origin(self) -> datetime.datetime:
        return datetime.datetime.combine(
            self.start, datetime.time.min, tzinfo=timezone.get_current_timezone()
        )

    @property
    def span(self) -> float:
        return float((self.end - self.start).days)

    @property
    def limit(self) -> float:
        """The latest moment a change may have, in days into the window: the end, and before ``now``."""
        until_now = (self.now - self.origin).total_seconds() / 86400 - 1 / 48
        return min(self.span + 1 - 1 / 48, until_now)

    def at(self, day: float) -> datetime.datetime:
        """The moment ``day`` days into the window, its fraction of a day read as working hours.

        Working hours are the first 9 hours after 9:00; beyond ``limit`` (today, before now) the moment
        is ``now`` minus the margin, so nothing happens in the future.
        """
        whole = math.floor(day)
        moment = self.origin + datetime.timedelta(days=whole, hours=DAY_STARTS + (day - whole) * DAY_HOURS)
        latest = self.now - datetime.timedelta(minutes=30)
        return min(moment, latest)


def history_plan(
    *, nodes: Sequence[Node], paths: Sequence[Sequence[str]], window: Window, rng: random.Random
) -> list[TaskHistory]:
    """When each task of ``nodes`` was filed and moved along its status ``path``; deterministic from ``rng``.

    Tasks are filed in their order (numbers grow with time). Dependencies are respected: a done task is
    finished after the tasks it waits on are closed. An epic starts with its first subtask and closes
    after its last one.
    """
    span, limit = window.span, window.limit
    histories = [
        TaskHistory(created=day, path=list(path))
        for day, path in zip(_filing_days(len(nodes), span, limit, rng), paths, strict=True)
    ]
    done_leaves = [
        index for index, node in enumerate(nodes) if not node.is_epic and paths[index][-1:] == [Status.DONE]
    ]
    # Finish days spread evenly over the window, in the order the tasks were planned to finish.
    first, last = FIRST_DONE_AT * span, limit - 0.5
    finish = {
        index: first + (last - first) * (rank + 0.5) / len(done_leaves) + rng.uniform(-1.5, 1.5)
        for rank, index in enumerate(done_leaves)
    }
    closed_at: dict[int, float] = {}
    for index, node in enumerate(nodes):
        if node.is_epic:
            continue
        history = histories[index]
        waits = max((closed_at.get(dependency, 0.0) for dependency in node.depends_on), default=0.0)
        history.statuses = _leaf_statuses(
            path=paths[index],
            created=history.created,
            finish=finish.get(index),
            waits=waits,
            limit=limit,
            rng=rng,
        )
        if paths[index] and paths[index][-1] in Task.CLOSED_STATUSES:
            closed_at[index] = history.statuses[-1]
    for index, node in enumerate(nodes):
        if node.is_epic:
            histories[index].statuses = _epic_statuses(
                path=paths[index],
                created=histories[index].created,
                children=[histories[child] for child in node.children],
                limit=limit,
                rng=rng,
            )
    return histories


def _filing_days(count: int, span: float, limit: float, rng: random.Random) -> list[float]:
    """Front-loaded along FILING_CURVE, a little jitter each, never out of numbering order."""
    days: list[float] = []
    for index in range(count):
        share = index / max(1, count - 1)
        (share_before, day_before), (share_after, day_after) = next(
            (before, after) for before, after in itertools.pairwise(FILING_CURVE) if share <= after[0]
        )
        position = (share - share_before) / (share_after - share_before)
        if day_after == 0.0:
            day = KICKOFF_DAY * position  # the kick-off, in order through the first day
        else:
            day = span * (day_before + (day_after - day_before) * position)
            day = min(day + rng.uniform(0, 0.9), limit - 1)
        # Numbers follow filing order: never before the previous task.
        days.append(max(day, days[-1] + 0.01) if days else day)
    return days


def _spread(start: float, end: float, count: int) -> list[float]:
    """``count`` moments evenly from ``start`` to ``end``, both included (``end`` alone for one)."""
    if count == 1:
        return [end]
    return [start + (end - start) * step / (count - 1) for step in range(count)]


def _leaf_statuses(
    *,
    path: Sequence[str],
    created: float,
    finish: float | None,
    waits: float,
    limit: float,
    rng: random.Random,
) -> list[float]:
    if not path:
        return []
    # Work starts a little after the task is filed.
    earliest = min(created + rng.uniform(0.5, 3.0), limit - 0.1)
    final = path[-1]
    if final == Status.CANCELLED:
        return [min(created + rng.uniform(6.0, 30.0), limit)]
    if final == Status.DONE and finish is not None:
        end = min(max(finish, earliest + 1.5, waits + 0.1), limit)
    elif final == Status.IN_REVIEW:
        end = limit - rng.uniform(0.5, 12.0)
    else:  # in progress: started some time in the last six weeks
        end = limit - rng.uniform(2.0, 42.0)
    end = max(end, earliest)
    # Backwards from the last status: work some days before review, review a few days before done.
    moments = [end]
    for status in reversed(path[1:]):
        step = rng.uniform(0.5, 3.0) if status == Status.DONE and len(path) == 3 else rng.uniform(2.0, 8.0)
        moments.insert(0, moments[0] - step)
    # Not before work could start: squeezed between then and the end.
    return moments if moments[0] >= earliest else _spread(earliest, end, len(path))


def _epic_statuses(
    *, path: Sequence[str], created: float, children: Sequence[TaskHistory], limit: float, rng: random.Random
) -> list[float]:
    if not path:
        return []
    moved = [child.statuses for child in children if child.statuses]
    first = min((statuses[0] for statuses in moved), default=created + 1.0)
    last = max((statuses[-1] for statuses in moved), default=first)
    moments: list[float] = []
    for status in path:
        if status == Status.IN_PROGRESS:
            # The epic moves when its first subtask does.
            moments.append(max(created + 0.05, first - rng.uniform(0.02, 0.3)))
        else:  # done or cancelled: after its last subtask closed
            moments.append(
                min(max(last + rng.uniform(0.05, 1.0), (moments[-1] if moments else created) + 0.02), limit)
            )
    return moments


@transaction.atomic
def history_write(
    *, project: Project, tasks: Sequence[Task], histories: Sequence[TaskHistory], window: Window
) -> None:
    """Write the planned moments onto ``project``'s rows in bulk UPDATEs, then drop its cached figures.

    ``tasks`` and ``histories`` go together, one history per task. Every event of a task is moved: its
    ``created`` event to the filing moment, its status changes (in the order the services wrote them) to
    the planned moments, the other events (assignment, dependencies) to a few minutes after filing.
    """
    by_task = {task.pk: history for task, history in zip(tasks, histories, strict=True)}
    events = list(
        TaskEvent.objects.filter(project=project).order_by("task_id", "id").only("id", "task_id", "kind")
    )
    last_event: dict[int, datetime.datetime] = {}
    status_seen: dict[int, int] = defaultdict(int)
    others_seen: dict[int, int] = defaultdict(int)
    for event in events:
        history = by_task[event.task_id]
        if event.kind == TaskEvent.Kind.CREATED:
            moment = window.at(history.created)
        elif event.kind == TaskEvent.Kind.STATUS_CHANGED:
            moment = window.at(history.statuses[status_seen[event.task_id]])
            status_seen[event.task_id] += 1
        else:
            others_seen[event.task_id] += 1
            moment = window.at(history.created) + datetime.timedelta(minutes=7 * others_seen[event.task_id])
        event.created_at = moment
        last_event[event.task_id] = max(moment, last_event.get(event.task_id, moment))
    TaskEvent.objects.bulk_update(events, ["created_at"], batch_size=BATCH)

    for task, history in zip(tasks, histories, strict=True):
        task.created_at = window.at(history.created)
        task.updated_at = last_event.get(task.pk, task.created_at)
        moves = list(zip(history.path, history.statuses, strict=True))
        task.started_at = next((window.at(day) for status, day in moves if status in STARTED), None)
        task.closed_at = window.at(moves[-1][1]) if moves and task.status in Task.CLOSED_STATUSES else None
    Task.objects.bulk_update(tasks, ["created_at", "updated_at", "started_at", "closed_at"], batch_size=BATCH)

    dependencies = list(
        TaskDependency.objects.filter(task__project=project).order_by("task_id", "id").only("id", "task_id")
    )
    per_task: dict[int, int] = defaultdict(int)
    for dependency in dependencies:
        per_task[dependency.task_id] += 1
        dependency.created_at = window.at(by_task[dependency.task_id].created) + datetime.timedelta(
            minutes=7 * per_task[dependency.task_id]
        )
    TaskDependency.objects.bulk_update(dependencies, ["created_at"], batch_size=BATCH)

    # The project was set up the working day before its first task was filed.
    founded = window.at(min((history.created for history in histories), default=0.0) - 1)
    Project.objects.filter(pk=project.pk).update(created_at=founded, updated_at=founded)
    Membership.objects.filter(project=project).update(created_at=founded, updated_at=founded)
    project_cache_invalidate(project_id=project.pk)
