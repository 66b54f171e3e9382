"""The beat scheduler: django-celery-beat's database schedule, with a heartbeat file for liveness.

Beat's loop calls ``tick()`` at least every five seconds (django-celery-beat's longest sleep), sending
what is due; each tick, and each due task it sends, touches ``APM_HEARTBEAT_FILE`` when it is set
(apm.heartbeat), so a frozen or stuck beat fails its liveness probe while a broker outage does not: a
due task that cannot be sent is logged after the publish gives up (seconds), and the loop goes on. A
tick that meets several due tasks during an outage takes those seconds for each; touching between them
keeps the file as fresh as one publish. Beat connects to the broker when the first task is due, retrying
at growing intervals while the broker is away (``broker_connection_max_retries``); each retry touches
the file too: waiting for the broker is alive, not stuck.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler

from apm.heartbeat import heartbeat_touch

logger = logging.getLogger("celery.beat")


class HeartbeatDatabaseScheduler(DatabaseScheduler):
    """``DatabaseScheduler`` whose every tick, and every due task it sends, touches the heartbeat file."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        _beat()
        return float(super().tick(*args, **kwargs))

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        _beat()
        super().apply_entry(entry, producer=producer)

    def _ensure_connected(self) -> Any:
        # celery.beat.Scheduler's own, with a heartbeat at each retry.
        def retrying(exc: Exception, interval: float) -> None:
            logger.error("beat: Connection error: %s. Trying again in %s seconds...", exc, interval)
            _beat()

        return self.connection.ensure_connection(retrying, self.app.conf.broker_connection_max_retries)


def _beat() -> None:
    if settings.APM_HEARTBEAT_FILE:
        heartbeat_touch(settings.APM_HEARTBEAT_FILE)
