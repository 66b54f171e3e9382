"""The Gateway API edge (k8s/gateway.yaml) and the network policies, checked offline against the rest of k8s/.

kubernetes-validate knows the core API only, and the Gateway API kinds are CRDs: here each object is
checked against the fields of the Gateway API v1 standard channel that APM uses (an unknown or misspelt
field fails, as the API server's structural schema would refuse it), and against the Service, the
ConfigMap and the pods it must agree with. Run by `make deploy-check` and by the suite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "k8s"
GATEWAY_API = "gateway.networking.k8s.io/v1"

# The fields of Gateway API v1 (standard channel) an object here may use, by path; "*" is any map key.
ALLOWED_FIELDS = {
    "Gateway": {
        "": {"apiVersion", "kind", "metadata", "spec"},
        "metadata": {"name", "namespace", "labels"},
        "metadata.labels": {"*"},
        "spec": {"gatewayClassName", "listeners"},
        "spec.listeners[]": {"name", "protocol", "port", "hostname", "tls", "allowedRoutes"},
        "spec.listeners[].tls": {"mode", "certificateRefs"},
        "spec.listeners[].tls.certificateRefs[]": {"kind", "group", "name"},
        "spec.listeners[].allowedRoutes": {"namespaces"},
        "spec.listeners[].allowedRoutes.namespaces": {"from"},
    },
    "HTTPRoute": {
        "": {"apiVersion", "kind", "metadata", "spec"},
        "metadata": {"name", "namespace", "labels"},
        "metadata.labels": {"*"},
        "spec": {"parentRefs", "hostnames", "rules"},
        "spec.parentRefs[]": {"name", "sectionName"},
        "spec.rules[]": {"matches", "backendRefs", "filters", "timeouts"},
        "spec.rules[].matches[]": {"path"},
        "spec.rules[].matches[].path": {"type", "value"},
        "spec.rules[].backendRefs[]": {"name", "port"},
        "spec.rules[].filters[]": {"type", "requestRedirect"},
        "spec.rules[].filters[].requestRedirect": {"scheme", "statusCode"},
        "spec.rules[].timeouts": {"request", "backendRequest"},
    },
}


def _documents(name: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all((K8S / name).read_text()) if document]


def _one(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _unknown_fields(value: Any, allowed: dict[str, set[str]], path: str = "") -> list[str]:
    if isinstance(value, list):
        return [problem for item in value for problem in _unknown_fields(item, allowed, f"{path}[]")]
    if not isinstance(value, dict):
        return []
    keys = allowed.get(path)
    if keys is None:
        return [f"{path}: not a field of the API here"]
    problems = [] if "*" in keys else [f"{path}.{key}".lstrip(".") for key in value if key not in keys]
    for key, item in value.items():
        if "*" not in keys and key in keys:
            problems += _unknown_fields(item, allowed, f"{path}.{key}".lstrip("."))
    return problems


GATEWAY_OBJECTS = _documents("gateway.yaml")


@pytest.mark.parametrize("document", GATEWAY_OBJECTS, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_each_object_uses_only_the_standard_gateway_api_fields(document: dict[str, Any]):
    assert document["apiVersion"] == GATEWAY_API
    assert document["kind"] in ALLOWED_FIELDS
    assert document["metadata"]["namespace"] == "apm"
    # No controller's annotations: the edge works with any conformant controller.
    assert _unknown_fields(document, ALLOWED_FIELDS[document["kind"]]) == []


def test_the_gateway_ends_tls_with_the_secret_and_serves_the_allowed_host():
    gateway = _one(GATEWAY_OBJECTS, "Gateway", "apm")
    config = _one(_documents("configmap.yaml"), "ConfigMap", "apm-config")
    hosts = config["data"]["DJANGO_ALLOWED_HOSTS"].split(",")
    assert gateway["spec"]["gatewayClassName"]
    listeners = {listener["name"]: listener for listener in gateway["spec"]["listeners"]}
    https = listeners["https"]
    assert (https["protocol"], https["port"], https["tls"]["mode"]) == ("HTTPS", 443, "Terminate")
    assert https["tls"]["certificateRefs"] == [{"kind": "Secret", "group": "", "name": "apm-tls"}]
    assert {listener["hostname"] for listener in listeners.values()} <= set(hosts)
    assert f"https://{https['hostname']}" in config["data"]["DJANGO_CSRF_TRUSTED_ORIGINS"].split(",")


def test_the_route_sends_everything_but_metrics_to_the_web_service():
    gateway = _one(GATEWAY_OBJECTS, "Gateway", "apm")
    route = _one(GATEWAY_OBJECTS, "HTTPRoute", "apm-web")
    service = _one(_documents("web-service.yaml"), "Service", "apm-web")
    listener_names = {listener["name"] for listener in gateway["spec"]["listeners"]}
    assert route["spec"]["parentRefs"] == [{"name": "apm", "sectionName": "https"}]
    assert {parent["sectionName"] for parent in route["spec"]["parentRefs"]} <= listener_names

    by_path = {match["path"]["value"]: rule for rule in route["spec"]["rules"] for match in rule["matches"]}
    assert set(by_path) == {"/", "/metrics"}
    # The longest prefix wins: /metrics and everything under it match the rule without a backend (404).
    assert all(
        match["path"]["type"] == "PathPrefix" for rule in route["spec"]["rules"] for match in rule["matches"]
    )
    assert "backendRefs" not in by_path["/metrics"]
    assert "filters" not in by_path["/metrics"]
    service_ports = {port["port"] for port in service["spec"]["ports"]}
    assert by_path["/"]["backendRefs"] == [{"name": service["metadata"]["name"], "port": 80}]
    assert {ref["port"] for ref in by_path["/"]["backendRefs"]} <= service_ports


def test_plain_http_only_redirects_to_https():
    route = _one(GATEWAY_OBJECTS, "HTTPRoute", "apm-web-redirect")
    assert route["spec"]["parentRefs"] == [{"name": "apm", "sectionName": "http"}]
    (rule,) = route["spec"]["rules"]
    assert "backendRefs" not in rule
    assert rule["filters"] == [
        {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}
    ]


def test_the_kustomization_applies_the_gateway_and_the_policies_and_no_ingress():
    resources = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert {"gateway.yaml", "networkpolicies.yaml"} <= set(resources)
    assert all((K8S / resource).exists() for resource in resources)
    assert not [
        d for name in resources if name.endswith(".yaml") for d in _documents(name) if d["kind"] == "Ingress"
    ]


def _container_ports(name: str) -> set[int]:
    (deployment,) = [d for d in _documents(name) if d["kind"] == "Deployment"]
    return {
        port["containerPort"]
        for container in deployment["spec"]["template"]["spec"]["containers"]
        for port in container.get("ports", [])
    }


def test_the_network_policies_open_the_ports_the_pods_listen_on():
    policies = {d["metadata"]["name"]: d for d in _documents("networkpolicies.yaml")}
    deny = policies["apm-default-deny"]["spec"]
    assert (deny["podSelector"], sorted(deny["policyTypes"])) == ({}, ["Egress", "Ingress"])

    def ingress_ports(policy: str) -> set[int]:
        return {
            port["port"] for rule in policies[policy]["spec"]["ingress"] for port in rule.get("ports", [])
        }

    assert ingress_ports("apm-web-ingress") == _container_ports("web-deployment.yaml")
    assert ingress_ports("apm-worker-metrics-ingress") == _container_ports("worker-deployment.yaml")
    # The worker's internet egress leaves out the private ranges and the metadata service.
    (worker_rule,) = policies["apm-worker-egress"]["spec"]["egress"]
    (block,) = worker_rule["to"]
    assert block["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(
        block["ipBlock"]["except"]
    )
    assert {port["port"] for port in worker_rule["ports"]} == {443, 22, 9418}
    data_ports = {
        port["port"] for rule in policies["apm-data-stores"]["spec"]["egress"] for port in rule["ports"]
    }
    assert {5432, 6432, 6379} <= data_ports
    # PgBouncer takes APM's connections and makes its own to PostgreSQL, nothing else.
    pgbouncer = policies["apm-pgbouncer"]["spec"]
    assert ingress_ports("apm-pgbouncer") == {6432}
    assert [port["port"] for rule in pgbouncer["egress"] for port in rule["ports"]] == [5432]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels and matchExpressions) matches ``labels``."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        present, value = expression["key"] in labels, labels.get(expression["key"])
        matched = {
            "In": present and value in expression.get("values", []),
            "NotIn": not present or value not in expression.get("values", []),
            "Exists": present,
            "DoesNotExist": not present,
        }[expression["operator"]]
        if not matched:
            return False
    return True


def _pod_labels(path: str) -> dict[str, str]:
    (deployment,) = [d for d in _documents(path) if d["kind"] == "Deployment"]
    return deployment["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize(
    ("deployment", "policies"),
    [
        ("web-deployment.yaml", {"apm-web-ingress", "apm-data-stores"}),
        ("worker-deployment.yaml", {"apm-worker-metrics-ingress", "apm-worker-egress", "apm-data-stores"}),
        (
            "worker-ingestion-deployment.yaml",
            {"apm-worker-metrics-ingress", "apm-worker-egress", "apm-data-stores"},
        ),
        ("beat-deployment.yaml", {"apm-data-stores"}),
        ("pgbouncer/pgbouncer-deployment.yaml", {"apm-pgbouncer", "apm-data-stores"}),
    ],
)
def test_each_deployments_pods_get_the_policies_meant_for_them(deployment: str, policies: set[str]):
    labels = _pod_labels(deployment)
    selecting = {
        policy["metadata"]["name"]
        for policy in _documents("networkpolicies.yaml")
        if policy["spec"]["podSelector"] and _selects(policy["spec"]["podSelector"], labels)
    }

    assert selecting == policies


def test_prometheus_scrapes_both_worker_deployments():
    (pod_monitor,) = [d for d in _documents("monitoring/servicemonitor.yaml") if d["kind"] == "PodMonitor"]

    for deployment in ("worker-deployment.yaml", "worker-ingestion-deployment.yaml"):
        assert _selects(pod_monitor["spec"]["selector"], _pod_labels(deployment)), deployment
    assert not _selects(pod_monitor["spec"]["selector"], _pod_labels("web-deployment.yaml"))


@pytest.mark.parametrize("deployment", ["worker-deployment.yaml", "worker-ingestion-deployment.yaml"])
def test_each_workers_metrics_are_served_to_prometheus_only(deployment: str):
    (manifest,) = [d for d in _documents(deployment) if d["kind"] == "Deployment"]
    (metrics,) = [c for c in manifest["spec"]["template"]["spec"]["containers"] if c["name"] == "metrics"]

    # monitoring.worker_metrics asks for APM_METRICS_TOKEN or an allowed address, read from the Secret
    # and the ConfigMap; a bare prometheus_client server would answer anyone.
    assert metrics["command"][:3] == ["python", "-m", "monitoring.worker_metrics"]
    sources = {next(iter(source.values()))["name"] for source in metrics["envFrom"]}
    assert sources == {"apm-config", "apm-secrets"}
