"""Liveness during a database outage under load: /healthz answers the kubelet in time while every
gunicorn thread is busy waiting for a connection the pool cannot open.

APM served by a real gunicorn (one process of four threads, as gunicorn.conf.py runs it) on a PostgreSQL
cluster of the test's own (tests/faults/test_postgres_outage.py), stopped while clients keep every thread
busy with API requests. Kubernetes restarts a pod whose liveness probe times out (k8s/web-deployment.yaml:
3 s, three probes 10 s apart): a pod restarted for an outage outside it comes back to the same outage,
with its connections and warm caches lost.

The first wave of requests after the stop waits the pool's whole timeout (``DATABASE_POOL_TIMEOUT``,
5 s): nobody knows of the outage yet, and a probe queued behind them may miss its 3 s. One missed probe
restarts nothing; the kubelet restarts a pod whose probes time out three times in a row, 10 s apart,
so only a /healthz slow for 20 s or more. The test asserts that, and that once the process knows of the
outage every probe is quick.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import requests
import yaml

from tests.faults.test_postgres_outage import (  # noqa: F401
    POOL_TIMEOUT_SECONDS,
    App,
    PostgresCluster,
    app,
    cluster,
)

CLIENTS = 12  # three times the threads: some requests always wait in gunicorn's queue
MANIFEST = Path(__file__).resolve().parents[2] / "k8s" / "web-deployment.yaml"


def liveness_probe() -> dict[str, int]:
    """The web container's liveness probe, as k8s/web-deployment.yaml sets it."""
    with MANIFEST.open() as manifest:
        for document in yaml.safe_load_all(manifest):
            if document and document.get("kind") == "Deployment":
                for container in document["spec"]["template"]["spec"]["containers"]:
                    if "livenessProbe" in container:
                        return container["livenessProbe"]
    raise AssertionError("k8s/web-deployment.yaml has no liveness probe")


def test_the_kubelet_never_restarts_a_pod_whose_threads_all_wait_on_the_pool(
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
    probe = liveness_probe()
    timeout = float(probe["timeoutSeconds"])
    # (seconds after the stop the probe was sent, status, seconds it took)
    probes: list[tuple[float, int, float]] = []
    try:
        time.sleep(1)
        cluster.stop()
        stopped = time.monotonic()
        # The first wave waits the pool's whole timeout (5 s here), every later request the outage's
        # shorter wait: the probes cover both.
        while time.monotonic() < stopped + 14:
            started = time.monotonic()
            try:
                status = app.get("/healthz").status_code
            except requests.RequestException:
                status = 0
            probes.append((started - stopped, status, time.monotonic() - started))
            time.sleep(0.5)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=30)

    assert statuses[503] > 0, statuses  # the clients did meet the outage
    assert statuses[500] == 0, statuses
    assert all(status == 200 for _, status, _ in probes), probes
    # The kubelet restarts the pod only if every probe of `failureThreshold` in a row, `periodSeconds`
    # apart, times out: /healthz would have to stay slow this long.
    restart_after = float(probe["periodSeconds"]) * (int(probe["failureThreshold"]) - 1)
    missed = [(sent, took) for sent, _, took in probes if took >= timeout]
    if missed:
        slow_for = max(sent + took for sent, took in missed) - missed[0][0]
        assert slow_for < restart_after, probes
    # The pool's timeout bounds the first wave; past it, the process knows and every probe is in time.
    settled = [took for sent, _, took in probes if sent > POOL_TIMEOUT_SECONDS + timeout]
    assert settled, probes
    assert max(settled) < timeout, probes
