"""Production: no default secret, HTTPS only, JSON logs, static files from the collected root."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from config.logging import logging_config

from .base import *  # noqa: F403
from .base import LOG_LEVEL, MIDDLEWARE, STORAGES, env

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY")  # no default: start-up fails without one
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS: TLS ends at the ingress/nginx, which sets X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# Probes and Prometheus talk to the pods over plain HTTP inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# /metrics answers only Prometheus (APM_METRICS_TOKEN or APM_METRICS_ALLOWED_NETWORKS): with neither set
# it refuses everyone with 403, and `check --deploy` warns (monitoring.deploy_checks).
APM_METRICS_OPEN_WITHOUT_CREDENTIALS = False
# A token anyone can guess is no protection: the example's placeholder, or a short one.
APM_METRICS_TOKEN_MIN_LENGTH = 24
if env("APM_METRICS_TOKEN", default="") and (
    env("APM_METRICS_TOKEN").startswith("CHANGE-ME")
    or len(env("APM_METRICS_TOKEN")) < APM_METRICS_TOKEN_MIN_LENGTH
):
    raise ImproperlyConfigured(
        "APM_METRICS_TOKEN is the example's placeholder or shorter than "
        f"{APM_METRICS_TOKEN_MIN_LENGTH} characters: set a random one (openssl rand -hex 32)"
    )
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

STORAGES = {
    # Export files: the bucket of AWS_STORAGE_BUCKET_NAME, else MEDIA_ROOT (config.settings.base).
    "default": STORAGES["default"],
    # Backups: the bucket of APM_BACKUP_BUCKET, else APM_BACKUP_DIR (config.settings.base).
    "dbbackup": STORAGES["dbbackup"],
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}

LOGGING = logging_config(level=LOG_LEVEL, json=env.bool("DJANGO_LOG_JSON", default=True))

# Static files are served by the application itself, so the one image needs no separate static server:
# collectstatic writes each file under a hashed name with .gz and .br (Brotli) copies beside it, and
# whitenoise answers the compressed copy the browser accepts with "Cache-Control: max-age=315360000,
# public, immutable". A CDN or nginx in front may cache them too (DJANGO_STATIC_URL).
# Right after SecurityMiddleware, as whitenoise asks: static answers carry its headers (HSTS, nosniff).
_security = MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1
MIDDLEWARE = [*MIDDLEWARE[:_security], "whitenoise.middleware.WhiteNoiseMiddleware", *MIDDLEWARE[_security:]]
STORAGES["staticfiles"] = {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}

# --- Celery in production -------------------------------------------------------------------------------
# Without a broker every task would run eagerly inside the web process: an ingestion of hours in a
# request thread, chords without workers. Start-up stops instead, naming what is missing.
if not env("CELERY_BROKER_URL", default=""):
    raise ImproperlyConfigured(
        "CELERY_BROKER_URL is not set: production needs a broker (redis://... or amqp://...) and workers "
        "(docs/operations.md, Processes); without one every task would run inside the web process"
    )
if env.bool("CELERY_TASK_ALWAYS_EAGER", default=False):
    raise ImproperlyConfigured(
        "CELERY_TASK_ALWAYS_EAGER=true runs every task inside the web process: not in production"
    )
if not env("CELERY_BROKER_URL").startswith(("redis://", "rediss://")) and not env(
    "CELERY_RESULT_BACKEND", default=""
):
    raise ImproperlyConfigured(
        "CELERY_RESULT_BACKEND is not set: with a broker other than Redis, results and the chords that "
        "finish ingestion runs need one (redis://... of a Redis that persists and never evicts)"
    )
CELERY_TASK_ALWAYS_EAGER = False
# System checks that warn elsewhere are errors here (apm/checks.py).
APM_PRODUCTION = True
