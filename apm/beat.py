"""The beat scheduler: django-celery-beat's database schedule, with a heartbeat file for liveness.

Beat's loop calls ``tick()`` at least every five seconds (django-celery-beat's longest sleep), sending
what is due; each tick touches ``APM_HEARTBEAT_FILE`` when it is set (apm.heartbeat), so a frozen or
stuck beat fails its liveness probe while a broker outage (a due task that cannot be sent is logged,
and the loop goes on) does not.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler

from apm.heartbeat import heartbeat_touch


class HeartbeatDatabaseScheduler(DatabaseScheduler):
    """``DatabaseScheduler`` whose every tick touches the heartbeat file."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if settings.APM_HEARTBEAT_FILE:
            heartbeat_touch(settings.APM_HEARTBEAT_FILE)
        return float(super().tick(*args, **kwargs))
