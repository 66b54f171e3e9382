"""Gunicorn settings for APM's web process: ``gunicorn --config gunicorn.conf.py config.wsgi:application``.

The image's default command uses this file. Sizes come from the environment, so one image fits every
pod: ``GUNICORN_WORKERS`` processes of ``GUNICORN_THREADS`` threads each (gthread), which is also the
most database connections a process uses at once.

django-prometheus runs in prometheus_client's multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set
(the image sets it): each worker writes its metrics to files there and ``/metrics`` adds them up. The
directory is emptied when the server starts, and a worker that exits is marked dead so that its live
gauges stop being reported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


# A container listens on all of its interfaces; what reaches it is decided by the Service/ingress.
bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = _env_int("GUNICORN_WORKERS", 2)
threads = _env_int("GUNICORN_THREADS", 4)
worker_class = "gthread"
# Django, loaded in each worker after this file, sizes its database pool by the threads that may hold a
# connection at once (config/topology.py): these.
os.environ["APM_PROCESS_THREADS"] = str(threads)
# A download streamed from object storage holds one of these few threads: a store that hangs is given up
# after one read of 5 s (a worker's export waits two of 10 s; config/storages.py), and the client asks
# again after Retry-After. Set explicitly, the variables win.
os.environ.setdefault("AWS_S3_READ_TIMEOUT", "5")
os.environ.setdefault("AWS_S3_MAX_ATTEMPTS", "1")
# A worker silent for this long is killed and replaced (gthread: the heartbeat is not blocked by a slow
# request, only by a stuck process).
timeout = _env_int("GUNICORN_TIMEOUT", 30)
# On SIGTERM, requests in flight get this long to finish; below Kubernetes' terminationGracePeriodSeconds.
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 25)
# Idle keep-alive connections from nginx/the ingress are kept a little longer than the proxy keeps them,
# so the proxy never reuses a connection gunicorn has just closed.
keepalive = _env_int("GUNICORN_KEEPALIVE", 5)
# Restarting workers bounds slow memory growth, but every restart leaves one more metrics file to add up
# at each scrape: off unless asked for.
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = _env_int("GUNICORN_MAX_REQUESTS_JITTER", 0)
# The worker heartbeat files go to memory, not to the (read-only) root filesystem.
worker_tmp_dir = "/dev/shm"  # noqa: S108
# No runtime control socket (gunicornc): the number of processes is set by the pod's environment and
# the number of pods by Kubernetes, and $HOME is read-only in the image.
control_socket_disable = True
accesslog = "-"
errorlog = "-"
# The request id and client address are logged by django-structlog; gunicorn only adds timing.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'


def _log_json() -> bool:
    """The application's rule (config.settings): DJANGO_LOG_JSON, on by default in production."""
    value = os.environ.get("DJANGO_LOG_JSON")
    if value is None:
        return os.environ.get("DJANGO_SETTINGS_MODULE", "") == "config.settings.production"
    return value.strip().lower() in {"1", "true", "yes", "on"}


if _log_json():
    # gunicorn's own lines (start, workers booted and killed, timeouts, the access log) through the
    # application's JSON formatter, so that every line of the pod's log is one JSON object.
    import logging

    from config.logging import logging_config

    # Python's warnings too (a missing static directory, a deprecation): through logging, not bare stderr.
    logging.captureWarnings(True)

    _level = os.environ.get("DJANGO_LOG_LEVEL", "INFO")
    logconfig_dict = logging_config(level=_level, json=True)
    logconfig_dict["loggers"].update(
        {
            "gunicorn.error": {"level": _level, "handlers": ["console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
        }
    )


def on_starting(server: Any) -> None:
    """Empty the metrics directory: files from a previous run would otherwise be added up again."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """Forget the live gauges of a worker that exited (its counters and histograms are kept)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Only with the multiprocess directory set: the module reads it when it is imported.
        from prometheus_client import multiprocess  # noqa: PLC0415

        multiprocess.mark_process_dead(worker.pid)
