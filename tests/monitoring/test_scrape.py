"""APM deployed as in production, scraped as Prometheus scrapes it.

gunicorn (gunicorn.conf.py, two worker processes, PROMETHEUS_MULTIPROC_DIR) on production settings and a
PostgreSQL cluster of the test's own; a real ``celery worker`` beside it, with the workers' metrics
server (monitoring.worker_metrics) reading the worker's metrics directory, as in the worker pods. Then:

- every metric named by monitoring/alerts.yml's expressions and by each panel of
  monitoring/grafana/apm.json is returned by one of the two scrapes (``up`` is Prometheus' own);
- /metrics wants the bearer token there too (401 with WWW-Authenticate, 403, 200);
- every line gunicorn and the application wrote to stdout and stderr is one JSON object.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from apm.services import TOKEN_PREFIX
from tests.conftest import require_service
from tests.faults.test_postgres_outage import PostgresCluster, cluster  # noqa: F401
from tests.isolation import celery_client, namespace, redis_broker
from tests.processes import (
    ROOT,
    celery_worker_start,
    celery_worker_stop,
    free_port,
    gunicorn_serve,
    process_stop,
    serve,
    wait_for,
)
from tests.repos.test_commands import broker_queue_remove

TOKEN = "scrape-token-" + "t" * 20
# A producer without a key prefix: production settings know none (tests/isolation.py).
BROKER = redis_broker(keyprefix=False)
CACHE = os.environ.get("APM_TEST_REDIS_CACHE_URL", "redis://127.0.0.1:6379/15")

ALERTS = ROOT / "monitoring" / "alerts.yml"
DASHBOARD = ROOT / "monitoring" / "grafana" / "apm.json"

# --- Metric names out of PromQL -----------------------------------------------------------------------
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
# Label lists of the aggregations and of vector matching: names of labels, not of metrics.
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
_KEYWORDS |= {"group_left", "group_right", "inf", "nan", "atan2", "start", "end"}
# Prometheus' own series, present without any exporter.
PROMETHEUS_OWN = {"up"}


def promql_metric_names(expression: str) -> set[str]:
    """The metric names an expression selects: identifiers not called as functions, outside label
    matchers, strings, ranges and label lists, and not PromQL's keywords."""
    text = _STRINGS.sub('""', expression)
    text = _RANGES.sub("", text)
    while _MATCHERS.search(text):
        text = _MATCHERS.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def test_promql_metric_names():
    expression = """
        histogram_quantile(0.95, sum by (namespace, le) (rate(a_seconds_bucket{view!~"x|y", le="+Inf"}[5m])))
          > 1 and on (queue) (time() - max without (pod) (b_timestamp_seconds offset 5m) < 600)
          or absent(c_total{namespace="apm"}) unless sum(rate(d:recorded[1h] @ end())) > bool 0
          / ignoring (x) group_left (y) e_total{status=~"5.."} + topk(5, up{job=`a b`})
    """
    assert promql_metric_names(expression) == {
        "a_seconds_bucket",
        "b_timestamp_seconds",
        "c_total",
        "d:recorded",
        "e_total",
        "up",
    }
    assert promql_metric_names("sum(rate(x_total[5m])) by (le, view)") == {"x_total"}
    assert promql_metric_names('label_replace(x, "dst", "$1", "src", "(.*)")') == {"x"}


def alert_expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())

    def panels(items: list[dict]) -> Iterator[dict]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    return [target["expr"] for panel in panels(dashboard["panels"]) for target in panel.get("targets", [])]


def test_the_dashboard_is_provisionable():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]

    # The data source is a variable: the same file imports (__inputs) and provisions on any Grafana.
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert {input_["name"] for input_ in dashboard["__inputs"]} == {"DS_PROMETHEUS"}
    assert all(panel["datasource"]["uid"] == "${DS_PROMETHEUS}" for panel in panels)
    assert all(
        target["datasource"]["uid"] == "${DS_PROMETHEUS}" for panel in panels for target in panel["targets"]
    )
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "apm-overview"
    assert dashboard["id"] is None
    titles = " ".join(panel["title"] for panel in panels).lower()
    for subject in ("requests", "latency", "errors", "ingest", "queue", "task failures", "cache", "pool"):
        assert subject in titles, subject


def test_the_dashboard_and_the_alerts_name_metrics():
    # The parser must find something in each: an empty set would make the scrape test pass vacuously.
    assert all(promql_metric_names(expression) for expression in alert_expressions())
    assert all(promql_metric_names(expression) for expression in dashboard_expressions())
    assert len(dashboard_expressions()) >= 20


# --- APM as deployed ----------------------------------------------------------------------------------
@dataclass
class Deployment:
    web: str
    worker_metrics: str
    logs: list[Path]


def _production_env(cluster: PostgresCluster, tmp_path: Path, metrics_dir: Path) -> dict[str, str]:  # noqa: F811
    return {
        **{key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}},
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "scrape-" + "s" * 60,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": cluster.url,
        "DATABASE_POOL_SIZE": "2",
        "DATABASE_MAX_OVERFLOW": "2",
        "REDIS_URL": CACHE,
        "CACHE_KEY_PREFIX": namespace(),
        "CELERY_BROKER_URL": str(BROKER),
        "CELERY_RESULT_BACKEND": str(BROKER),
        "APM_METRICS_TOKEN": TOKEN,
        "APM_METRICS_QUEUES": f"apm-scrape-{os.getpid()}",
        "APM_WORKSPACE": str(tmp_path / "workspace"),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }


