"""OpenTelemetry tracing (config/otel.py): nothing loaded when off, one trace from request to task when on.

The end-to-end test serves APM with gunicorn and runs a real Celery worker, both exporting over OTLP/HTTP
to a receiver this test runs on 127.0.0.1, and follows the worker's task span back to the request that
enqueued it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage

from apm.services import api_token_create
from config.otel import exporter_names, tracing_requested
from repos.models import IngestionRun
from repos.services import repository_register
from tests.conftest import require_service
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.isolation import broker_flush, redis_broker, worker_environment
from tests.processes import (
    ROOT,
    celery_worker_start,
    celery_worker_stop,
    database_url,
    free_port,
    gunicorn_serve,
    process_stop,
    wait_for,
    worker_database_env,
)
from tests.repos.gitrepo import GitRepo

# What tracing loads: the trace SDK, the exporters, the instrumentation.
TRACING_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.exporter", "opentelemetry.instrumentation")
BROKER = redis_broker()  # keyed under this test process's namespace (tests/isolation.py)


@pytest.mark.parametrize(
    ("environ", "requested"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "apm-web"}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "false"}, True),
    ],
)
def test_tracing_is_on_only_when_the_environment_asks(environ: dict[str, str], requested: bool):
    assert tracing_requested(environ) is requested


def test_exporters_are_read_from_the_environment_and_unknown_ones_refused():
    assert exporter_names({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) == ["otlp"]
    assert exporter_names({"OTEL_TRACES_EXPORTER": "otlp, console"}) == ["otlp", "console"]
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER names zipkin"):
        exporter_names({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ValueError, match="http/protobuf only"):
        exporter_names({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})


@pytest.mark.parametrize(
    ("name", "endpoint"),
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "not-a-url"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),  # no scheme: "collector" would be read as one
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://collector:4317"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:port"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "/v1/traces"),
    ],
)
def test_an_otlp_endpoint_that_is_not_an_http_url_is_refused(name: str, endpoint: str):
    with pytest.raises(ValueError, match=f"{name} is '{endpoint}': give the collector's URL"):
        exporter_names({name: endpoint})


def test_http_and_https_endpoints_are_taken():
    for endpoint in ("http://collector:4318", "https://otel.example.com", "http://[::1]:4318/v1/traces"):
        assert exporter_names({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint}) == ["otlp"]
    # Only the OTLP exporter sends anywhere: the console exporter does not read the endpoint.
    assert exporter_names({"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}) == [
        "console"
    ]


def test_the_web_process_refuses_to_start_with_an_endpoint_that_is_not_a_url():
    base = {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}}
    done = subprocess.run(
        [sys.executable, "-c", "import config.wsgi"],
        cwd=ROOT,
        env={
            **base,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "not-a-url",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "OTEL_EXPORTER_OTLP_ENDPOINT is 'not-a-url'" in done.stderr


# What redis-py loads of OpenTelemetry on its own (since 8.0 it imports the metrics SDK, when installed,
# for its optional observability), then what the web process's entry point and the Celery app add, loaded
# as gunicorn and a worker load them. One line each.
_LOADED = """
import sys

def loaded():
    return sorted(name for name in sys.modules if name.split(".")[0] == "opentelemetry")

import redis
print(loaded())
import config.wsgi
import config.celery_app
print(loaded())
"""


def _modules_loaded(**environ: str) -> tuple[list[str], list[str]]:
    base = {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}}
    done = subprocess.run(
        [sys.executable, "-c", _LOADED],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "config.settings.test", **environ},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    by_redis, after_apm = (ast.literal_eval(line) for line in done.stdout.strip().splitlines()[-2:])
    return by_redis, after_apm


def test_when_off_apm_imports_no_opentelemetry_module():
    by_redis, after_apm = _modules_loaded()
    assert after_apm == by_redis
    assert not [name for name in after_apm if name.startswith(TRACING_MODULES)]
    # The same process with tracing asked for does load them: the check above can see the modules.
    by_redis, after_apm = _modules_loaded(OTEL_TRACES_EXPORTER="console")
    added = set(after_apm) - set(by_redis)
    assert {"opentelemetry.sdk.trace", "opentelemetry.instrumentation.django"} <= added


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: int
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes


class OtlpReceiver:
    """The traces half of an OTLP/HTTP collector (POST /v1/traces, protobuf), keeping every span it gets."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                receiver.receive(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def receive(self, request: ExportTraceServiceRequest) -> None:
        received = []
        for resource_spans in request.resource_spans:
            attributes = {item.key: item.value.string_value for item in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                received += [
                    ReceivedSpan(
                        service=attributes.get("service.name", ""),
                        name=span.name,
                        kind=span.kind,
                        trace_id=span.trace_id,
                        span_id=span.span_id,
                        parent_span_id=span.parent_span_id,
                    )
                    for span in scope_spans.spans
                ]
        with self._lock:
            self.spans += received

    def snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


def _tracing_environment(receiver: OtlpReceiver, service: str) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": service,
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        # Spans are sent within 200 ms instead of the default 5 s.
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }


