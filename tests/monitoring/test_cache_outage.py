"""A Redis outage, with a real redis-server this test starts, stops and starts again.

Configured like production (django-redis, IGNORE_EXCEPTIONS) and persisting like a Redis that saves on
shutdown: the server comes back with the generation numbers and entries it had before the outage, not
with the invalidations lost while it was down. The pages answer the same figures as without any cache
before, during and after; readiness says ``degraded`` while the cache is down.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from django.test import Client, override_settings
from django.urls import reverse
from prometheus_client import REGISTRY

from apm.cache import cache_reachable, cache_renewal_owed, generation_bump, generation_key, project_key
from insights.selectors import ANALYTICS_FORMAT
from projects.services import project_cache_invalidate
from tests.conftest import services_required
from tests.factories import CommitFactory, FileChangeFactory, FileFactory, UserFactory
from tests.isolation import namespace
from tests.processes import ROOT, free_port, wait_for

pytestmark = pytest.mark.django_db

NO_CACHE = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}


class RedisServer:
    """One redis-server of this test, on its own port, saving its data in ``directory`` on shutdown."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1)

    def start(self) -> None:
        self.process = subprocess.Popen(
            # A save point, as redis-server has by default: a clean shutdown writes the data to disk and
            # the next start reads it back.
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "3600 1"),
                *("--appendonly", "no", "--dir", str(self.directory), "--dbfilename", "cache.rdb"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, timeout=30, what=f"redis-server on port {self.port}")

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        self.process.wait(timeout=30)
        self.process = None


Server = TypeVar("Server", bound=RedisServer)


def redis_server_running(kind: type[Server], tmp_path: Path) -> Iterator[Server]:
    """A redis-server of the test's own (``kind``), for a fixture to yield; stopped after the test."""
    if shutil.which("redis-server") is None:
        if services_required():
            pytest.fail("redis-server is not installed, and APM_REQUIRE_SERVICES=1 says it must be")
        pytest.skip("redis-server is not installed")
    server = kind(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from redis_server_running(RedisServer, tmp_path)


OUTAGE_CACHE_OPTIONS = {
    "CLIENT_CLASS": "django_redis.client.DefaultClient",
    "IGNORE_EXCEPTIONS": True,
    "SOCKET_CONNECT_TIMEOUT": 0.5,
    "SOCKET_TIMEOUT": 0.5,
}


def production_cache(server: RedisServer, options: dict[str, Any] = OUTAGE_CACHE_OPTIONS) -> dict[str, Any]:
    """The production cache's backend on ``server``, under this process's key prefix, with ``options``."""
    return {
        "default": {
            "BACKEND": "django_prometheus.cache.backends.redis.RedisCache",
            "LOCATION": server.url,
            "KEY_PREFIX": namespace(),
            "OPTIONS": options,
        }
    }


def production_settings(server: RedisServer, **settings: Any) -> override_settings:
    """The production cache on ``server``. Without django-redis' log of each error it ignores (the
    throttles' reads and writes): the suite's console renderer takes seconds to print each traceback."""
    return override_settings(
        CACHES=production_cache(server), DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS=False, **settings
    )


def lookups(family: str, result: str) -> float:
    return REGISTRY.get_sample_value("apm_cache_lookups_total", {"family": family, "result": result}) or 0


class Pages:
    """The pages of ALPHA this test reads: a member's dashboard and API answers, the admin's project."""

    def __init__(self, world: Any) -> None:
        self.project = world.project
        self.member = Client()
        self.member.force_login(world.users["member"])
        self.api = world.client("member")
        self.admin = Client()
        self.admin.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))

    def figures(self) -> dict[str, Any]:
        """Every JSON answer (each must be a 200), and the admin's project page (a 200)."""
        answers = {
            "dashboard": self.member.get("/dashboard", HTTP_ACCEPT="application/json"),
            "summary": self.api.get("/api/v1/projects/ALPHA/summary/"),
            "burndown": self.api.get("/api/v1/projects/ALPHA/burndown/"),
            "hotspots": self.api.get("/api/v1/projects/ALPHA/hotspots/"),
        }
        for name, response in answers.items():
            assert response.status_code == 200, (name, response.content[:500])
        admin = self.admin.get(reverse("admin:projects_project_change", args=[self.project.pk]))
        assert admin.status_code == 200
        return {**{name: response.json() for name, response in answers.items()}, "admin": admin}

    def truth(self) -> dict[str, Any]:
        """The same answers computed with no cache at all."""
        with override_settings(CACHES=NO_CACHE):
            return self.figures()


def same(figures: dict[str, Any], truth: dict[str, Any]) -> None:
    for name in ("dashboard", "summary", "burndown", "hotspots"):
        assert figures[name] == truth[name], name


