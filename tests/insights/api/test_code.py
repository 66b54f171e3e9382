"""``/api/v1/projects/{key}/hotspots/``, ``/coupling/`` and ``/contributors/``: parameters, access, cache.

The figures themselves are checked against git in tests/insights/test_code.py; here the API must
give exactly what the selectors give for the window it names, refuse bad parameters with field errors,
answer members of every role and nobody else, and serve from the cache until an ingestion bumps the
project's generation.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from apm.models import ApiToken
from insights.api.code import ContributorListSerializer, CouplingListSerializer, HotspotListSerializer
from insights.code import MAX_DAYS, change_coupling, contributor_stats, file_hotspots, last_commit_at
from projects.services import project_cache_invalidate
from tests.factories import CommitFactory, FileChangeFactory, FileFactory

pytestmark = pytest.mark.django_db

ROUTES = ("hotspots", "coupling", "contributors")
TODAY = timezone.now().astimezone(dt.UTC).date()


def day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def code(world: Any, commits: int = 4, *, days_ago: int = 1) -> None:
    """Commits of two authors to three files of ALPHA's repository, core.py and util.py together."""
    repository = world.objects["repository"]
    for n, path in enumerate(("src/core.py", "src/util.py", "README.md"), start=1):
        FileFactory(repository=repository, path=path, lines=10 * n)
    when = timezone.now() - dt.timedelta(days=days_ago)
    for n in range(commits):
        email = "ada@example.com" if n % 2 else "bob@example.com"
        commit = CommitFactory(repository=repository, author_email=email, timestamp=when, files_changed=2)
        for path in ("src/core.py", "src/util.py") if n < commits - 1 else ("README.md",):
            FileChangeFactory(commit=commit, path=path, added=n + 1, deleted=1)


def get(world: Any, who: str, route: str, **params: Any) -> Any:
    return world.client(who).get(f"/api/v1/projects/ALPHA/{route}/", params)


def test_each_route_gives_what_its_selector_gives(world):
    code(world)
    project = world.project
    since, until = day_start(TODAY - dt.timedelta(days=89)), day_start(TODAY + dt.timedelta(days=1))
    days = {
        "since": TODAY - dt.timedelta(days=89),
        "until": TODAY,
        "days": 90,
        "anchored_to_last_activity": False,
        "last_activity_at": last_commit_at(project=project),
    }
    window = {"since": since, "until": until, "repository": None, "window": days}
    expected = {
        "hotspots": HotspotListSerializer(
            {**window, "results": file_hotspots(project=project, since=since, until=until)}
        ).data,
        "coupling": CouplingListSerializer(
            {**window, "max_files": 30, "results": change_coupling(project=project, since=since, until=until)}
        ).data,
        "contributors": ContributorListSerializer(
            {**window, "results": contributor_stats(project=project, since=since, until=until, limit=50)}
        ).data,
    }

    for route in ROUTES:
        response = get(world, "viewer", route)
        assert response.status_code == 200, response.content
        assert response.json() == expected[route], route

    body = get(world, "viewer", "hotspots").json()
    assert [row["path"] for row in body["results"]] == ["src/util.py", "src/core.py", "README.md"]
    assert body["results"][0]["score"] == 3 * 20
    coupling = get(world, "member", "coupling").json()["results"]
    assert [(r["path_a"], r["path_b"], r["shared"], r["degree"]) for r in coupling] == [
        ("src/core.py", "src/util.py", 3, 1.0)
    ]
    people = get(world, "owner", "contributors").json()["results"]
    # The world's own commit (now) is Ada's too.
    assert [(row["author_email"], row["commits"]) for row in people] == [
        ("ada@example.com", 3),
        ("bob@example.com", 2),
    ]


def test_the_window_and_the_repository_are_echoed(world):
    code(world, days_ago=10)
    repository = world.objects["repository"].pk
    since, until = TODAY - dt.timedelta(days=12), TODAY - dt.timedelta(days=5)

    body = get(
        world, "viewer", "hotspots", since=since.isoformat(), until=until.isoformat(), repository=repository
    ).json()
    recent = get(world, "viewer", "hotspots", since=(TODAY - dt.timedelta(days=3)).isoformat()).json()

    assert (body["since"], body["repository"]) == (
        day_start(since).isoformat().replace("+00:00", "Z"),
        repository,
    )
    assert body["until"] == day_start(until + dt.timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert len(body["results"]) == 3
    assert recent["results"] == []  # the commits are 10 days old
    assert len(get(world, "viewer", "hotspots", limit=1).json()["results"]) == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2024-02-30"}, "until"),
        ({"since": "2024-03-02", "until": "2024-03-01"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"repository": "abc"}, "repository"),
        ({"repository": "0"}, "repository"),
        ({"repository": str(2**63)}, "repository"),
        ({"repository": "987654321"}, "repository"),
        ({"days": "0"}, "days"),
        ({"days": str(MAX_DAYS + 1)}, "days"),
        ({"days": "a week"}, "days"),
        ({"days": "7", "since": "2024-03-01", "until": "2024-03-31"}, "days"),
    ],
)
@pytest.mark.parametrize("route", ROUTES)
def test_bad_parameters_are_field_errors(world, route, params, field):
    response = get(world, "viewer", route, **params)

    assert response.status_code == 400, response.content
    assert response.json()["detail"] == "Invalid input."
    assert list(response.json()["errors"]) == [field]


