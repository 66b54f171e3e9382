"""The Kubernetes manifests start the processes the settings expect (``make deploy-check`` validates their
schema; this checks what they say): each queue has workers, liveness never goes through the broker, and
the connections the pools may open fit the numbers k8s/configmap.yaml adds up."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from config import topology

K8S = Path(__file__).resolve().parents[2] / "k8s"
HEARTBEAT_PROBE = ["python", "-m", "apm.heartbeat", "/tmp/apm-heartbeat", "--max-age", "60"]  # noqa: S108


def manifest(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((K8S / name).read_text()))


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def environment(container: dict[str, Any]) -> dict[str, str]:
    return {variable["name"]: variable.get("value", "") for variable in container.get("env", [])}


def test_each_queue_has_workers_of_its_own_with_a_grace_period_for_its_tasks():
    default = manifest("worker-deployment.yaml")
    ingestion = manifest("worker-ingestion-deployment.yaml")

    assert container(default, "worker")["command"] == [
        "celery",
        "-A",
        "config",
        "worker",
        "-Q",
        "celery",
        "-l",
        "info",
    ]
    assert container(ingestion, "worker")["command"] == [
        *("celery", "-A", "config", "worker", "-Q", topology.INGESTION_QUEUE, "-l", "info")
    ]
    # Chunks take minutes, webhooks and exports seconds.
    assert ingestion["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 600
    assert default["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 120
    listed = manifest("kustomization.yaml")["resources"]
    for name in ("worker-ingestion-deployment.yaml", "worker-ingestion-hpa.yaml"):
        assert name in listed
    assert manifest("worker-ingestion-hpa.yaml")["spec"]["scaleTargetRef"]["name"] == "apm-worker-ingestion"


def test_both_worker_deployments_have_a_disruption_budget_and_beat_none():
    listed = manifest("kustomization.yaml")["resources"]
    documents = [document for name in listed for document in yaml.safe_load_all((K8S / name).read_text())]
    budgets = {
        document["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for document in documents
        if document["kind"] == "PodDisruptionBudget"
    }

    assert budgets == {"web", "worker", "worker-ingestion"}
    # A budget on beat's one replica would block every drain: its manifest says so instead.
    assert "No PodDisruptionBudget, on purpose" in (K8S / "beat-deployment.yaml").read_text()


def test_worker_and_beat_liveness_read_the_heartbeat_file_not_the_broker():
    for name, container_name in [
        ("worker-deployment.yaml", "worker"),
        ("worker-ingestion-deployment.yaml", "worker"),
        ("beat-deployment.yaml", "beat"),
    ]:
        process = container(manifest(name), container_name)
        assert environment(process)["APM_HEARTBEAT_FILE"] == HEARTBEAT_PROBE[3], name
        assert process["livenessProbe"]["exec"]["command"] == HEARTBEAT_PROBE, name
        assert process["startupProbe"]["exec"]["command"] == HEARTBEAT_PROBE, name


def test_the_connection_arithmetic_of_the_configmap_matches_the_manifests():
    """k8s/configmap.yaml states, per pod and at the autoscalers' bounds, what the pools may open."""
    web = manifest("web-deployment.yaml")
    web_env = environment(container(web, "web"))
    # The arithmetic perf_checklist uses (config.topology.connections_demand), one pod at a time.
    web_pod = topology.connections_demand(
        web_processes=int(web_env["GUNICORN_WORKERS"]),
        web_threads=int(web_env["GUNICORN_THREADS"]),
        worker_processes=0,
        environ={},
    )["web"]
    worker_pods = {}
    for name in ("worker-deployment.yaml", "worker-ingestion-deployment.yaml"):
        processes = int(environment(container(manifest(name), "worker"))["CELERY_WORKER_CONCURRENCY"])
        worker_pods[name] = topology.connections_demand(
            web_processes=0, web_threads=1, worker_processes=processes, environ={}
        )["workers"]
    beat = topology.connections_demand(
        web_processes=0,
        web_threads=1,
        worker_processes=0,
        environ=environment(container(manifest("beat-deployment.yaml"), "beat")),
    )["beat"]

    def bounds(hpa: str) -> tuple[int, int]:
        spec = manifest(hpa)["spec"]
        return spec["minReplicas"], spec["maxReplicas"]

    rows = {
        "web": (web_pod, bounds("web-hpa.yaml")),
        "worker (celery)": (worker_pods["worker-deployment.yaml"], bounds("worker-hpa.yaml")),
        "worker-ingestion": (
            worker_pods["worker-ingestion-deployment.yaml"],
            bounds("worker-ingestion-hpa.yaml"),
        ),
    }
    surge = sum(per_pod for per_pod, _ in rows.values())
    least = sum(per_pod * low for per_pod, (low, _) in rows.values()) + beat + surge
    most = sum(per_pod * high for per_pod, (_, high) in rows.values()) + beat + surge
    text = (K8S / "configmap.yaml").read_text()

    for label, (per_pod, (low, high)) in rows.items():
        line = next(line for line in text.splitlines() if line.strip().startswith(f"#   {label} "))
        assert f"{per_pod}/pod" in line, line
        assert re.search(rf"{low * per_pod}\s*\.\.\s*{high * per_pod}$", line), line
    assert re.search(rf"total\s.*->\s*{least}\s*\.\.\s*{most}$", text, re.MULTILINE), (least, most)


