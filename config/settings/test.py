"""Settings for the test suite.

The database, cache and broker still come from the environment, so the same suite runs on SQLite,
PostgreSQL and MariaDB; only what makes tests fast and deterministic is fixed here.
"""

from __future__ import annotations

from .base import *  # noqa: F403
from .base import CACHES, env

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY", default="apm-test-key")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Parallel test processes (pytest-xdist) share one Redis: give each its own key space.
CACHES["default"]["KEY_PREFIX"] = "apm-test-" + env("PYTEST_XDIST_WORKER", default="main")