def test_min_shared_is_validated_for_coupling(world):
    response = get(world, "viewer", "coupling", min_shared="0")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["min_shared"]


def test_another_projects_repository_is_refused_like_an_unknown_one(world):
    other = world.objects["other_repository"].pk

    theirs = get(world, "viewer", "hotspots", repository=other)
    unknown = get(world, "viewer", "hotspots", repository=987654321)

    assert theirs.status_code == unknown.status_code == 400
    assert theirs.json()["errors"]["repository"] == [f"No repository with id {other} in this project."]
    assert unknown.json()["errors"]["repository"] == ["No repository with id 987654321 in this project."]


@pytest.mark.parametrize("route", ROUTES)
def test_members_of_every_role_read_and_nobody_else(world, route):
    answers = {
        who: get(world, who, route).status_code
        for who in ("owner", "maintainer", "member", "viewer", "staff", "outsider")
    }
    read_only = world.client("viewer", scope=ApiToken.Scope.READ).get(f"/api/v1/projects/ALPHA/{route}/")

    assert answers == {
        "owner": 200, "maintainer": 200, "member": 200, "viewer": 200, "staff": 200, "outsider": 404,
    }  # fmt: skip
    assert read_only.status_code == 200
    assert world.client("anonymous").get(f"/api/v1/projects/ALPHA/{route}/").status_code == 401
    assert world.client("viewer").get(f"/api/v1/projects/NOPE/{route}/").status_code == 404
    assert world.client("viewer").get(f"/api/v1/projects/alpha/{route}/").status_code == 200


def test_answers_come_from_the_cache_until_an_ingestion_bumps_the_generation(
    world, django_capture_on_commit_callbacks
):
    code(world)
    before = get(world, "viewer", "hotspots").json()
    FileChangeFactory(
        commit=CommitFactory(repository=world.objects["repository"]), path="README.md", added=1, deleted=0
    )

    cached = get(world, "viewer", "hotspots").json()
    with django_capture_on_commit_callbacks(execute=True):
        project_cache_invalidate(project_id=world.project.pk)  # what ingestion_finish calls
    fresh = get(world, "viewer", "hotspots").json()

    readme = {row["path"]: row["changes"] for row in fresh["results"]}["README.md"]
    assert cached == before
    assert readme == 2
    assert fresh != before


def test_a_quiet_project_answers_with_its_last_90_days_of_work(world):
    code(world, days_ago=240)  # the last commit of the library was eight months ago
    world.objects["repository"].commits.filter(timestamp__gt=timezone.now() - dt.timedelta(days=1)).update(
        timestamp=timezone.now() - dt.timedelta(days=300)
    )  # the world's own commit too
    last = (timezone.now() - dt.timedelta(days=240)).astimezone(dt.UTC).date()

    bodies = {route: get(world, "viewer", route).json() for route in ROUTES}

    for route, body in bodies.items():
        assert body["results"], route
        assert body["window"]["until"] == last.isoformat()
        assert body["window"]["since"] == (last - dt.timedelta(days=89)).isoformat()
        assert (body["window"]["days"], body["window"]["anchored_to_last_activity"]) == (90, True)
        assert body["until"] == day_start(last + dt.timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert bodies["hotspots"]["window"]["last_activity_at"].startswith(last.isoformat())
    # The window given back gives the same figures.
    again = get(
        world, "viewer", "hotspots", since=bodies["hotspots"]["window"]["since"], until=last.isoformat()
    ).json()
    assert again["results"] == bodies["hotspots"]["results"]
    assert again["window"]["anchored_to_last_activity"] is False


def test_days_sets_the_length_of_the_window(world):
    code(world, days_ago=10)
    last_week = get(world, "viewer", "hotspots", days=7).json()
    two_weeks = get(world, "viewer", "contributors", days=14).json()
    from_since = get(
        world, "viewer", "hotspots", since=(TODAY - dt.timedelta(days=12)).isoformat(), days=3
    ).json()
    up_to_until = get(
        world, "viewer", "coupling", until=(TODAY - dt.timedelta(days=10)).isoformat(), days=1
    ).json()

    # The world's own commit is today's: the window ends today and holds only it.
    assert last_week["window"] == {
        "since": (TODAY - dt.timedelta(days=6)).isoformat(),
        "until": TODAY.isoformat(),
        "days": 7,
        "anchored_to_last_activity": False,
        "last_activity_at": last_week["window"]["last_activity_at"],
    }
    assert [row["path"] for row in last_week["results"]] == []
    assert {row["author_email"] for row in two_weeks["results"]} == {"ada@example.com", "bob@example.com"}
    assert (from_since["window"]["since"], from_since["window"]["until"], from_since["window"]["days"]) == (
        (TODAY - dt.timedelta(days=12)).isoformat(),
        (TODAY - dt.timedelta(days=10)).isoformat(),
        3,
    )
    assert from_since["window"]["last_activity_at"] is None  # both ends given: no need to look
    assert len(from_since["results"]) == 3
    assert up_to_until["window"]["days"] == 1
    assert [(row["path_a"], row["path_b"]) for row in up_to_until["results"]] == [
        ("src/core.py", "src/util.py")
    ]
