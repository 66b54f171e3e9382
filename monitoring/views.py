"""Liveness and readiness endpoints for load balancers and Kubernetes probes.

They answer without authentication on purpose (probes carry no credentials) and disclose nothing but
which dependency is failing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from monitoring.access import WWW_AUTHENTICATE, metrics_access_decide, metrics_access_of
from monitoring.checks import readiness_checks
from monitoring.collectors import ScrapeCollector, database_pools_observe

logger = structlog.get_logger(__name__)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving: no dependency is touched, so a database outage never restarts pods."""
    return JsonResponse({"status": "ok"})


def loadtest_baseline(request: HttpRequest) -> JsonResponse:
    """A constant answer: what serving costs before any work (mounted with APM_LOADTEST_BASELINE only)."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """The process can serve real traffic: the database answers.

    The cache is checked and reported too, but a cache outage only makes pages slower (the cache
    ignores Redis errors), so it marks the pod ``degraded`` instead of taking it out of service.
    """
    results = readiness_checks()
    ready = all(result.ok for result in results if result.name != "cache")
    for result in results:
        if not result.ok:
            # The reason goes to the logs only: the probe endpoint is public.
            logger.warning("readiness_check_failed", check=result.name, error=result.error)
    body = {
        "status": ("ok" if all(result.ok for result in results) else "degraded") if ready else "unavailable",
        "checks": {
            result.name: {"ok": result.ok, "ms": round(result.seconds * 1000, 1)} for result in results
        },
    }
    return JsonResponse(body, status=200 if ready else 503)


def metrics_refusal(request: HttpRequest) -> HttpResponse | None:
    """The 401/403 a request gets unless it may read the metrics (monitoring.access), else None."""
    # The connection's own address, never X-Forwarded-For: Prometheus scrapes the pods directly, through
    # no proxy, and whatever reaches the pod's port could write any address in that header.
    address = request.META.get("REMOTE_ADDR")
    decision = metrics_access_decide(
        metrics_access_of(settings), authorization=request.headers.get("Authorization"), address=address
    )
    if decision.allowed:
        return None
    logger.warning("metrics_refused", status=decision.status, reason=decision.reason)
    response = HttpResponse(f"{decision.reason}\n", status=decision.status, content_type="text/plain")
    if decision.status == 401:
        response["WWW-Authenticate"] = WWW_AUTHENTICATE
    return response


class _Registries(Collector):
    """Several sources read as one: the process's (or the processes') metrics and the scrape's own."""

    def __init__(self, *sources: Collector, figures: list[Metric]) -> None:
        self._sources = sources
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            yield from source.collect()
        yield from self._figures


def metrics_registry() -> Collector:
    """Under gunicorn (PROMETHEUS_MULTIPROC_DIR) every process's files added up, else this process's,
    with the figures asked for at scrape time."""
    # The beat's figure uses a connection of its own, never the pool: a process that has served no
    # request yet reports no pool, as it has none.
    figures: list[Metric] = list(ScrapeCollector().collect())
    # This process's pool, as of now (the other processes wrote theirs after their last request).
    database_pools_observe()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
        return _Registries(processes, figures=figures)
    return _Registries(REGISTRY, figures=figures)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus' text format, for Prometheus only (APM_METRICS_TOKEN / APM_METRICS_ALLOWED_NETWORKS)."""
    refusal = metrics_refusal(request)
    if refusal is not None:
        return refusal
    return HttpResponse(generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST)
