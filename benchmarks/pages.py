"""The pages people look at, served by gunicorn: cached against uncached under load, and Lighthouse.

    .venv/bin/python benchmarks/pages.py                      # both parts; the portfolio is built once
    .venv/bin/python benchmarks/pages.py --rebuild            # generate the portfolio again first
    .venv/bin/python benchmarks/pages.py --skip-lighthouse    # load only (or --skip-load)
    .venv/bin/python benchmarks/pages.py --no-check           # print the figures, exit 0 whatever they are

Load (``/dashboard``, project pages ``/projects/<KEY>/?window=...`` and repository pages
``/repositories/<id>/``, each with the panels it loads after first paint): the generated portfolio of
benchmarks/portfolio.py (50 projects, 50,000 tasks, 500,000 commits in ``apm_bench_pages``) is served
by gunicorn with the production settings (``--workers`` processes of ``--threads`` threads, static files
collected and served by whitenoise), PostgreSQL and Redis, twice:

  (a) cached: Redis database ``--redis-url`` (flushed first; nothing else of it is touched);
  (b) uncached: ``APM_CACHE=none`` (every read computes; the baseline, measured in the same run).

A browser's requests are replayed: the page, then each ``<section data-panel data-src>`` fragment the page
names. The pages are those of ``--pages`` projects (each at every ``--windows`` window) and of one
repository of each, and the dashboard of two people: ``bench`` (member of every project) and
``bench-few`` (member of three). Every URL is requested once to warm up (the first, cold figures are
printed but not compared), then ``--rounds`` times in a shuffled order by ``--clients`` concurrent
clients with keep-alive connections. Printed per kind of URL and overall: requests, errors, p50, p95,
requests per second, and the ratio of uncached to cached p95. The check: no errors, and the overall
uncached p95 at least 10 times the cached p95.

Lighthouse 12.2.3 (benchmarks/package.json, installed by ``npm ci --prefix benchmarks`` when missing)
with Debian's Chromium, on the demo data (``manage.py migrate`` and ``seed_demo`` on a scratch SQLite
file, plus a small generated repository ingested into the first demo project when the demo has none),
served by gunicorn with the production settings (hashed, compressed static files; DEBUG off, no debug
toolbar), signed in as the demo admin: the dashboard, a project page and a repository page, with
Lighthouse's default (mobile) settings, ``--lighthouse-runs`` times each (the report with the median
performance score counts: that score moves with the machine's load). Prints performance, accessibility
and best practices for each, and every audit of those categories that did not pass. The check: each
score at least 95.

Client, server, PostgreSQL and Redis share the machine's cores: the figures are for this machine only,
and the ratio compares two runs made the same way.
"""

from __future__ import annotations

import argparse
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
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import portfolio as portfolio_module  # noqa: E402
from benchmarks.portfolio import FEW_USERNAME, PASSWORD, USERNAME, Portfolio, sizes_add  # noqa: E402
from benchmarks.repogen import history_stream, repository_create  # noqa: E402

