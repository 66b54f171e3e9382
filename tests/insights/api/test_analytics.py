"""``/api/v1/projects/{key}/progress|health|priorities|burndown/``: answers, validation and caching.

Who may read them is in test_permissions.py's matrix, their query counts in test_query_counts.py.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from insights.services import project_health_record
from repos.models import Commit
from tasks.models import TaskEvent
from tasks.services import task_transition, task_update
from tests.factories import TaskFactory

pytestmark = pytest.mark.django_db

BASE = "/api/v1/projects/ALPHA"


def test_progress_as_a_viewer_sees_it(world):
    task_update(task=world.objects["task"], estimate_hours=Decimal(3), source=TaskEvent.Source.SYSTEM)
    task_transition(task=world.objects["task"], status="done", source=TaskEvent.Source.SYSTEM)

    body = world.client("viewer").get(f"{BASE}/progress/").json()

    # ALPHA-1 (3h) done, ALPHA-2 without an estimate weighs the median, 3h, and is to do.
    assert (body["progress"], body["estimate_hours_total"], body["estimate_hours_done"]) == (0.5, 6.0, 3.0)
    assert len(body["weekly"]) == 9
    assert body["trend_days"] == 28


def test_any_task_change_invalidates_the_cached_answer(world, django_capture_on_commit_callbacks):
    client = world.client("member")
    before = client.get(f"{BASE}/progress/").json()["tasks_done"]

    with django_capture_on_commit_callbacks(execute=True):
        task_transition(task=world.objects["task"], status="done", source=TaskEvent.Source.SYSTEM)
    after = client.get(f"{BASE}/progress/").json()["tasks_done"]

    assert (before, after) == (0, 1)


def test_health_shows_the_live_score_and_the_stored_level(world):
    client = world.client("viewer")
    first = client.get(f"{BASE}/health/").json()

    project_health_record(project=world.project)
    recorded = client.get(f"{BASE}/health/").json()

    assert first["stored_level"] is None
    assert {signal["name"] for signal in first["signals"]} == {
        "dormant", "overdue", "stale", "blocked", "activity", "bus_factor", "churn",
    }  # fmt: skip
    assert (recorded["stored_level"], recorded["stored_score"]) == (first["level"], first["score"])


def test_priorities_are_paginated_and_filtered_by_quadrant(world):
    today = timezone.localdate()
    TaskFactory(project=world.project, priority=4, due_date=today)  # ALPHA-3: urgent and important
    client = world.client("member")

    everything = client.get(f"{BASE}/priorities/").json()
    do = client.get(f"{BASE}/priorities/", {"quadrant": "do"}).json()
    bad = client.get(f"{BASE}/priorities/", {"quadrant": "panic"})

    assert everything["count"] == 3
    assert everything["results"][0]["key"] == "ALPHA-3"
    assert (everything["results"][0]["score"], everything["results"][0]["quadrant"]) == (65, "do")
    assert [row["key"] for row in do["results"]] == ["ALPHA-3"]
    assert bad.status_code == 400
    assert list(bad.json()["errors"]) == ["quadrant"]


def test_burndown_defaults_to_the_last_30_days(world):
    body = world.client("viewer").get(f"{BASE}/burndown/").json()

    assert len(body["days"]) == 30
    assert body["end"] == str(timezone.localdate())
    assert (body["days"][-1]["scope"], body["days"][-1]["remaining"]) == (2, 2)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"start": "yesterday"}, "start"),
        ({"end": "2025-02-30"}, "end"),
        ({"start": "2025-03-10", "end": "2025-03-01"}, "end"),
        ({"start": "2024-01-01", "end": "2025-01-01"}, "end"),
    ],
    ids=["not a date", "no such day", "end before start", "more than 366 days"],
)
def test_burndown_refuses_bad_dates_with_field_errors(world, query, field):
    response = world.client("viewer").get(f"{BASE}/burndown/", query)

    assert response.status_code == 400
    assert response.json()["detail"] == "Invalid input."
    assert list(response.json()["errors"]) == [field]


def test_burndown_range_of_exactly_366_days_is_accepted(world):
    end = datetime.date(2025, 1, 1)
    start = end - datetime.timedelta(days=365)

    response = world.client("viewer").get(f"{BASE}/burndown/", {"start": str(start), "end": str(end)})

    assert response.status_code == 200
    assert len(response.json()["days"]) == 366


def test_a_dormant_project_says_so_in_its_health(world):
    Commit.objects.filter(repository__project=world.project).update(
        timestamp=timezone.now() - datetime.timedelta(days=240)
    )
    TaskEvent.objects.filter(project=world.project).update(
        created_at=timezone.now() - datetime.timedelta(days=250)
    )
    since = (timezone.now() - datetime.timedelta(days=240)).date()

    health = world.client("viewer").get(f"{BASE}/health/").json()

    dormant = next(signal for signal in health["signals"] if signal["name"] == "dormant")
    assert dormant["penalty"] == 30
    assert health["score"] <= 70
    assert (
        f"dormant: no activity since {since} (240 days without a commit or a task change)."
        in health["reasons"]
    )
