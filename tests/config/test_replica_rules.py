"""The read-replica router's rules (apm/replicas.py, apm/read_your_writes.py), on every database.

Where a read goes is decided without asking any server, so the rules are checked here with a replica
alias added to the settings and its health set as a check would have left it. tests/config/test_replica.py
runs them against a real standby (PostgreSQL). Without DATABASE_REPLICA_URL nothing changes: one alias,
no router, every read on the primary.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import OperationalError, connections, transaction
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apm.cache import cached
from apm.read_your_writes import _task_scope_close, _task_scope_open, user_pin, user_pinned
from apm.replicas import (
    PRIMARY,
    REPLICA,
    ReplicaRouter,
    read_connection,
    read_scope,
    read_scope_open,
    replica_configured,
    replica_health,
    replica_pin_seconds,
    replica_read_alias,
    replica_reads,
)
from projects.models import Project
from tests.processes import manage


@replica_reads
def where_reads_go() -> str:
    return replica_read_alias()


def test_without_a_replica_there_is_one_alias_no_router_and_every_read_on_the_primary():
    assert list(settings.DATABASES) == ["default"]
    assert settings.DATABASE_ROUTERS == []
    assert not replica_configured()
    with read_scope_open():
        assert where_reads_go() == PRIMARY
        assert read_connection() is connections[PRIMARY]


@pytest.fixture
def replica(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A replica alias (never connected to here) whose last check found it within the lag allowed."""
    monkeypatch.setitem(settings.DATABASES, REPLICA, dict(settings.DATABASES[PRIMARY]))
    monkeypatch.setattr(replica_health, "state", "usable")
    monkeypatch.setattr(replica_health, "next_check", float("inf"))
    with read_scope_open():
        yield


def test_only_the_reads_that_opt_in_go_to_the_replica(replica: None):
    assert replica_read_alias() == PRIMARY
    assert where_reads_go() == REPLICA
    assert replica_read_alias() == PRIMARY  # the opt-in ends with the selector


def test_after_a_write_every_read_of_the_scope_goes_to_the_primary(replica: None):
    assert where_reads_go() == REPLICA
    assert ReplicaRouter().db_for_write(Project) == PRIMARY  # what save/update/delete ask first
    assert where_reads_go() == PRIMARY
    with read_scope_open():  # the next request or task starts afresh
        assert where_reads_go() == REPLICA
    assert where_reads_go() == PRIMARY


@pytest.mark.django_db
def test_inside_a_transaction_reads_go_to_the_primary(replica: None):
    # The test's own transaction is open: a read inside it must see its rows.
    assert connections[PRIMARY].in_atomic_block
    assert where_reads_go() == PRIMARY
    with transaction.atomic():
        assert where_reads_go() == PRIMARY


@pytest.mark.parametrize("state", ["down", "lagging", "unknown"])
def test_a_replica_down_lagging_or_not_yet_checked_sends_reads_to_the_primary(
    replica: None, monkeypatch: pytest.MonkeyPatch, state: str
):
    monkeypatch.setattr(replica_health, "state", state)
    assert where_reads_go() == PRIMARY


def test_a_user_who_wrote_recently_reads_the_primary_and_others_the_replica(replica: None):
    writer, other = User(pk=9_000_001, username="writer"), User(pk=9_000_002, username="other")
    request_of = {user: RequestFactory().get("/dashboard") for user in (writer, other)}
    for user, request in request_of.items():
        request.user = user
    user_pin(request_of[writer])
    assert user_pinned(request_of[writer])
    assert not user_pinned(request_of[other])
    with read_scope_open(pin_check=lambda: user_pinned(request_of[writer])):
        assert where_reads_go() == PRIMARY
    with read_scope_open(pin_check=lambda: user_pinned(request_of[other])):
        assert where_reads_go() == REPLICA
    # Long enough for the write to reach a replica within the bound, and for a figure computed from it
    # just before to expire: twice the bound, plus a check.
    bound, check = settings.DATABASE_REPLICA_MAX_LAG, settings.DATABASE_REPLICA_CHECK_SECONDS
    assert replica_pin_seconds() == 2 * bound + check


