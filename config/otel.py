"""OpenTelemetry tracing of the web and Celery processes, off unless the standard variables ask for it.

Tracing is on when ``OTEL_SDK_DISABLED`` is not ``true`` and either ``OTEL_TRACES_EXPORTER`` names an
exporter (other than ``none``) or an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, which then means the ``otlp`` exporter). Otherwise nothing of
OpenTelemetry is imported: a process that does not trace pays one look at its environment.

When on, each process gets a TracerProvider whose resource comes from ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` (``service.name`` is ``apm`` unless they name one), a batch span processor
per exporter of ``OTEL_TRACES_EXPORTER`` (comma-separated: ``otlp`` is OTLP over HTTP/protobuf, configured
by the standard ``OTEL_EXPORTER_OTLP_*`` variables; ``console`` prints spans to standard output), and the
instrumentation of Django, Celery, psycopg and redis-py. Celery carries the trace context in each task's
headers, so a task's spans join the trace of the request (or task) that enqueued it.

Where it is called:
- the web process: ``config/wsgi.py``, before the WSGI application is built (the Django instrumentation
  adds its middleware then); gunicorn imports it in each worker process, after the fork;
- Celery: ``config/celery_app.py`` connects the signals below, so that each pool process of a prefork
  worker sets tracing up after it was forked (a span processor's export thread does not survive a fork),
  and a worker with a solo or threads pool, and beat, set it up in their one process. The main process
  of a prefork worker only supervises its pool: it does not trace.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

DEFAULT_SERVICE_NAME = "apm"
# The probes and Prometheus call these every few seconds: a trace each would bury the requests of people.
# OTEL_PYTHON_DJANGO_EXCLUDED_URLS (or OTEL_PYTHON_EXCLUDED_URLS) replaces the list.
DEFAULT_EXCLUDED_URLS = "/healthz$,/readyz$,/metrics$"
EXPORTERS = ("otlp", "console")

_lock = threading.Lock()
_set_up = threading.Event()


def tracing_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for tracing (the module docstring says how)."""
    environ = os.environ if environ is None else environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


def exporter_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names (``otlp`` when only an endpoint is set).

    An exporter APM does not ship, or OTLP over gRPC (APM ships the HTTP/protobuf exporter only), stops
    the process at start with a message naming the variable, rather than tracing nowhere in silence.
    """
    environ = os.environ if environ is None else environ
    names = [name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    names = [name for name in names if name and name != "none"] or ["otlp"]
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER names {', '.join(unknown)}: APM ships the exporters {', '.join(EXPORTERS)}"
        )
    if "otlp" in names:
        protocol = environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        )
        if protocol.strip().lower() != "http/protobuf":
            raise ValueError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL is {protocol!r}: APM exports OTLP over http/protobuf only"
            )
        _endpoints_check(environ)
    return names


def _endpoints_check(environ: Mapping[str, str]) -> None:
    """Refuse an OTLP endpoint that is not an http(s) URL with a host: the exporter would take it and
    then fail every export, a log line per batch for as long as the process runs."""
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        value = environ.get(name, "").strip()
        if not value:
            continue
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (a port that is not a number raises here)
        except ValueError:
            parts = None
        if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{name} is {value!r}: give the collector's URL, such as http://otel-collector:4318"
            )


def tracing_setup() -> bool:
    """Set tracing up in this process if the environment asks for it; True when it is on.

    Safe to call more than once (the second call changes nothing). It must run before the WSGI
    application is built and before the first database or Redis connection is opened, which the
    instrumentation wraps.
    """
    if not tracing_requested():
        return False
    with _lock:
        if not _set_up.is_set():
            _provider_install()
            _instrument()
            _set_up.set()
    return True


def _provider_install() -> None:
    # Imported here and not at the top of the module: a process that does not trace never loads
    # OpenTelemetry (tests/config/test_otel.py checks sys.modules).
    from opentelemetry import trace  # noqa: PLC0415
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter  # noqa: PLC0415

    # Resource.create() reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; without a name of theirs
    # the SDK would report "unknown_service".
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    for name in exporter_names():
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

            exporter = OTLPSpanExporter()
        else:
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter  # noqa: PLC0415

            exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def _instrument() -> None:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor  # noqa: PLC0415
    from opentelemetry.instrumentation.django import DjangoInstrumentor  # noqa: PLC0415
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor  # noqa: PLC0415
    from opentelemetry.instrumentation.redis import RedisInstrumentor  # noqa: PLC0415

    # Django: a server span per request (the middleware it adds). In a Celery process it only names
    # nothing, since no request passes through it. Celery: a span per task published and run, the
    # context travelling in the message headers. psycopg and redis-py: a span per query and command.
    excluded = os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS") or os.environ.get(
        "OTEL_PYTHON_EXCLUDED_URLS"
    )
    DjangoInstrumentor().instrument(excluded_urls=excluded or DEFAULT_EXCLUDED_URLS)
    CeleryInstrumentor().instrument()
    PsycopgInstrumentor().instrument()
    RedisInstrumentor().instrument()


def tracing_flush() -> None:
    """Send the spans still waiting in this process's batch (a pool process may exit without atexit)."""
    if not _set_up.is_set():
        return
    from opentelemetry import trace  # noqa: PLC0415

    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if flush is not None:
        flush()


def celery_tracing_connect() -> None:
    """Set tracing up in each Celery process that runs or sends tasks, once it exists (see above)."""
    if not tracing_requested():
        return
    from celery.signals import (  # noqa: PLC0415
        beat_init,
        worker_init,
        worker_process_init,
        worker_process_shutdown,
        worker_shutdown,
    )

    def pool_process_started(**_: Any) -> None:
        tracing_setup()

    def worker_started(sender: Any = None, **_: Any) -> None:
        # worker_process_init is sent in each prefork pool process, after the fork, and once by a solo
        # pool; a threads pool runs its tasks in this very process and sends neither.
        if "thread" in str(getattr(sender, "pool_cls", "")).lower():
            tracing_setup()

    def process_stopping(**_: Any) -> None:
        tracing_flush()

    worker_process_init.connect(pool_process_started, weak=False)
    worker_process_shutdown.connect(process_stopping, weak=False)
    worker_shutdown.connect(process_stopping, weak=False)
    worker_init.connect(worker_started, weak=False)
    beat_init.connect(pool_process_started, weak=False)
