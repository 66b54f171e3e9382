"""APM's load scenarios, each bounded and headless: ``make loadtest SCENARIO=smoke|load|stress|soak``.

    .venv/bin/python loadtests/scenario.py smoke                  # 4 users, 25 s; fails on any error (CI)
    .venv/bin/python loadtests/scenario.py load [--minutes 3]     # 50 users, the guide's 1-5 s waits
    .venv/bin/python loadtests/scenario.py stress                 # users in steps until the knee
    .venv/bin/python loadtests/scenario.py soak [--minutes 30]    # constant load; memory and p95 flat

Each run starts APM as deployed, on 127.0.0.1 (the stack of benchmarks/soak.py): a redis-server of its
own on a free port (database 0 the Celery broker, 1 the cache), gunicorn with gunicorn.conf.py and the
production settings (2 workers x 4 threads), a Celery worker, and a scratch PostgreSQL database
(``--database-url``, dropped and created afresh) migrated and seeded with the demo portfolio. Two
generated git repositories are registered and ingested before the traffic (the integration lists their
commits) and two more are there for the integration to register and ingest during it. Everything is
stopped at the end, on a failure and on Ctrl-C.

The traffic is loadtests/locustfile.py's two users (the guide's person and an integration), run by
Locust from its own virtualenv (.venv-loadtest). Meanwhile the CPU and memory of every process are
sampled every 10 s and /metrics is read (cache lookups, the database pool). The load scenario then
measures the project summary against a constant-JSON view (``/loadtest/baseline``) with ``ab -c 8``.

Written to var/loadtest/<scenario>/: report.md, report.html (charts), result.json, Locust's CSVs
(locust_*.csv, with the full history), processes.csv, metrics.csv and the processes' logs. The exit
status is 1 when a target failed, 2 when the setup failed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import soak  # noqa: E402
from benchmarks.pages import DEMO_PASSWORD, manage, request  # noqa: E402
from loadtests import report  # noqa: E402

LOCUST = ROOT / ".venv-loadtest" / "bin" / "locust"
OUT = ROOT / "var" / "loadtest"
WORK = OUT / "work"
SUMMARY_PROJECT = "APM"
PROJECTS = ["APM", "FIELD", "DATA", "SSO", "BILL"]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenario", nargs="?", default="smoke", choices=sorted(report.TARGETS))
    parser.add_argument("--minutes", type=float, help="Traffic (load: 3, soak: 30; smoke and stress: fixed).")
    parser.add_argument("--users", type=int, help="Users (smoke 4, load 50, soak 20; stress: the steps).")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/apm_loadtest")
    parser.add_argument("--port", type=int, default=0, help="gunicorn's port (default: a free one).")
    parser.add_argument("--ab-requests", type=int, default=1000, help="Requests of each ab run (load).")
    parser.add_argument("--ab-rounds", type=int, default=3, help="ab runs of each path, alternately (load).")
    options = parser.parse_args()
    defaults = {"smoke": (25 / 60, 4), "load": (3.0, 50), "stress": (10.0, 0), "soak": (30.0, 20)}
    minutes, users = defaults[options.scenario]
    options.minutes = minutes if options.minutes is None else options.minutes
    options.users = users if options.users is None else options.users
    if not 0.1 <= options.minutes <= soak.MAX_MINUTES:
        parser.error(f"--minutes: give 0.1 to {soak.MAX_MINUTES}")
    if options.scenario != "stress" and not 1 <= options.users <= 500:
        parser.error("--users: give 1 to 500")
    if not re.fullmatch(r"postgres(ql)?://.+/\w+", options.database_url):
        parser.error(
            "--database-url: a PostgreSQL URL ending in a database name (it is dropped and made anew)"
        )
    return options


# --- Setup --------------------------------------------------------------------------------------------


def database_recreate(url: str) -> None:
    """A scratch database: whatever a previous run left is dropped first."""
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def static_fingerprint() -> str:
    """What the collected static files are made of: APM's own static files (path, size, time) and the
    pinned requirements (the admin's and the API's files come from the packages)."""
    digest = hashlib.sha256()
    for requirements in sorted((ROOT / "requirements").glob("*.txt")):
        digest.update(requirements.read_bytes())
    for directory in sorted(ROOT.glob("*/static")):
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                stat = path.stat()
                digest.update(f"{path.relative_to(ROOT)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def static_collect(env: dict[str, str], logs: Path, services: list[soak.Service]) -> str | None:
    """collectstatic started in the background (it needs no database: it runs beside the migrations and
    the seeding) unless the files collected by an earlier run are of the same sources, since whitenoise
    compresses every file again on each collectstatic, which takes minutes on busy shared cores. The
    fingerprint to record once it has finished (static_wait), or None when nothing was started."""
    stamp = WORK / "static.fingerprint"
    fingerprint = static_fingerprint()
    manifest = WORK / "static" / "staticfiles.json"
    if manifest.exists() and stamp.exists() and stamp.read_text() == fingerprint:
        return None
    stamp.unlink(missing_ok=True)
    argv = [soak.PYTHON, str(ROOT / "manage.py"), "collectstatic", "--noinput", "-v0"]
    # Among the services until it has finished, so that a failed setup or Ctrl-C stops it too.
    services.append(soak.service_start("collectstatic", argv, env=env, log=logs / "collectstatic.log"))
    return fingerprint


def static_wait(fingerprint: str | None, services: list[soak.Service]) -> None:
    collecting = next((s for s in services if s.name == "collectstatic"), None)
    if fingerprint is None or collecting is None:
        return
    status = collecting.process.wait()
    services.remove(collecting)
    if status:
        raise soak.SoakError(f"collectstatic failed:\n{soak.tail(collecting.log)}")
    (WORK / "static.fingerprint").write_text(fingerprint)


def setup(options: argparse.Namespace, logs: Path, services: list[soak.Service]) -> dict[str, Any]:
    """APM started, seeded and with repositories ingested; what the traffic needs to know."""
    started = time.monotonic()
    redis_url = soak.redis_start(logs, services)
    database_recreate(options.database_url)
    metrics_token = secrets.token_hex(32)
    env = soak.stack_env(
        database_url=options.database_url,
        workdir=WORK,
        redis_url=redis_url,
        extra={"APM_METRICS_TOKEN": metrics_token, "APM_LOADTEST_BASELINE": "true"},
    )
    pending_static = static_collect(env, logs, services)
    manage(env, "migrate", "--noinput", "-v0")
    print(f"  manage.py migrate: {time.monotonic() - started:.0f} s", flush=True)
    manage(env, "seed_demo", "--allow-production", "--no-login")
    write_token = manage(env, "create_api_token", "admin", "--name", "load test", "--scope", "write").strip()
    read_token = manage(
        env, "create_api_token", "admin", "--name", "load test (read)", "--scope", "read"
    ).strip()
    generated = argparse.Namespace(repositories=4, commits=400)
    repositories = soak.repositories_generate(
        generated, PROJECTS, root=WORK / "repos", prefix="loadtest", file_count=120
    )
    ingested, sources = repositories[:2], repositories[2:]
    static_wait(pending_static, services)
    print(f"  static files: {time.monotonic() - started:.0f} s", flush=True)
    stack = argparse.Namespace(port=options.port, workers=2, threads=4, concurrency=2)
    soak.apm_start(stack, env, logs, services, workdir=WORK, beat=False)
    session, csrf = soak.session_login(options.port, "admin", DEMO_PASSWORD)
    client = soak.Client(options.port, soak.Recorder(time.monotonic()), read_token, session, csrf)
    print(f"  APM answering: {time.monotonic() - started:.0f} s", flush=True)
    soak.repositories_register(client, ingested, services)
    note = soak.statistics_ensure(options.database_url)
    notes = [note.replace("the soak ran", "the scenario ran")] if note else []
    print(f"  setup done in {time.monotonic() - started:.0f} s")
    return {
        "write_token": write_token,
        "read_token": read_token,
        "metrics_token": metrics_token,
        "repositories": [str(r.id) for r in ingested],
        "sources": [str(r.path) for r in sources],
        "notes": notes,
    }


# --- Sampling -----------------------------------------------------------------------------------------


def metrics_scrape(port: int, token: str) -> report.Series:
    answer = request("127.0.0.1", port, "GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
    if answer.status != 200:
        raise soak.SoakError(f"/metrics answered {answer.status}: {answer.body[:200]!r}")
    return report.metrics_parse(answer.body.decode())


class Watcher:
    """The processes' CPU and memory (benchmarks/soak.py's sampler) and the web's /metrics, every 10 s."""

    def __init__(self, services: list[soak.Service], port: int, token: str) -> None:
        self.started = time.monotonic()
        self.sampler = soak.Sampler(services, self.started)
        self.port, self.token = port, token
        self.pool: list[report.PoolSample] = []
        self.metrics_rows: list[list[Any]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def sample(self) -> None:
        self.sampler.sample()
        seconds = time.monotonic() - self.started
        try:
            series = metrics_scrape(self.port, self.token)
        except (OSError, soak.SoakError):
            return
        self.pool.append(report.pool_sample(seconds, series))
        for (name, labels), value in series.items():
            if name.startswith(("apm_cache_lookups", "apm_db_pool")):
                self.metrics_rows.append([f"{seconds:.1f}", name, json.dumps(dict(labels)), value])

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(soak.SAMPLE_SECONDS)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.sample()


# --- Traffic ------------------------------------------------------------------------------------------


def locust_run(options: argparse.Namespace, world: dict[str, Any], out: Path) -> tuple[int, float]:
    """Locust, headless, until its time (or the stress shape) ends it; (exit status, seconds)."""
    scenario = options.scenario
    env = {
        **os.environ,
        "APM_LOADTEST_TOKEN": world["write_token"],
        "APM_LOADTEST_PROJECTS": ",".join(PROJECTS),
        "APM_LOADTEST_REPOSITORIES": ",".join(world["repositories"]),
        "APM_LOADTEST_SOURCES": ",".join(world["sources"]),
        "APM_LOADTEST_WAIT": {"smoke": "0.5,2", "stress": "0,0.5"}.get(scenario, "1,5"),
        # In the few seconds of smoke every integration registers and ingests at least once or twice.
        "APM_LOADTEST_REGISTER_WEIGHT": "6" if scenario == "smoke" else "1",
        "APM_LOADTEST_KNEE": str(out / "knee.json"),
    }
    files = "loadtests/locustfile.py" + (",loadtests/stress_shape.py" if scenario == "stress" else "")
    argv = [str(LOCUST), "-f", files, "--host", f"http://127.0.0.1:{options.port}", "--headless"]
    argv += ["--csv", str(out / "locust"), "--csv-full-history", "--only-summary", "--stop-timeout", "10"]
    argv += ["--exit-code-on-error", "0", "--loglevel", "WARNING"]
    if scenario != "stress":
        spawn = max(1, min(10, options.users))
        argv += [
            "--users",
            str(options.users),
            "--spawn-rate",
            str(spawn),
            "-t",
            f"{round(options.minutes * 60)}s",
        ]
    print(f"traffic: {' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    with (out / "locust.log").open("w") as log:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            status = process.wait()
        except BaseException:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
            raise
    return status, time.monotonic() - started


def ab_rps(url: str, requests: int, headers: list[str]) -> tuple[float, str | None]:
    """ab -c 8 against ``url``: (requests per second, the problem when a request failed or was not 2xx)."""
    argv = ["ab", "-q", "-c", "8", "-n", str(requests)]
    for header in headers:
        argv += ["-H", header]
    result = subprocess.run([*argv, url], capture_output=True, text=True, check=False)
    rps = re.search(r"Requests per second:\s+([\d.]+)", result.stdout)
    if result.returncode or not rps:
        return 0.0, f"ab {url}: exit {result.returncode}: {(result.stderr or result.stdout)[-300:]}"
    problems = [
        f"{label} {count}"
        for label, count in re.findall(r"(Failed requests|Non-2xx responses):\s+(\d+)", result.stdout)
        if int(count)
    ]
    return float(rps.group(1)), (f"ab {url}: " + ", ".join(problems)) if problems else None


def baseline_measure(
    options: argparse.Namespace, world: dict[str, Any]
) -> tuple[dict[str, Any] | None, list[str]]:
    """The project summary against /loadtest/baseline under the same server, alternately
    ``--ab-rounds`` times each, best of each (the other work of a shared machine only ever slows a run)."""
    base = f"http://127.0.0.1:{options.port}"
    probe = request("127.0.0.1", options.port, "GET", "/loadtest/baseline")
    if probe.status != 200:
        return None, [f"/loadtest/baseline answered {probe.status}"]
    summary_path = f"/api/v1/projects/{SUMMARY_PROJECT}/summary/"
    token = [f"Authorization: Token {world['read_token']}", "Accept: application/json"]
    runs: dict[str, list[float]] = {"summary": [], "baseline": []}
    problems = []
    for _ in range(options.ab_rounds):
        for name, path, headers in (("summary", summary_path, token), ("baseline", "/loadtest/baseline", [])):
            rps, problem = ab_rps(base + path, options.ab_requests, headers)
            runs[name].append(rps)
            if problem:
                problems.append(problem)
            print(f"  ab -c 8 -n {options.ab_requests} {path}: {rps:.1f} req/s", flush=True)
    summary_rps, baseline_rps = max(runs["summary"]), max(runs["baseline"])
    return {
        "summary_rps": summary_rps,
        "baseline_rps": baseline_rps,
        "ratio": round(summary_rps / baseline_rps, 3) if baseline_rps else 0.0,
        "summary_path": summary_path,
        "requests": options.ab_requests,
        "summary_runs": runs["summary"],
        "baseline_runs": runs["baseline"],
    }, problems


# --- The run ------------------------------------------------------------------------------------------


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def run(options: argparse.Namespace, out: Path, logs: Path, services: list[soak.Service]) -> int:
    code_version = soak.code_version()  # of the code that runs, not of a commit made meanwhile
    world = setup(options, logs, services)
    watcher = Watcher(services, options.port, world["metrics_token"])
    before = metrics_scrape(options.port, world["metrics_token"])
    watcher.thread.start()
    status, seconds = locust_run(options, world, out)
    watcher.finish()
    after = metrics_scrape(options.port, world["metrics_token"])
    if status not in (0, 1):
        raise soak.SoakError(f"locust exited {status}:\n{soak.tail(out / 'locust.log')}")
    baseline, ab_problems = baseline_measure(options, world) if options.scenario == "load" else (None, [])
    for service in services:
        service.died = service.died or service.process.poll() is not None

    endpoints, total = report.endpoints_read(out / "locust_stats.csv")
    points = report.history_read(out / "locust_stats_history.csv")
    warmup = min(300.0, max(20.0, seconds / 6)) if options.scenario == "soak" else 0.0
    memory = soak.memory_rows(watcher.sampler.samples, watcher.sampler.judged, warmup, seconds)
    knee_path = out / "knee.json"
    knee = json.loads(knee_path.read_text()) if knee_path.exists() else None
    other = [f"{s.name} exited ({s.process.returncode})" for s in services if s.died]
    other += [
        f"{name} logged {len(lines)} errors: {lines[0][:200]}"
        for name, lines in soak.logged_errors(services).items()
    ]
    verdicts = []
    if options.scenario in ("smoke", "load", "soak"):
        verdicts.append(report.verdict_errors(total, other + ab_problems))
    if options.scenario == "load":
        verdicts += [report.verdict_p95(total), report.verdict_ratio(baseline)]
    if options.scenario == "stress":
        verdicts.append(report.verdict_knee(knee))
    if options.scenario == "soak":
        verdicts += [report.verdict_memory(memory), report.verdict_p95_stable(points, warmup)]
    loads = [value for _, value in watcher.sampler.load]
    outcome = report.Outcome(
        scenario=options.scenario,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        code_version=code_version,
        command=f"make loadtest SCENARIO={options.scenario}"
        + (f" LOADTEST_ARGS='--minutes {options.minutes:g}'" if options.scenario in ("load", "soak") else ""),
        setup_notes=world["notes"],
        endpoints=endpoints,
        total=total,
        seconds=seconds,
        verdicts=verdicts,
        points=points,
        samples=watcher.sampler.samples,
        memory=memory,
        pool=watcher.pool,
        lookups=report.cache_lookups(before, after),
        knee=knee,
        baseline=baseline,
        failures=report.failures_read(out / "locust_failures.csv"),
        load_average=round(sum(loads) / len(loads), 2) if loads else None,
    )
    (out / "result.json").write_text(json.dumps(report.result_json(outcome), indent=2) + "\n")
    (out / "report.md").write_text(report.markdown(outcome))
    (out / "report.html").write_text(report.html_report(outcome))
    write_csv(
        out / "processes.csv",
        ["seconds", "process", "pid", "rss_mib", "cpu_percent"],
        [
            [f"{s.seconds:.1f}", s.process, s.pid, f"{s.rss_mib:.2f}", f"{s.cpu_percent:.1f}"]
            for s in outcome.samples
        ],
    )
    write_csv(out / "metrics.csv", ["seconds", "metric", "labels", "value"], watcher.metrics_rows)
    print("\n" + report.markdown(outcome))
    print(f"written: {out.relative_to(ROOT)}/ (report.md, report.html, result.json, CSVs, logs)")
    return 0 if outcome.passed else 1


def main() -> int:
    options = arguments()
    signal.signal(signal.SIGTERM, soak.sigterm_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if not LOCUST.exists():
        sys.exit(f"{LOCUST.relative_to(ROOT)} is missing: make .venv-loadtest/.installed")
    if shutil.which("ab") is None and options.scenario == "load":
        sys.exit("ab (Debian's apache2-utils) is missing: the load scenario measures the summary with it")
    options.port = options.port or soak.free_port()
    if not soak.port_free(options.port):
        sys.exit(f"port {options.port} is taken: give another with --port")
    out = OUT / options.scenario
    shutil.rmtree(out, ignore_errors=True)
    logs = out / "logs"
    logs.mkdir(parents=True)
    services: list[soak.Service] = []
    started = time.monotonic()
    try:
        print(f"{options.scenario}: setup (logs in {logs.relative_to(ROOT)})", flush=True)
        return run(options, out, logs, services)
    except soak.SoakError as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, soak.Interrupted):
        print("interrupted: stopping the services")
        return 130
    finally:
        order = {"gunicorn": 1, "celery worker": 2, "redis-server": 3}
        for service in sorted(services, key=lambda s: order.get(s.name, 9)):
            service.stop()
        print(f"{options.scenario}: {time.monotonic() - started:.0f} s in all, setup included")


if __name__ == "__main__":
    sys.exit(main())
