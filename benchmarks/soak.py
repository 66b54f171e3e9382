"""A bounded soak: APM as deployed, under mixed traffic and background ingestion, for ``--minutes``.

    .venv/bin/python benchmarks/soak.py                      # 30 minutes, 6 users
    .venv/bin/python benchmarks/soak.py --minutes 2          # a quick check that everything runs
    .venv/bin/python benchmarks/soak.py --minutes 60 --users 10

What runs, all started (and stopped at the end, Ctrl-C included) by this script, on 127.0.0.1:
  * a redis-server of its own on a free port: database 0 is the Celery broker, 1 the cache and results;
  * gunicorn as the image runs it (gunicorn.conf.py, ``--workers`` x ``--threads``) with the production
    settings over plain HTTP (TLS ends at the ingress), static files collected and served by whitenoise;
  * a Celery worker (prefork, ``--concurrency`` pool processes) and Celery beat with the database
    schedule, on the same settings;
  * PostgreSQL: the scratch database ``apm_soak`` (``--database-url``), created when missing, migrated,
    seeded with the demo portfolio (``manage.py seed_demo``) and ``--repositories`` generated
    repositories (benchmarks/repogen.py, under var/soak/repos) registered to demo projects through the
    API and ingested by the worker. A second run reuses all of it.

Traffic, for ``--minutes`` after the setup: ``--users`` people, each a thread with a keep-alive
connection, doing one thing after another with 0.5-1.5 s between them: the dashboard (HTML with a
session, JSON with a read-only token), project and repository pages with every panel the page names,
API lists (page numbers, and cursors followed three pages deep), summaries and analytics, and tasks
created and moved to in progress and done (session, CSRF). Beside them: every ``--commit-interval``
seconds one of the generated repositories gets new commits naming the project's tasks, and a signed
push webhook (the secret is asked of the API) queues its incremental ingestion, whose run is followed
to its end; every 90 s an export is requested, followed and downloaded (within the export rate limit).

Every 10 s the resident memory (RSS) and CPU of every process started here are sampled (gunicorn
master and workers, Celery worker and pool processes, beat, redis-server). At the end: per-minute
p50/p95/requests per second/errors, per-kind figures, memory of each process after the warm-up, in
the middle and at the end with its slope (MiB per 10 minutes), and the verdicts:
  * memory flat: no APM process ends more than max(10 MiB, 10 %) above its RSS after the warm-up
    (redis-server is shown, not judged: a cache and a result store fill to their working set);
  * zero errors: no failed request, webhook, ingestion run or export, no error logged by a process, and
    no process that died or was replaced;
  * p95 stable: the p95 of the last third of the measured period at most 1.5 x that of the first third.
A CSV of the minutes, a CSV of the memory samples and a Markdown report are written to
benchmarks/results/; the exit status is 1 when a verdict failed (130 when interrupted).

The traffic is one account's (the demo admin), its API rate limit raised so that a handful of threads
standing in for many people is not throttled. Client, servers and databases share the machine's cores:
the load average is printed beside every minute.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import database_row  # noqa: E402
from benchmarks.pages import (  # noqa: E402
    DEMO_PASSWORD,
    GUNICORN,
    PYTHON,
    Answer,
    cookies_of,
    manage,
    panels_of,
    percentile,
    port_free,
    request,
    server_env,
)
from benchmarks.repogen import history_stream, repository_create  # noqa: E402

WORKDIR = ROOT / "var" / "soak"
RESULTS = ROOT / "benchmarks" / "results"
MAX_MINUTES = 240
SAMPLE_SECONDS = 10
# Verdicts.
MEMORY_BOUND_MIB = 10.0
MEMORY_BOUND_SHARE = 0.10
P95_RATIO = 1.5
# A keep-alive connection idle for longer than this is replaced before use: gunicorn closes idle ones
# after 5 s (gunicorn.conf.py), and a request on a connection the server has just closed would fail
# for reasons of the client's making.
IDLE_SECONDS = 4.0
EXPORT_SECONDS = 90  # 40 an hour, under the exports rate limit (60 an hour)
THINK = (0.5, 1.5)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LOGGED_ERROR = re.compile(r'"level": "(error|critical)"|\[(ERROR|CRITICAL)\]|^Traceback', re.MULTILINE)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30, help=f"Traffic, 1 to {MAX_MINUTES} minutes.")
    parser.add_argument("--users", type=int, default=6, help="Concurrent people.")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/apm_soak")
    parser.add_argument("--port", type=int, default=8796)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes (the image's default).")
    parser.add_argument("--threads", type=int, default=4, help="Threads a process (the image's default).")
    parser.add_argument("--concurrency", type=int, default=2, help="Celery pool processes (k8s default).")
    parser.add_argument("--repositories", type=int, default=3, help="Generated repositories.")
    parser.add_argument("--commits", type=int, default=2000, help="History of each generated repository.")
    parser.add_argument(
        "--commit-interval", type=float, default=20, help="Seconds between pushes to a repository."
    )
    options = parser.parse_args()
    if not 1 <= options.minutes <= MAX_MINUTES:
        parser.error(f"--minutes: give 1 to {MAX_MINUTES}")
    if not 1 <= options.users <= 100:
        parser.error("--users: give 1 to 100")
    return options


# --- Processes ------------------------------------------------------------------------------------------


@dataclass
class Service:
    """A process tree this script started: its root, its log, and how it is stopped."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    # Whether its memory counts in the verdict: redis-server's does not (a cache and a result store
    # fill up to their working set). Sampled are the root and its children running the same program
    # (gunicorn workers, Celery pool processes), not the short-lived git processes they start (tree()).
    judged: bool = True
    died: bool = False

    def stop(self) -> None:
        """SIGTERM to the root (gunicorn and Celery shut down warm: requests and tasks finish), then
        SIGKILL to whatever of the group is left."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} did not stop within 40 s: killed")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def service_start(
    name: str, argv: list[str], *, env: dict[str, str], log: Path, judged: bool = True
) -> Service:
    with log.open("w") as output:
        # A session of its own: Ctrl-C in the terminal reaches this script only, which stops the
        # services in order (traffic first, then beat, web, worker, redis).
        process = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Service(name, process, log, judged)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Any, *, seconds: float, what: str, services: list[Service]) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        for service in services:
            if service.process.poll() is not None:
                raise SoakError(f"{service.name} exited ({service.process.returncode}):\n{tail(service.log)}")
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SoakError(f"{what}: not within {seconds:.0f} s")
        time.sleep(0.5)


def tail(path: Path, size: int = 3000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else ""


class SoakError(Exception):
    """The soak could not be set up; the message says what failed."""


class Interrupted(Exception):
    """SIGTERM: stop as on Ctrl-C."""


# --- /proc ------------------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, CPU ticks used) of ``pid``; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def tree(root: int) -> list[int]:
    """``root`` and its descendants running the same program."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat:
                children[stat[0]].append(int(entry))
    program = _exe(root)
    found, todo = [root], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if _exe(pid) == program:
            found.append(pid)
            todo.extend(children.get(pid, []))
    return found


