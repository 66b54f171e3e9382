"""The cache: generation keys, and a Redis outage that slows pages without breaking them."""

from __future__ import annotations

from django_prometheus.cache.backends.redis import RedisCache

from apm.cache import cached, generation_bump, generation_key


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
