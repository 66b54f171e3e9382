"""APM through PgBouncer in transaction pooling, as the scaled-out deployment runs it (k8s/pgbouncer/).

A real ``pgbouncer`` (Debian's package) in transaction mode on a free port, in front of the PostgreSQL on
127.0.0.1:5432, with a database of this test's own (migrated directly, as the migration Job does). With
``DATABASE_PGBOUNCER=true``, an ingestion with four threads and the API served by gunicorn work through
it. Without it, QuerySet.iterator()'s server-side cursor, declared on one server connection, is fetched
from another once a second client holds the first: "cursor ... does not exist".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import require_service, services_required
from tests.faults.test_postgres_outage import App, as_cluster_owner
from tests.isolation import namespace
from tests.processes import ROOT, free_port, process_stop, wait_for
from tests.repos.gitrepo import GitRepo

SERVER = "postgres://postgres@127.0.0.1:5432/postgres"
# Few server connections, so that a second client holding one in a transaction sends the next statement
# of the first client to the other: what a busy PgBouncer does all the time.
SERVER_CONNECTIONS = 2


class PgBouncer:
    """``pgbouncer`` in transaction pooling on a free port, in front of 127.0.0.1:5432, trusting users."""

    def __init__(self, database: str) -> None:
        self.port = free_port()
        self.database = database
        self.directory = Path(tempfile.mkdtemp(prefix="apm-pgbouncer-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def direct_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:5432/{self.database}"

    def start(self) -> None:
        (self.directory / "users.txt").write_text('"postgres" ""\n')
        (self.directory / "pgbouncer.ini").write_text(
            "\n".join(
                [
                    "[databases]",
                    f"{self.database} = host=127.0.0.1 port=5432 dbname={self.database}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {self.port}",
                    "unix_socket_dir =",
                    "auth_type = trust",
                    f"auth_file = {self.directory / 'users.txt'}",
                    "pool_mode = transaction",
                    f"default_pool_size = {SERVER_CONNECTIONS}",
                    "max_client_conn = 200",
                    # The same as k8s/pgbouncer/pgbouncer.ini: Django's connection check and its
                    # start-up parameters.
                    "ignore_startup_parameters = extra_float_digits,options",
                    f"logfile = {self.directory / 'pgbouncer.log'}",
                    "",
                ]
            )
        )
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            for path in (self.directory, *self.directory.iterdir()):
                shutil.chown(path, "postgres", "postgres")
        self.process = subprocess.Popen(
            as_cluster_owner(["pgbouncer", str(self.directory / "pgbouncer.ini")]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, timeout=30, what=f"pgbouncer on port {self.port}")

    def _answers(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, self.log()
        try:
            with psycopg.connect(self.url, connect_timeout=2) as connection:
                return connection.execute("select 1").fetchone() == (1,)
        except psycopg.OperationalError:
            return False

    def log(self) -> str:
        path = self.directory / "pgbouncer.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            process_stop(self.process)
            self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def pgbouncer() -> Iterator[PgBouncer]:
    if shutil.which("pgbouncer") is None:
        if services_required():
            pytest.fail("pgbouncer is not installed, and APM_REQUIRE_SERVICES=1 says it must be")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    require_service(SERVER)
    database = f"apm_pgbouncer_{namespace()}".replace("-", "_")
    with psycopg.connect(SERVER, autocommit=True) as server:
        server.execute(f'DROP DATABASE IF EXISTS "{database}"')
        server.execute(f'CREATE DATABASE "{database}"')
    bouncer = PgBouncer(database)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()
        with psycopg.connect(SERVER, autocommit=True) as server:
            server.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


class Target:
    """Where the App of tests/faults/test_postgres_outage.py serves from: PgBouncer, and a directory."""

    def __init__(self, url: str, directory: Path) -> None:
        self.url = url
        self.directory = directory


@pytest.fixture
def app(pgbouncer: PgBouncer, tmp_path: Path) -> Iterator[App]:
    served = App(Target(pgbouncer.url, tmp_path))  # type: ignore[arg-type]
    # The schema is made on PostgreSQL itself, as the migration Job does (docs/operations.md).
    migrated = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input"],
        cwd=ROOT,
        env={**served.environment, "DATABASE_URL": pgbouncer.direct_url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    served.environment.update(
        {
            "DATABASE_PGBOUNCER": "true",
            "DATABASE_POOL_SIZE": "1",
            "DATABASE_POOL_MAX_SIZE": "8",
            "APM_REPO_ROOTS": str(tmp_path),
            "APM_WORKSPACE": str(tmp_path / "workspace"),
            "APM_INGEST_THREADS": "4",
            "APM_INGEST_CHUNK_COMMITS": "25",
            "APM_INGEST_CHUNK_FILES": "10",
        }
    )
    try:
        served.start()
        yield served
    finally:
        served.stop()


def test_ingestion_and_the_api_work_through_pgbouncer_in_transaction_pooling(app: App, tmp_path: Path):
    repo = GitRepo(tmp_path / "shop")
    for number in range(120):
        repo.write(f"src/module_{number % 17}.py", f"value = {number}\n")
        repo.commit(f"ALPHA-{number % 3 + 1} change {number}")

    out = app.manage("ingest_repo", str(repo.path), "--project", "ALPHA", "--name", "shop")

    assert "shop: 120 new commits, 120 file changes" in out, out
    projects = app.get("/api/v1/projects/", session=app.api)
    assert projects.status_code == 200, projects.text[:500]
    assert [project["key"] for project in projects.json()["results"]] == ["ALPHA"]
    # The commits, a cursor page after another (each page a query of its own through PgBouncer).
    shas: list[str] = []
    url: str | None = f"http://127.0.0.1:{app.port}/api/v1/commits/?page_size=50"
    while url:
        page = app.api.get(url, timeout=60)
        assert page.status_code == 200, page.text[:500]
        shas += [commit["sha"] for commit in page.json()["results"]]
        url = page.json()["next"]
    assert len(set(shas)) == 120
    for path in ("/api/v1/projects/ALPHA/summary/", "/api/v1/projects/ALPHA/hotspots/", "/api/v1/files/"):
        answer = app.get(path, session=app.api)
        assert answer.status_code == 200, (path, answer.text[:500])
    assert "Internal Server Error" not in app.log.read_text()


# Reads a table with QuerySet.iterator() while another thread holds a server connection in a
# transaction: the iterator's next fetch may go to another server connection than its cursor's.
_ITERATE = """
import threading
from django.contrib.auth.models import Permission
from django.db import connections, transaction