def test_the_backup_cronjob_runs_the_backup_command_once_at_a_time_like_the_migration_job():
    cronjob = manifest("backup-cronjob.yaml")
    migrate = manifest("migrate-job.yaml")
    assert cronjob["metadata"]["name"] == "apm-backup"
    assert "backup-cronjob.yaml" in manifest("kustomization.yaml")["resources"]
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] >= 1
    assert spec["failedJobsHistoryLimit"] >= 1
    job = spec["jobTemplate"]["spec"]
    assert 0 < job["activeDeadlineSeconds"] <= 24 * 3600
    pod = job["template"]["spec"]
    (backup,) = pod["containers"]
    (migration,) = migrate["spec"]["template"]["spec"]["containers"]
    assert backup["command"] == ["python", "manage.py", "backup"]
    # The image, settings and hardening of the migration Job.
    assert (backup["image"], backup["envFrom"]) == (migration["image"], migration["envFrom"])
    assert backup["securityContext"] == migration["securityContext"]
    assert pod["securityContext"] == migrate["spec"]["template"]["spec"]["securityContext"]
    assert pod["automountServiceAccountToken"] is False
    # The dump is spooled in Python's temporary directory: on a read-only root, a volume must be there.
    assert "/tmp" in {mount["mountPath"] for mount in backup["volumeMounts"]}  # noqa: S108 (a mount path)
    # Its pods may reach the data stores and the backup bucket (https), nothing else.
    labels = job["template"]["metadata"]["labels"]
    policies = list(yaml.safe_load_all((K8S / "networkpolicies.yaml").read_text()))
    selecting = {
        policy["metadata"]["name"]
        for policy in policies
        if policy["spec"]["podSelector"]
        and all(
            labels.get(key) == value
            for key, value in policy["spec"]["podSelector"].get("matchLabels", {}).items()
        )
        and not policy["spec"]["podSelector"].get("matchExpressions")
    }
    assert selecting == {"apm-data-stores", "apm-backup-egress"}


def test_the_pgbouncer_component_points_the_backup_at_postgresql_itself():
    text = (K8S / "pgbouncer" / "kustomization.yaml").read_text()
    component = yaml.safe_load(text)
    (patch,) = [p for p in component["patches"] if p["target"] == {"kind": "CronJob", "name": "apm-backup"}]
    operations = yaml.safe_load(patch["patch"])
    names = {operation["value"]["name"]: operation["value"] for operation in operations}
    assert names["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "DATABASE_DIRECT_URL"
    assert names["DATABASE_PGBOUNCER"]["value"] == "false"
    path = "/spec/jobTemplate/spec/template/spec/containers/0/env/-"
    assert all(operation["path"] == path for operation in operations)
    assert (
        "env"
        in manifest("backup-cronjob.yaml")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    )


def test_the_web_process_defaults_of_gunicorn_conf_are_the_topologys():
    """perf_checklist counts GUNICORN_WORKERS x GUNICORN_THREADS with topology's defaults when unset."""
    script = (
        "import os, runpy; "
        "[os.environ.pop(name, None) for name in ('GUNICORN_WORKERS', 'GUNICORN_THREADS')]; "
        "conf = runpy.run_path('gunicorn.conf.py'); print(conf['workers'], conf['threads'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=K8S.parent, capture_output=True, text=True, check=True
    )

    assert result.stdout.split() == [str(topology.WEB_PROCESSES_DEFAULT), str(topology.WEB_THREADS_DEFAULT)]
