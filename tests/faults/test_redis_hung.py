"""A hung Redis: a redis-server of this test, stopped with SIGSTOP and resumed with SIGCONT.

Not down: its port still accepts connections, and nothing answers on them, so every call waits out a
socket timeout. Commands a client had already sent are run when it resumes; commands on a connection
opened during the hang never reach it (the handshake times out first): invalidations made then are lost,
and the entries from before the hang are there again when it resumes, under the same generation.

The cache is configured as in production (django-redis, IGNORE_EXCEPTIONS, the production socket
timeouts from config.settings.base). The epoch's lease is shortened to one second so that the hang,
held a little longer, outlives it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings
from prometheus_client import REGISTRY

from apm.cache import cache_renewal_owed
from tests.isolation import namespace
from tests.monitoring.test_cache_outage import RedisServer, redis_server_running
from tests.monitoring.test_cache_outage import production_cache as outage_cache
from tests.processes import ROOT, database_url, wait_for

# Committed rows: the other processes of these tests read the same database.
pytestmark = pytest.mark.django_db(transaction=True)

# The epoch's lease in these tests (CACHE_EPOCH_LEASE_SECONDS), and how long a hang is held: longer.
LEASE_SECONDS = 1.0
HANG_SECONDS = LEASE_SECONDS + 1.0
# A request during the hang: a small multiple of the socket timeout, never the seconds of several.
REQUEST_BOUND_SECONDS = 1.5


class HungRedis(RedisServer):
    """A redis-server that can be frozen (SIGSTOP) and resumed (SIGCONT), its connections left open."""

    paused = False

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        if self.process is not None and self.paused:
            self.resume()
        super().stop()


@pytest.fixture
def hung_redis(tmp_path: Path) -> Iterator[HungRedis]:
    yield from redis_server_running(HungRedis, tmp_path)


def production_cache(server: RedisServer) -> dict[str, Any]:
    """The production cache (config.settings.base, with its socket timeouts) on ``server``."""
    return outage_cache(server, settings.CACHE_REDIS_OPTIONS)


def production_settings(server: RedisServer, **overrides: Any) -> override_settings:
    return override_settings(
        CACHES=production_cache(server),
        DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS=False,
        CACHE_EPOCH_LEASE_SECONDS=LEASE_SECONDS,
        **overrides,
    )


def process_environment(server: RedisServer) -> dict[str, str]:
    """Another APM process on the same database and cache, configured by its environment as production is."""
    return {
        **{key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}},
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "APM_DEBUG_TOOLBAR": "false",
        "DJANGO_LOG_LEVEL": "ERROR",
        "DATABASE_URL": database_url(),
        "DATABASE_POOL_SIZE": "1",
        "REDIS_URL": server.url,
        "CACHE_KEY_PREFIX": namespace(),
        "CACHE_EPOCH_LEASE_SECONDS": str(LEASE_SECONDS),
    }


# Another web process's view of the project: the summary it would answer, read through the cache.
_READER = """
from insights.selectors import project_summary_cached
from projects.models import Project
print(project_summary_cached(project=Project.objects.get(key="ALPHA"))["tasks_total"], flush=True)
"""


def summary_elsewhere(server: RedisServer) -> int:
    reader = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", _READER],
        cwd=ROOT,
        env=process_environment(server),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert reader.returncode == 0, reader.stderr
    return int(reader.stdout.strip().splitlines()[-1])


def generation(server: RedisServer, project_id: int) -> bytes | None:
    value = server.client().get(f"{namespace()}:1:generation:project:{project_id}")
    return value if isinstance(value, bytes) else None


def breaker_openings() -> float:
    return REGISTRY.get_sample_value("apm_cache_breaker_opened_total") or 0


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_a_hung_redis_costs_each_request_little_and_nothing_stale_follows(world, hung_redis: HungRedis):
    member = Client()
    member.force_login(world.users["member"])
    api, maintainer = world.client("member"), world.client("maintainer")

    def summary() -> Any:
        response = api.get("/api/v1/projects/ALPHA/summary/")
        assert response.status_code == 200, response.content[:300]
        return response.json()["tasks_total"]

    # The breaker stays open through the requests of the hang: only its first call waits for the socket.
    with production_settings(hung_redis, CACHE_RETRY_SECONDS=HANG_SECONDS + 1):
        before = summary()
        assert summary() == before  # cached now: the entry the hang must not bring back
        assert summary_elsewhere(hung_redis) == before
        openings = breaker_openings()

        hung_redis.pause()
        hang_started = time.monotonic()
        created, seconds = timed(
            lambda: maintainer.post("/api/v1/tasks/", {"project": "ALPHA", "title": "Hung"}, format="json")
        )
        assert created.status_code == 201, created.content
        assert seconds < REQUEST_BOUND_SECONDS, f"creating a task took {seconds:.2f} s"
        dashboard, seconds = timed(lambda: member.get("/dashboard", HTTP_ACCEPT="application/json"))
        assert dashboard.status_code == 200
        assert seconds < REQUEST_BOUND_SECONDS, f"the dashboard took {seconds:.2f} s"
        during, seconds = timed(summary)
        assert during == before + 1
        assert seconds < REQUEST_BOUND_SECONDS, f"the summary took {seconds:.2f} s"
        # With the breaker open a request does not touch the socket: five of them in well under one wait.
        _, seconds = timed(lambda: [summary() for _ in range(5)])
        assert seconds < REQUEST_BOUND_SECONDS, f"five summaries took {seconds:.2f} s"
        assert breaker_openings() == openings + 1
        assert cache_renewal_owed()

        time.sleep(max(0.0, HANG_SECONDS - (time.monotonic() - hang_started)))
        hung_redis.resume()

        # This process, which lost the invalidation, and another one, which never saw the hang.
        assert summary() == before + 1
        assert summary_elsewhere(hung_redis) == before + 1
    # The breaker closes again once the cache answers: the figure is then served from the cache again.
    with production_settings(hung_redis, CACHE_RETRY_SECONDS=0.2):
        wait_for(lambda: not cache_renewal_owed(), timeout=30, what="the epoch renewed after the hang")
        assert summary() == before + 1
        assert summary_elsewhere(hung_redis) == before + 1


# A web process that creates a task during the hang, loses the invalidation, says so, and is then killed
# before the cache answers again: nobody is left to renew the epoch it owes.
_WRITER = """
import sys
from apm.cache import cache_renewal_owed
from projects.models import Project
from tasks.services import task_create
task_create(project=Project.objects.get(key="ALPHA"), title="Written during the hang", source="api")
print("owed", cache_renewal_owed(), flush=True)
sys.stdin.read()
"""


def test_an_invalidation_lost_by_a_process_that_died_during_the_hang_is_not_served_stale(
    world, hung_redis: HungRedis
):
    api = world.client("member")

    def summary() -> Any:
        response = api.get("/api/v1/projects/ALPHA/summary/")
        assert response.status_code == 200, response.content[:300]
        return response.json()["tasks_total"]

    with production_settings(hung_redis, CACHE_RETRY_SECONDS=0.2):
        before = summary()
        assert summary_elsewhere(hung_redis) == before
        generation_before = generation(hung_redis, world.project.pk)
        assert generation_before is not None

        hung_redis.pause()
        hang_started = time.monotonic()
        writer = subprocess.Popen(
            [sys.executable, "manage.py", "shell", "--no-imports", "-c", _WRITER],
            cwd=ROOT,
            env=process_environment(hung_redis),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None
        try:
            line = writer.stdout.readline().strip()
            assert line == "owed True", writer.stderr.read() if writer.stderr else line
        finally:
            writer.kill()
            writer.wait(timeout=30)
        time.sleep(max(0.0, HANG_SECONDS - (time.monotonic() - hang_started)))
        hung_redis.resume()

        # The bump never reached Redis: the entry from before the hang is there, under its generation.
        assert generation(hung_redis, world.project.pk) == generation_before
        # Yet neither this process nor a new one serves it.
        assert summary() == before + 1
        assert summary_elsewhere(hung_redis) == before + 1
