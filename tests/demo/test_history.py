"""The demo's history is spread over the weeks before today: charts that tell a story on the first run."""

from __future__ import annotations

import datetime
import itertools
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Max, Min
from django.utils import timezone

from demo.data import DEMO_PROJECT_KEYS
from insights.analytics import project_burndown, project_progress
from projects.models import HealthLevel, Project
from tasks.models import Task, TaskDependency, TaskEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded(db: None) -> None:
    call_command("seed_demo", allow_production=True, stdout=StringIO())


def test_the_burndown_descends_week_after_week_towards_a_meaningful_ideal(seeded: None) -> None:
    project = Project.objects.get(key="APM")
    today = timezone.localdate()

    days = project_burndown(project=project, start=today - datetime.timedelta(days=83), end=today)["days"]

    assert days[0]["ideal"] > 0
    assert days[-1]["ideal"] > 0  # the target date is ahead
    falling_weeks = {
        day["date"].isocalendar()[:2]
        for previous, day in itertools.pairwise(days)
        if day["remaining"] < previous["remaining"]
    }
    assert len(falling_weeks) >= 5, falling_weeks
    peak = max(day["remaining"] for day in days)
    assert days[-1]["remaining"] < peak
    # Work got done all along, not on one day: no single day closes more than a third of it.
    finished = [day["done"] - previous["done"] for previous, day in itertools.pairwise(days)]
    assert max(finished) <= max(2, days[-1]["done"] // 3)
    # Scope was added along the way, not all on the first day.
    assert days[-1]["scope"] > days[0]["scope"]


def test_progress_moves_a_few_points_a_week(seeded: None) -> None:
    progress = project_progress(project=Project.objects.get(key="APM"))

    assert 0 < progress["trend"] < 0.1
    weekly = [week["progress"] for week in progress["weekly"]]
    assert weekly[0] < weekly[-1]
    assert max(later - earlier for earlier, later in itertools.pairwise(weekly)) < 0.2


def test_active_projects_started_about_twelve_weeks_ago_with_a_target_ahead(seeded: None) -> None:
    today = timezone.localdate()
    for project in Project.objects.filter(key__in=DEMO_PROJECT_KEYS, status=Project.Status.ACTIVE):
        assert project.start_date is not None
        assert project.target_date is not None
        assert 77 <= (today - project.start_date).days <= 91, project.key
        assert project.target_date > today, project.key
        first, last = project.tasks.aggregate(first=Min("created_at"), last=Max("created_at")).values()
        assert timezone.localdate(first) >= project.start_date, project.key
        assert (last - first).days >= 56, project.key  # filed over weeks, not in one moment


def test_every_change_happens_after_the_task_was_filed_in_a_believable_order(seeded: None) -> None:
    now = timezone.now()
    tasks = {task.pk: task for task in Task.objects.all()}
    by_number = sorted(tasks.values(), key=lambda task: (task.project_id, task.number))
    for earlier, later in itertools.pairwise(by_number):
        if earlier.project_id == later.project_id:
            assert earlier.created_at <= later.created_at  # numbers follow filing order
    moments: dict[int, list[tuple[str, datetime.datetime]]] = {}
    for event in TaskEvent.objects.order_by("id"):
        task = tasks[event.task_id]
        assert task.created_at <= event.created_at <= now, (task.key, event.kind)
        if event.kind == TaskEvent.Kind.STATUS_CHANGED:
            moments.setdefault(task.pk, []).append((event.to_status, event.created_at))
    for task_id, changes in moments.items():
        task = tasks[task_id]
        # Status changes happen in the order the services wrote them, days apart from filing to the end.
        times = [moment for _status, moment in changes]
        assert times == sorted(times), task.key
        if task.status == Task.Status.DONE:
            assert task.started_at is not None
            assert task.closed_at is not None
            assert task.created_at < task.started_at <= task.closed_at, task.key
            assert task.closed_at == times[-1], task.key
            assert (task.closed_at - task.created_at) >= datetime.timedelta(days=1), task.key
        if task.status == Task.Status.IN_PROGRESS:
            assert task.started_at == times[0], task.key
        assert task.updated_at >= times[-1], task.key
    # A task is done after the tasks it waits on were closed.
    for dependency in TaskDependency.objects.select_related("task", "depends_on"):
        assert dependency.created_at >= dependency.task.created_at
        if dependency.task.status == Task.Status.DONE:
            assert dependency.depends_on.closed_at is not None
            assert dependency.depends_on.closed_at <= dependency.task.closed_at, dependency.task.key


def test_a_few_tasks_were_cancelled_mid_way(seeded: None) -> None:
    cancelled = Task.objects.filter(status=Task.Status.CANCELLED, project__status=Project.Status.ACTIVE)
    assert cancelled.exists()
    for task in cancelled:
        assert task.closed_at is not None
        assert task.closed_at - task.created_at >= datetime.timedelta(days=5), task.key


def test_health_is_recorded_for_every_demo_project(seeded: None) -> None:
    for project in Project.objects.filter(key__in=DEMO_PROJECT_KEYS):
        assert project.health_level in HealthLevel.values, project.key
        assert project.health_score is not None
        assert project.health_checked_at is not None


def test_health_is_recorded_once_and_left_to_the_schedule_afterwards(seeded: None) -> None:
    checked = dict(Project.objects.values_list("key", "health_checked_at"))

    call_command("seed_demo", allow_production=True, stdout=StringIO())

    assert dict(Project.objects.values_list("key", "health_checked_at")) == checked


def test_the_history_is_the_same_for_the_same_seed(seeded: None) -> None:
    def days() -> list[tuple[str, int, str, datetime.date]]:
        return [
            (key, number, kind, timezone.localdate(moment))
            for key, number, kind, moment in TaskEvent.objects.order_by(
                "project__key", "task__number", "id"
            ).values_list("project__key", "task__number", "kind", "created_at")
        ]

    before = days()

    call_command("seed_demo", allow_production=True, reset=True, stdout=StringIO())

    assert days() == before