def test_pages_answer_through_an_outage_and_nothing_stale_follows_it(
    world, redis_server, client, django_capture_on_commit_callbacks
):
    pages = Pages(world)
    raw = redis_server.client()
    with production_settings(redis_server, CACHE_RETRY_SECONDS=0.2):
        # Redis up: the pages fill the cache, and a second read is served from it.
        truth = pages.truth()
        same(pages.figures(), truth)
        summary = generation_key(project_key(world.project.pk), "summary", f"v{ANALYTICS_FORMAT}")
        summary_key = f"{namespace()}:1:{summary}"
        hits = lookups("summary", "hit")
        same(pages.figures(), truth)
        assert lookups("summary", "hit") == hits + 1
        assert raw.exists(summary_key)

        redis_server.stop()

        # Redis down: a write goes through, its invalidation is lost, and every page shows it anyway.
        with django_capture_on_commit_callbacks(execute=True):
            created = world.client("maintainer").post(
                "/api/v1/tasks/", {"project": "ALPHA", "title": "Written while Redis was down"}, format="json"
            )
            # And what an ingestion writes, with the invalidation ingestion_finish makes.
            repository = world.objects["repository"]
            FileFactory(repository=repository, path="src/outage.py", lines=40)
            FileChangeFactory(commit=CommitFactory(repository=repository), path="src/outage.py", added=40)
            project_cache_invalidate(project_id=world.project.pk)
        assert created.status_code == 201, created.content
        assert cache_renewal_owed()
        during = pages.truth()
        assert during["summary"]["tasks_total"] == truth["summary"]["tasks_total"] + 1
        assert during["hotspots"] != truth["hotspots"]
        outage = pages.figures()
        same(outage, during)
        assert "Written while Redis was down" in outage["admin"].content.decode()
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"

        redis_server.start()

        # Back with its data: the summary from before the write is there, under the key it had.
        assert raw.exists(summary_key)
        # Renewed by this process on its own, not at its next read: another process, which never saw
        # the outage, reads from here on.
        wait_for(lambda: not cache_renewal_owed(), timeout=30, what="the cache's epoch renewed")
        same(pages.figures(), during)
        hits = lookups("summary", "hit")
        after = pages.figures()
        same(after, during)
        assert lookups("summary", "hit") == hits + 1
        assert "Written while Redis was down" in after["admin"].content.decode()
        assert client.get("/readyz").json()["status"] == "ok"


def test_with_the_server_gone_each_read_computes_at_once(world, redis_server):
    """No wait for a lock that cannot be taken: each read computes, and none waits out CACHE_WAIT_SECONDS."""
    pages = Pages(world)
    with production_settings(redis_server, CACHE_WAIT_SECONDS=30):
        truth = pages.truth()
        redis_server.stop()
        misses = lookups("summary", "miss")
        started = time.monotonic()
        for _ in range(3):
            same(pages.figures(), truth)
        assert lookups("summary", "miss") == misses + 3
        # Three reads of five pages, each far from one 30 s wait.
        assert time.monotonic() - started < 30


# A short-lived process (a management command) bumps a generation while the cache is down, says so, and
# waits for its standard input to close before it exits.
_EXITING_WRITER = """
import sys
from apm.cache import cache_renewal_owed, generation_bump
generation_bump("project:1")
print("owed", cache_renewal_owed(), flush=True)
sys.stdin.read()
"""


def test_a_process_that_lost_an_invalidation_renews_the_epoch_as_it_exits(redis_server: RedisServer):
    raw = redis_server.client()
    prefix = "apm-exit-test"
    epoch_key = f"{prefix}:1:cache:epoch"
    raw.set(epoch_key, "before-the-outage")
    redis_server.stop()
    environment = {
        **{key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}},
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "REDIS_URL": redis_server.url,
        "CACHE_KEY_PREFIX": prefix,
        "APM_DEBUG_TOOLBAR": "false",
        "DATABASE_URL": "sqlite:///:memory:",
    }
    writer = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", _EXITING_WRITER],
        cwd=ROOT,
        env=environment,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    assert writer.stdin is not None
    assert writer.stdout.readline().strip() == "owed True"

    redis_server.start()  # back, with the data it saved: the old epoch and its entries
    assert raw.get(epoch_key) == b"before-the-outage"
    writer.stdin.close()  # the command is done and exits
    assert writer.wait(timeout=60) == 0, writer.stderr.read() if writer.stderr else ""

    # Its last act: a new epoch, so nothing written before the outage is served again.
    assert raw.get(epoch_key) not in (None, b"before-the-outage")


def test_the_cache_is_skipped_while_it_is_known_to_be_down(redis_server: RedisServer):
    with production_settings(redis_server, CACHE_RETRY_SECONDS=0.3):
        assert cache_reachable()
        redis_server.stop()
        generation_bump("project:1")  # the failure is noticed here
        assert not cache_reachable()
        time.sleep(0.4)
        assert not cache_reachable()  # the renewal it owes failed again meanwhile: still down
        redis_server.start()
        wait_for(cache_reachable, timeout=10, what="the cache asked again once it answers")
        assert not cache_renewal_owed()
