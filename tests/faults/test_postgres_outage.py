"""A PostgreSQL outage, with a cluster of this test's own and APM served by gunicorn, as in production.

The cluster (initdb into a temporary directory, pg_ctl on a free port) is stopped while the server runs
and started again. During the outage the API answers 503 in JSON with Retry-After, the pages a plain 503
page, /healthz stays 200 and /readyz answers 503 at once. The first request to need the database waits
the pool's timeout (DATABASE_POOL_TIMEOUT, 5 s here), the ones after it a second at most. Once the
database is back, the next requests answer 200: the connections the pool kept from before the outage are
dead, and are checked before use, and the pool does not wait out its growing reconnection delays.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from apm.middleware import OUTAGE_PROBE_SECONDS
from tests.conftest import services_required
from tests.processes import ROOT, free_port, gunicorn_serve, process_stop

# The server under test runs its own database: the suite's is not involved.
BINARIES = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
# The pool's wait for a connection in the server under test (production's is 30 s), and how long any
# answer after the first of the outage may take: far less.
POOL_TIMEOUT_SECONDS = 5
QUICK_SECONDS = 2.0


def as_cluster_owner(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run the command as the ``postgres`` account."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


class PostgresCluster:
    """A PostgreSQL cluster of this test in a temporary directory, on a free port, trusting local users."""

    def __init__(self) -> None:
        self.bin = Path(BINARIES[-1])
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="apm-postgres-"))
        self.data = self.directory / "data"
        # Server settings beyond the defaults below ("name=value"), for subclasses and tests.
        self.settings: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/apm"

    def _run(self, *command: str) -> None:
        subprocess.run(
            as_cluster_owner([str(self.bin / command[0]), *command[1:]]), check=True, capture_output=True
        )

    def create(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "apm")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        options += "".join(f" -c {setting}" for setting in self.settings)
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.directory / "log"), "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        # Fast: the server ends every session at once, as a crash or a failover would for the clients.
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        subprocess.run(
            as_cluster_owner([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    if not BINARIES or (os.geteuid() == 0 and shutil.which("runuser") is None):
        if services_required():
            pytest.fail(
                "PostgreSQL's binaries are not installed, and APM_REQUIRE_SERVICES=1 says they must be"
            )
        pytest.skip("PostgreSQL's binaries (initdb, pg_ctl) are not installed")
    cluster = PostgresCluster()
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.remove()


def app_environment(cluster: PostgresCluster) -> dict[str, str]:
    """APM as deployed, on the test's cluster: DEBUG off, the psycopg pool, JSON logs."""
    return {
        **{key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}},
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DJANGO_DEBUG": "false",
        "APM_DEBUG_TOOLBAR": "false",
        "DJANGO_LOG_JSON": "true",
        "DATABASE_URL": cluster.url,
        "DATABASE_POOL_SIZE": "2",
        "DATABASE_MAX_OVERFLOW": "2",
        "DATABASE_POOL_TIMEOUT": str(POOL_TIMEOUT_SECONDS),
        "CACHE_DIR": str(cluster.directory / "cache"),
    }


# A member of one project, with an API token and a signed-in session, printed for the test to use.
_PEOPLE = """
from django.conf import settings
from django.test import Client
from apm.services import api_token_create
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
member = UserFactory(username="member")
MembershipFactory(project=ProjectFactory(key="ALPHA", name="Alpha"), user=member, role="member")
browser = Client()
browser.force_login(member)
print(api_token_create(user=member, name="outage")[1], browser.cookies[settings.SESSION_COOKIE_NAME].value)
"""


class App:
    """APM served by gunicorn (gunicorn.conf.py: one worker of four threads here) on a free port."""

    def __init__(self, cluster: PostgresCluster) -> None:
        self.port = free_port()
        self.environment = app_environment(cluster)
        self.log = cluster.directory / "gunicorn.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.api = requests.Session()
        self.browser = requests.Session()

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def start(self) -> None:
        self.manage("migrate", "--no-input")
        token, session = self.manage("shell", "--no-imports", "-c", _PEOPLE).split()[-2:]
        self.api.headers["Authorization"] = f"Token {token}"
        self.browser.cookies.set("sessionid", session)
        self.process = gunicorn_serve(self.environment, port=self.port, log=self.log, threads=4)

    def get(
        self, path: str, *, session: requests.Session | None = None, **kwargs: object
    ) -> requests.Response:
        return (session or requests).get(f"http://127.0.0.1:{self.port}{path}", timeout=60, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.process is not None:
            process_stop(self.process)
            self.process = None


@pytest.fixture
def app(cluster: PostgresCluster) -> Iterator[App]:
    app = App(cluster)
    try:
        app.start()
        yield app
    finally:
        app.stop()


def timed(call: object) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = call()  # type: ignore[operator]
    return response, time.monotonic() - started


def test_a_database_outage_answers_503_and_the_first_requests_after_it_succeed(
    cluster: PostgresCluster, app: App
):
    def api() -> requests.Response:
        return app.get("/api/v1/projects/", session=app.api)

    def page() -> requests.Response:
        return app.get("/dashboard", session=app.browser, allow_redirects=False)

    # Up: the API and the page answer, and the pool holds connections opened before the outage.
    for _ in range(3):
        assert api().status_code == 200
        assert page().status_code == 200
    assert app.get("/readyz").status_code == 200

    cluster.stop()

    # The probes: alive, and not ready, at once.
    assert app.get("/healthz").status_code == 200
    ready, seconds = timed(lambda: app.get("/readyz"))
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert seconds < QUICK_SECONDS
    # The first request to need the database finds it gone once the pool's wait is over.
    answer, seconds = timed(api)
    assert answer.status_code == 503, answer.text[:500]
    assert seconds < POOL_TIMEOUT_SECONDS + QUICK_SECONDS
    for _ in range(2):
        answer, seconds = timed(api)
        assert answer.status_code == 503, answer.text[:500]
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.json() == {"detail": "The service is briefly unavailable. Try again in a moment."}
        assert int(answer.headers["Retry-After"]) > 0
        assert seconds < QUICK_SECONDS
        answer, seconds = timed(page)
        assert answer.status_code == 503, app.log.read_text()[-5000:]
        assert answer.headers["Content-Type"].startswith("text/html")
        assert "briefly unavailable" in answer.text
        assert "Traceback" not in answer.text
        assert int(answer.headers["Retry-After"]) > 0
        assert seconds < QUICK_SECONDS
    assert app.get("/healthz").status_code == 200

    cluster.start()
    # The server asks the database whether it is back at most once a second.
    time.sleep(OUTAGE_PROBE_SECONDS)

    # Back: the very next requests succeed, none of them on a connection the restart killed.
    for _ in range(3):
        answer = api()
        assert answer.status_code == 200, answer.text[:500]
        answer = page()
        assert answer.status_code == 200, answer.text[:500]
    assert app.get("/readyz").status_code == 200
    log = app.log.read_text()
    assert "Internal Server Error" not in log
    assert "database_outage_began" in log
    assert "database_outage_ended" in log
