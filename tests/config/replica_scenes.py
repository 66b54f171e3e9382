"""What tests/config/test_replica.py has APM do against a primary and its real standby.

Each scene runs in a ``manage.py shell`` of its own, with DATABASE_URL naming the test's primary and
DATABASE_REPLICA_URL its standby, and prints one ``RESULT <json>`` line: which alias served the queries
of each step (recorded by an execute wrapper on both connections) and what the pages showed. Requests
go through Django's whole stack (``django.test.Client``: the middleware opens each request's read scope),
signed in by session so that no request writes unless the test means it to (a token's first use
records itself).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db import connections
from django.test import Client

from apm.replicas import PRIMARY, REPLICA, read_scope_open
from apm.services import api_token_create
from insights.selectors import project_portfolio_cached
from monitoring.metrics import DATABASE_REPLICA_LAG, DATABASE_REPLICA_USABLE
from projects.models import Membership, Project
from reports.digest import export_filters_clean
from reports.exports import export_run
from reports.models import ExportJob
from tests.factories import MembershipFactory, ProjectFactory, TaskFactory, UserFactory

_TABLE = re.compile(r'(?:FROM|JOIN)\s+"?(\w+)"?', re.IGNORECASE)
# The tables whose reads the tests follow.
TABLES = ("projects", "tasks", "project_memberships", "export_jobs", "api_tokens")


def result(value: dict[str, Any]) -> None:
    """Print the scene's result for the test, with how long its dashboard requests took."""
    print("RESULT " + json.dumps({**value, "seconds": seconds}, default=str), flush=True)


@contextmanager
def recorded() -> Iterator[list[tuple[str, str]]]:
    """Every statement either connection runs in this thread, as (alias, sql)."""
    seen: list[tuple[str, str]] = []

    def recorder(alias: str) -> Callable[..., Any]:
        def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
            seen.append((alias, sql))
            return execute(sql, params, many, context)

        return wrapper

    with ExitStack() as stack:
        for alias in (PRIMARY, REPLICA):
            stack.enter_context(connections[alias].execute_wrapper(recorder(alias)))
        yield seen


def where(seen: list[tuple[str, str]]) -> dict[str, list[str]]:
    """For each followed table, the aliases that read it (sorted, each once)."""
    found: dict[str, set[str]] = {}
    for alias, sql in seen:
        for table in _TABLE.findall(sql):
            if table in TABLES:
                found.setdefault(table, set()).add(alias)
    return {table: sorted(aliases) for table, aliases in sorted(found.items())}


def browser(username: str) -> Client:
    client = Client(SERVER_NAME="localhost")
    client.force_login(User.objects.get(username=username))
    return client


def dashboard_names(client: Client) -> tuple[int, list[str]]:
    started = time.perf_counter()
    response = client.get("/dashboard", HTTP_ACCEPT="application/json")
    # Reported for the operators' figures (docs/operations.md), never asserted on.
    seconds.append(round(time.perf_counter() - started, 4))
    names = [row["name"] for row in response.json()] if response.status_code == 200 else []
    return response.status_code, names


# How long each dashboard request of the scene took, in order (printed with the result as "seconds").
seconds: list[float] = []


def setup() -> None:
    """The people and rows of every scene: an owner and a viewer of ALPHA, tasks, an export job."""
    owner = UserFactory(username="owner")
    viewer = UserFactory(username="viewer")
    alpha = ProjectFactory(key="ALPHA", name="Alpha")
    MembershipFactory(project=alpha, user=owner, role=Membership.Role.OWNER)
    MembershipFactory(project=alpha, user=viewer, role=Membership.Role.VIEWER)
    for _ in range(3):
        TaskFactory(project=alpha)
    kind = ExportJob.Kind.TASKS_CSV
    job = ExportJob.objects.create(
        project=alpha, kind=kind, filters=export_filters_clean(project=alpha, kind=kind, filters={})
    )
    result({"export_job": job.pk})


def routing() -> None:
    """Where each kind of read goes with the replica caught up."""
    steps: dict[str, Any] = {}
    with connections[REPLICA].cursor() as cursor:
        cursor.execute("SELECT inet_server_port(), pg_is_in_recovery()")
        port, recovering = cursor.fetchone()
    steps["replica_server"] = {"port": port, "in_recovery": recovering}
    viewer = browser("viewer")
    with recorded() as seen:
        status, names = dashboard_names(viewer)
    steps["dashboard"] = {"status": status, "names": names, "where": where(seen)}
    # One request that writes, then reads: a token's first use records itself (last_used_at) before the
    # view, so that request's dashboard is read from the primary. The token's second use writes nothing.
    # (No cache in this scene, so no pin carries the write to the next request: the lag scene has pins.)
    _, raw = api_token_create(user=User.objects.get(username="viewer"), name="routing")
    for step in ("token_first_use", "token_again"):
        with recorded() as seen:
            response = Client(SERVER_NAME="localhost").get(
                "/dashboard", HTTP_ACCEPT="application/json", HTTP_AUTHORIZATION=f"Token {raw}"
            )
        steps[step] = {"status": response.status_code, "where": where(seen)}
    with recorded() as seen:
        response = viewer.get("/api/v1/tasks/")
    steps["task_list"] = {"status": response.status_code, "where": where(seen)}
    with recorded() as seen:
        response = viewer.get("/api/v1/tasks/ALPHA-1/")
    steps["task_detail"] = {"status": response.status_code, "where": where(seen)}
    # Outside the selectors that opt in, in a scope of its own (a request's, a task's): the primary.
    with read_scope_open(), recorded() as seen:
        Project.objects.filter(key="ALPHA").count()
    steps["not_opted_in"] = {"where": where(seen)}
    # A write, then an opted-in read in the same scope: the read is the primary's.
    with read_scope_open(), recorded() as seen:
        Project.objects.filter(key="ALPHA").update(description="written before the read")
        project_portfolio_cached()
    steps["write_then_read"] = {"where": where(seen)}
    # An export's reads, in its task's scope after the claim: the replica, which holds the job.
    with read_scope_open(), recorded() as seen:
        job = export_run(job_id=int(os.environ["APM_TEST_EXPORT_JOB"]))
    steps["export"] = {"status": job.status, "rows": job.rows, "where": where(seen)}
    result(steps)