def test_a_replica_that_fails_under_a_selector_is_marked_down_and_the_selector_runs_on_the_primary(
    replica: None,
):
    calls: list[str] = []

    @replica_reads
    def dashboard() -> str:
        alias = replica_read_alias()
        calls.append(alias)
        if alias == REPLICA:
            try:
                raise psycopg.OperationalError("connection refused")
            except psycopg.OperationalError as driver:
                raise OperationalError("connection refused") from driver
        return "figures"

    assert dashboard() == "figures"
    assert calls == [REPLICA, PRIMARY]
    assert replica_health.state == "down"
    assert where_reads_go() == PRIMARY  # until the next check, without trying the replica


@pytest.mark.parametrize(
    "cancel",
    [
        psycopg.errors.SerializationFailure("canceling statement due to conflict with recovery"),
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
    ],
)
def test_a_read_the_replica_cancels_runs_on_the_primary_and_the_replica_stays_in_use(
    replica: None, cancel: psycopg.Error
):
    calls: list[str] = []

    @replica_reads
    def dashboard() -> str:
        alias = replica_read_alias()
        calls.append(alias)
        if alias == REPLICA:
            raise OperationalError(str(cancel)) from cancel
        return "figures"

    assert dashboard() == "figures"
    assert calls == [REPLICA, PRIMARY]
    assert replica_health.state == "usable"  # it answers: one statement was cancelled, not the server
    assert where_reads_go() == PRIMARY  # the rest of this request or task
    with read_scope_open():  # another one
        assert where_reads_go() == REPLICA


def test_a_query_that_fails_on_an_answering_replica_is_not_retried(replica: None):
    @replica_reads
    def broken() -> str:
        raise OperationalError("division by zero")  # no driver error: the server answered

    with pytest.raises(OperationalError):
        broken()
    assert replica_health.state == "usable"


def test_figures_computed_from_the_replica_are_cached_apart_for_the_lag_allowed_at_most(replica: None):
    @replica_reads
    def portfolio() -> str:
        return cached("replica-rules:portfolio", replica_read_alias, family="portfolio")

    assert portfolio() == REPLICA
    assert cache.get("replica-rules:portfolio:replica") == REPLICA
    assert cache.get("replica-rules:portfolio") is None
    # A reader of the primary (who just wrote) never takes the replica's figure.
    ReplicaRouter().db_for_write(Project)
    assert portfolio() == PRIMARY
    assert cache.get("replica-rules:portfolio") == PRIMARY


def test_each_task_a_worker_runs_gets_a_scope_of_its_own(replica: None):
    ReplicaRouter().db_for_write(Project)  # the worker wrote before (another task)
    task = types.SimpleNamespace(request=types.SimpleNamespace(is_eager=False))
    _task_scope_open(task_id="t-1", task=task)
    assert not read_scope().wrote
    assert where_reads_go() == REPLICA
    _task_scope_close(task_id="t-1")
    assert read_scope().wrote
    # A task run eagerly inside a request is part of it: it reads what the request wrote.
    eager = types.SimpleNamespace(request=types.SimpleNamespace(is_eager=True))
    _task_scope_open(task_id="t-2", task=eager)
    assert where_reads_go() == PRIMARY
    _task_scope_close(task_id="t-2")


