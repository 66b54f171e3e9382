"""k8s/monitoring/prometheusrule.yaml from monitoring/alerts.yml: ``python -m monitoring.prometheusrule``.

monitoring/alerts.yml is the one source of APM's alert rules (unit-tested by promtool); the Prometheus
Operator reads them as a PrometheusRule object, which this writes. ``--check`` exits 1 when the file in
k8s/ differs from what would be written (``make deploy-check``, tests/monitoring/test_prometheus_operator.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "monitoring" / "alerts.yml"
TARGET = ROOT / "k8s" / "monitoring" / "prometheusrule.yaml"

HEADER = """\
# GENERATED from monitoring/alerts.yml by `python -m monitoring.prometheusrule`: edit alerts.yml (and its
# promtool tests, alerts_test.yml), then run the command again. tests/monitoring/test_prometheus_operator.py
# and `make deploy-check` fail while the two differ. The Prometheus Operator's ruleSelector must match
# these labels (kube-prometheus-stack's default selects `release: <its release name>`: add that label in
# an overlay if yours does).
"""


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line expressions stay readable blocks, as in alerts.yml.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def prometheus_rule(alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "apm",
            "namespace": "apm",
            "labels": {"app.kubernetes.io/name": "apm", "app.kubernetes.io/part-of": "apm"},
        },
        "spec": {"groups": alerts["groups"]},
    }


def render(alerts_path: Path = ALERTS) -> str:
    alerts = yaml.safe_load(alerts_path.read_text())
    body = yaml.dump(prometheus_rule(alerts), Dumper=_Dumper, sort_keys=False, width=200)
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is not up to date")
    options = parser.parse_args(argv)
    wanted = render()
    if options.check:
        if not TARGET.exists() or TARGET.read_text() != wanted:
            print(
                f"{TARGET.relative_to(ROOT)} differs from monitoring/alerts.yml: "
                "run `python -m monitoring.prometheusrule`",
                file=sys.stderr,
            )
            return 1
        print(f"{TARGET.relative_to(ROOT)} is up to date")
        return 0
    TARGET.write_text(wanted)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