def lagging() -> None:
    """Replay is paused on the standby: the owner renames ALPHA, then both people open the dashboard."""
    owner, viewer = browser("owner"), browser("viewer")
    renamed = os.environ["APM_TEST_NEW_NAME"]
    steps: dict[str, Any] = {}
    with recorded() as seen:
        response = owner.patch(
            "/api/v1/projects/ALPHA/", data={"name": renamed}, content_type="application/json"
        )
    steps["rename"] = {"status": response.status_code, "where": where(seen)}
    for name, client in (("owner", owner), ("viewer", viewer)):
        with recorded() as seen:
            status, names = dashboard_names(client)
        steps[name] = {"status": status, "names": names, "where": where(seen)}
    # An export asked for after the rename: its job is not on the standby yet, so it reads the primary.
    alpha = Project.objects.get(key="ALPHA")
    kind = ExportJob.Kind.TASKS_CSV
    job = ExportJob.objects.create(
        project=alpha, kind=kind, filters=export_filters_clean(project=alpha, kind=kind, filters={})
    )
    with read_scope_open(), recorded() as seen:
        job = export_run(job_id=job.pk)
    steps["export"] = {"status": job.status, "where": where(seen)}
    result(steps)


def _command(variable: str) -> None:
    subprocess.run(json.loads(os.environ[variable]), check=True, capture_output=True)


def down() -> None:
    """The standby is stopped: dashboards read the primary, one check at a time; then it comes back."""
    viewer = browser("viewer")
    steps: dict[str, Any] = {"while_down": []}
    for _ in range(int(os.environ["APM_TEST_REQUESTS"])):
        with recorded() as seen:
            status, names = dashboard_names(viewer)
        steps["while_down"].append({"status": status, "names": names, "where": where(seen)})
    _command("APM_TEST_REPLICA_START")
    steps["back"] = []
    # At most one check per DATABASE_REPLICA_CHECK_SECONDS: the requests go on with the primary until it.
    for _ in range(60):
        with recorded() as seen:
            status, names = dashboard_names(viewer)
        steps["back"].append({"status": status, "names": names, "where": where(seen)})
        if "replica" in where(seen).get("tasks", []):
            break
        time.sleep(0.1)
    result(steps)


def failing() -> None:
    """The standby answered the last check, then stops: the next read fails on it and runs again on the
    primary, and the reads after it go to the primary without trying the standby."""
    viewer = browser("viewer")
    steps: dict[str, Any] = {}
    with recorded() as seen:
        status, names = dashboard_names(viewer)
    steps["before"] = {"status": status, "names": names, "where": where(seen), **gauges()}
    _command("APM_TEST_REPLICA_STOP")
    for step in ("failed_over", "after"):
        with recorded() as seen:
            status, names = dashboard_names(viewer)
        steps[step] = {"status": status, "names": names, "where": where(seen), **gauges()}
    result(steps)


def gauges() -> dict[str, float]:
    """The replica's gauges as this process exports them now."""
    return {"lag": DATABASE_REPLICA_LAG._value.get(), "usable": DATABASE_REPLICA_USABLE._value.get()}


def viewer() -> None:
    """The viewer opens the dashboard once: what it showed, where it was read, the replica's gauges."""
    client = browser("viewer")
    with recorded() as seen:
        status, names = dashboard_names(client)
    result(
        {
            "status": status,
            "names": names,
            "where": where(seen),
            **gauges(),
        }
    )


def server_processes(data: Path) -> list[int]:
    """The postmaster of the cluster in ``data`` (its postmaster.pid) and all its children."""
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # ended meanwhile
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(entry.name))
    return [postmaster, *children]


def server_signal(data: Path, number: signal.Signals) -> None:
    """Send ``number`` to the server in ``data`` and its children (SIGSTOP freezes it, SIGCONT thaws)."""
    for pid in server_processes(data):
        with suppress(ProcessLookupError):  # a backend that ended meanwhile
            os.kill(pid, number)


def frozen() -> None:
    """The standby answered, then freezes (its processes stopped, its sockets open): a pooled connection
    to it waits on a server that never answers. The next dashboards must come back, from the primary."""
    client = browser("viewer")
    steps: dict[str, Any] = {}
    with recorded() as seen:
        status, names = dashboard_names(client)
    steps["before"] = {"status": status, "names": names, "where": where(seen), **gauges()}
    # Now, not before the scene: the backends of this process's pooled connections freeze too.
    server_signal(Path(os.environ["APM_TEST_REPLICA_DATA"]), signal.SIGSTOP)
    for step in ("frozen", "after"):
        with recorded() as seen:
            status, names = dashboard_names(client)
        steps[step] = {"status": status, "names": names, "where": where(seen), **gauges()}
    result(steps)
