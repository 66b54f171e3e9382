"""k8s/monitoring/: the Prometheus Operator's objects. kubernetes-validate knows no CRD, so their shape is
checked here (``make deploy-check`` runs this file): the PrometheusRule is monitoring/alerts.yml as
generated, and the ServiceMonitor/PodMonitor select the pods, ports and Secret key that exist."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from monitoring.prometheusrule import TARGET, main, render

K8S = Path(__file__).resolve().parents[2] / "k8s"
MONITORING = K8S / "monitoring"
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
# The fields of the Operator's Endpoint/PodMetricsEndpoint used here (monitoring.coreos.com/v1): an
# unknown key is a typo the Operator would ignore (and scrape without the token).
ENDPOINT_FIELDS = {"port", "path", "scheme", "interval", "scrapeTimeout", "authorization"}


def documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def by_kind(path: Path) -> dict[str, dict[str, Any]]:
    return {document["kind"]: document for document in documents(path)}


def test_the_prometheusrule_is_alerts_yml_as_generated():
    assert TARGET.read_text() == render(), "run: python -m monitoring.prometheusrule"
    assert main(["--check"]) == 0


def test_a_changed_alerts_yml_fails_the_check(tmp_path: Path):
    changed = tmp_path / "alerts.yml"
    alerts = yaml.safe_load((Path(__file__).resolve().parents[2] / "monitoring" / "alerts.yml").read_text())
    alerts["groups"][0]["rules"][0]["for"] = "7m"
    changed.write_text(yaml.safe_dump(alerts))

    assert render(changed) != TARGET.read_text()


def test_the_prometheusrule_has_the_operators_shape():
    (rule,) = documents(TARGET)
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["namespace"] == "apm"
    names = set()
    for group in rule["spec"]["groups"]:
        assert set(group) == {"name", "rules"}
        for item in group["rules"]:
            assert set(item) <= {"alert", "expr", "for", "labels", "annotations"}, item
            assert item["alert"] not in names
            names.add(item["alert"])
            assert item["expr"].strip()
            assert item["labels"]["severity"] in {"warning", "critical"}
            assert DURATION.match(item.get("for", "0s")), item
            assert {"summary", "description"} <= set(item["annotations"])
    assert len(names) >= 19


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def _secret_keys() -> set[str]:
    return set(by_kind(K8S / "secret.example.yaml")["Secret"]["stringData"])


def _check_endpoint(endpoint: dict[str, Any]) -> None:
    assert set(endpoint) <= ENDPOINT_FIELDS, endpoint
    assert endpoint["path"] == "/metrics"
    assert DURATION.match(endpoint["interval"])
    assert endpoint["authorization"]["type"] == "Bearer"
    credentials = endpoint["authorization"]["credentials"]
    assert credentials["name"] == "apm-secrets"
    assert credentials["key"] in _secret_keys()
    assert credentials["key"] == "APM_METRICS_TOKEN"


def test_the_servicemonitor_scrapes_the_web_service_with_the_token():
    monitor = by_kind(MONITORING / "servicemonitor.yaml")["ServiceMonitor"]
    service = by_kind(K8S / "web-service.yaml")["Service"]

    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert _matches(monitor["spec"]["selector"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    _check_endpoint(endpoint)


def test_the_podmonitor_scrapes_each_workers_metrics_container_with_the_token():
    monitor = by_kind(MONITORING / "servicemonitor.yaml")["PodMonitor"]
    deployment = by_kind(K8S / "worker-deployment.yaml")["Deployment"]
    template = deployment["spec"]["template"]

    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert _matches(monitor["spec"]["selector"], template["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    ports = {
        port["name"] for container in template["spec"]["containers"] for port in container.get("ports", [])
    }
    assert endpoint["port"] in ports
    _check_endpoint(endpoint)
    (metrics,) = [container for container in template["spec"]["containers"] if container["name"] == "metrics"]
    assert metrics["command"][:3] == ["python", "-m", "monitoring.worker_metrics"]
    assert {"secretRef": {"name": "apm-secrets"}} in metrics["envFrom"]


def test_the_component_lists_its_files_and_stays_out_of_the_base():
    component = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    base = yaml.safe_load((K8S / "kustomization.yaml").read_text())

    assert component["kind"] == "Component"
    assert all((MONITORING / name).is_file() for name in component["resources"])
    # Without the Operator's CRDs `kubectl apply -k k8s/` would fail on them: they are opt-in.
    assert not any("monitoring" in name for name in base["resources"] + base.get("components", []))
