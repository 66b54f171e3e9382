"""The Celery workers' metrics server: ``python -m monitoring.worker_metrics [--port 9808]``.

Celery has no HTTP server of its own. This one runs beside the worker (the ``metrics`` container of
k8s/worker-deployment.yaml) and serves what the worker's processes write to ``PROMETHEUS_MULTIPROC_DIR``,
added up: task run times and failures, the last task finished per queue, the workers' database pools.
It answers whom the web process's /metrics answers (monitoring.access, the same settings), by the
connection's own address: Prometheus scrapes the pod directly, through no proxy.

It reads the settings but starts no Django application: it needs neither the database nor the broker.
"""

from __future__ import annotations

import argparse
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from django.conf import settings
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from monitoring.access import WWW_AUTHENTICATE, MetricsAccess, metrics_access_decide, metrics_access_of

DEFAULT_PORT = 9808
# How long a connection may take to send its request: a thread serves each connection, and clients that
# open one and send nothing (or half a request) would otherwise hold their threads for ever. Prometheus
# sends its whole request at once.
READ_TIMEOUT_SECONDS = 10.0


def handler_for(
    access: MetricsAccess, registry: CollectorRegistry, *, read_timeout: float = READ_TIMEOUT_SECONDS
) -> type[BaseHTTPRequestHandler]:
    class MetricsHandler(BaseHTTPRequestHandler):
        # The socket's timeout (socketserver.StreamRequestHandler): a read that waits longer ends the
        # connection and its thread.
        timeout = read_timeout

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in {"/metrics", "/"}:
                self._answer(404, b"not found\n", "text/plain")
                return
            decision = metrics_access_decide(
                access, authorization=self.headers.get("Authorization"), address=self.client_address[0]
            )
            if not decision.allowed:
                extra = {"WWW-Authenticate": WWW_AUTHENTICATE} if decision.status == 401 else {}
                self._answer(decision.status, f"{decision.reason}\n".encode(), "text/plain", extra)
                return
            self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)

        def _answer(
            self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # One line per scrape every 15 s from each Prometheus would drown the pod's logs.
            return

    return MetricsHandler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--bind", default="0.0.0.0")  # noqa: S104  (a pod's port, reached by Prometheus)
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=READ_TIMEOUT_SECONDS,
        help="seconds a connection may take to send its request (default: %(default)s)",
    )
    options = parser.parse_args(argv)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # fails at once without PROMETHEUS_MULTIPROC_DIR
    handler = handler_for(metrics_access_of(settings), registry, read_timeout=options.read_timeout)
    server = ThreadingHTTPServer((options.bind, options.port), handler)
    # Threads that never hold up the process's exit (ThreadingHTTPServer's default, said here).
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
