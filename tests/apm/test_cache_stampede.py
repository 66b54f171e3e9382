"""``apm.cache.cached`` under a crowd: one computation at a time, stale only when merely expired.

Real threads on the suite's cache (local memory on the SQLite leg, Redis on the PostgreSQL leg). Each
test counts computations and lookups by result; the waits are bounded generously and only stop a test
that would otherwise hang, they are never what a test measures.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.core.cache import cache
from django.test import override_settings
from prometheus_client import REGISTRY

from apm.cache import cached, generation_bump, generation_key

READERS = 8
# Long enough that no reader gives up waiting while the test holds the computation.
PATIENT = {"CACHE_WAIT_SECONDS": 30}


@pytest.fixture
def family() -> str:
    """A family of lookups of this test alone, so that its counters start at zero."""
    return f"test-{uuid.uuid4().hex[:8]}"


def lookups(family: str) -> dict[str, float]:
    counted = {}
    for result in ("hit", "miss", "stale", "waited"):
        labels = {"family": family, "result": result}
        counted[result] = REGISTRY.get_sample_value("apm_cache_lookups_total", labels) or 0
    return counted


class Computation:
    """A computation that counts its runs and, when asked, holds until the test releases it."""

    def __init__(self, value: Any, *, hold: bool = False) -> None:
        self.value = value
        self.runs = 0
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self) -> Any:
        self.runs += 1
        self.started.set()
        assert self.release.wait(timeout=30), "the test never released the computation"
        return self.value


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=READERS) as executor:
        yield executor


def in_threads(pool: ThreadPoolExecutor, count: int, read: Callable[[], Any]) -> list[Any]:
    futures = [pool.submit(read) for _ in range(count)]
    return [future.result(timeout=60) for future in futures]


def lock_held(key: str) -> bool:
    return cache.get(f"lock:{key}") is not None


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@override_settings(**PATIENT)
def test_readers_of_a_missing_entry_wait_for_one_computation(pool, family):
    computation = Computation({"tasks": 3}, hold=True)
    key = f"figure:{family}"

    futures = [pool.submit(cached, key, computation, family=family) for _ in range(READERS)]
    assert computation.started.wait(timeout=30)
    # Every other reader is now in, polling: let them find the lock taken before releasing.
    wait_until(lambda: lock_held(key))
    time.sleep(0.2)
    computation.release.set()
    results = [future.result(timeout=60) for future in futures]

    assert results == [{"tasks": 3}] * READERS
    assert computation.runs == 1
    counted = lookups(family)
    assert counted["miss"] == 1
    assert counted["waited"] + counted["hit"] == READERS - 1
    assert counted["stale"] == 0
    assert not lock_held(key)  # released once stored
    assert cached(key, Computation("not run"), family=family) == {"tasks": 3}


@override_settings(CACHE_WAIT_SECONDS=30, CACHE_LOCK_SECONDS=30)
def test_a_reader_takes_over_when_the_computing_reader_died(family):
    key = f"figure:{family}"
    # The reader that took this lock died before storing anything: its lock expires on its own.
    cache.add(f"lock:{key}", "a reader that died", timeout=1)
    computation = Computation("recomputed")

    assert cached(key, computation, family=family) == "recomputed"

    assert computation.runs == 1
    assert lookups(family)["miss"] == 1
    assert not lock_held(key)


@override_settings(CACHE_WAIT_SECONDS=0.2, CACHE_LOCK_SECONDS=30)
def test_a_reader_computes_itself_once_its_wait_is_over(family):
    key = f"figure:{family}"
    cache.add(f"lock:{key}", "a reader that hangs", timeout=30)
    computation = Computation("computed here")

    assert cached(key, computation, family=family) == "computed here"
    assert computation.runs == 1
    # Stored all the same: the next reader has it.
    assert cached(key, Computation("not run"), family=family) == "computed here"
    assert lookups(family) == {"hit": 1, "miss": 1, "stale": 0, "waited": 0}


@override_settings(**PATIENT)
def test_a_failed_computation_releases_its_lock_at_once(family):
    key = f"figure:{family}"

    def failing() -> str:
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        cached(key, failing, family=family)

    assert not lock_held(key)
    computation = Computation("second try")
    assert cached(key, computation, family=family) == "second try"
    assert lookups(family)["waited"] == 0


@override_settings(**PATIENT)
def test_an_expired_entry_is_served_to_others_while_one_reader_recomputes(pool, family):
    key = f"figure:{family}"
    assert cached(key, Computation("old"), family=family, timeout=0.05) == "old"
    time.sleep(0.1)  # past its freshness, within its grace
    recomputation = Computation("new", hold=True)

    first = pool.submit(cached, key, recomputation, family=family, timeout=60)
    assert recomputation.started.wait(timeout=30)
    others = in_threads(pool, READERS - 1, lambda: cached(key, Computation("never"), family=family))
    recomputation.release.set()

    assert first.result(timeout=60) == "new"
    assert others == ["old"] * (READERS - 1)
    assert recomputation.runs == 1
    assert cached(key, Computation("never"), family=family) == "new"
    assert lookups(family) == {"hit": 1, "miss": 2, "stale": READERS - 1, "waited": 0}


@override_settings(**PATIENT)
def test_an_entry_dropped_by_a_generation_bump_is_never_served(pool, family):
    namespace = f"project:{family}"
    old_key = generation_key(namespace, "burndown")
    assert cached(old_key, Computation("before the write"), family=family, timeout=0.05) == "before the write"
    time.sleep(0.1)
    # A reader is recomputing the expired entry when the write lands.
    slow = Computation("recomputed before the write", hold=True)
    in_flight = pool.submit(cached, old_key, slow, family=family)
    assert slow.started.wait(timeout=30)

    generation_bump(namespace)

    after = Computation("after the write")
    assert cached(generation_key(namespace, "burndown"), after, family=family) == "after the write"
    assert after.runs == 1
    slow.release.set()
    assert in_flight.result(timeout=60) == "recomputed before the write"
    assert cached(generation_key(namespace, "burndown"), Computation("never"), family=family) == (
        "after the write"
    )


@override_settings(CACHE_WAIT_SECONDS=0.2)
def test_an_entry_deleted_by_its_service_is_never_served(family):
    key = f"project:{family}"
    assert cached(key, Computation("before the write"), family=family, timeout=0.05) == "before the write"
    time.sleep(0.1)
    # Expired, and another reader holds the lock to recompute it: a time-expired entry would be served.
    cache.add(f"lock:{key}", "another reader", timeout=30)
    assert cached(key, Computation("never"), family=family) == "before the write"

    cache.delete_many([key])  # what projects.services.project_cache_invalidate does

    after = Computation("after the write")
    assert cached(key, after, family=family) == "after the write"
    assert after.runs == 1
    assert lookups(family)["stale"] == 1


def test_a_value_without_its_sidecar_is_not_trusted(family):
    """An entry written by a release before sidecars, or whose sidecar was evicted, is recomputed."""
    key = f"project:{family}"
    cache.set(key, {"written": "by the previous release"})

    assert cached(key, Computation({"written": "now"}), family=family) == {"written": "now"}
    assert cache.get(key) == {"written": "now"}  # the same shape, under the same key
