"""Settings for the test suite.

The database, cache and broker still come from the environment, so the same suite runs on SQLite,
PostgreSQL and MariaDB; only what makes tests fast and deterministic is fixed here.
"""

from __future__ import annotations

import os

from tests import isolation

from .base import *  # noqa: F403
from .base import (
    CACHES,
    CELERY_BROKER_TRANSPORT_OPTIONS,
    CELERY_BROKER_URL,
    CELERY_RESULT_BACKEND,
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS,
    DATABASES,
    VAR_DIR,
    env,
)

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY", default="apm-test-key")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Test runs at once on one machine, and the xdist workers of each, share one Redis: each process keys
# its cache under its own namespace, apm-test-<run>-<worker> (tests/isolation.py).
CACHES["default"]["KEY_PREFIX"] = isolation.namespace()
if str(CACHES["default"]["BACKEND"]).endswith("FileBasedCache"):
    # Without Redis, each test process keeps its cache in memory: the conftest clears it before every
    # test, and a file cache's clear() would empty the other processes' too. The embedded default's
    # file cache is exercised across processes by tests/config/test_embedded_cache.py.
    CACHES["default"] = {
        "BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache",
        "LOCATION": isolation.namespace(),
        "TIMEOUT": CACHES["default"]["TIMEOUT"],
        "KEY_PREFIX": isolation.namespace(),
    }
# A Celery worker started by a test (tests/processes.py) keeps to that test's key prefix on a Redis
# broker and result backend: its queues, broadcasts and results are the test's alone.
_broker_keyprefix = env(isolation.BROKER_KEYPREFIX_VARIABLE, default="")
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        **CELERY_BROKER_TRANSPORT_OPTIONS,
        **isolation.transport_options(_broker_keyprefix),
    }
if CELERY_RESULT_BACKEND.startswith(("redis://", "rediss://")):
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
        **CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS,
        **isolation.transport_options(_broker_keyprefix),
    }

# One test database per test process, so that two suites run at once against the same server never
# share (and drop) each other's database. SQLite tests use a file, not the in-memory default, so that
# tests with several threads (concurrent task numbering) see one database with real locking.
_test_database = DATABASES["default"].setdefault("TEST", {})
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    _test_database["NAME"] = str(VAR_DIR / f"test-apm-{os.getpid()}.sqlite3")
else:
    _test_database["NAME"] = f"test_{DATABASES['default']['NAME']}_{os.getpid()}"
# A replica configured for the suite is the test database itself: Django creates no database on it
# (a standby refuses writes). tests/config/test_replica.py runs APM against a real standby of its own.
if "replica" in DATABASES:
    DATABASES["replica"].setdefault("TEST", {})["MIRROR"] = "default"
# Keep test pools small: the suite may run in parallel processes against one PostgreSQL.
for _database in DATABASES.values():
    if "pool" in _database.get("OPTIONS", {}):
        _database["OPTIONS"]["pool"].update(
            min_size=env.int("DATABASE_POOL_SIZE", default=2),
            max_size=env.int("DATABASE_POOL_SIZE", default=2) + 8,
        )
# Ingestion threads get connections of their own, which cannot see a test's uncommitted transaction:
# tests run ingestion in the test's thread, except the transactional ones that ask for threads.
APM_INGEST_THREADS = 1
# Export files of the tests go to a directory of this process, removed with the test database. A worker
# process a test starts may be given a directory of the test's (APM_TEST_MEDIA_ROOT: never
# DJANGO_MEDIA_ROOT, which the suite removes at its end).
MEDIA_ROOT = env("APM_TEST_MEDIA_ROOT", default=str(VAR_DIR / f"test-media-{os.getpid()}"))
# The sign-in lockout is off, so that tests signing in many times (or with a wrong password on purpose)
# never lock each other out, and Django's test Client.login() works (it authenticates without a request,
# which the lockout backend refuses). tests/config/test_login_lockout.py turns it on for its own tests.
AXES_ENABLED = False