PYTHON = str(ROOT / ".venv" / "bin" / "python")
GUNICORN = str(ROOT / ".venv" / "bin" / "gunicorn")
NODE_DIR = ROOT / "benchmarks" / "node_modules"
LIGHTHOUSE = NODE_DIR / "lighthouse" / "cli" / "index.js"
LIGHTHOUSE_VERSION = "12.2.3"
CHROMIUM = "/usr/bin/chromium"
# The server's key: fixed, so that the sessions this process writes into the database are valid there.
SECRET_KEY = "apm-bench-pages-not-a-secret"  # noqa: S105
CATEGORIES = ("performance", "accessibility", "best-practices")
MIN_SCORE = 95
MIN_RATIO = 10.0
DEMO_PASSWORD = "apm-demo"  # noqa: S105 (seed_demo's documented default)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sizes_add(parser)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12", help="Flushed before (a).")
    parser.add_argument("--port", type=int, default=8797)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes (the image's default).")
    parser.add_argument("--threads", type=int, default=4, help="Threads a process (the image's default).")
    parser.add_argument("--clients", type=int, default=4, help="Concurrent clients.")
    parser.add_argument("--rounds", type=int, default=20, help="Timed requests of every URL.")
    parser.add_argument("--pages", type=int, default=3, help="Projects whose pages are requested.")
    parser.add_argument("--windows", default="90,365", help="Windows of the project pages.")
    parser.add_argument(
        "--lighthouse-runs", type=int, default=3, help="Reports a page; the median performance one counts."
    )
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-lighthouse", action="store_true")
    parser.add_argument("--no-check", action="store_true", help="Print the figures only; exit 0.")
    return parser.parse_args()


# --- The server ---------------------------------------------------------------------------------------


def server_env(*, database_url: str, static_root: Path, extra: dict[str, str]) -> dict[str, str]:
    """Production settings on 127.0.0.1 over plain HTTP (TLS would end at the ingress)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_", "APM_", "REDIS_", "CELERY_", "CACHE_"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "DJANGO_SECRET_KEY": SECRET_KEY,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "DJANGO_LOG_LEVEL": "WARNING",
            "DJANGO_STATIC_ROOT": str(static_root),
            "DATABASE_URL": database_url,
            # Production refuses to start without a broker; the pages measured queue nothing.
            "CELERY_BROKER_URL": "redis://127.0.0.1:6379/14",
            "DATABASE_POOL_SIZE": "4",
            "DATABASE_MAX_OVERFLOW": "4",
            **extra,
        }
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,  # the failure is reported below, with manage.py's own message
    )
    if result.returncode:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


@contextmanager
def gunicorn(env: dict[str, str], *, port: int, workers: int, threads: int, log: Path) -> Iterator[None]:
    """gunicorn as the image runs it (gunicorn.conf.py), on 127.0.0.1:``port``, until the block ends."""
    with log.open("w") as output:
        server = subprocess.Popen(
            [
                GUNICORN,
                "--config",
                "gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--access-logfile",
                "/dev/null",
                "config.wsgi:application",
            ],
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                sys.exit(f"gunicorn exited ({server.returncode}); its log:\n{log.read_text()[-3000:]}")
            try:
                if request("127.0.0.1", port, "GET", "/healthz").status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                sys.exit(f"gunicorn did not answer /healthz within 60 s; its log:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def request(
    host: str,
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    connection: http.client.HTTPConnection | None = None,
) -> Answer:
    own = connection is None
    connection = connection or http.client.HTTPConnection(host, port, timeout=120)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        if own:
            connection.close()


def cookies_of(answer: Answer) -> dict[str, str]:
    """The cookies an answer sets. Read by hand: they are ``Secure`` (production settings), and a
    standard cookie jar would not send them back over the plain HTTP of 127.0.0.1."""
    found = {}
    for header in answer.headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        found[name.strip()] = rest.split(";", 1)[0]
    return found


def admin_login(port: int, username: str, password: str) -> str:
    """Sign in through the admin's login form, as a person would; return the session cookie."""
    form = request("127.0.0.1", port, "GET", "/admin/login/")
    csrf_cookie = cookies_of(form)["csrftoken"]
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', form.body)
    if not match:
        sys.exit("no CSRF token in the admin login form")
    answer = request(
        "127.0.0.1",
        port,
        "POST",
        "/admin/login/?next=/dashboard",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={csrf_cookie}",
            "Origin": f"http://127.0.0.1:{port}",
            "Referer": f"http://127.0.0.1:{port}/admin/login/",
        },
        body=urlencode(
            {"username": username, "password": password, "csrfmiddlewaretoken": match.group(1).decode()}
        ).encode(),
    )
    session = cookies_of(answer).get("sessionid")
    if answer.status != 302 or not session:
        sys.exit(f"signing in as {username} failed ({answer.status}): {answer.body[:300]!r}")
    return session


def session_make(username: str) -> str:
    """A session for ``username`` written straight into the database (``bench-few`` is not staff, so
    the admin's form would refuse it); valid for the server, which shares SECRET_KEY."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    user = get_user_model().objects.get(username=username)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    assert session.session_key is not None
    return session.session_key


class _Panels(HTMLParser):
    """The fragments a page loads after first paint: ``<section data-panel=... data-src=...>``."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("data-panel") and values.get("data-src"):
            self.found.append((values["data-panel"] or "", values["data-src"] or ""))


