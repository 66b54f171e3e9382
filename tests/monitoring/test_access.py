"""Who may read the metrics (monitoring.access): the web process's /metrics through Django's client, the
workers' metrics server as a real process. tests/monitoring/test_scrape.py asks a real gunicorn."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from monitoring.access import MetricsAccess, metrics_access_decide, networks_parse
from tests.processes import PRODUCTION_ENV, ROOT, free_port, production_check_deploy, wait_for

TOKEN = "s3cret-metrics-token"


@pytest.mark.parametrize(
    ("access", "authorization", "address", "status"),
    [
        (MetricsAccess(token=TOKEN), f"Bearer {TOKEN}", "10.1.2.3", 200),
        (MetricsAccess(token=TOKEN), f"bearer   {TOKEN} ", "10.1.2.3", 200),
        (MetricsAccess(token=TOKEN), None, "10.1.2.3", 401),
        (MetricsAccess(token=TOKEN), "Basic dXNlcjpwYXNz", "10.1.2.3", 401),
        (MetricsAccess(token=TOKEN), "Bearer wrong", "10.1.2.3", 403),
        (MetricsAccess(token=TOKEN), f"Bearer {TOKEN}x", "10.1.2.3", 403),
        (MetricsAccess(networks=networks_parse(["10.0.0.0/8"])), None, "10.1.2.3", 200),
        (MetricsAccess(networks=networks_parse(["10.0.0.0/8"])), None, "::ffff:10.1.2.3", 200),
        (MetricsAccess(networks=networks_parse(["10.0.0.0/8"])), None, "192.168.1.1", 403),
        (MetricsAccess(networks=networks_parse(["10.0.0.0/8"])), f"Bearer {TOKEN}", "192.168.1.1", 403),
        (MetricsAccess(token=TOKEN, networks=networks_parse(["fd00::/8"])), None, "fd00::1", 200),
        (MetricsAccess(token=TOKEN, networks=networks_parse(["fd00::/8"])), None, "10.0.0.1", 401),
        (MetricsAccess(open_without_credentials=True), None, "203.0.113.9", 200),
        (MetricsAccess(open_without_credentials=False), None, "127.0.0.1", 403),
        (MetricsAccess(open_without_credentials=False), f"Bearer {TOKEN}", "127.0.0.1", 403),
    ],
)
def test_the_rule(access: MetricsAccess, authorization: str | None, address: str, status: int):
    assert metrics_access_decide(access, authorization=authorization, address=address).status == status


def test_a_malformed_network_is_named():
    with pytest.raises(ValueError, match=re.escape("'10.0.0.0/33'")):
        networks_parse(["10.0.0.0/8", " 10.0.0.0/33"])


@pytest.mark.django_db
def test_metrics_want_the_token(client, settings):
    settings.APM_METRICS_TOKEN = TOKEN
    settings.APM_METRICS_OPEN_WITHOUT_CREDENTIALS = False

    anonymous = client.get("/metrics")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-it")
    right = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"apm_" not in anonymous.content
    assert wrong.status_code == 403
    assert b"apm_" not in wrong.content
    assert right.status_code == 200
    assert b"apm_ingestion_runs_total" in right.content


@pytest.mark.django_db
def test_metrics_from_an_allowed_network_by_the_apis_address_rule(client, settings):
    settings.APM_METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    settings.APM_METRICS_OPEN_WITHOUT_CREDENTIALS = False
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}

    # One trusted proxy: the address it wrote last in X-Forwarded-For is the client's.
    inside = client.get("/metrics", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="10.4.5.6")
    forged = client.get("/metrics", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="10.4.5.6, 198.51.100.7")

    assert inside.status_code == 200
    assert forged.status_code == 403


@pytest.mark.django_db
def test_production_without_a_token_or_networks_refuses_everyone(client, settings):
    settings.APM_METRICS_TOKEN = ""
    settings.APM_METRICS_ALLOWED_NETWORKS = []
    settings.APM_METRICS_OPEN_WITHOUT_CREDENTIALS = False

    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


@pytest.fixture
def worker_metrics_server(tmp_path: Path) -> Iterator[str]:
    """``python -m monitoring.worker_metrics`` as the worker pods' metrics container runs it."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "monitoring.worker_metrics", "--port", str(port), "--bind", "127.0.0.1"],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", ""),
            **PRODUCTION_ENV,
            "APM_METRICS_TOKEN": TOKEN,
            "APM_METRICS_ALLOWED_NETWORKS": "192.0.2.0/24",
            "PROMETHEUS_MULTIPROC_DIR": str(directory),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/metrics"

    def answers() -> bool:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            requests.get(url, timeout=2)
        except requests.ConnectionError:
            return False
        return True

    try:
        wait_for(answers, timeout=30, what="the workers' metrics server")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_workers_metrics_server_wants_the_token_too(worker_metrics_server: str):
    anonymous = requests.get(worker_metrics_server, timeout=5)
    wrong = requests.get(worker_metrics_server, headers={"Authorization": "Bearer nope"}, timeout=5)
    right = requests.get(worker_metrics_server, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    # Its peer address is the connection's own: a forged header does not put 127.0.0.1 in 192.0.2.0/24.
    forged = requests.get(worker_metrics_server, headers={"X-Forwarded-For": "192.0.2.5"}, timeout=5)

    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert wrong.status_code == 403
    assert forged.status_code == 401
    assert right.status_code == 200
    assert right.headers["Content-Type"].startswith("text/plain; version=")


@pytest.mark.parametrize(
    ("variables", "warned"),
    [
        ({}, True),
        ({"APM_METRICS_TOKEN": TOKEN}, False),
        ({"APM_METRICS_ALLOWED_NETWORKS": "10.0.0.0/8"}, False),
    ],
)
def test_check_deploy_warns_when_production_refuses_every_scrape(variables: dict[str, str], warned: bool):
    result = production_check_deploy(**{"APM_METRICS_TOKEN": "", **variables})

    assert ("monitoring.W001" in result.stdout + result.stderr) is warned
    assert result.returncode == (1 if warned else 0), result.stdout + result.stderr