@dataclass
class Sample:
    seconds: float  # since the traffic started
    process: str
    pid: int
    rss_mib: float
    cpu_percent: float


@dataclass
class Sampler:
    """RSS and CPU of every sampled process, every SAMPLE_SECONDS, on a thread of its own."""

    services: list[Service]
    started: float
    samples: list[Sample] = field(default_factory=list)
    labels: dict[int, str] = field(default_factory=dict)
    judged: dict[str, bool] = field(default_factory=dict)
    load: list[tuple[float, float]] = field(default_factory=list)
    _ticks: dict[int, tuple[float, int]] = field(default_factory=dict)

    def label(self, service: Service, pid: int) -> str:
        if pid not in self.labels:
            if pid == service.process.pid:
                label = {"gunicorn": "gunicorn master", "celery worker": "celery worker (main)"}.get(
                    service.name, service.name
                )
            else:
                child = {"gunicorn": "gunicorn worker", "celery worker": "celery pool"}.get(
                    service.name, f"{service.name} child"
                )
                count = sum(1 for name in self.labels.values() if name.startswith(child))
                label = f"{child} {count + 1}"
            self.labels[pid] = label
            self.judged[label] = service.judged
        return self.labels[pid]

    def sample(self) -> None:
        now = time.monotonic()
        self.load.append((now - self.started, os.getloadavg()[0]))
        for service in self.services:
            if service.process.poll() is not None:
                continue
            for pid in tree(service.process.pid):
                stat, rss = _stat(pid), _rss_mib(pid)
                if stat is None or rss is None:
                    continue
                previous = self._ticks.get(pid)
                self._ticks[pid] = (now, stat[1])
                cpu = (
                    (stat[1] - previous[1]) / CLOCK_TICKS / (now - previous[0]) * 100
                    if previous and now > previous[0]
                    else 0.0
                )
                label = self.label(service, pid)
                self.samples.append(Sample(now - self.started, label, pid, rss, cpu))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.sample()
            stop.wait(SAMPLE_SECONDS)


# --- Requests ---------------------------------------------------------------------------------------------


@dataclass
class Record:
    seconds: float  # since the traffic started, at the answer
    kind: str
    path: str
    milliseconds: float
    error: str | None


@dataclass
class Recorder:
    """Every request of the soak, with its kind, time and outcome; errors also from the background."""

    started: float
    records: list[Record] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # errors that are not one request's
    ingestion_lags: list[float] = field(default_factory=list)  # push announced -> run finished, s
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, path: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.records.append(Record(time.monotonic() - self.started, kind, path, seconds * 1000, error))

    def fail(self, message: str) -> None:
        with self.lock:
            self.failures.append(f"{time.monotonic() - self.started:7.1f} s  {message}")


@dataclass
class Client:
    """One person's connection and credentials."""

    port: int
    recorder: Recorder
    token: str
    session: str
    csrf: str
    _connection: http.client.HTTPConnection | None = None
    _used: float = 0.0

    def connection(self) -> http.client.HTTPConnection:
        if self._connection is None or time.monotonic() - self._used > IDLE_SECONDS:
            if self._connection is not None:
                self._connection.close()
            self._connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        return self._connection

    def call(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        as_session: bool = False,
        body: Any = None,
        expect: int = 200,
        accept: str = "application/json",
    ) -> Answer | None:
        """One request, recorded; the answer when it had the ``expect``ed status, None otherwise."""
        headers = {"Accept": accept}
        if as_session:
            headers["Cookie"] = f"sessionid={self.session}; csrftoken={self.csrf}"
            if method != "GET":
                headers["X-CSRFToken"] = self.csrf
                headers["Origin"] = f"http://127.0.0.1:{self.port}"
        else:
            headers["Authorization"] = f"Token {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection = self.connection()
        started = time.perf_counter()
        try:
            answer = request(
                "127.0.0.1", self.port, method, path, headers=headers, body=data, connection=connection
            )
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            self._connection = None
            self.recorder.add(kind, path, time.perf_counter() - started, f"{method} {path}: {exc!r}")
            return None
        self._used = time.monotonic()
        elapsed = time.perf_counter() - started
        if answer.status != expect:
            self.recorder.add(kind, path, elapsed, f"{method} {path}: {answer.status} {answer.body[:200]!r}")
            return None
        self.recorder.add(kind, path, elapsed, None)
        return answer

    def json(self, *args: Any, **kwargs: Any) -> Any:
        answer = self.call(*args, **kwargs)
        return None if answer is None else json.loads(answer.body)


