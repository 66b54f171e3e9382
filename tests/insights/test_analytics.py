"""Progress, health, priorities and burndown computed from real tasks, events and commits.

Timestamps are set explicitly (events are moved to their moment after the service wrote them) and every
selector gets ``now``/``today``/dates, so nothing depends on the clock.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from insights.analytics import Quadrant, project_burndown, project_health, project_progress, task_priorities
from insights.services import project_health_record
from insights.tasks import project_health_recompute_task
from projects.models import HealthLevel, Project
from repos.models import CommitTaskLink
from tasks.models import Task, TaskEvent
from tasks.services import task_dependency_add, task_transition
from tests.factories import CommitFactory, FileChangeFactory, ProjectFactory, RepositoryFactory, TaskFactory
from webhooks.models import WebhookDelivery
from webhooks.services import webhook_subscription_create

pytestmark = pytest.mark.django_db

NOW = datetime.datetime(2025, 3, 31, 12, 0, tzinfo=datetime.UTC)
TODAY = NOW.date()


def ago(days: float) -> datetime.datetime:
    return NOW - datetime.timedelta(days=days)


def task_at(project: Project, when: datetime.datetime, **fields: Any) -> Task:
    """A task created (its ``created`` event) at ``when``."""
    task = TaskFactory(project=project, **fields)
    TaskEvent.objects.filter(task=task).update(created_at=when)
    return task


def move(task: Task, status: str, when: datetime.datetime) -> None:
    """Transition ``task`` through the service, as if it happened at ``when``."""
    task_transition(task=task, status=status, source=TaskEvent.Source.SYSTEM)
    latest = TaskEvent.objects.filter(task=task, kind=TaskEvent.Kind.STATUS_CHANGED).order_by("-id").first()
    TaskEvent.objects.filter(pk=latest.pk).update(created_at=when)


def queries(function: Any, **kwargs: Any) -> int:
    with CaptureQueriesContext(connection) as captured:
        function(**kwargs)
    return len(captured.captured_queries)


def signal(health: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in health["signals"] if s["name"] == name)


# --- Progress -----------------------------------------------------------------------------------------


@pytest.fixture
def progress_project() -> Project:
    """Five top-level tasks and two subtasks, created 60 days ago in ``todo`` and moved since.

    Estimates of the tasks not cancelled: 4, 2, 6 and the subtasks' 1 and 3 -> median 3, the weight of C.
    """
    project = ProjectFactory(key="PROG")
    start = ago(60)
    a = task_at(project, start, estimate_hours=Decimal(4))
    b = task_at(project, start, estimate_hours=Decimal(2))
    c = task_at(project, start)
    d = task_at(project, start, estimate_hours=Decimal(100))
    e = task_at(project, start, estimate_hours=Decimal(6))
    s1 = task_at(project, start, estimate_hours=Decimal(1), parent=e)
    s2 = task_at(project, start, estimate_hours=Decimal(3), parent=e)
    move(d, "cancelled", ago(40))
    move(s1, "done", ago(35))
    move(b, "in_progress", ago(20))
    move(a, "done", ago(10))
    move(s2, "in_progress", ago(5))
    move(c, "in_review", ago(3))
    return project


def test_progress_is_weighted_by_estimate_with_subtasks_rolled_up(progress_project):
    progress = project_progress(project=progress_project, now=NOW)

    # A 4h done (1.0), B 2h in progress (0.5), C 3h (median) in review (0.8), E 6h from its subtasks
    # (1h done + 3h at 0.5) / 4h = 0.625; D is cancelled and left out.
    hours_done = 4 * 1.0 + 2 * 0.5 + 3 * 0.8 + 6 * 0.625
    assert progress["estimate_hours_total"] == 15.0
    assert progress["estimate_hours_done"] == round(hours_done, 2)
    assert progress["progress"] == round(hours_done / 15, 4)
    assert progress["default_estimate_hours"] == 3.0
    assert (progress["tasks_total"], progress["tasks_open"], progress["tasks_done"]) == (7, 4, 2)
    assert (progress["tasks_cancelled"], progress["tasks_counted"]) == (1, 4)


def test_trend_and_weekly_series_come_from_the_status_history(progress_project):
    progress = project_progress(project=progress_project, now=NOW, days=28)

    # 28 days ago only S1 was done: E = 1h of 4h = 0.25, so 6h x 0.25 = 1.5h of 15h (D already cancelled).
    assert progress["progress_then"] == 0.1
    assert progress["trend"] == round((progress["progress"] - 0.1) * 7 / 28, 4)
    # 8..6 weeks ago D (100h) was still in scope and nothing done; 5 weeks ago S1 was done (at that very
    # moment) and D cancelled; 2 weeks ago B was in progress; 1 week ago A was done too.
    assert [point["progress"] for point in progress["weekly"]] == [
        0.0,
        0.0,
        0.0,
        0.1,
        0.1,
        0.1,
        round(2.5 / 15, 4),
        round(6.5 / 15, 4),
        progress["progress"],
    ]
    assert progress["weekly"][0]["date"] == (NOW - datetime.timedelta(weeks=8)).date()
    assert progress["weekly"][-1]["date"] == TODAY


def test_progress_of_a_project_without_tasks_or_estimates():
    empty = ProjectFactory()
    unestimated = ProjectFactory()
    task_at(unestimated, ago(1), status="done")
    task_at(unestimated, ago(1))

    assert project_progress(project=empty, now=NOW)["progress"] == 0.0
    progress = project_progress(project=unestimated, now=NOW)
    assert (progress["default_estimate_hours"], progress["estimate_hours_total"]) == (1.0, 2.0)
    assert progress["progress"] == 0.5


# --- Health -------------------------------------------------------------------------------------------


def test_overdue_and_stale_open_tasks():
    project = ProjectFactory(key="LATE")
    late = task_at(project, ago(30), due_date=TODAY - datetime.timedelta(days=1))
    task_at(project, ago(30), due_date=TODAY)  # due today: not overdue yet, but untouched for 30 days
    moved = task_at(project, ago(30))
    move(moved, "in_progress", ago(3))
    mentioned = task_at(project, ago(30))
    commit = CommitFactory(
        repository=RepositoryFactory(project=project), timestamp=ago(2), authored_at=ago(2)
    )
    CommitTaskLink.objects.create(commit=commit, task=mentioned)
    task_at(project, ago(30), status="done", due_date=TODAY - datetime.timedelta(days=9))  # closed: ignored

    health = project_health(project=project, now=NOW)

    overdue, stale = signal(health, "overdue"), signal(health, "stale")
    assert (overdue["value"], overdue["examples"]) == (1, [f"LATE-{late.number}"])
    assert overdue["penalty"] == round(25 * min(1, 2 * 1 / 4))
    assert (stale["value"], stale["examples"]) == (2, ["LATE-1", "LATE-2"])
    assert stale["penalty"] == 15  # half the open tasks are stale: the full penalty
    assert "1 of 4 open tasks are past their due date." in health["reasons"]


def test_longest_blocked_chain_and_its_head():
    project = ProjectFactory(key="CHAIN")
    head, middle, tail = (task_at(project, ago(1)) for _ in range(3))
    task_dependency_add(task=middle, depends_on=head, source="system")
    task_dependency_add(task=tail, depends_on=middle, source="system")
    # A short chain elsewhere, and a task waiting on a done task (not blocked).
    other_head, other = task_at(project, ago(1)), task_at(project, ago(1))
    task_dependency_add(task=other, depends_on=other_head, source="system")
    done, waiting = task_at(project, ago(1), status="done"), task_at(project, ago(1))
    task_dependency_add(task=waiting, depends_on=done, source="system")

    blocked = signal(project_health(project=project, now=NOW), "blocked")

    assert (blocked["value"], blocked["examples"], blocked["penalty"]) == (3, [f"CHAIN-{head.number}"], 10)
    move(head, "done", ago(0))
    assert signal(project_health(project=project, now=NOW), "blocked")["value"] == 2


def test_activity_drop_against_the_previous_eight_weeks():
    project = ProjectFactory()
    repository = RepositoryFactory(project=project)
    for days in (15, 20, 30, 40, 50, 60, 65, 69):  # 8 commits in the 8 weeks before the last 14 days
        CommitFactory(repository=repository, timestamp=ago(days), authored_at=ago(days))
    CommitFactory(repository=repository, timestamp=ago(3), authored_at=ago(3))

    activity = signal(project_health(project=project, now=NOW), "activity")

    # Usually 8 x 14 / 56 = 2 commits per 14 days; 1 now is half: not yet a drop.
    assert (activity["value"], activity["penalty"]) == (0.5, 0)
    twelve_days_later = signal(
        project_health(project=project, now=NOW + datetime.timedelta(days=12)), "activity"
    )
    # Then the last 14 days hold no commit against 6 in the 8 weeks before (1.5 per 14 days): a full drop.
    assert (twelve_days_later["value"], twelve_days_later["penalty"]) == (0.0, 15)
    assert "0 commits in the last 14 days against 1.5 usually" in twelve_days_later["reason"]


def test_bus_factor_counts_files_changed_by_one_author():
    project = ProjectFactory()
    repository = RepositoryFactory(project=project)

    def change(path: str, email: str, days: int) -> None:
        commit = CommitFactory(
            repository=repository, author_email=email, timestamp=ago(days), authored_at=ago(days)
        )
        FileChangeFactory(commit=commit, path=path)

    change("src/solo.py", "ada@example.com", 10)
    change("src/solo.py", "Ada@Example.com", 20)  # the same author, differently cased
    change("src/shared.py", "ada@example.com", 10)
    change("src/shared.py", "bob@example.com", 30)
    change("docs/bob.md", "bob@example.com", 40)
    change("src/old.py", "carol@example.com", 200)  # outside the 180 days

    bus = signal(project_health(project=project, now=NOW), "bus_factor")

    assert bus["value"] == round(2 / 3, 4)
    assert bus["penalty"] == round(15 * 2 / 3)
    assert bus["examples"] == ["src/solo.py (ada@example.com)", "docs/bob.md (bob@example.com)"]
    assert "2 of 3 files" in bus["reason"]


def test_churn_spike_week_is_detected():
    project = ProjectFactory()
    repository = RepositoryFactory(project=project)
    for week in range(12):
        when = ago(7 * week + 1)
        CommitFactory(
            repository=repository,
            timestamp=when,
            authored_at=when,
            additions=1000 if week == 3 else 80,
            deletions=20 if week != 3 else 0,
        )

    churn = signal(project_health(project=project, now=NOW), "churn")

    # Mean 175, population sd 248.7: 1000 > 672 (and > 3 x the median 100); no other week is.
    assert (churn["value"], churn["penalty"]) == (1, 5)
    assert churn["examples"] == [str((NOW - datetime.timedelta(weeks=4, days=-1)).date())]


def test_score_and_level_add_up_the_signals():
    project = ProjectFactory(key="SICK")
    for _ in range(4):
        task_at(project, ago(30), due_date=TODAY - datetime.timedelta(days=2))  # overdue and stale

    health = project_health(project=project, now=NOW)

    assert health["score"] == 100 - 25 - 15
    assert health["level"] == HealthLevel.AT_RISK
    assert len(health["reasons"]) == 2


def test_a_dormant_project_is_not_healthy():
    library = ProjectFactory(key="LIB")
    repository = RepositoryFactory(project=library)
    for days in (300, 260, 240):  # a library whose last commit was eight months ago
        commit = CommitFactory(repository=repository, timestamp=ago(days), authored_at=ago(days))
        FileChangeFactory(commit=commit, path="src/lib.py")
    task_at(library, ago(250), status="done")

    health = project_health(project=library, now=NOW)

    dormant = signal(health, "dormant")
    assert (dormant["penalty"], dormant["value"]) == (30, 240)
    assert (health["score"], health["level"]) == (70, HealthLevel.AT_RISK)
    assert health["reasons"] == [
        f"dormant: no activity since {ago(240).date()} (240 days without a commit or a task change)."
    ]
    # A task event is activity too; and a project on hold or completed is expected to be quiet.
    assert signal(project_health(project=library, now=ago(200)), "dormant")["penalty"] == 0
    Project.objects.filter(pk=library.pk).update(status=Project.Status.COMPLETED)
    library.refresh_from_db()
    completed = signal(project_health(project=library, now=NOW), "dormant")
    assert (completed["penalty"], completed["reason"]) == (
        0,
        f"No activity since {ago(240).date()} (240 days); expected, the project is completed.",
    )


def test_a_project_with_nothing_yet_or_recent_work_is_not_dormant():
    empty = ProjectFactory()
    busy = ProjectFactory()
    task_at(busy, ago(400))
    CommitFactory(repository=RepositoryFactory(project=busy), timestamp=ago(89), authored_at=ago(89))
    # Commits and events after the moment judged are not counted (history replayed at an earlier now).
    CommitFactory(repository=RepositoryFactory(project=empty), timestamp=NOW + datetime.timedelta(days=1))

    assert signal(project_health(project=empty, now=NOW), "dormant")["penalty"] == 0
    assert signal(project_health(project=busy, now=NOW), "dormant")["value"] == 89
    assert signal(project_health(project=busy, now=NOW), "dormant")["penalty"] == 0
    assert (
        signal(project_health(project=busy, now=NOW + datetime.timedelta(days=2)), "dormant")["penalty"] == 30
    )


def test_health_record_stores_the_level_and_announces_changes(settings):
    # A local target, so no name is resolved; deliveries are only queued (sent once the test commits).
    settings.APM_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.APM_WEBHOOK_ALLOW_HTTP = True
    project = ProjectFactory(key="REC")
    webhook_subscription_create(
        project=project, url="http://127.0.0.1:9/apm", events=["project.health_changed"]
    )
    late = [task_at(project, ago(30), due_date=TODAY - datetime.timedelta(days=2)) for _ in range(4)]

    assert project_health_record(project=project, now=NOW) == (None, HealthLevel.AT_RISK)
    project.refresh_from_db()
    assert (project.health_level, project.health_score, project.health_checked_at) == ("at_risk", 60, NOW)
    assert not WebhookDelivery.objects.exists(), "the first assessment changes nothing"

    assert project_health_record(project=project, now=NOW) == ("at_risk", "at_risk")
    assert not WebhookDelivery.objects.exists()

    for task in late:
        move(task, "done", NOW)
    assert project_health_record(project=project, now=NOW) == ("at_risk", "healthy")
    delivery = WebhookDelivery.objects.get()
    assert delivery.event == "project.health_changed"
    assert delivery.payload["data"]["previous_level"] == "at_risk"
    assert delivery.payload["data"]["level"] == "healthy"


def test_recompute_task_records_every_active_project():
    active = ProjectFactory()
    task_at(active, ago(30), due_date=TODAY - datetime.timedelta(days=2))
    archived = ProjectFactory(status=Project.Status.ARCHIVED)

    counts = project_health_recompute_task.delay().get()
    again = project_health_recompute_task.delay().get()

    active.refresh_from_db()
    archived.refresh_from_db()
    assert active.health_level in HealthLevel.values
    assert active.health_checked_at is not None
    assert archived.health_level == ""
    assert counts["recorded"] == again["recorded"] >= 1
    assert (counts["failed"], again["changed"]) == (0, 0)


# --- Priorities ---------------------------------------------------------------------------------------


def test_priority_score_and_each_quadrant():
    project = ProjectFactory(key="PRI")
    day = datetime.timedelta(days=1)
    do = TaskFactory(project=project, priority=4, due_date=TODAY - day)
    schedule = TaskFactory(project=project, priority=3, due_date=TODAY + 10 * day)
    delegate = TaskFactory(project=project, priority=1, due_date=TODAY + 2 * day)
    eliminate = TaskFactory(project=project, priority=2)
    blocker = TaskFactory(project=project, priority=2)
    waiting = [TaskFactory(project=project, priority=2) for _ in range(2)]
    for task in waiting:
        task_dependency_add(task=task, depends_on=blocker, source="system")
    cancelled = TaskFactory(project=project, priority=2)
    task_dependency_add(task=cancelled, depends_on=blocker, source="system")
    task_transition(task=cancelled, status="cancelled", source="system")
    TaskFactory(project=project, priority=4, status="done")

    rows = [
        (task.number, task.urgency, task.importance, task.score, task.quadrant, task.blocks_open)
        for task in task_priorities(project=project, today=TODAY)
    ]

    assert rows == [
        (do.number, 50, 30, 80, Quadrant.DO, 0),
        (schedule.number, 20, 20, 40, Quadrant.SCHEDULE, 0),
        (delegate.number, 35, 0, 35, Quadrant.DELEGATE, 0),
        (blocker.number, 0, 20, 20, Quadrant.SCHEDULE, 2),  # medium, and two open tasks wait on it
        (eliminate.number, 0, 10, 10, Quadrant.ELIMINATE, 0),
        (waiting[0].number, 0, 10, 10, Quadrant.ELIMINATE, 0),
        (waiting[1].number, 0, 10, 10, Quadrant.ELIMINATE, 0),
    ]
    scheduled = task_priorities(project=project, today=TODAY, quadrant=Quadrant.SCHEDULE)
    assert [task.number for task in scheduled] == [schedule.number, blocker.number]


# --- Burndown -----------------------------------------------------------------------------------------


def test_burndown_with_a_scope_change_and_a_reopen():
    start = datetime.date(2025, 3, 1)
    project = ProjectFactory(key="BURN", target_date=start + datetime.timedelta(days=4))

    def at(day: int) -> datetime.datetime:
        return datetime.datetime.combine(start, datetime.time(12), tzinfo=datetime.UTC) + datetime.timedelta(
            days=day
        )

    t1 = task_at(project, at(-5), estimate_hours=Decimal(2))
    t2 = task_at(project, at(-5), estimate_hours=Decimal(4))
    t3 = task_at(project, at(-5))  # no estimate: weighs the median of 2 and 6 (t2 ends cancelled) = 4
    move(t1, "done", at(-1))
    task_at(project, at(2), estimate_hours=Decimal(6))  # scope grows
    move(t2, "cancelled", at(3))  # scope shrinks
    move(t1, "in_progress", at(5))  # reopened
    move(t3, "done", at(6))
    move(t1, "done", at(8))

    burndown = project_burndown(project=project, start=start, end=start + datetime.timedelta(days=9))

    days = burndown["days"]
    assert [(d["scope"], d["done"], d["remaining"]) for d in days] == [
        (3, 1, 2), (3, 1, 2), (4, 1, 3), (3, 1, 2), (3, 1, 2),
        (3, 0, 3), (3, 1, 2), (3, 1, 2), (3, 2, 1), (3, 2, 1),
    ]  # fmt: skip
    assert [
        (d["added"], d["removed"], d["reopened"]) for d in days if d["added"] or d["removed"] or d["reopened"]
    ] == [
        (1, 0, 0),
        (0, 1, 0),
        (0, 0, 1),
    ]
    assert [d["remaining_hours"] for d in days] == [8, 8, 14, 10, 10, 12, 8, 8, 6, 6]
    assert (days[2]["added_hours"], days[3]["removed_hours"]) == (6, 4)
    assert [d["ideal"] for d in days] == [2, 1.5, 1, 0.5, 0, 0, 0, 0, 0, 0]
    assert [d["ideal_hours"] for d in days[:5]] == [8, 6, 4, 2, 0]
    assert (burndown["target_date"], burndown["default_estimate_hours"]) == (project.target_date, 4.0)


def test_burndown_refuses_a_reversed_or_too_long_range():
    project = ProjectFactory()
    start = datetime.date(2025, 1, 1)

    with pytest.raises(Exception, match="before the start date") as reversed_range:
        project_burndown(project=project, start=start, end=start - datetime.timedelta(days=1))
    with pytest.raises(Exception, match="at most 366 days") as too_long:
        project_burndown(project=project, start=start, end=start + datetime.timedelta(days=366))

    assert list(reversed_range.value.message_dict) == list(too_long.value.message_dict) == ["end"]
    assert (
        len(project_burndown(project=project, start=start, end=start + datetime.timedelta(days=365))["days"])
        == 366
    )


# --- Query counts -------------------------------------------------------------------------------------


def _grow(project: Project, n: int) -> None:
    repository = RepositoryFactory(project=project)
    previous = None
    for i in range(n):
        task = task_at(project, ago(i % 40), estimate_hours=Decimal(i % 5 or 1), due_date=TODAY)
        if previous is not None and i % 3:
            task_dependency_add(task=task, depends_on=previous, source="system")
        if i % 2:
            move(task, "in_progress", ago(i % 20))
        commit = CommitFactory(repository=repository, timestamp=ago(i), authored_at=ago(i))
        FileChangeFactory(commit=commit, path=f"src/f{i % 7}.py")
        CommitTaskLink.objects.create(commit=commit, task=task)
        previous = task


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        # task counts, median estimate, today's progress, the historic points
        (lambda project: project_progress(project=project, now=NOW), 4),
        # last commit and task event, open task counts, overdue examples, stale examples, dependency
        # chains, commit activity, files by author (totals, examples), weekly churn
        (lambda project: project_health(project=project, now=NOW), 9),
        # the annotated list
        (lambda project: list(task_priorities(project=project, today=TODAY)), 1),
        # median estimate, state before the range, changes per day
        (
            lambda project: project_burndown(
                project=project, start=TODAY - datetime.timedelta(days=60), end=TODAY
            ),
            3,
        ),
    ],
    ids=["progress", "health", "priorities", "burndown"],
)
def test_queries_do_not_grow_with_tasks(selector, expected):
    project = ProjectFactory()
    _grow(project, 1)
    with_one = queries(selector, project=project)
    _grow(project, 29)
    with_thirty = queries(selector, project=project)

    assert with_one == with_thirty == expected


# --- Admin --------------------------------------------------------------------------------------------


def test_project_change_page_shows_health_and_progress(admin_client):
    project = ProjectFactory(key="ADM")
    task_at(project, ago(30), due_date=TODAY - datetime.timedelta(days=2), estimate_hours=Decimal(2))
    task_at(project, ago(1), status="done", estimate_hours=Decimal(2))
    # The page judges health now, long after NOW: a commit of today keeps the project from being dormant.
    CommitFactory(repository=RepositoryFactory(project=project), additions=0, deletions=0)

    page = admin_client.get(reverse("admin:projects_project_change", args=[project.pk])).content.decode()
    add_page = admin_client.get(reverse("admin:projects_project_add")).content.decode()

    # The open task is overdue (25 points) and untouched for weeks (15 points).
    assert 'At risk</strong>, score 60/100 now.\n  <span class="muted">Not recorded yet.</span>' in page
    assert "1 of 1 open tasks are past their due date." in page
    assert "50.0% done (2 of 4 estimate hours, 1 of 2 tasks done)" in page
    assert "field-health_panel" not in add_page