def hold(held, release):
    with transaction.atomic():
        Permission.objects.exists()
        held.set()
        release.wait(30)
    connections.close_all()

# Which server connection PgBouncer gives each transaction is its choice: a round may happen to fetch
# from the connection its cursor was declared on. Over five rounds, one fetch lands on another one.
for _ in range(5):
    rows = Permission.objects.order_by("pk").iterator(chunk_size=10)
    first = next(rows)
    held, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold, args=(held, release))
    holder.start()
    held.wait(30)
    try:
        print("rows", 1 + sum(1 for _ in rows), Permission.objects.count())
    finally:
        release.set()
        holder.join()
"""


@pytest.mark.parametrize("pgbouncer_setting", ["true", "false"])
def test_server_side_cursors_are_off_behind_pgbouncer(
    pgbouncer: PgBouncer, tmp_path: Path, pgbouncer_setting: str
):
    environment = {
        **{key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}},
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DJANGO_DEBUG": "false",
        "APM_DEBUG_TOOLBAR": "false",
        "CACHE_DIR": str(tmp_path / "cache"),
        "DATABASE_POOL_MAX_SIZE": "4",
    }
    migrated = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input"],
        cwd=ROOT,
        env={**environment, "DATABASE_URL": pgbouncer.direct_url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]

    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", _ITERATE],
        cwd=ROOT,
        env={**environment, "DATABASE_URL": pgbouncer.url, "DATABASE_PGBOUNCER": pgbouncer_setting},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    if pgbouncer_setting == "true":
        assert done.returncode == 0, done.stderr[-3000:]
        _, read, total = done.stdout.split()[-3:]
        assert int(read) == int(total) > 10
    else:
        # What DATABASE_PGBOUNCER prevents: the cursor lives on the server connection it was declared on.
        assert done.returncode != 0
        assert "does not exist" in done.stderr, done.stderr[-3000:]