def session_login(port: int, username: str, password: str) -> tuple[str, str]:
    """Sign in at the pages' own sign-in form, as a person would: (session cookie, CSRF token)."""
    form = request("127.0.0.1", port, "GET", "/accounts/login/")
    csrf = cookies_of(form).get("csrftoken", "")
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', form.body)
    if not match or not csrf:
        raise SoakError(f"no CSRF token in the sign-in form ({form.status})")
    answer = request(
        "127.0.0.1",
        port,
        "POST",
        "/accounts/login/",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={csrf}",
            "Origin": f"http://127.0.0.1:{port}",
        },
        body=urlencode(
            {"username": username, "password": password, "csrfmiddlewaretoken": match.group(1).decode()}
        ).encode(),
    )
    cookies = cookies_of(answer)
    if answer.status != 302 or "sessionid" not in cookies:
        raise SoakError(f"signing in as {username} failed ({answer.status}): {answer.body[:300]!r}")
    # Signing in rotates the CSRF token.
    return cookies["sessionid"], cookies.get("csrftoken", csrf)


# --- The world ------------------------------------------------------------------------------------------


@dataclass
class GeneratedRepository:
    path: Path
    project: str
    id: int = 0
    secret: str = ""
    files: list[str] = field(default_factory=list)
    tasks: int = 1


@dataclass
class World:
    projects: list[str]
    repositories: list[GeneratedRepository]
    notes: list[str] = field(default_factory=list)  # how the setup differs from production, if it does


def repositories_generate(
    options: argparse.Namespace,
    projects: list[str],
    *,
    root: Path = WORKDIR / "repos",
    prefix: str = "soak",
    file_count: int = 300,
) -> list[GeneratedRepository]:
    """``options.repositories`` generated repositories of ``options.commits`` commits under ``root``
    (var/soak/repos), each for one demo project; kept between runs (the scratch database remembers
    them), made when missing."""
    found = []
    for index in range(options.repositories):
        path = root / f"{prefix}-{index + 1}"
        if not (path / ".git").exists():
            shutil.rmtree(path, ignore_errors=True)
            started = time.perf_counter()
            repository_create(path, history_stream(commits=options.commits, files=file_count, seed=index + 1))
            print(
                f"  generated {path.name}: {options.commits} commits in {time.perf_counter() - started:.1f} s"
            )
        files = subprocess.run(
            ["git", "-C", str(path), "ls-files"], capture_output=True, text=True, check=True
        ).stdout.split()
        found.append(GeneratedRepository(path, projects[index % len(projects)], files=files))
    return found


def repositories_register(
    client: Client, repositories: list[GeneratedRepository], services: list[Service]
) -> None:
    """Register each repository through the API (a local path: staff only), ask the API for a new
    webhook secret, and ingest it on the worker before the traffic starts."""
    known = client.json("setup", "GET", "/api/v1/repositories/?page_size=200", as_session=True) or {}
    by_source = {row["source"]: row["id"] for row in known.get("results", [])}
    runs = []
    for repository in repositories:
        source = str(repository.path)
        if source in by_source:
            repository.id = by_source[source]
        else:
            created = client.json(
                "setup",
                "POST",
                "/api/v1/repositories/",
                as_session=True,
                body={"project": repository.project, "source": source, "name": repository.path.name},
                expect=201,
            )
            if created is None:
                raise SoakError(f"registering {source} failed: {client.recorder.records[-1].error}")
            repository.id = created["id"]
        secret = client.json(
            "setup", "POST", f"/api/v1/repositories/{repository.id}/webhook-secret/", as_session=True
        )
        if secret is None:
            raise SoakError(f"no webhook secret for {source}: {client.recorder.records[-1].error}")
        repository.secret = secret["webhook_secret"]
        tasks = client.json("setup", "GET", f"/api/v1/tasks/?project={repository.project}&page_size=1")
        repository.tasks = max(1, (tasks or {}).get("count", 1))
        run = client.json(
            "setup", "POST", f"/api/v1/repositories/{repository.id}/ingest/", as_session=True, expect=202
        )
        if run is None:
            raise SoakError(f"ingesting {source} failed: {client.recorder.records[-1].error}")
        runs.append((source, run["run"]))
    for source, run_id in runs:
        started = time.perf_counter()

        def finished(run_id: int = run_id) -> dict[str, Any] | None:
            run = client.json("setup", "GET", f"/api/v1/ingestion-runs/{run_id}/")
            return run if run and run["status"] in ("succeeded", "failed") else None

        run = wait_until(finished, seconds=600, what=f"ingestion of {source}", services=services)
        if run["status"] != "succeeded":
            raise SoakError(f"ingestion of {source} failed: {run.get('error')}")
        print(
            f"  {Path(source).name} ({client_project(repositories, source)}): run {run_id} "
            f"{run['commits_done']} new commits, {time.perf_counter() - started:.1f} s"
        )


def client_project(repositories: list[GeneratedRepository], source: str) -> str:
    return next(r.project for r in repositories if str(r.path) == source)


# --- Traffic --------------------------------------------------------------------------------------------


def person(client: Client, world: World, rng: random.Random, stop: threading.Event) -> None:
    """One person's day: one thing after another, with a pause between them."""
    actions = [
        (dashboard_html, 3),
        (dashboard_json, 3),
        (project_page, 3),
        (repository_page, 1),
        (api_lists, 3),
        (api_cursor, 2),
        (summary, 2),
        (analytics, 3),
        (task_work, 2),
    ]
    functions, weights = zip(*actions, strict=True)
    while not stop.is_set():
        rng.choices(functions, weights)[0](client, world, rng)
        stop.wait(rng.uniform(*THINK))


def dashboard_html(client: Client, world: World, rng: random.Random) -> None:
    client.call("dashboard (html, session)", "GET", "/dashboard", as_session=True, accept="text/html")


def dashboard_json(client: Client, world: World, rng: random.Random) -> None:
    client.call("dashboard (json, token)", "GET", "/dashboard")


def _page(client: Client, kind: str, path: str) -> None:
    answer = client.call(f"{kind} page", "GET", path, as_session=True, accept="text/html")
    if answer is None:
        return
    for name, src in panels_of(answer.body):
        client.call(f"{kind} panel {name}", "GET", src, as_session=True, accept="text/html")


def project_page(client: Client, world: World, rng: random.Random) -> None:
    window = rng.choice(["30", "90", "365", "all"])
    _page(client, "project", f"/projects/{rng.choice(world.projects)}/?window={window}")


