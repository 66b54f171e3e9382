"""/readyz and /metrics when the database accepts connections and never answers.

A real PgBouncer (tests/faults/test_pgbouncer.py) whose every server connection is held by
``SELECT pg_sleep(...)``: a new client connects at once, and its queries wait in PgBouncer's queue, as
they do when a busy deployment exhausts its pool. The web process (a real process on the test settings,
asked through Django's client) must answer /readyz 503 and /metrics within the probe's and the scrape's
bounds, and concurrent scrapes must not wait behind each other.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import psycopg
import pytest

from monitoring.deadline import DeadlineExceeded, call_within
from tests.faults.test_pgbouncer import SERVER_CONNECTIONS, PgBouncer, pgbouncer  # noqa: F401
from tests.processes import manage

# Kubernetes' readiness probe gives up after 3 s (k8s/): the answer must come before, with a margin for a
# loaded test machine.
BOUND_SECONDS = 3.5

ASK = """
import json, threading, time
from django.test import Client

def ask(path):
    started = time.monotonic()
    response = Client().get(path, HTTP_HOST="localhost")
    return [response.status_code, round(time.monotonic() - started, 2), response.content.decode()]

figures = {"readyz": ask("/readyz"), "metrics": ask("/metrics")}
from monitoring.collectors import scrape_caches_forget
scrape_caches_forget()
answers = []
scrapes = [threading.Thread(target=lambda: answers.append(ask("/metrics"))) for _ in range(4)]
started = time.monotonic()
for scrape in scrapes:
    scrape.start()
for scrape in scrapes:
    scrape.join()
figures["concurrent"] = [answer[:2] for answer in answers]
figures["concurrent_seconds"] = round(time.monotonic() - started, 2)
print(json.dumps(figures))
"""


def _select_one(url: str) -> object:
    with psycopg.connect(url, connect_timeout=2) as connection:
        return connection.execute("SELECT 1").fetchone()


@pytest.fixture
def hung(pgbouncer: PgBouncer) -> Iterator[PgBouncer]:  # noqa: F811
    """``pgbouncer`` with every server connection held by a long ``pg_sleep``."""
    holders = [psycopg.connect(pgbouncer.url, autocommit=True) for _ in range(SERVER_CONNECTIONS)]
    sleepers = [
        threading.Thread(target=_sleep, args=(holder,), daemon=True, name="pg_sleep") for holder in holders
    ]
    for sleeper in sleepers:
        sleeper.start()
    try:
        # The fault is real: a new client connects, and its SELECT 1 waits.
        with pytest.raises(DeadlineExceeded):
            call_within(2, lambda: _select_one(pgbouncer.url), name="select-one")
        yield pgbouncer
    finally:
        for holder in holders:
            holder.cancel_safe(timeout=5)
        for sleeper in sleepers:
            sleeper.join(timeout=10)
        for holder in holders:
            holder.close()


def _sleep(holder: psycopg.Connection) -> None:
    try:
        holder.execute("SELECT pg_sleep(60)")
    except psycopg.errors.QueryCanceled:
        return


def test_readyz_and_metrics_answer_while_the_database_hangs(hung: PgBouncer):
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        ASK,
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=hung.url,
        DATABASE_PGBOUNCER="true",
    )

    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    status, seconds, body = figures["readyz"]
    assert status == 503, body
    assert json.loads(body)["checks"]["database"]["ok"] is False
    assert seconds < BOUND_SECONDS
    status, seconds, body = figures["metrics"]
    assert status == 200
    assert seconds < BOUND_SECONDS
    # The beat's figure is left out, the rest is served.
    assert "apm_beat_last_run_timestamp_seconds" not in body
    assert "apm_cache_up" in body
    # Four scrapes at once: one asks the database, the others are served what is known; none waits
    # behind another.
    assert [status for status, _ in figures["concurrent"]] == [200] * 4
    assert figures["concurrent_seconds"] < BOUND_SECONDS
