"""Liveness during a database outage under load: /healthz answers within the probe's timeout while every
gunicorn thread is busy waiting for a connection the pool cannot open.

APM served by a real gunicorn (one process of four threads, as gunicorn.conf.py runs it) on a PostgreSQL
cluster of the test's own (tests/faults/test_postgres_outage.py), stopped while clients keep every thread
busy with API requests. Kubernetes restarts a pod whose liveness probe times out (k8s/web-deployment.yaml:
3 s, three times): a pod restarted for an outage outside it comes back to the same outage, with its
connections and warm caches lost.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import requests

from tests.faults.test_postgres_outage import App, PostgresCluster, app, cluster  # noqa: F401

# k8s/web-deployment.yaml: livenessProbe timeoutSeconds.
PROBE_TIMEOUT_SECONDS = 3.0
CLIENTS = 12  # three times the threads: some requests always wait in gunicorn's queue


def test_healthz_answers_within_the_probe_timeout_while_every_thread_waits_on_the_pool(
    cluster: PostgresCluster,  # noqa: F811
    app: App,  # noqa: F811
):
    assert app.get("/api/v1/projects/", session=app.api).status_code == 200
    stop = threading.Event()
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def client() -> None:
        session = requests.Session()
        session.headers.update(app.api.headers)
        while not stop.is_set():
            try:
                status = app.get("/api/v1/projects/", session=session).status_code
            except requests.RequestException:
                status = 0
            with lock:
                statuses[status] += 1

    clients = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for thread in clients:
        thread.start()
    probes: list[tuple[int, float]] = []
    try:
        time.sleep(1)
        cluster.stop()
        # The first wave waits the pool's whole timeout (5 s here), every later request the outage's
        # shorter wait: the probes cover both.
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                status = app.get("/healthz").status_code
            except requests.RequestException:
                status = 0
            probes.append((status, time.monotonic() - started))
            time.sleep(0.5)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=30)

    assert statuses[503] > 0, statuses  # the clients did meet the outage
    assert statuses[500] == 0, statuses
    slowest = max(seconds for _, seconds in probes)
    assert all(status == 200 for status, _ in probes), probes
    assert slowest < PROBE_TIMEOUT_SECONDS, probes
