"""The cache: generation keys, and a Redis outage that slows pages without breaking them."""

from __future__ import annotations

from django.test import override_settings
from django_prometheus.cache.backends.redis import RedisCache
from prometheus_client import REGISTRY

from apm.cache import cached, generation_bump, generation_key
from tests.services import UNREACHABLE_REDIS


def test_bumping_a_generation_makes_its_whole_family_unreachable():
    calls: list[str] = []

    def compute(value: str) -> str:
        calls.append(value)
        return value

    key_before = generation_key("project:1", "summary")
    assert cached(key_before, lambda: compute("first"), family="summary") == "first"
    again = generation_key("project:1", "summary")
    assert cached(again, lambda: compute("second"), family="summary") == "first"
    other_family = generation_key("project:2", "summary")

    generation_bump("project:1")

    assert generation_key("project:1", "summary") != key_before
    after = generation_key("project:1", "summary")
    assert cached(after, lambda: compute("third"), family="summary") == "third"
    assert generation_key("project:2", "summary") == other_family
    assert calls == ["first", "third"]


def test_a_redis_outage_turns_into_cache_misses_not_errors():
    # A real client pointed at a port where nothing listens, configured like production.
    unreachable = RedisCache(
        "redis://127.0.0.1:1/0",
        {
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": 0.5,
                "SOCKET_TIMEOUT": 0.5,
            }
        },
    )

    unreachable.set("project:1", {"name": "APM"})
    assert unreachable.get("project:1") is None
    assert unreachable.get("project:1", "fallback") == "fallback"


def test_with_nothing_listening_every_read_computes_and_no_reader_waits():
    """The lock cannot be taken when the cache is down: each read computes at once, none waits."""
    calls: list[int] = []
    with override_settings(
        CACHES=UNREACHABLE_REDIS, CACHE_WAIT_SECONDS=30, DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS=False
    ):
        labels = {"family": "summary", "result": "waited"}
        waited = REGISTRY.get_sample_value("apm_cache_lookups_total", labels)
        for n in range(5):
            key = generation_key("project:1", "summary")
            assert cached(key, lambda n=n: calls.append(n) or n, family="summary") == n
        assert calls == [0, 1, 2, 3, 4]
        assert REGISTRY.get_sample_value("apm_cache_lookups_total", labels) == waited
