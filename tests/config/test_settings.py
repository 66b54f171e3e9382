"""Settings read from the environment: databases, cache, Celery, and the production checks."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from config.celery_app import app as celery_app
from config.settings.base import DATABASE_POOL_MAX_SIZE, DATABASE_POOL_SIZE, database_config
from tests.processes import manage, production_check_deploy

# Production refuses to start without a broker (tests/config/test_runtime.py); checks never contact it.
PRODUCTION_BROKER = "redis://broker.example.com:6379/0"


def test_postgres_url_uses_the_native_pool_sized_by_the_process():
    config = database_config("postgres://apm:secret@db.internal:5432/apm")

    assert config["ENGINE"] == "django_prometheus.db.backends.postgresql"
    assert config["NAME"] == "apm"
    # Sized from this process's threads (config/topology.py; tests/config/test_runtime.py has the sizes).
    assert config["OPTIONS"]["pool"] == {
        "min_size": DATABASE_POOL_SIZE,
        "max_size": DATABASE_POOL_MAX_SIZE,
        "max_lifetime": 3600,
        "timeout": 5,
    }
    assert config["CONN_MAX_AGE"] == 0


def test_mysql_url_uses_persistent_checked_utf8mb4_connections():
    config = database_config("mysql://root@127.0.0.1:3306/apm")

    assert config["ENGINE"] == "django_prometheus.db.backends.mysql"
    assert config["OPTIONS"]["charset"] == "utf8mb4"
    assert config["OPTIONS"]["isolation_level"] == "read committed"
    assert config["CONN_MAX_AGE"] > 0
    assert config["CONN_HEALTH_CHECKS"] is True


def test_sqlite_url_takes_the_write_lock_at_begin():
    config = database_config("sqlite:////tmp/apm.sqlite3")

    assert config["ENGINE"] == "django_prometheus.db.backends.sqlite3"
    assert config["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "is not a database URL"),
        ("oracle://scott:tiger@db/orcl", "unsupported database"),
        ("postgres://db.internal:5432/", "has no database name"),
    ],
)
def test_a_malformed_database_url_is_named_in_the_error(url, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        database_config(url)


def test_manage_reports_a_malformed_database_url_in_one_line_without_a_traceback():
    result = manage("check", DATABASE_URL="oracle://scott:tiger@db/orcl")

    assert result.returncode == 2
    assert result.stderr.startswith("Configuration error: DATABASE_URL 'oracle://scott:tiger@db/orcl'")
    assert "Traceback" not in result.stderr


def test_embedded_default_needs_nothing_installed():
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.CACHES['default']['BACKEND'], s.CELERY_TASK_ALWAYS_EAGER, "
        "'debug_toolbar' in s.INSTALLED_APPS)",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django_prometheus.db.backends.sqlite3",
        "django_prometheus.cache.backends.filebased.FileBasedCache",
        "True",
        "True",
    ]


def test_environment_switches_cache_and_broker():
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; "
        "print(s.CACHES['default']['BACKEND'], s.CACHES['default']['OPTIONS']['IGNORE_EXCEPTIONS'], "
        "s.CACHES['default']['TIMEOUT'], s.CELERY_BROKER_URL, s.CELERY_TASK_ALWAYS_EAGER)",
        REDIS_URL="redis://127.0.0.1:6379/3",
        CELERY_BROKER_URL="amqp://guest:guest@127.0.0.1:5672//",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django_prometheus.cache.backends.redis.RedisCache",
        "True",
        "300",
        "amqp://guest:guest@127.0.0.1:5672//",
        "False",
    ]


def test_debug_toolbar_is_never_in_tests_or_production():
    assert "debug_toolbar" not in settings.INSTALLED_APPS
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; print('debug_toolbar' in s.INSTALLED_APPS, s.DEBUG)",
        DJANGO_SETTINGS_MODULE="config.settings.production",
        CELERY_BROKER_URL=PRODUCTION_BROKER,
        DJANGO_SECRET_KEY="x" * 64,
        DJANGO_ALLOWED_HOSTS="apm.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_production_settings_pass_the_deployment_checks():
    result = production_check_deploy()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_have_no_default_secret():
    result = manage(
        "check",
        DJANGO_SETTINGS_MODULE="config.settings.production",
        CELERY_BROKER_URL=PRODUCTION_BROKER,
        DJANGO_ALLOWED_HOSTS="apm.example.com",
    )

    assert result.returncode == 2
    assert "DJANGO_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_celery_is_configured_for_reliable_delivery():
    conf = celery_app.conf

    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_time_limit == 3600
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
