"""Who may read the metrics (monitoring.access): the web process's /metrics through Django's client, the
workers' metrics server as a real process. tests/monitoring/test_scrape.py asks a real gunicorn."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from monitoring.access import MetricsAccess, metrics_access_decide, networks_parse
from tests.processes import (
    PRODUCTION_ENV,
    ROOT,
    free_port,
    manage,
    process_stop,
    production_check_deploy,
    wait_for,
)

TOKEN = "s3cret-metrics-token-" + "m" * 12


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
def test_metrics_from_an_allowed_network_by_the_connections_own_address(client, settings):
    settings.APM_METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    settings.APM_METRICS_OPEN_WITHOUT_CREDENTIALS = False
    # The API trusts one proxy (k8s/configmap.yaml); Prometheus scrapes the pods through none.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}

    inside = client.get("/metrics", REMOTE_ADDR="10.4.5.6")
    # Anything that reaches the pod's port may write any X-Forwarded-For: it admits nobody.
    claimed = client.get("/metrics", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="10.4.5.6")
    claimed_last = client.get(
        "/metrics", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="198.51.100.7, 10.4.5.6"
    )
    # Nor does it take an allowed connection's admission away.
    inside_forwarding = client.get("/metrics", REMOTE_ADDR="10.4.5.6", HTTP_X_FORWARDED_FOR="198.51.100.7")

    assert inside.status_code == 200
    assert claimed.status_code == 403
    assert claimed_last.status_code == 403
    assert inside_forwarding.status_code == 200


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


def test_a_malformed_network_stops_the_web_process_at_start():
    # Any command starts Django with production's settings, as gunicorn does; none reaches /metrics.
    result = manage("check", **{**PRODUCTION_ENV, "APM_METRICS_ALLOWED_NETWORKS": "10.0.0.0/8,10.0.0.0/33"})

    assert result.returncode != 0
    assert "APM_METRICS_ALLOWED_NETWORKS: '10.0.0.0/33' is not a network" in result.stderr


def test_a_malformed_network_stops_the_workers_metrics_server_at_start(tmp_path: Path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitoring.worker_metrics",
            "--port",
            str(free_port()),
            "--bind",
            "127.0.0.1",
        ],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", ""),
            **PRODUCTION_ENV,
            "APM_METRICS_ALLOWED_NETWORKS": "10.0.0.0/33",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "'10.0.0.0/33'" in result.stderr


@pytest.mark.parametrize(
    "token", ["CHANGE-ME-to-32-random-characters", "x", "t" * 23, "CHANGE-ME" + "x" * 40]
)
def test_production_refuses_a_placeholder_or_short_token(token: str):
    result = production_check_deploy(APM_METRICS_TOKEN=token)

    assert result.returncode != 0
    assert "APM_METRICS_TOKEN is the example's placeholder or shorter than 24 characters" in result.stderr


def test_production_takes_a_token_of_24_characters():
    result = production_check_deploy(APM_METRICS_TOKEN="t" * 24)

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_workers_metrics_server_closes_connections_that_send_nothing(tmp_path: Path):
    directory = tmp_path / "prometheus"
    directory.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitoring.worker_metrics",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--read-timeout",
            "1",
        ],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", ""),
            **PRODUCTION_ENV,
            "APM_METRICS_TOKEN": TOKEN,
            "PROMETHEUS_MULTIPROC_DIR": str(directory),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    idle: list[socket.socket] = []
    try:
        wait_for(lambda: _answers(url), timeout=30, what="the workers' metrics server")
        # Connections that send nothing, and one that sends half a request.
        for _ in range(5):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=15))
        idle[-1].sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")

        # The server ends each of them after its read timeout (1 s): the read returns end of file, where
        # a server without one would leave it waiting until this socket's own timeout (15 s) fails it.
        for connection in idle:
            connection.settimeout(15)
            assert connection.recv(1024) == b""
        assert requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).status_code == 200
    finally:
        for connection in idle:
            connection.close()
        process_stop(process)


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=2)
    except requests.ConnectionError:
        return False
    return True
