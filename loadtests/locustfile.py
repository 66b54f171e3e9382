"""The guide's load-test scenario, against APM's real URLs.

Each simulated person looks at the dashboard once for every three projects they create, and waits 1 to
5 seconds between requests, as in the guide. Requests carry an API token
(``APM_LOADTEST_TOKEN``): /dashboard and /projects take tokens as well as sessions, so the load
goes through the same views as a browser or an integration. ``APM_LOADTEST_WAIT=0`` removes the
waits, for a stress test that measures how many requests the server can take.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000   (or: make loadtest)
"""

from __future__ import annotations

import os

from locust import HttpUser, between, constant, task

_WAIT = os.environ.get("APM_LOADTEST_WAIT", "1,5")


def _wait_time():  # type: ignore[no-untyped-def]
    if _WAIT == "0":
        return constant(0)
    low, high = (float(part) for part in _WAIT.split(","))
    return between(low, high)


class ProjectManagementUser(HttpUser):
    wait_time = _wait_time()

    def on_start(self) -> None:
        token = os.environ["APM_LOADTEST_TOKEN"]
        self.client.headers.update({"Authorization": f"Token {token}", "Accept": "text/html"})

    @task
    def view_dashboard(self) -> None:
        self.client.get("/dashboard")

    @task(3)
    def create_project(self) -> None:
        with self.client.post(
            "/projects",
            json={"name": "Test Project"},
            headers={"Accept": "application/json"},
            catch_response=True,
        ) as response:
            # Each creation gets the next free key (TP, TP2, TP3, ...): a 201 with a key, or it failed.
            if response.status_code != 201 or not response.json().get("key"):
                response.failure(f"{response.status_code}: {response.text[:200]}")