def repository_page(client: Client, world: World, rng: random.Random) -> None:
    _page(client, "repository", f"/repositories/{rng.choice(world.repositories).id}/")


def api_lists(client: Client, world: World, rng: random.Random) -> None:
    key = rng.choice(world.projects)
    repository = rng.choice(world.repositories)
    path = rng.choice(
        [
            "/api/v1/projects/",
            f"/api/v1/tasks/?project={key}&page_size=20",
            f"/api/v1/tasks/?project={key}&is_open=true&ordering=-updated_at",
            f"/api/v1/files/?repository={repository.id}&page_size=100",
            f"/api/v1/ingestion-runs/?repository={repository.id}",
        ]
    )
    _follow(client, "api list (page)", path, pages=2)


def api_cursor(client: Client, world: World, rng: random.Random) -> None:
    """A cursor list followed three pages deep, as an integration reads it."""
    repository = rng.choice(world.repositories)
    path = rng.choice(
        [
            f"/api/v1/commits/?repository={repository.id}",
            f"/api/v1/commits/?project={repository.project}&page_size=100",
            f"/api/v1/file-changes/?repository={repository.id}",
        ]
    )
    _follow(client, "api list (cursor)", path, pages=3)


def _follow(client: Client, kind: str, path: str | None, *, pages: int) -> None:
    """A list and up to ``pages - 1`` more pages through its ``next`` link."""
    for _ in range(pages):
        if not path:
            break
        page = client.json(kind, "GET", path)
        following = page.get("next") if page else None
        path = "/" + following.split("://", 1)[-1].split("/", 1)[-1] if following else None


def summary(client: Client, world: World, rng: random.Random) -> None:
    client.call("api summary", "GET", f"/api/v1/projects/{rng.choice(world.projects)}/summary/")


def analytics(client: Client, world: World, rng: random.Random) -> None:
    key = rng.choice(world.projects)
    path = rng.choice(
        [
            f"/api/v1/projects/{key}/progress/",
            f"/api/v1/projects/{key}/health/",
            f"/api/v1/projects/{key}/priorities/",
            f"/api/v1/projects/{key}/burndown/",
            f"/api/v1/projects/{key}/hotspots/?days={rng.choice([30, 90, 365])}",
            f"/api/v1/projects/{key}/coupling/",
            f"/api/v1/projects/{key}/contributors/",
        ]
    )
    client.call("api analytics", "GET", path)


def task_work(client: Client, world: World, rng: random.Random) -> None:
    """A task created, started and finished, through the session."""
    key = rng.choice(world.projects)
    task = client.json(
        "task create",
        "POST",
        "/api/v1/tasks/",
        as_session=True,
        body={"project": key, "title": f"Soak task {rng.randrange(10**6)}", "estimate_hours": 2},
        expect=201,
    )
    if task is None:
        return
    for status in ("in_progress", "done"):
        moved = client.call(
            "task transition",
            "POST",
            f"/api/v1/tasks/{task['key']}/transition/",
            as_session=True,
            body={"status": status, "note": "soak"},
        )
        if moved is None:
            return


