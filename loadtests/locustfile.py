"""APM's load-test users, against its real URLs. loadtests/scenario.py (``make loadtest``) runs them.

``ProjectManagementUser`` is the guide's person: one look at the dashboard for every three projects
created. ``IntegrationUser`` is an integration with a token: it reads task lists and follows commit
cursors, reads project summaries and analytics, moves tasks through their states, and now and then
registers a repository and starts its ingestion. Both wait 1 to 5 seconds between requests, as in the
guide; ``APM_LOADTEST_WAIT=0`` removes the waits and ``APM_LOADTEST_WAIT=0,0.5`` shortens them.

Requests are named by route (``/api/v1/projects/[key]/summary/``), so that Locust's figures group by
endpoint; any answer but the one expected is a failure that carries the answer's status and body.

The environment (the scenario driver sets it):
  APM_LOADTEST_TOKEN         a write token of a staff user (local repository paths are staff-only)
  APM_LOADTEST_PROJECTS      project keys to read and write, comma-separated (default: the demo's)
  APM_LOADTEST_REPOSITORIES  ids of ingested repositories whose commits are listed, comma-separated
  APM_LOADTEST_SOURCES       paths of git repositories under APM_REPO_ROOTS to register and ingest
  APM_LOADTEST_REGISTER_WEIGHT  weight of the registration among the integration's tasks (default 1)

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000
"""

from __future__ import annotations

import os
import random
from typing import Any

from locust import HttpUser, between, constant, task

_WAIT = os.environ.get("APM_LOADTEST_WAIT", "1,5")
PROJECTS = [
    key for key in os.environ.get("APM_LOADTEST_PROJECTS", "APM,FIELD,DATA,SSO,BILL").split(",") if key
]
REPOSITORIES = [r for r in os.environ.get("APM_LOADTEST_REPOSITORIES", "").split(",") if r]
SOURCES = [s for s in os.environ.get("APM_LOADTEST_SOURCES", "").split(",") if s]
REGISTER_WEIGHT = int(os.environ.get("APM_LOADTEST_REGISTER_WEIGHT", "1"))
# What the API answers when the project has that source already (repos.services): the repository is
# there, which is what registering asked for.
SOURCE_TAKEN = "already has this source"
# A keep-alive connection idle longer than this is closed before the wait ends: gunicorn closes idle ones
# after 5 s (gunicorn.conf.py), so a user waiting up to 5 s would sometimes send its next request on a
# connection the server is closing, and fail for reasons of the client's making (a proxy in front of
# gunicorn keeps idle connections for less than gunicorn does, for the same reason).
IDLE_SECONDS = 4.0
ANALYTICS = ["progress", "health", "priorities", "burndown", "hotspots", "coupling", "contributors"]


def _pace():  # type: ignore[no-untyped-def]
    if _WAIT == "0":
        return constant(0)
    low, high = (float(part) for part in _WAIT.split(","))
    return between(low, high)


_PACE = _pace()


def _expect(response: Any, *statuses: int) -> bool:
    """Mark ``response`` (opened with catch_response) failed unless its status is one of ``statuses``."""
    if response.status_code in statuses:
        response.success()
        return True
    # Status 0: no answer at all; the error says why (refused, reset, timed out).
    body = response.text[:300] if response.status_code else repr(response.error)[:300]
    response.failure(f"{response.status_code}: {body}")
    return False


class ApmUser(HttpUser):
    """A user with a token, paced as the guide's people are."""

    abstract = True

    def wait_time(self) -> float:
        seconds = float(_PACE(self))
        if seconds > IDLE_SECONDS:
            self.client.close()  # the next request opens a new connection (IDLE_SECONDS)
        return seconds


class ProjectManagementUser(ApmUser):
    """The guide's person: the dashboard, and projects created."""

    def on_start(self) -> None:
        token = os.environ["APM_LOADTEST_TOKEN"]
        self.client.headers.update({"Authorization": f"Token {token}", "Accept": "text/html"})

    @task
    def view_dashboard(self) -> None:
        with self.client.get("/dashboard", catch_response=True) as response:
            _expect(response, 200)

    @task(3)
    def create_project(self) -> None:
        with self.client.post(
            "/projects",
            json={"name": "Test Project"},
            headers={"Accept": "application/json"},
            catch_response=True,
        ) as response:
            # Each creation gets the next free key (TP, TP2, TP3, ...): a 201 with a key, or it failed.
            if _expect(response, 201) and not response.json().get("key"):
                response.failure(f"201 without a key: {response.text[:300]}")