def _request_span_of(spans: list[ReceivedSpan], task_span: ReceivedSpan) -> ReceivedSpan | None:
    """The web's server span that ``task_span`` descends from, following parent ids across services."""
    by_id = {span.span_id: span for span in spans if span.trace_id == task_span.trace_id}
    span: ReceivedSpan | None = task_span
    while span is not None:
        if span.service == "apm-web" and span.kind == SpanMessage.SPAN_KIND_SERVER:
            return span
        span = by_id.get(span.parent_span_id)
    return None


@pytest.mark.django_db(transaction=True)
def test_a_task_enqueued_by_a_request_continues_the_request_trace(
    tmp_path: Path, settings, receiver: OtlpReceiver
):
    require_service(BROKER)
    broker_flush(BROKER)
    settings.APM_REPO_ROOTS = [str(tmp_path)]
    repo = GitRepo(tmp_path / "traced")
    for number in range(3):
        repo.write(f"file{number}.txt", f"line {number}\n")
        repo.commit(f"Change {number}")
    member = UserFactory(username="tracer")
    project = ProjectFactory(key="TRACE", name="Traced")
    MembershipFactory(project=project, user=member, role="member")
    repository = repository_register(project=project, source=str(repo.path))
    token = api_token_create(user=member, name="tracing")[1]

    # Whatever queue the ingestion tasks are routed to, this worker consumes it.
    queues = "celery,ingestion"
    common = {
        **worker_database_env(home=str(tmp_path), broker=BROKER, queue="celery"),
        "APM_REPO_ROOTS": str(tmp_path),
        "APM_WORKSPACE": str(tmp_path / "workspace"),
        **({"REDIS_URL": os.environ["REDIS_URL"]} if os.environ.get("REDIS_URL") else {}),
    }
    worker = celery_worker_start(queue=queues, env={**common, **_tracing_environment(receiver, "apm-worker")})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    try:
        web = gunicorn_serve(
            {
                "PATH": os.environ.get("PATH", ""),
                "DJANGO_SETTINGS_MODULE": "config.settings.test",
                **worker_environment(BROKER),
                **common,
                **_tracing_environment(receiver, "apm-web"),
            },
            port=port,
            log=tmp_path / "gunicorn.log",
            # A worker still loading Django and OpenTelemetry on a busy machine.
            timeout=120,
        )
    except BaseException:
        celery_worker_stop(worker)
        raise
    try:
        response = requests.post(
            f"{base}/api/v1/repositories/{repository.pk}/ingest/",
            headers={"Authorization": f"Token {token}"},
            json={},
            timeout=60,
        )
        assert response.status_code == 202, response.text
        run_id = response.json()["run"]
        wait_for(
            lambda: IngestionRun.objects.get(pk=run_id).status in ("succeeded", "failed"),
            timeout=120,
            what=f"run {run_id} to end on the worker",
        )
        run = IngestionRun.objects.get(pk=run_id)
        assert (run.status, run.error, run.commits_done) == ("succeeded", "", 3)

        def task_span() -> ReceivedSpan | None:
            return next(
                (
                    span
                    for span in receiver.snapshot()
                    if span.service == "apm-worker"
                    and span.kind == SpanMessage.SPAN_KIND_CONSUMER
                    and span.name == "run/repos.ingest"
                ),
                None,
            )

        wait_for(lambda: task_span() is not None, timeout=30, what="the worker's span of repos.ingest")
        consumed = task_span()
        assert consumed is not None
        wait_for(
            lambda: _request_span_of(receiver.snapshot(), consumed) is not None,
            timeout=30,
            what="the request's server span, as an ancestor of the task's span",
        )
    finally:
        process_stop(web)
        celery_worker_stop(worker)
        broker_flush(BROKER)

    spans = receiver.snapshot()
    request_span = _request_span_of(spans, consumed)
    assert request_span is not None
    assert request_span.trace_id == consumed.trace_id
    assert "ingest" in request_span.name
    # The probes the test polled are left out of the traces.
    served = [span.name for span in spans if span.kind == SpanMessage.SPAN_KIND_SERVER]
    assert served
    assert not [name for name in served if "healthz" in name]
    # The worker's database work is in the same trace: psycopg's spans on PostgreSQL.
    if database_url().startswith("postgres://"):
        assert any(
            span.service == "apm-worker"
            and span.trace_id == consumed.trace_id
            and span.kind == SpanMessage.SPAN_KIND_CLIENT
            for span in spans
        )