@pytest.fixture
def deployment(cluster: PostgresCluster, tmp_path: Path) -> Iterator[Deployment]:  # noqa: F811
    require_service(BROKER)
    require_service(CACHE)
    queue = f"apm-scrape-{os.getpid()}"
    web_dir, worker_dir = tmp_path / "web-metrics", tmp_path / "worker-metrics"
    worker_dir.mkdir()
    env = _production_env(cluster, tmp_path, web_dir)
    migrated = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input"],
        cwd=ROOT,
        env={key: value for key, value in env.items() if key != "PROMETHEUS_MULTIPROC_DIR"},
        capture_output=True,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    web_port, worker_port = free_port(), free_port()
    processes: list[subprocess.Popen[bytes]] = []
    worker = None
    try:
        processes.append(gunicorn_serve(env, port=web_port, log=tmp_path / "gunicorn.log", workers=2))
        processes.append(
            serve(
                [
                    sys.executable,
                    "-m",
                    "monitoring.worker_metrics",
                    "--port",
                    str(worker_port),
                    "--bind",
                    "127.0.0.1",
                ],
                {**env, "PROMETHEUS_MULTIPROC_DIR": str(worker_dir)},
                log=tmp_path / "worker-metrics.log",
                url=f"http://127.0.0.1:{worker_port}/metrics",
                what="the workers' metrics server",
            )
        )
        worker = celery_worker_start(
            queue=queue,
            env={
                "HOME": str(tmp_path),
                "DATABASE_URL": cluster.url,
                "DATABASE_POOL_SIZE": "1",
                "CELERY_BROKER_URL": str(BROKER),
                "CELERY_RESULT_BACKEND": str(BROKER),
                "CELERY_TASK_DEFAULT_QUEUE": queue,
                "PROMETHEUS_MULTIPROC_DIR": str(worker_dir),
            },
        )
        # A task through the broker, as the schedule sends one: the worker's task metrics get values.
        client = celery_client("apm-scrape-client", BROKER)
        client.send_task("monitoring.heartbeat", queue=queue).get(timeout=60)
        yield Deployment(
            web=f"http://127.0.0.1:{web_port}",
            worker_metrics=f"http://127.0.0.1:{worker_port}/metrics",
            logs=[tmp_path / "gunicorn.log"],
        )
    finally:
        if worker is not None:
            celery_worker_stop(worker)
        for process in processes:
            process_stop(process)
        broker_queue_remove(BROKER, queue)


def _sample_names(text: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def _samples(text: str, name: str) -> set[str]:
    """The first label value of each sample of ``name`` (its queue, its alias)."""
    return {
        next(iter(sample.labels.values()))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def _beat_has_run(env_url: str) -> None:
    """What the beat writes when it sends a periodic task (django-celery-beat's last_run_at)."""
    import psycopg  # noqa: PLC0415

    with psycopg.connect(env_url) as connection:
        connection.execute("UPDATE django_celery_beat_periodictask SET last_run_at = now()")


def test_every_metric_of_the_alerts_and_the_dashboard_is_scraped(deployment: Deployment, cluster):  # noqa: F811
    _beat_has_run(cluster.url)
    for path in ("/healthz", "/readyz", "/readyz"):
        assert requests.get(f"{deployment.web}{path}", timeout=30).status_code == 200
    # A request that asks the database (a token looked up, and refused) opens the process's pool, whose
    # gauges the scrape reports; the probes and the scrape use connections of their own.
    unknown = {"Authorization": f"Token {TOKEN_PREFIX}not-a-token-of-anyone"}
    assert requests.get(f"{deployment.web}/api/v1/projects/", headers=unknown, timeout=30).status_code == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    # The request's process writes its pool's gauges once the response is sent (request_finished).
    metrics_url = f"{deployment.web}/metrics"
    wait_for(
        lambda: "apm_db_pool_size{" in requests.get(metrics_url, headers=bearer, timeout=30).text,
        timeout=30,
        what="the pool's gauges of the process that served the API request",
    )

    web = requests.get(f"{deployment.web}/metrics", headers=bearer, timeout=30)
    worker = requests.get(deployment.worker_metrics, headers=bearer, timeout=30)

    assert web.status_code == 200, web.text[:500]
    assert worker.status_code == 200, worker.text[:500]
    scraped = _sample_names(web.text) | _sample_names(worker.text) | PROMETHEUS_OWN
    missing = {
        source: sorted(set().union(*(promql_metric_names(e) for e in expressions)) - scraped)
        for source, expressions in (
            ("alerts.yml", alert_expressions()),
            ("apm.json", dashboard_expressions()),
        )
    }
    assert missing == {"alerts.yml": [], "apm.json": []}
    # The worker's own figures come from the worker, the broker's from the web process, by queue.
    queue = f"apm-scrape-{os.getpid()}"
    assert _samples(worker.text, "apm_celery_last_task_finished_timestamp_seconds") == {queue}
    assert _samples(web.text, "apm_celery_queue_depth") == {queue}
    assert _samples(web.text, "apm_db_pool_max_size") == {"default"}


def test_gunicorn_wants_the_token_and_logs_json(deployment: Deployment):
    anonymous = requests.get(f"{deployment.web}/metrics", timeout=30)
    wrong = requests.get(f"{deployment.web}/metrics", headers={"Authorization": "Bearer no"}, timeout=30)
    right = requests.get(
        f"{deployment.web}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )

    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert wrong.status_code == 403
    assert right.status_code == 200
    lines = deployment.logs[0].read_text().splitlines()
    loggers = set()
    for line in lines:
        try:
            loggers.add(json.loads(line)["logger"])
        except (ValueError, KeyError):
            pytest.fail(f"not a JSON line with a logger: {line!r}")
    # gunicorn's own lines (start-up, workers, access log) are among them, not only the application's.
    assert {"gunicorn.error", "gunicorn.access", "django_structlog.middlewares.request"} <= loggers