class IntegrationUser(ApmUser):
    """An integration with a token, reading lists, summaries and analytics and moving tasks."""

    def on_start(self) -> None:
        token = os.environ["APM_LOADTEST_TOKEN"]
        self.client.headers.update({"Authorization": f"Token {token}", "Accept": "application/json"})

    def _follow(self, path: str, name: str, next_name: str, pages: int) -> None:
        """A list and up to ``pages - 1`` more pages through its ``next`` link."""
        url: str | None = path
        for page in range(pages):
            if not url:
                return
            with self.client.get(url, name=name if page == 0 else next_name, catch_response=True) as response:
                if not _expect(response, 200):
                    return
                url = response.json().get("next")

    @task(3)
    def list_tasks(self) -> None:
        key = random.choice(PROJECTS)
        self._follow(
            f"/api/v1/tasks/?project={key}&page_size=20",
            "/api/v1/tasks/?project=[key]",
            "/api/v1/tasks/?project=[key]&page=[n]",
            pages=3,
        )

    @task(3)
    def list_commits(self) -> None:
        if not REPOSITORIES:
            return
        self._follow(
            f"/api/v1/commits/?repository={random.choice(REPOSITORIES)}",
            "/api/v1/commits/?repository=[id]",
            "/api/v1/commits/?repository=[id]&cursor=[next]",
            pages=3,
        )

    @task(3)
    def project_summary(self) -> None:
        key = random.choice(PROJECTS)
        with self.client.get(
            f"/api/v1/projects/{key}/summary/", name="/api/v1/projects/[key]/summary/", catch_response=True
        ) as response:
            _expect(response, 200)

    @task(3)
    def project_analytics(self) -> None:
        key, figure = random.choice(PROJECTS), random.choice(ANALYTICS)
        with self.client.get(
            f"/api/v1/projects/{key}/{figure}/", name=f"/api/v1/projects/[key]/{figure}/", catch_response=True
        ) as response:
            _expect(response, 200)

    @task(2)
    def task_transitions(self) -> None:
        """A task created (to do), then moved to in progress and to done."""
        with self.client.post(
            "/api/v1/tasks/",
            json={"project": random.choice(PROJECTS), "title": "Load-test task", "estimate_hours": 2},
            catch_response=True,
        ) as response:
            if not _expect(response, 201):
                return
            key = response.json()["key"]
        for status in ("in_progress", "done"):
            with self.client.post(
                f"/api/v1/tasks/{key}/transition/",
                json={"status": status, "note": "load test"},
                name=f"/api/v1/tasks/[key]/transition/ ({status})",
                catch_response=True,
            ) as response:
                if not _expect(response, 200):
                    return

    @task(REGISTER_WEIGHT)
    def register_and_ingest(self) -> None:
        """A generated repository registered to a project (or found there, registered before) and its
        ingestion started: 202 whether a run was queued or one was already under way."""
        if not SOURCES:
            return
        key, source = random.choice(PROJECTS), random.choice(SOURCES)
        with self.client.post(
            "/api/v1/repositories/",
            json={"project": key, "source": source, "name": os.path.basename(source)},
            catch_response=True,
        ) as response:
            if response.status_code == 201:
                response.success()
                repository = response.json()["id"]
            elif response.status_code == 400 and SOURCE_TAKEN in response.text:
                response.success()
                repository = self._repository_of(key, source)
                if repository is None:
                    return
            else:
                _expect(response, 201)
                return
        with self.client.post(
            f"/api/v1/repositories/{repository}/ingest/",
            name="/api/v1/repositories/[id]/ingest/",
            catch_response=True,
        ) as response:
            _expect(response, 202)

    def _repository_of(self, key: str, source: str) -> int | None:
        with self.client.get(
            f"/api/v1/repositories/?project={key}&page_size=200",
            name="/api/v1/repositories/?project=[key]",
            catch_response=True,
        ) as response:
            if not _expect(response, 200):
                return None
            for row in response.json()["results"]:
                if row["source"] == source:
                    return int(row["id"])
            response.failure(f"{source} is not among {key}'s repositories, though registering it said so")
            return None