def committer(
    client: Client, world: World, recorder: Recorder, interval: float, stop: threading.Event
) -> None:
    """New commits in one repository after another, each push announced by a signed webhook; the runs
    it queued are followed to their end."""
    rng = random.Random(11)
    # Run id -> when the push was announced, on the clock the server writes finished_at with (the same
    # machine's): the run's own end is compared with it, not the moment this thread next looks.
    pending: dict[int, float] = {}
    lags: list[float] = []
    number = 0
    environment = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Soak",
        "GIT_AUTHOR_EMAIL": "soak@example.com",
        "GIT_COMMITTER_NAME": "Soak",
        "GIT_COMMITTER_EMAIL": "soak@example.com",
    }
    while not stop.wait(interval / max(1, len(world.repositories))):
        repository = world.repositories[number % len(world.repositories)]
        number += 1
        for _ in range(rng.randint(1, 3)):
            path = repository.path / rng.choice(repository.files)
            with path.open("a") as handle:
                handle.write(f"soak {number} {rng.randrange(10**9)}\n")
            task = f"{repository.project}-{rng.randint(1, repository.tasks)}"
            message = f"{task}: soak change {number}" + (" @15m" if rng.random() < 0.3 else "")
            subprocess.run(
                ["git", "-C", str(repository.path), "commit", "-q", "-am", message],
                env=environment,
                check=True,
            )
        after = subprocess.run(
            ["git", "-C", str(repository.path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        body = json.dumps(
            {"ref": "refs/heads/main", "after": after, "repository": {"default_branch": "main"}}
        ).encode()
        signature = hmac.new(repository.secret.encode(), body, hashlib.sha256).hexdigest()
        started = time.perf_counter()
        hook = f"/api/v1/hooks/push/?repository={repository.id}"
        try:
            answer = request(
                "127.0.0.1",
                client.port,
                "POST",
                hook,
                headers={
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "push",
                    "X-Hub-Signature-256": f"sha256={signature}",
                },
                body=body,
            )
        except (OSError, http.client.HTTPException) as exc:
            recorder.add("push webhook", hook, time.perf_counter() - started, repr(exc))
            continue
        error = None if answer.status == 202 else f"{answer.status} {answer.body[:200]!r}"
        recorder.add("push webhook", hook, time.perf_counter() - started, error)
        if error:
            continue
        for run in json.loads(answer.body)["runs"]:
            pending.setdefault(run["run"], time.time())
        runs_follow(client, recorder, pending, lags)
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        time.sleep(2)
        runs_follow(client, recorder, pending, lags)
    for run_id in pending:
        recorder.fail(f"ingestion run {run_id} still not finished 120 s after the traffic stopped")
    recorder.ingestion_lags = lags


def runs_follow(client: Client, recorder: Recorder, pending: dict[int, float], lags: list[float]) -> None:
    for run_id in list(pending):
        run = client.json("ingestion run (follow)", "GET", f"/api/v1/ingestion-runs/{run_id}/")
        if not run or run["status"] not in ("succeeded", "failed"):
            continue
        if run["status"] == "failed":
            recorder.fail(f"ingestion run {run_id} failed: {run.get('error')}")
        else:
            lags.append(datetime.fromisoformat(run["finished_at"]).timestamp() - pending[run_id])
        del pending[run_id]


def exporter(client: Client, world: World, recorder: Recorder, stop: threading.Event) -> None:
    """An export every EXPORT_SECONDS, of each kind in turn, followed and downloaded."""
    kinds = ["tasks_csv", "commits_csv", "digest_md", "digest_html"]
    number = 0
    while not stop.wait(EXPORT_SECONDS if number else 15):
        key = world.projects[number % len(world.projects)]
        kind = kinds[number % len(kinds)]
        number += 1
        path = f"/api/v1/projects/{key}/exports/"
        job = client.json("export request", "POST", path, as_session=True, body={"kind": kind}, expect=202)
        if job is None:
            continue
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(2)
            job = client.json("export (follow)", "GET", f"/api/v1/projects/{key}/exports/{job['id']}/") or job
            if job["status"] in ("succeeded", "failed"):
                break
        if job["status"] != "succeeded":
            recorder.fail(f"export {job['id']} ({kind} of {key}) ended {job['status']}: {job.get('error')}")
            continue
        client.call("export download", "GET", job["download"], accept="*/*")


# --- Report ---------------------------------------------------------------------------------------------


def slope_per_10_minutes(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB), in MiB per 10 minutes."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if not spread:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread * 600


@dataclass
class Run:
    """What the soak measured, for the report."""

    options: argparse.Namespace
    recorder: Recorder
    sampler: Sampler
    services: list[Service]
    duration: float
    warmup: float
    interrupted: bool
    stamp: str
    notes: list[str]
    lines: list[str] = field(default_factory=list)

    def add(self, text: str = "") -> None:
        self.lines.append(text)

    def traffic(self, start: float, end: float) -> list[float]:
        """Seconds of the requests that succeeded between ``start`` and ``end``."""
        return [
            r.milliseconds / 1000
            for r in self.recorder.records
            if r.error is None and start <= r.seconds <= end
        ]


def minutes_table(run: Run) -> list[list[Any]]:
    """Per minute: requests, errors, requests per second, p50, p95, load average; the rows for the CSV."""
    minutes: dict[int, list[Record]] = defaultdict(list)
    for record in run.recorder.records:
        if record.seconds <= run.duration:
            minutes[int(record.seconds // 60)].append(record)
    load: dict[int, list[float]] = defaultdict(list)
    for seconds, value in run.sampler.load:
        load[int(seconds // 60)].append(value)
    rows = []
    run.add("| minute | requests | errors | req/s | p50 ms | p95 ms | load average |")
    run.add("|---|---|---|---|---|---|---|")
    for minute in sorted(minutes):
        records = minutes[minute]
        good = [r.milliseconds / 1000 for r in records if r.error is None]
        span = min(60.0, run.duration - minute * 60) or 60.0
        row = [
            minute + 1,
            len(records),
            sum(1 for r in records if r.error),
            len(records) / span,
            percentile(good, 0.5),
            percentile(good, 0.95),
            statistics.fmean(load[minute]) if load[minute] else float("nan"),
        ]
        rows.append(row)
        note = " (warm-up)" if (minute + 1) * 60 <= run.warmup else ""
        run.add(
            f"| {minute + 1}{note} | {row[1]} | {row[2]} | {row[3]:.1f} | {row[4]:.0f} | {row[5]:.0f} | "
            f"{row[6]:.1f} |"
        )
    run.add()
    return rows


def kinds_table(run: Run) -> None:
    kinds: dict[str, list[Record]] = defaultdict(list)
    for record in run.recorder.records:
        kinds[record.kind].append(record)
    run.add("| kind of request | requests | errors | p50 ms | p95 ms | max ms |")
    run.add("|---|---|---|---|---|---|")
    for kind in sorted(kinds):
        good = [r.milliseconds / 1000 for r in kinds[kind] if r.error is None]
        errors = sum(1 for r in kinds[kind] if r.error)
        run.add(
            f"| {kind} | {len(kinds[kind])} | {errors} | {percentile(good, 0.5):.0f} | "
            f"{percentile(good, 0.95):.0f} | {max(good, default=0) * 1000:.0f} |"
        )
    run.add()
    run.add("The slowest requests:")
    run.add()
    for record in sorted(run.recorder.records, key=lambda r: -r.milliseconds)[:8]:
        run.add(f"- {record.milliseconds:,.0f} ms at {record.seconds:.0f} s: {record.kind}, `{record.path}`")
    lags = run.recorder.ingestion_lags
    if lags:
        run.add()
        run.add(
            f"Push to finished ingestion run: {len(lags)} runs, median {statistics.median(lags):.1f} s, "
            f"slowest {max(lags):.1f} s (the run's finished_at against the moment the push was sent)."
        )
    run.add()


@dataclass
class MemoryRow:
    """One process's memory over a run: RSS after the warm-up, in the middle and at the end."""

    process: str
    pid: int
    cpu_percent: float  # mean over the whole run
    judged: bool
    start: float | None = None  # None: too few samples after the warm-up
    middle: float = 0.0
    end: float = 0.0
    slope: float = 0.0  # MiB per 10 minutes
    bound: float = 0.0

    @property
    def growth(self) -> float:
        return self.end - (self.start or 0.0)

    @property
    def flat(self) -> bool:
        return self.start is not None and self.growth <= self.bound

    def problem(self) -> str | None:
        """Why this process fails the memory verdict; None when it passes or is not judged."""
        if not self.judged:
            return None
        if self.start is None:
            return f"{self.process}: too few samples after the warm-up"
        if not self.flat:
            return f"{self.process} grew {self.growth:.1f} MiB (bound {self.bound:.1f})"
        return None


def memory_rows(
    samples: list[Sample], judged: dict[str, bool], warmup: float, duration: float
) -> list[MemoryRow]:
    """Each sampled process's memory after ``warmup`` seconds, in the order the processes appeared.

    Flat: the mean of its last three samples at most max(MEMORY_BOUND_MIB, MEMORY_BOUND_SHARE) above the
    mean of its first three after the warm-up.
    """
    every: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        every[sample.process].append(sample)
    rows = []
    for process in sorted(every, key=lambda name: (every[name][0].seconds, name)):
        kept = [s for s in every[process] if warmup <= s.seconds <= duration + SAMPLE_SECONDS]
        cpu = statistics.fmean(s.cpu_percent for s in every[process][1:]) if len(every[process]) > 1 else 0.0
        row = MemoryRow(process, every[process][0].pid, cpu, judged.get(process, True))
        if len(kept) >= 3:
            row.start = statistics.fmean(s.rss_mib for s in kept[:3])
            row.end = statistics.fmean(s.rss_mib for s in kept[-3:])
            row.middle = min(kept, key=lambda s: abs(s.seconds - (warmup + duration) / 2)).rss_mib
            row.slope = slope_per_10_minutes([(s.seconds, s.rss_mib) for s in kept])
            row.bound = max(MEMORY_BOUND_MIB, MEMORY_BOUND_SHARE * row.start)
        rows.append(row)
    return rows


def memory_table(run: Run) -> list[str]:
    """RSS of each process after the warm-up, in the middle and at the end; what was not flat."""
    run.add(
        "| process | pid | RSS after warm-up MiB | middle | end | growth | slope MiB/10 min | CPU % | flat |"
    )
    run.add("|---|---|---|---|---|---|---|---|---|")
    not_flat = []
    for row in memory_rows(run.sampler.samples, run.sampler.judged, run.warmup, run.duration):
        if (problem := row.problem()) is not None:
            not_flat.append(problem)
        if row.start is None:
            run.add(
                f"| {row.process} | {row.pid} | (too few samples after the warm-up) | | | | | "
                f"{row.cpu_percent:.1f} | |"
            )
            continue
        verdict = ("yes" if row.flat else "**no**") if row.judged else "(not judged)"
        run.add(
            f"| {row.process} | {row.pid} | {row.start:.1f} | {row.middle:.1f} | {row.end:.1f} | "
            f"{row.growth:+.1f} | {row.slope:+.2f} | {row.cpu_percent:.1f} | {verdict} |"
        )
    run.add()
    return not_flat


def verdicts(run: Run, not_flat: list[str], logged: dict[str, list[str]]) -> bool:
    """The three verdicts, and the first errors of each sort; True when all passed."""
    errors = [r for r in run.recorder.records if r.error]
    died = [f"{s.name} exited ({s.process.returncode}) during the soak" for s in run.services if s.died]
    first_seen: dict[str, float] = {}
    for sample in run.sampler.samples:
        first_seen.setdefault(sample.process, sample.seconds)
    replaced = [
        f"{process} appeared {seconds:.0f} s into the traffic: a process was replaced"
        for process, seconds in first_seen.items()
        if seconds > SAMPLE_SECONDS * 1.5
    ]
    logged_count = sum(len(lines) for lines in logged.values())
    failures = len(errors) + len(run.recorder.failures) + logged_count + len(died) + len(replaced)
    third = (run.duration - run.warmup) / 3
    first = run.traffic(run.warmup, run.warmup + third)
    last = run.traffic(run.duration - third, run.duration)
    p95_first, p95_last = percentile(first, 0.95), percentile(last, 0.95)
    ratio = p95_last / p95_first if first and last else float("nan")
    stable = ratio <= P95_RATIO
    run.add(
        f"{len(run.recorder.records)} requests, {len(errors)} failed; {len(run.recorder.failures)} "
        f"background failures (ingestion runs, exports, processes); {logged_count} errors logged by the "
        f"processes; {len(died)} processes died, {len(replaced)} replaced."
    )
    run.add()
    run.add(
        f"- memory flat (every APM process at most max({MEMORY_BOUND_MIB:.0f} MiB, "
        f"{MEMORY_BOUND_SHARE:.0%}) above its RSS after the warm-up): "
        + ("passed" if not not_flat else f"FAILED ({'; '.join(not_flat)})")
    )
    run.add(f"- zero errors: {'passed' if failures == 0 else f'FAILED ({failures})'}")
    run.add(
        f"- p95 stable (last third {p95_last:.0f} ms / first third {p95_first:.0f} ms = {ratio:.2f}, at "
        f"most {P95_RATIO}): {'passed' if stable else 'FAILED'}"
    )
    examples = [f"{r.seconds:7.1f} s  {r.kind}: {r.error}" for r in errors[:10]]
    examples += run.recorder.failures[:10] + died + replaced[:5]
    for name, lines in logged.items():
        examples += [f"{name} log: {line[:300]}" for line in lines[:5]]
    if examples:
        run.add()
        run.add("Errors (the first of each sort):")
        run.add()
        run.add("```")
        run.lines += examples
        run.add("```")
    return not not_flat and failures == 0 and stable and not run.interrupted


def report_build(run: Run, logged: dict[str, list[str]]) -> tuple[bool, list[list[Any]]]:
    """The Markdown report in ``run.lines``; whether every verdict passed, and the minutes' rows."""
    options = run.options
    run.add(f"# Soak, {run.stamp}")
    run.add()
    run.add(
        f"`.venv/bin/python benchmarks/soak.py --minutes {options.minutes:g} --users {options.users}`: "
        f"{run.duration / 60:.1f} minutes of traffic{' (interrupted)' if run.interrupted else ''}, "
        f"warm-up {run.warmup:.0f} s; gunicorn {options.workers} workers x {options.threads} threads, "
        f"a Celery worker of {options.concurrency} pool processes and beat, PostgreSQL, a redis-server "
        f"of its own; {os.cpu_count()} cores shared with everything else on the machine. Code: "
        f"{code_version()}."
    )
    for note in run.notes:
        run.add()
        run.add(note)
    run.add()
    rows = minutes_table(run)
    kinds_table(run)
    not_flat = memory_table(run)
    return verdicts(run, not_flat, logged), rows


def code_version() -> str:
    """The commit the soak ran, and whether the working tree had changes beyond it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout

    changed = git("status", "--porcelain", "--untracked-files=no").strip()
    return f"{git('rev-parse', '--short', 'HEAD').strip()}" + (" with uncommitted changes" if changed else "")


def logged_errors(services: list[Service]) -> dict[str, list[str]]:
    """Lines of error level (or tracebacks) each process logged."""
    found = {}
    for service in services:
        text = service.log.read_text(errors="replace") if service.log.exists() else ""
        lines = [line for line in text.splitlines() if LOGGED_ERROR.search(line)]
        if lines:
            found[service.name] = lines
    return found


def results_write(run: Run, rows: list[list[Any]]) -> list[Path]:
    """The Markdown report, the minutes and the memory samples, under benchmarks/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    markdown = RESULTS / f"soak-{run.stamp}.md"
    markdown.write_text("\n".join(run.lines) + "\n")
    minutes = RESULTS / f"soak-{run.stamp}-minutes.csv"
    with minutes.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["minute", "requests", "errors", "requests_per_second", "p50_ms", "p95_ms", "load"])
        writer.writerows([f"{v:.3f}" if isinstance(v, float) else v for v in row] for row in rows)
    memory = RESULTS / f"soak-{run.stamp}-memory.csv"
    with memory.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["seconds", "process", "pid", "rss_mib", "cpu_percent"])
        writer.writerows(
            [f"{s.seconds:.1f}", s.process, s.pid, f"{s.rss_mib:.2f}", f"{s.cpu_percent:.1f}"]
            for s in run.sampler.samples
        )
    return [markdown, minutes, memory]


# --- Setup and the run ------------------------------------------------------------------------------------


def statistics_ensure(url: str) -> str | None:
    """When the server's autovacuum is off (a CI configuration), ANALYZE the scratch database once, as
    autovacuum would within a minute of the ingestions in production; a note saying so, or None.

    Without statistics PostgreSQL plans the analytics over freshly ingested tables as if they were empty:
    change coupling over ten years of the generated histories took 21-31 s (a nested loop of 63 million
    rows) instead of milliseconds. Ingestion analyzes by itself only after runs of 20,000 rows or more.
    """
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute("SHOW autovacuum").fetchone()
        if row is None or row[0] == "on":
            return None
        connection.execute("ANALYZE")
    return (
        "autovacuum is off on this PostgreSQL server: the soak ran ANALYZE once after the setup's "
        "ingestions, as autovacuum would in production."
    )


def database_ensure(url: str) -> None:
    """Create the scratch database when it is missing (an existing one is reused, then migrated)."""
    import psycopg

    base, name = url.rsplit("/", 1)
    if database_row(url, "SELECT 1") is None:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        print(f"  created the database {name}")


def redis_start(logs: Path, services: list[Service]) -> str:
    """A redis-server of this soak's own, on a free port, nothing saved; its URL."""
    port = free_port()
    services.append(
        service_start(
            "redis-server",
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            env=dict(os.environ),
            log=logs / "redis.log",
            judged=False,
        )
    )

    def answers() -> bool:
        ping = ["redis-cli", "-p", str(port), "ping"]
        return subprocess.run(ping, capture_output=True, check=False).returncode == 0

    wait_until(answers, seconds=20, what="redis-server", services=services)
    return f"redis://127.0.0.1:{port}"


def apm_start(
    options: argparse.Namespace,
    env: dict[str, str],
    logs: Path,
    services: list[Service],
    *,
    workdir: Path = WORKDIR,
    beat: bool = True,
) -> None:
    """The Celery worker, beat (unless ``beat`` is false), and gunicorn, until it answers /healthz.
    ``options`` gives port, workers, threads and concurrency; the metrics directories go under
    ``workdir``."""

    def role_env(role: str) -> dict[str, str]:
        # Each role its own metrics directory, as each pod has its own /tmp (the image sets it).
        directory = workdir / "prometheus" / role
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        return {**env, "PROMETHEUS_MULTIPROC_DIR": str(directory)}

    celery = [PYTHON, "-m", "celery", "-A", "config"]
    # One worker for both queues, as one machine runs them (docs/operations.md, "Processes").
    worker = ["worker", "-Q", "celery,ingestion", "-l", "warning", "--concurrency", str(options.concurrency)]
    services.append(
        service_start(
            "celery worker",
            [*celery, *worker, "--hostname", f"{workdir.name}-{logs.name}@%h"],
            env=role_env("worker"),
            log=logs / "worker.log",
        )
    )
    if beat:
        schedule = ["beat", "-l", "warning", "--pidfile", str(logs / "beat.pid")]
        services.append(
            service_start("celery beat", [*celery, *schedule], env=role_env("beat"), log=logs / "beat.log")
        )
    web = ["--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{options.port}", "--workers"]
    web += [str(options.workers), "--threads", str(options.threads), "--access-logfile", "/dev/null"]
    services.append(
        service_start(
            "gunicorn",
            [GUNICORN, *web, "config.wsgi:application"],
            env=role_env("web"),
            log=logs / "gunicorn.log",
        )
    )

    def healthy() -> bool:
        try:
            return request("127.0.0.1", options.port, "GET", "/healthz").status == 200
        except OSError:
            return False

    wait_until(healthy, seconds=60, what="gunicorn answering /healthz", services=services)


def stack_env(
    *, database_url: str, workdir: Path, redis_url: str, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The production settings of every process started here: the redis-server of its own (broker in
    database 0, cache and results in 1), repositories and workspace under ``workdir``."""
    return server_env(
        database_url=database_url,
        static_root=workdir / "static",
        extra={
            "REDIS_URL": f"{redis_url}/1",
            "CELERY_BROKER_URL": f"{redis_url}/0",
            "APM_REPO_ROOTS": str(workdir / "repos"),
            "APM_WORKSPACE": str(workdir / "workspace"),
            "DJANGO_MEDIA_ROOT": str(workdir / "media"),
            # One account stands in for every person of the traffic.
            "APM_API_RATE_USER": "1000000/min",
            **(extra or {}),
        },
    )


def setup(options: argparse.Namespace, logs: Path, services: list[Service]) -> tuple[World, Client]:
    """Everything started, seeded and ingested; the world the traffic walks in, and its credentials."""
    redis_url = redis_start(logs, services)
    database_ensure(options.database_url)
    env = stack_env(database_url=options.database_url, workdir=WORKDIR, redis_url=redis_url)
    manage(env, "migrate", "--noinput", "-v0")
    manage(env, "collectstatic", "--noinput", "-v0")
    manage(env, "seed_demo", "--allow-production", "--no-login")
    token = manage(env, "create_api_token", "admin", "--name", f"soak {logs.name}", "--scope", "read").strip()
    projects = ["APM", "FIELD", "DATA", "SSO", "BILL"]
    repositories = repositories_generate(options, projects)
    apm_start(options, env, logs, services)
    session, csrf = session_login(options.port, "admin", DEMO_PASSWORD)
    credentials = Client(options.port, Recorder(time.monotonic()), token, session, csrf)
    repositories_register(credentials, repositories, services)
    notes = [note] if (note := statistics_ensure(options.database_url)) else []
    for note in notes:
        print(f"  {note}")
    return World(projects, repositories, notes), credentials


def traffic(
    options: argparse.Namespace, world: World, credentials: Client, services: list[Service], stamp: str
) -> Run:
    """The people, the pushes and the exports for ``--minutes``, sampled; stops early on Ctrl-C."""
    started = time.monotonic()
    recorder = Recorder(started)
    sampler = Sampler(services, started)
    stop = threading.Event()

    def client() -> Client:
        return Client(options.port, recorder, credentials.token, credentials.session, credentials.csrf)

    threads = [threading.Thread(target=sampler.run, args=(stop,), daemon=True)]
    threads += [
        threading.Thread(target=person, args=(client(), world, random.Random(n), stop), daemon=True)
        for n in range(options.users)
    ]
    background = (client(), world, recorder, options.commit_interval, stop)
    threads.append(threading.Thread(target=committer, args=background, daemon=True))
    threads.append(threading.Thread(target=exporter, args=(client(), world, recorder, stop), daemon=True))
    duration = options.minutes * 60
    warmup = min(300.0, max(20.0, duration / 6))
    print(
        f"traffic: {options.users} users for {options.minutes:g} minutes (warm-up {warmup:.0f} s), a push "
        f"every {options.commit_interval / len(world.repositories):.1f} s, an export every {EXPORT_SECONDS} s"
    )
    for thread in threads:
        thread.start()
    interrupted = False
    try:
        while (elapsed := time.monotonic() - started) < duration:
            time.sleep(min(60 - elapsed % 60, duration - elapsed))
            progress_print(recorder, sampler, services, time.monotonic() - started)
    except (KeyboardInterrupt, Interrupted):
        interrupted = True
        duration = time.monotonic() - started
        print("interrupted: stopping the traffic, then the services")
    stop.set()
    for thread in threads:
        thread.join(timeout=150)
    sampler.sample()
    for service in services:
        service.died = service.died or service.process.poll() is not None
    return Run(options, recorder, sampler, services, duration, warmup, interrupted, stamp, world.notes)


def progress_print(recorder: Recorder, sampler: Sampler, services: list[Service], elapsed: float) -> None:
    """A line a minute: the last minute's requests, errors and p95, the load, the processes' memory."""
    for service in services:
        if service.process.poll() is not None and not service.died:
            service.died = True
            recorder.fail(f"{service.name} exited ({service.process.returncode})")
    done = [r for r in recorder.records if r.seconds > elapsed - 60]
    good = [r.milliseconds / 1000 for r in done if r.error is None]
    latest = sampler.samples[-1].seconds if sampler.samples else 0.0
    rss = sum(s.rss_mib for s in sampler.samples if s.seconds == latest)
    print(
        f"  {elapsed / 60:5.1f} min: {len(done)} requests in the last minute, "
        f"{sum(1 for r in done if r.error)} errors, p95 {percentile(good, 0.95):.0f} ms, "
        f"load {os.getloadavg()[0]:.1f}, RSS of the processes {rss:.0f} MiB",
        flush=True,
    )


def sigterm_handler(signum: int, frame: Any) -> None:
    raise Interrupted


def main() -> int:
    options = arguments()
    signal.signal(signal.SIGTERM, sigterm_handler)
    # Ctrl-C stops the soak even when a shell started it in the background (with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if not port_free(options.port):
        sys.exit(f"port {options.port} is taken: give another with --port")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    logs = WORKDIR / "logs" / stamp
    logs.mkdir(parents=True, exist_ok=True)
    services: list[Service] = []
    try:
        print(f"setup (logs in {logs.relative_to(ROOT)})")
        world, credentials = setup(options, logs, services)
        run = traffic(options, world, credentials, services, stamp)
        passed, rows = report_build(run, logged_errors(services))
        paths = results_write(run, rows)
        print("\n" + "\n".join(run.lines))
        print("\nwritten: " + ", ".join(str(path.relative_to(ROOT)) for path in paths))
        if run.interrupted:
            return 130
        return 0 if passed else 1
    except SoakError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Interrupted):
        print("interrupted during the setup: stopping the services")
        return 130
    finally:
        # Beat first (it sends work), then the web, then the worker (it finishes what it holds), then
        # the broker and cache.
        order = {"celery beat": 0, "gunicorn": 1, "celery worker": 2, "redis-server": 3}
        for service in sorted(services, key=lambda s: order.get(s.name, 9)):
            service.stop()


if __name__ == "__main__":
    sys.exit(main())
