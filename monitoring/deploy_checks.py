"""``manage.py check --deploy``: a production that refuses its metrics to everyone, Prometheus included."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from monitoring.access import networks_parse


@register(Tags.security, deploy=True)
def metrics_access_check(app_configs: Any = None, **_: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    try:
        networks = networks_parse(settings.APM_METRICS_ALLOWED_NETWORKS)
    except ValueError as error:
        messages.append(Error(str(error), id="monitoring.E001"))
        networks = ()
    if not settings.APM_METRICS_OPEN_WITHOUT_CREDENTIALS and not (settings.APM_METRICS_TOKEN or networks):
        messages.append(
            Warning(
                "/metrics and the workers' metrics server refuse every request (403): neither "
                "APM_METRICS_TOKEN nor APM_METRICS_ALLOWED_NETWORKS is set.",
                hint="Set APM_METRICS_TOKEN in the Secret and give Prometheus the same token "
                "(k8s/monitoring/servicemonitor.yaml), or APM_METRICS_ALLOWED_NETWORKS to its pods' network.",
                id="monitoring.W001",
            )
        )
    return messages
