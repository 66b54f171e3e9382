"""What one API request costs the web process in CPU, against a view with nothing to do.

    .venv/bin/python benchmarks/request_cost.py                 # the project summary and two lists
    .venv/bin/python benchmarks/request_cost.py --profile       # and where the summary's time goes
    .venv/bin/python benchmarks/request_cost.py --profile "/api/v1/tasks/?project=APM"

The requests go through the whole stack in-process (Django's test client: every middleware, DRF, the
database pool, Redis), with the production settings on PostgreSQL and Redis, signed with a read token of
the demo admin, on the demo data (``seed_demo``) in the scratch database ``apm_bench_request_cost``
(made once, reused). Each path is asked ``--requests`` times, three rounds, and the best round's CPU time
per request of this process (``time.process_time``: the time the process computed, not the time it
waited) is printed, with its ratio to ``/loadtest/baseline``, a view that answers a constant JSON behind
the same middleware. CPU time holds still on a busy machine where requests per second do not: the
throughput through gunicorn is measured by the load scenario (``make loadtest SCENARIO=load``).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import database_row  # noqa: E402
from benchmarks.pages import PYTHON, server_env  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/apm_bench_request_cost"
PATHS = [
    "/loadtest/baseline",
    "/healthz",
    "/api/v1/projects/APM/summary/",
    "/api/v1/tasks/?project=APM",
    "/api/v1/projects/",
]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument(
        "--profile", nargs="?", const=PATHS[2], metavar="PATH", help="profile PATH (the summary) in CPU time"
    )
    return parser.parse_args()


def prepare(options: argparse.Namespace, env: dict[str, str]) -> str:
    """The scratch database migrated and seeded (once), and a fresh read token of the demo admin."""
    import psycopg

    base, name = options.database_url.rsplit("/", 1)
    if database_row(options.database_url, "SELECT 1") is None:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')

    def manage(*args: str) -> str:
        command = [PYTHON, str(ROOT / "manage.py"), *args]
        return subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True, text=True).stdout

    manage("migrate", "--noinput", "-v0")
    if database_row(options.database_url, "SELECT 1 FROM projects WHERE key = 'APM'") is None:
        manage("seed_demo", "--allow-production", "--no-login")
    return manage("create_api_token", "admin", "--name", "request cost", "--scope", "read").strip()


def cpu_per_request(client: object, path: str, requests: int) -> float:
    get = client.get  # type: ignore[attr-defined]
    for _ in range(50):  # warm: the pool's connections, the cache's entries, the token remembered
        response = get(path)
    if response.status_code != 200:
        sys.exit(f"{path} answered {response.status_code}: {response.content[:300]!r}")
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(requests):
            get(path)
        best = min(best, (time.process_time() - started) / requests * 1000)
    return best


def main() -> None:
    options = arguments()
    static_root = ROOT / "var" / "bench-request-cost-static"
    static_root.mkdir(parents=True, exist_ok=True)  # whitenoise's, empty: no static file is asked for
    env = server_env(
        database_url=options.database_url,
        static_root=static_root,
        extra={
            "REDIS_URL": options.redis_url,
            "APM_LOADTEST_BASELINE": "true",
            "APM_API_RATE_USER": "1000000/min",
            "DJANGO_ALLOWED_HOSTS": "testserver",
            "DJANGO_LOG_LEVEL": "ERROR",
        },
    )
    token = prepare(options, env)
    os.environ.update(env)
    import django

    django.setup()
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Token {token}", HTTP_ACCEPT="application/json")
    figures = {path: cpu_per_request(client, path, options.requests) for path in PATHS}
    baseline = figures[PATHS[0]]
    print(f"CPU per request, best of 3 rounds of {options.requests} (load average {os.getloadavg()[0]:.1f})")
    for path, ms in figures.items():
        print(f"  {path:40s} {ms:6.3f} ms   baseline/this {baseline / ms:5.2f}")
    if options.profile:
        profile = cProfile.Profile(time.process_time)
        profile.enable()
        for _ in range(options.requests):
            client.get(options.profile)
        profile.disable()
        pstats.Stats(profile).sort_stats(os.environ.get("APM_PROFILE_SORT", "cumulative")).print_stats(40)


if __name__ == "__main__":
    main()