def test_the_router_never_migrates_the_replica():
    router = ReplicaRouter()
    assert router.allow_migrate(REPLICA, "projects") is False
    assert router.allow_migrate(PRIMARY, "projects") is True


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        (
            {
                "DATABASE_URL": "sqlite:////tmp/apm.sqlite3",
                "DATABASE_REPLICA_URL": "sqlite:////tmp/r.sqlite3",
            },
            "DATABASE_REPLICA_URL must name a replica of DATABASE_URL's PostgreSQL or MariaDB/MySQL server",
        ),
        (
            {
                "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/apm",
                "DATABASE_REPLICA_URL": "mysql://root@127.0.0.1:3306/apm",
            },
            "not mysql beside postgresql",
        ),
        ({"DATABASE_REPLICA_URL": "postgres://replica.internal:5432/"}, "DATABASE_REPLICA_URL"),
        ({"DATABASE_REPLICA_MAX_LAG": "0"}, "DATABASE_REPLICA_MAX_LAG is a number of seconds above 0"),
        ({"DATABASE_REPLICA_CHECK_SECONDS": "-1"}, "DATABASE_REPLICA_CHECK_SECONDS is a number of seconds"),
        ({"DATABASE_REPLICA_TIMEOUT": "0"}, "DATABASE_REPLICA_TIMEOUT is a number of seconds above 0"),
    ],
)
def test_a_replica_setting_that_cannot_work_stops_start_up_naming_it(environment, message):
    result = manage("check", **environment)

    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_replica_of_the_same_kind_adds_the_alias_and_the_router():
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; print(sorted(s.DATABASES), s.DATABASE_ROUTERS)",
        DATABASE_URL="postgres://postgres@db.internal:5432/apm",
        DATABASE_REPLICA_URL="postgres://postgres@replica.internal:5432/apm",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "['default', 'replica'] ['apm.replicas.ReplicaRouter']"


@pytest.mark.parametrize(
    ("primary", "replica", "expected"),
    [
        (
            "postgres://postgres@db.internal:5432/apm",
            "postgres://postgres@replica.internal:5432/apm",
            {
                "connect_timeout": 4,
                "keepalives": 1,
                "keepalives_idle": 2,
                "keepalives_interval": 1,
                "keepalives_count": 3,
                "tcp_user_timeout": 3500,
                "options": "-c statement_timeout=3500",
                "health_checks": False,
            },
        ),
        (
            "mysql://root@db.internal:3306/apm",
            "mysql://root@replica.internal:3306/apm",
            {"connect_timeout": 4, "read_timeout": 4, "write_timeout": 4, "health_checks": True},
        ),
    ],
)
def test_the_replica_waits_at_most_database_replica_timeout(primary, replica, expected):
    """Every wait on the replica is bounded (connect, TCP, statement); the primary keeps its settings."""
    shown = (
        "from django.conf import settings as s; import json; r = s.DATABASES['replica']; "
        f"o = {{k: r['OPTIONS'].get(k) for k in {sorted(expected)!r}}}; "
        "o['health_checks'] = r['CONN_HEALTH_CHECKS']; "
        "print(json.dumps([o, sorted(s.DATABASES['default']['OPTIONS'])]))"
    )
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        shown,
        DATABASE_URL=primary,
        DATABASE_REPLICA_URL=replica,
        DATABASE_REPLICA_TIMEOUT="3.5",
    )

    assert result.returncode == 0, result.stderr
    replica_options, primary_options = json.loads(result.stdout.strip().splitlines()[-1])
    assert replica_options == expected
    assert not {"connect_timeout", "read_timeout", "tcp_user_timeout", "options"} & set(primary_options)


def test_a_summary_shown_from_the_replica_is_never_served_to_a_reader_of_the_primary(
    transactional_db: None, replica: None, world: Any
):
    # The summary route keeps its representation beside the figures: one computed from the replica's
    # figures must be kept apart as they are, or a user who just wrote (pinned to the primary) would be
    # served, for the cache's whole timeout, a page that may not hold their change.
    # Committed rows (transactional_db): inside a transaction every read goes to the primary.
    url = "/api/v1/projects/ALPHA/summary/"
    reader, writer = APIClient(), APIClient()
    reader.force_login(world.users["viewer"])  # signed in by session: a token's first use writes
    writer.force_login(world.users["owner"])
    assert reader.get(url, HTTP_ACCEPT="application/json").status_code == 200

    wrote = RequestFactory().get(url)
    wrote.user = world.users["owner"]
    user_pin(wrote)
    with CaptureQueriesContext(connections[PRIMARY]) as queries:
        response = writer.get(url, HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    # Computed again from the primary: the summary's task aggregates were read there.
    assert any(re.search(r'FROM [`"]tasks[`"]', query["sql"]) for query in queries.captured_queries)
    assert reader.get(url, HTTP_ACCEPT="application/json").json() == response.json()
