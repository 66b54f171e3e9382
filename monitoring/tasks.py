"""Celery tasks of the monitoring app."""

from __future__ import annotations

import os
import socket
from typing import Any

from celery import shared_task
from django.db import connections
from django.utils import timezone


@shared_task(name="monitoring.heartbeat", ignore_result=False, acks_late=False)
def monitoring_heartbeat_task() -> dict[str, Any]:
    """Answer from a worker: proves a broker round trip (used by probes, the beat schedule and tests).

    It names the database pool the answering process would use (PostgreSQL only; sized by the worker's
    pool, config.celery_app): what an operator checks against max_connections (docs/operations.md).
    """
    pool = connections["default"].settings_dict.get("OPTIONS", {}).get("pool")
    return {
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "at": timezone.now().isoformat(),
        "database_pool": (
            {"min_size": pool["min_size"], "max_size": pool["max_size"]} if isinstance(pool, dict) else None
        ),
    }
