"""Liveness and readiness endpoints for load balancers and Kubernetes probes.

They answer without authentication on purpose (probes carry no credentials) and disclose nothing but
which dependency is failing.
"""

from __future__ import annotations

import structlog
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from monitoring.checks import readiness_checks

logger = structlog.get_logger(__name__)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving: no dependency is touched, so a database outage never restarts pods."""
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
