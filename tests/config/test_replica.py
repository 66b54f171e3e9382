"""Read replicas against a real hot standby (apm/replicas.py; docs/operations.md, "Read replicas").

The test owns two PostgreSQL clusters in temporary directories: a primary made with initdb, migrated and
filled by APM, and a standby made from it with ``pg_basebackup -R`` and started as a streaming replica on
another port. APM runs against them in ``manage.py shell`` processes (tests/config/replica_scenes.py)
with DATABASE_URL on the primary and DATABASE_REPLICA_URL on the standby, and each scene reports which
connection served each read. The standby's own ``pg_stat_statements`` confirms that it really ran them.

Lag is real: ``pg_wal_replay_pause()`` on the standby while the primary takes writes. So is an outage:
the standby's server is stopped.

PostgreSQL only (streaming replication): the suite's SQLite and MariaDB runs skip this module, and run the
router's rules in tests/config/test_replica_rules.py.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connections

from apm.replicas import _lag_read
from tests.config.replica_scenes import server_signal
from tests.faults.test_postgres_outage import BINARIES, PostgresCluster, app_environment, as_cluster_owner
from tests.processes import ROOT, wait_for

pytestmark = pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
    reason="streaming replication is PostgreSQL's; this suite runs on another database "
    "(tests/config/test_replica_rules.py covers the router here)",
)

# The standby's statements: pg_stat_statements, loaded on both servers (the standby takes it from its
# own settings, the extension's objects from the primary's WAL).
STATEMENTS = "shared_preload_libraries=pg_stat_statements"


class Standby(PostgresCluster):
    """A streaming replica of ``primary``: a base backup with the replication settings (-R), started."""

    def create_from(self, primary: PostgresCluster) -> None:
        self._run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(self.data),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
        )
        self.start()

    def start_command(self) -> list[str]:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        options += "".join(f" -c {setting}" for setting in self.settings)
        return as_cluster_owner(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.directory / "log"),
                "-o",
                options,
                "-w",
                "start",
            ]
        )

    def stop_command(self) -> list[str]:
        return as_cluster_owner([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])


def sql(cluster: PostgresCluster, query: str, *params: Any) -> Any:
    """The first column of the first row of ``query`` on ``cluster``'s ``apm`` database (None: no rows)."""
    address = f"host=127.0.0.1 port={cluster.port} user=postgres dbname=apm"
    with psycopg.connect(address, autocommit=True) as db:
        cursor = db.execute(query, params)  # type: ignore[arg-type]
        row = cursor.fetchone() if cursor.description else None
    return None if row is None else row[0]


