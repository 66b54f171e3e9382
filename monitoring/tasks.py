"""Celery tasks of the monitoring app."""

from __future__ import annotations

import os
import socket
from typing import Any

from celery import shared_task
from django.utils import timezone


@shared_task(name="monitoring.heartbeat", ignore_result=False, acks_late=False)
def monitoring_heartbeat_task() -> dict[str, Any]:
    """Answer from a worker: proves a broker round trip (used by probes, the beat schedule and tests)."""
    return {"hostname": socket.gethostname(), "pid": os.getpid(), "at": timezone.now().isoformat()}