def panels_of(body: bytes) -> list[tuple[str, str]]:
    parser = _Panels()
    parser.feed(body.decode("utf-8", "replace"))
    return parser.found


# --- Load ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One URL a browser requests, as who, and the kind of URL its figures are added to."""

    kind: str
    path: str
    session: str


@dataclass
class Phase:
    """The requests of one server configuration."""

    name: str
    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    cold: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    seconds: float = 0.0
    error_examples: list[str] = field(default_factory=list)


def targets_discover(
    port: int, portfolio: Portfolio, options: argparse.Namespace, sessions: dict[str, str]
) -> tuple[list[Target], list[str]]:
    """The URLs of the benchmark, the panels read from each page as a browser reads them; and the pages
    that did not answer 200 (not measured)."""
    main = sessions[USERNAME]
    # Projects spread over the portfolio; the repository pages are of the projects' repositories.
    step = max(1, len(portfolio.project_keys) // options.pages)
    keys = portfolio.project_keys[::step][: options.pages]
    windows = [window.strip() for window in options.windows.split(",") if window.strip()]
    pages = [
        ("dashboard (member of all)", "/dashboard", main),
        ("dashboard (member of 3)", "/dashboard", sessions[FEW_USERNAME]),
    ]
    pages += [
        ("project page", f"/projects/{key}/?window={window}", main) for key in keys for window in windows
    ]
    pages += [("repository page", f"/repositories/{pk}/", main) for pk in _repositories_of(keys)]
    targets: list[Target] = []
    missing: list[str] = []
    for kind, path, session in pages:
        answer = request("127.0.0.1", port, "GET", path, headers={"Cookie": f"sessionid={session}"})
        if answer.status != 200:
            print(f"  {path} answered {answer.status}: not measured")
            missing.append(path)
            continue
        targets.append(Target(kind, path, session))
        panels = panels_of(answer.body)
        if not panels and not kind.startswith("dashboard"):
            print(f"  {path}: no <section data-panel data-src> found")
        prefix = kind.split()[0]
        targets += [Target(f"{prefix} panel {name}", src, session) for name, src in panels]
    return targets, missing


def _repositories_of(keys: list[str]) -> list[int]:
    from repos.models import Repository

    first: dict[str, int] = {}
    for key, repository in (
        Repository.objects.filter(project__key__in=keys).order_by("id").values_list("project__key", "id")
    ):
        first.setdefault(key, repository)
    return [first[key] for key in keys if key in first]


def phase_run(name: str, port: int, targets: list[Target], options: argparse.Namespace) -> Phase:
    """Every target once (cold), then ``rounds`` times each, shuffled, from ``clients`` threads."""
    phase = Phase(name)

    def fetch(connection: http.client.HTTPConnection, target: Target) -> tuple[float, str | None]:
        started = time.perf_counter()
        try:
            answer = request(
                "127.0.0.1",
                port,
                "GET",
                target.path,
                headers={"Cookie": f"sessionid={target.session}"},
                connection=connection,
            )
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            return time.perf_counter() - started, f"{target.path}: {exc!r}"
        elapsed = time.perf_counter() - started
        if answer.status != 200:
            return elapsed, f"{target.path}: {answer.status} {answer.body[:120]!r}"
        return elapsed, None

    def record(bucket: dict[str, list[float]], target: Target, elapsed: float, error: str | None) -> None:
        with lock:
            if error is None:
                bucket[target.kind].append(elapsed)
                return
            phase.errors[target.kind] += 1
            if len(phase.error_examples) < 5:
                phase.error_examples.append(error)

    lock = threading.Lock()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for target in targets:
        record(phase.cold, target, *fetch(connection, target))
    connection.close()

    jobs = [target for target in targets for _ in range(options.rounds)]
    random.Random(7).shuffle(jobs)
    position = iter(range(len(jobs)))

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                index = next(position, None)
            if index is None:
                break
            target = jobs[index]
            record(phase.samples, target, *fetch(connection, target))
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(options.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.seconds = time.perf_counter() - started
    return phase


def percentile(values: list[float], share: float) -> float:
    """The ``share`` percentile (nearest rank), in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))] * 1000


def load_report(cached: Phase, uncached: Phase, kinds: list[str]) -> tuple[float, int]:
    """Print the table; return (overall p95 ratio, errors)."""
    print(
        f"\n{'':34} {'cached (a)':>40}   {'uncached (b)':>40}   {'b/a':>5}\n"
        f"{'kind of URL':34} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>7}   "
        f"{'requests':>8} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>7}   {'p95':>5}"
    )

    def columns(phase: Phase, values: list[float], errors: int) -> str:
        return (
            f"{len(values) + errors:8} {errors:6} {percentile(values, 0.5):8.1f} "
            f"{percentile(values, 0.95):8.1f} {len(values) / phase.seconds:7.1f}"
        )

    for kind in kinds:
        a, b = cached.samples[kind], uncached.samples[kind]
        ratio = percentile(b, 0.95) / percentile(a, 0.95) if a and b else float("nan")
        print(
            f"{kind:34} {columns(cached, a, cached.errors[kind])}   "
            f"{columns(uncached, b, uncached.errors[kind])}   {ratio:5.1f}"
        )
    every_a = [value for values in cached.samples.values() for value in values]
    every_b = [value for values in uncached.samples.values() for value in values]
    errors = sum(cached.errors.values()) + sum(uncached.errors.values())
    ratio = percentile(every_b, 0.95) / percentile(every_a, 0.95)
    print(
        f"{'overall':34} {columns(cached, every_a, sum(cached.errors.values()))}   "
        f"{columns(uncached, every_b, sum(uncached.errors.values()))}   {ratio:5.1f}"
    )
    cold_a = [value for values in cached.cold.values() for value in values]
    cold_b = [value for values in uncached.cold.values() for value in values]
    print(
        "\nwarm-up, each URL once, one client (not compared): "
        f"cached run {statistics.median(cold_a) * 1000:.1f} ms median, {max(cold_a) * 1000:.0f} ms "
        f"slowest; uncached run {statistics.median(cold_b) * 1000:.1f} ms median, "
        f"{max(cold_b) * 1000:.0f} ms slowest"
    )
    for phase in (cached, uncached):
        for example in phase.error_examples:
            print(f"  error ({phase.name}): {example}")
    return ratio, errors


def load_benchmark(options: argparse.Namespace, workdir: Path) -> bool:
    """Part one; True when its check passes."""
    import redis

    portfolio = portfolio_module.portfolio_ensure(
        url=options.database_url,
        projects=options.projects,
        tasks=options.tasks,
        commits=options.commits,
        rebuild=options.rebuild,
    )
    static_root = workdir / "static-load"
    base_env = server_env(database_url=options.database_url, static_root=static_root, extra={})
    manage(base_env, "collectstatic", "--noinput", "-v0")
    sessions = {FEW_USERNAME: session_make(FEW_USERNAME)}
    phases: list[Phase] = []
    targets: list[Target] = []
    missing: list[str] = []
    for name, extra in (
        ("cached (a)", {"REDIS_URL": options.redis_url}),
        ("uncached (b)", {"APM_CACHE": "none"}),
    ):
        if "REDIS_URL" in extra:
            redis.Redis.from_url(options.redis_url).flushdb()  # this benchmark's database only
        env = {**base_env, **extra}
        with gunicorn(
            env,
            port=options.port,
            workers=options.workers,
            threads=options.threads,
            log=workdir / "server.log",
        ):
            if USERNAME not in sessions:
                sessions[USERNAME] = admin_login(options.port, USERNAME, PASSWORD)
            if not targets:
                targets, missing = targets_discover(options.port, portfolio, options, sessions)
                print(
                    f"load: {len(targets)} URLs x {options.rounds} rounds, {options.clients} clients, "
                    f"gunicorn {options.workers} workers x {options.threads} threads"
                )
            print(f"{name}: running (load average {load_average()})")
            phases.append(phase_run(name, options.port, targets, options))
    kinds = list(dict.fromkeys(target.kind for target in targets))
    ratio, errors = load_report(phases[0], phases[1], kinds)
    passed = errors == 0 and ratio >= MIN_RATIO and not missing
    print(
        f"check: {errors} errors, {len(missing)} pages missing, uncached p95 / cached p95 = {ratio:.1f} "
        f"(at least {MIN_RATIO:.0f}): {'passed' if passed else 'FAILED'}"
    )
    return passed


# --- Lighthouse ---------------------------------------------------------------------------------------


def lighthouse_install() -> None:
    if not LIGHTHOUSE.exists():
        subprocess.run(
            ["npm", "ci", "--prefix", str(ROOT / "benchmarks"), "--no-audit", "--no-fund"], check=True
        )
    version = json.loads((NODE_DIR / "lighthouse" / "package.json").read_text())["version"]
    if version != LIGHTHOUSE_VERSION:
        sys.exit(
            f"benchmarks/node_modules holds lighthouse {version}, not {LIGHTHOUSE_VERSION}: npm ci again"
        )
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing: apt-get install -y chromium")


def django_print(env: dict[str, str], code: str) -> str:
    """What ``code`` prints, run by ``manage.py shell`` on ``env``'s database."""
    return manage(env, "shell", "-v0", "-c", code).strip()


def demo_prepare(env: dict[str, str], workdir: Path) -> list[tuple[str, str]]:
    """The demo data, and a repository with a history for the repository page when the demo has none;
    return the pages to audit."""
    started = time.perf_counter()
    manage(env, "migrate", "--noinput", "-v0")
    manage(env, "seed_demo", "--allow-production")
    first = "from projects.models import Project; print(Project.objects.order_by('id')[0].key)"
    if django_print(env, "from repos.models import Repository; print(Repository.objects.exists())") != "True":
        repository = repository_create(
            workdir / "repos" / "demo-app", history_stream(commits=1500, files=300)
        )
        manage(
            env, "ingest_repo", str(repository), "--project", django_print(env, first), "--name", "demo-app"
        )
    key, repository_id = django_print(
        env,
        "from repos.models import Repository; "
        "r = Repository.objects.order_by('id').select_related('project')[0]; print(r.project.key, r.id)",
    ).split()
    print(f"lighthouse: demo data ready in {time.perf_counter() - started:.0f} s")
    return [
        ("dashboard", "/dashboard"),
        ("project page", f"/projects/{key}/"),
        ("repository page", f"/repositories/{repository_id}/"),
    ]


def lighthouse_run(url: str, cookie: str, output: Path, *, attempts: int = 3) -> dict[str, Any]:
    """One Lighthouse report of ``url``; a run that fails to record the page (Chromium starved of CPU,
    ``NO_NAVSTART``) is tried again, up to ``attempts`` times."""
    for attempt in range(1, attempts + 1):
        output.unlink(missing_ok=True)
        result = subprocess.run(
            # The session in the browser's cookie jar, kept by Lighthouse: the pages' script fetches
            # their panels with it (benchmarks/lighthouse.mjs).
            ["node", str(ROOT / "benchmarks" / "lighthouse.mjs"), str(CHROMIUM), url, cookie, str(output)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,  # the failure is reported below, with lighthouse's own message
        )
        report = json.loads(output.read_text()) if output.exists() else {}
        if result.returncode == 0 and report and not report.get("runtimeError"):
            return report
        reason = report.get("runtimeError") or result.stderr.strip()[-2000:]
        print(f"  lighthouse on {url}, attempt {attempt} of {attempts}: {reason}")
    sys.exit(f"lighthouse failed on {url} {attempts} times")


def lighthouse_median(url: str, cookie: str, output: Path, runs: int) -> dict[str, Any]:
    """Of ``runs`` reports, the one with the median performance score (Lighthouse's own advice for a
    score that moves with the machine's load)."""
    reports = [lighthouse_run(url, cookie, output.with_suffix(f".{run}.json")) for run in range(runs)]
    reports.sort(key=lambda report: report["categories"]["performance"]["score"] or 0)
    return reports[len(reports) // 2]


def failing_audits(report: dict[str, Any]) -> list[str]:
    """Every audit of the categories that did not pass, with its weight and what it found."""
    lines = []
    for category in CATEGORIES:
        for ref in report["categories"][category]["auditRefs"]:
            audit = report["audits"][ref["id"]]
            score = audit.get("score")
            if score is None or score >= 1 or audit.get("scoreDisplayMode") in {"notApplicable", "manual"}:
                continue
            shown = f" ({audit['displayValue']})" if audit.get("displayValue") else ""
            items = audit.get("details", {}).get("items") or []
            example = ""
            if items and isinstance(items[0], dict):
                node = items[0].get("node") or {}
                example = (
                    node.get("snippet") or items[0].get("url") or items[0].get("source", {}).get("url", "")
                )
                example = f"; e.g. {str(example)[:140]}" if example else ""
            lines.append(
                f"{category}: {ref['id']} score {score:.2f} weight {ref.get('weight', 0)}: "
                f"{audit['title']}{shown}{example}"
            )
    return lines


def lighthouse_benchmark(options: argparse.Namespace, workdir: Path) -> bool:
    """Part two; True when every score is at least MIN_SCORE."""
    lighthouse_install()
    demo = workdir / "demo"
    demo.mkdir()
    env = server_env(
        database_url=f"sqlite:///{demo / 'demo.sqlite3'}",
        static_root=demo / "static",
        extra={"APM_REPO_ROOTS": str(workdir / "repos"), "APM_WORKSPACE": str(demo / "workspace")},
    )
    manage(env, "collectstatic", "--noinput", "-v0")
    urls = demo_prepare(env, workdir)
    port = options.port + 1
    passed = True
    rows = []
    benchmark_index = None
    with gunicorn(
        env, port=port, workers=options.workers, threads=options.threads, log=workdir / "demo-server.log"
    ):
        cookie = admin_login(port, "admin", DEMO_PASSWORD)
        for name, path in urls:
            url = f"http://127.0.0.1:{port}{path}"
            report = lighthouse_median(url, cookie, demo / name.replace(" ", "-"), options.lighthouse_runs)
            final = report.get("finalDisplayedUrl", url)
            scores = {
                category: round((report["categories"][category]["score"] or 0) * 100)
                for category in CATEGORIES
            }
            rows.append((name, path, scores, failing_audits(report), final))
            benchmark_index = report.get("environment", {}).get("benchmarkIndex")
    print(
        f"\nLighthouse {LIGHTHOUSE_VERSION}, Chromium, default (mobile) settings, demo data, median of "
        f"{options.lighthouse_runs} runs "
        f"(Lighthouse's CPU benchmark index {benchmark_index}, load average {load_average()}):"
    )
    print(f"{'page':18} {'URL':26} {'performance':>12} {'accessibility':>14} {'best practices':>15}")
    for name, path, scores, _failures, _final in rows:
        print(
            f"{name:18} {path:26} {scores['performance']:12} {scores['accessibility']:14} "
            f"{scores['best-practices']:15}"
        )
        passed = passed and all(score >= MIN_SCORE for score in scores.values())
    for name, path, _scores, failures, final in rows:
        if final.rstrip("/").split("://", 1)[-1].split("/", 1)[-1] != path.strip("/"):
            print(f"  {name}: Lighthouse ended on {final}, not {path}")
            passed = False
        for line in failures:
            print(f"  {name}: {line}")
    print(f"check: every score at least {MIN_SCORE}: {'passed' if passed else 'FAILED'}")
    return passed


def load_average() -> str:
    """The machine's 1-minute load average: other work on the same cores shows in every figure."""
    return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def main() -> None:
    options = arguments()
    for port in (options.port, options.port + 1):
        if not port_free(port):
            sys.exit(f"port {port} is taken: give another with --port")
    os.environ["DJANGO_SECRET_KEY"] = SECRET_KEY
    workdir = Path(tempfile.mkdtemp(prefix="apm-bench-pages-"))
    results = []
    try:
        if not options.skip_load:
            results.append(load_benchmark(options, workdir))
        if not options.skip_lighthouse:
            results.append(lighthouse_benchmark(options, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not options.no_check and not all(results):
        sys.exit(1)


if __name__ == "__main__":
    main()