def caught_up(primary: PostgresCluster, standby: Standby) -> None:
    """Wait until the standby has replayed everything the primary has written so far."""
    position = sql(primary, "SELECT pg_current_wal_lsn()::text")
    wait_for(
        lambda: sql(standby, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", position),
        timeout=60,
        what="the standby to replay the primary's writes",
    )


@dataclass
class Replication:
    primary: PostgresCluster
    standby: Standby
    export_job: int

    def environment(self, **extra: str) -> dict[str, str]:
        return {
            **app_environment(self.primary),
            "DATABASE_REPLICA_URL": self.standby.url,
            "DATABASE_POOL_TIMEOUT": "2",
            "DJANGO_MEDIA_ROOT": str(self.primary.directory / "media"),
            "APM_TEST_EXPORT_JOB": str(self.export_job),
            "APM_TEST_REPLICA_STOP": json.dumps(self.standby.stop_command()),
            "APM_TEST_REPLICA_START": json.dumps(self.standby.start_command()),
            **extra,
        }

    def scene(self, name: str, *, timeout: float = 300, **extra: str) -> tuple[dict[str, Any], str]:
        """Run ``replica_scenes.<name>()`` in APM against the two servers: its result and its log."""
        return run_scene(name, self.environment(**extra), timeout=timeout)


def run_scene(name: str, environment: dict[str, str], *, timeout: float = 300) -> tuple[dict[str, Any], str]:
    done = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "--no-imports",
            "-c",
            f"from tests.config import replica_scenes; replica_scenes.{name}()",
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT ")), done.stdout + done.stderr


@pytest.fixture(scope="module")
def replication() -> Iterator[Replication]:
    if not BINARIES:
        pytest.fail("PostgreSQL's binaries (initdb, pg_basebackup, pg_ctl) are not installed")
    primary, standby = PostgresCluster(), Standby()
    primary.settings.append(STATEMENTS)
    standby.settings.append(STATEMENTS)
    try:
        primary.create()
        sql(primary, "CREATE EXTENSION pg_stat_statements")
        environment = app_environment(primary)
        done = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input"],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        made, _ = run_scene("setup", environment)
        standby.create_from(primary)
        caught_up(primary, standby)
        yield Replication(primary=primary, standby=standby, export_job=made["export_job"])
    finally:
        standby.remove()
        primary.remove()


def test_opted_in_reads_go_to_the_standby_and_every_other_read_to_the_primary(replication: Replication):
    sql(replication.standby, "SELECT pg_stat_statements_reset()")

    steps, _ = replication.scene("routing", APM_CACHE="none")

    # The replica alias is the standby itself, not a mirror of the primary.
    assert steps["replica_server"] == {"port": replication.standby.port, "in_recovery": True}
    # The dashboard's figures come from the standby; who may see which project from the primary.
    assert steps["dashboard"]["status"] == 200
    assert steps["dashboard"]["names"] == ["Alpha"]
    assert steps["dashboard"]["where"]["tasks"] == ["replica"]
    assert steps["dashboard"]["where"]["project_memberships"] == ["default"]
    # A request that wrote (the token's first use) reads the dashboard from the primary; the next one,
    # which writes nothing, from the standby. Tokens are read from the primary either way.
    assert steps["token_first_use"]["status"] == 200
    assert steps["token_first_use"]["where"]["tasks"] == ["default"]
    assert steps["token_again"]["status"] == 200
    assert steps["token_again"]["where"]["tasks"] == ["replica"]
    assert steps["token_again"]["where"]["api_tokens"] == ["default"]
    # A list reads its page from the standby, scoped by memberships read from the primary; one object by
    # key is not a list, and stays on the primary.
    assert steps["task_list"]["status"] == 200
    assert steps["task_list"]["where"]["tasks"] == ["replica"]
    assert steps["task_list"]["where"]["project_memberships"] == ["default"]
    assert steps["task_detail"]["status"] == 200
    assert steps["task_detail"]["where"]["tasks"] == ["default"]
    # Reads that did not opt in, and an opted-in read after a write in the same scope: the primary.
    assert steps["not_opted_in"]["where"] == {"projects": ["default"]}
    assert steps["write_then_read"]["where"]["tasks"] == ["default"]
    assert "replica" not in str(steps["write_then_read"]["where"])
    # The export task wrote its claim, then read the project's tasks from the standby, which holds its job.
    assert steps["export"]["status"] == "succeeded"
    assert steps["export"]["rows"] == 3
    assert steps["export"]["where"]["tasks"] == ["replica"]

    # The standby's server ran the dashboard's and the list's task queries itself.
    on_standby = sql(
        replication.standby,
        "SELECT count(*) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
        "WHERE d.datname = 'apm' AND s.query LIKE %s",
        '%FROM "tasks"%',
    )
    assert on_standby >= 2

    # The same requests again are routed the same way; the export, done, is not written twice (its
    # second run finds the job taken and reads none of its tasks).
    again, _ = replication.scene("routing", APM_CACHE="none")
    routed = {step: value["where"] for step, value in steps.items() if "where" in value and step != "export"}
    assert {step: value["where"] for step, value in again.items() if step in routed} == routed
    assert again["export"]["status"] == "succeeded"
    assert "tasks" not in again["export"]["where"]


def test_a_lagging_standby_serves_the_dashboard_within_the_bound_and_never_what_a_user_just_changed(
    replication: Replication,
):
    primary, standby = replication.primary, replication.standby
    # A cache of the scenes' own, which the pins of apm.read_your_writes need (the file cache).
    cache = {"CACHE_DIR": str(primary.directory / "lag-cache")}
    sql(standby, "SELECT pg_wal_replay_pause()")
    try:
        # Within the bound (600 s): the owner renames ALPHA; the owner's dashboard shows the new name
        # (read from the primary: they just wrote), the viewer's the old one (the standby, which has
        # not replayed the rename). An export asked for after the rename reads the primary.
        steps, log = replication.scene(
            "lagging", DATABASE_REPLICA_MAX_LAG="600", APM_TEST_NEW_NAME="Alpha renamed", **cache
        )
        assert steps["rename"]["status"] == 200, steps
        assert steps["owner"]["names"] == ["Alpha renamed"]
        assert steps["owner"]["where"]["tasks"] == ["default"]
        assert steps["viewer"]["names"] == ["Alpha"]
        assert steps["viewer"]["where"]["tasks"] == ["replica"]
        assert steps["export"]["status"] == "succeeded"
        assert steps["export"]["where"]["tasks"] == ["default"]
        assert sql(standby, "SELECT name FROM projects WHERE key = 'ALPHA'") == "Alpha"

        # Beyond the bound: once the standby is more than a second behind, the viewer reads the primary.
        wait_for(
            lambda: sql(standby, "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())") > 2,
            timeout=30,
            what="the paused standby to fall more than 2 s behind",
        )
        steps, log = replication.scene(
            "lagging", DATABASE_REPLICA_MAX_LAG="1", APM_TEST_NEW_NAME="Alpha renamed again", **cache
        )
        assert steps["viewer"]["names"] == ["Alpha renamed again"]
        assert "replica" not in json.dumps(steps["viewer"]["where"])
        assert "database_replica_lagging" in log
    finally:
        sql(standby, "SELECT pg_wal_replay_resume()")
    caught_up(primary, standby)
    assert sql(standby, "SELECT name FROM projects WHERE key = 'ALPHA'") == "Alpha renamed again"
    sql(primary, "UPDATE projects SET name = 'Alpha' WHERE key = 'ALPHA'")
    caught_up(primary, standby)


def test_a_standby_that_is_down_sends_reads_to_the_primary_without_failing_and_is_used_again_once_back(
    replication: Replication,
):
    replication.standby.stop()
    try:
        steps, log = replication.scene(
            "down", APM_CACHE="none", DATABASE_REPLICA_CHECK_SECONDS="1", APM_TEST_REQUESTS="5"
        )
    finally:
        if sql_answers(replication.standby) is False:
            subprocess.run(replication.standby.start_command(), check=True, capture_output=True)
    for request in steps["while_down"]:
        assert request["status"] == 200
        assert request["names"] == ["Alpha"]
        assert request["where"]["tasks"] == ["default"]
    # One line for the outage, not one per request: the standby was asked once, then left alone.
    assert log.count("database_replica_unavailable") == 1
    # Started again: within a check or two the dashboard reads the standby again.
    assert steps["back"][-1]["where"]["tasks"] == ["replica"], steps["back"]
    assert all(request["status"] == 200 for request in steps["back"])
    assert "database_replica_available" in log


def sql_answers(cluster: PostgresCluster) -> bool:
    try:
        sql(cluster, "SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def test_a_standby_that_stops_between_two_checks_fails_over_inside_the_request(replication: Replication):
    try:
        steps, log = replication.scene("failing", APM_CACHE="none", DATABASE_REPLICA_CHECK_SECONDS="600")
    finally:
        if not sql_answers(replication.standby):
            subprocess.run(replication.standby.start_command(), check=True, capture_output=True)
    assert steps["before"]["where"]["tasks"] == ["replica"]
    # The standby went away after its last check said it was fine: the read was sent there and failed,
    # and the selector ran again on the primary, within the same request, which succeeded.
    assert steps["failed_over"]["status"] == 200
    assert steps["failed_over"]["names"] == ["Alpha"]
    assert steps["failed_over"]["where"]["tasks"] == ["default", "replica"]
    # From then on the primary at once, though the next check is ten minutes away.
    assert steps["after"]["status"] == 200
    assert steps["after"]["where"]["tasks"] == ["default"]
    # Its lag is no longer known: the gauge says so instead of the last figure measured.
    assert (steps["before"]["usable"], steps["after"]["usable"]) == (1, 0)
    assert steps["before"]["lag"] >= 0
    assert steps["after"]["lag"] == -1
    assert log.count("database_replica_unavailable") == 1
    assert "Traceback" not in log


def replica_lag(replication: Replication, blocker: Any) -> float:
    """What APM's lag check finds, asked here of the test's real primary and standby."""
    # The test database's settings, pointed at each server of the test (no pool: the check has none).
    primary, standby = (
        {
            **connections["default"].settings_dict,
            "NAME": "apm",
            "USER": "postgres",
            "PASSWORD": "",
            "HOST": "127.0.0.1",
            "PORT": str(cluster.port),
            "OPTIONS": {},
        }
        for cluster in (replication.primary, replication.standby)
    )
    with blocker.unblock():  # the test's own servers, not the test database pytest-django guards
        return _lag_read(primary, standby)


def streaming(standby: Standby) -> bool:
    return bool(sql(standby, "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'"))


def test_a_standby_that_stopped_receiving_wal_is_lagging_though_it_replayed_all_it_received(
    replication: Replication, django_db_blocker: Any
):
    primary, standby = replication.primary, replication.standby
    # A write the standby replays, then an idle primary: the standby holds everything, however old its
    # last replayed transaction.
    sql(primary, "UPDATE projects SET description = 'replayed, then idle' WHERE key = 'ALPHA'")
    caught_up(primary, standby)
    wait_for(
        lambda: sql(standby, "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())") > 2,
        timeout=30,
        what="the standby's last replayed transaction to be more than 2 s old",
    )
    assert replica_lag(replication, django_db_blocker) == 0
    steps, _ = replication.scene("viewer", APM_CACHE="none", DATABASE_REPLICA_MAX_LAG="1")
    assert steps["where"]["tasks"] == ["replica"]

    conninfo = sql(standby, "SHOW primary_conninfo")
    sql(standby, "ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port=1 user=postgres'")
    sql(standby, "SELECT pg_reload_conf()")
    try:
        wait_for(lambda: not streaming(standby), timeout=30, what="the standby to stop streaming")
        # Another user renames ALPHA: the standby never receives it, and has replayed all it received.
        sql(primary, "UPDATE projects SET name = 'Alpha, not on the standby' WHERE key = 'ALPHA'")
        assert sql(standby, "SELECT pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()")
        assert replica_lag(replication, django_db_blocker) == math.inf
        # However long the lag allowed, the viewer reads the primary's new name, and the gauges say so.
        steps, log = replication.scene("viewer", APM_CACHE="none", DATABASE_REPLICA_MAX_LAG="600")
        assert steps["names"] == ["Alpha, not on the standby"]
        assert steps["where"]["tasks"] == ["default"]
        assert steps["usable"] == 0
        assert steps["lag"] == -1
        assert "database_replica_lagging" in log
        # The same again: the same answer (nothing the check does changes the standby).
        again, _ = replication.scene("viewer", APM_CACHE="none", DATABASE_REPLICA_MAX_LAG="600")
        assert {key: again[key] for key in ("names", "where", "usable")} == {
            key: steps[key] for key in ("names", "where", "usable")
        }
    finally:
        sql(standby, f"ALTER SYSTEM SET primary_conninfo = '{conninfo.replace(chr(39), chr(39) * 2)}'")
        sql(standby, "SELECT pg_reload_conf()")
    wait_for(lambda: streaming(standby), timeout=60, what="the standby to stream again")
    sql(primary, "UPDATE projects SET name = 'Alpha' WHERE key = 'ALPHA'")
    caught_up(primary, standby)
    assert replica_lag(replication, django_db_blocker) == 0


def test_a_frozen_standby_fails_the_read_within_the_timeout_and_the_primary_answers(
    replication: Replication,
):
    standby = replication.standby
    try:
        # Generous: a frozen standby must not hold the request forever (the bound is 3 s of timeout).
        steps, log = replication.scene(
            "frozen",
            timeout=60,
            APM_CACHE="none",
            DATABASE_REPLICA_CHECK_SECONDS="600",
            DATABASE_REPLICA_TIMEOUT="3",
            APM_TEST_REPLICA_DATA=str(standby.data),
        )
    finally:
        server_signal(standby.data, signal.SIGCONT)
    assert steps["before"]["where"]["tasks"] == ["replica"]
    # The read sent to the frozen standby gave up, and the selector ran again on the primary.
    assert steps["frozen"]["status"] == 200
    assert steps["frozen"]["names"] == ["Alpha"]
    assert steps["frozen"]["where"]["tasks"] == ["default", "replica"]
    # Marked down: the next request goes to the primary at once.
    assert steps["after"]["status"] == 200
    assert steps["after"]["where"]["tasks"] == ["default"]
    # Its lag is no longer known: the gauge says so instead of the last figure measured.
    assert (steps["before"]["usable"], steps["after"]["usable"]) == (1, 0)
    assert steps["before"]["lag"] >= 0
    assert steps["after"]["lag"] == -1
    assert log.count("database_replica_unavailable") == 1
    assert "Traceback" not in log
    assert sql_answers(standby)
