"""The default periodic tasks, written into django-celery-beat's tables where operators edit them.

``schedule_defaults_install`` runs after every ``migrate``. It adds each entry of
``settings.APM_SCHEDULE_DEFAULTS`` that has no periodic task of that name yet, and changes nothing that
is there: an operator's new time, a disabled entry, other arguments all survive deploys. (Celery's own
``beat_schedule`` setting would be written back over the operator's changes at every beat start.)
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django_celery_beat.models import CrontabSchedule, PeriodicTask


def schedule_defaults_install(*, using: str = "default", **_: Any) -> int:
    """Create the missing default periodic tasks; return how many were created."""
    created = 0
    existing = set(PeriodicTask.objects.using(using).values_list("name", flat=True))
    for name, (task, when, kwargs) in settings.APM_SCHEDULE_DEFAULTS.items():
        if name in existing:
            continue
        fields = {"minute": "*", "hour": "*", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*"}
        fields.update(when)
        crontab, _ = CrontabSchedule.objects.using(using).get_or_create(timezone=settings.TIME_ZONE, **fields)
        _, made = PeriodicTask.objects.using(using).get_or_create(
            name=name, defaults={"task": task, "crontab": crontab, "kwargs": json.dumps(kwargs)}
        )
        created += made
    return created
