"""Writes of insights: the health assessment recorded on the project."""

from __future__ import annotations

import datetime

from django.db import transaction

from insights.analytics import project_health
from projects.models import Project
from projects.services import project_cache_invalidate
from webhooks.models import WebhookEvent
from webhooks.services import webhook_event_emit


def project_health_record(
    *, project: Project, now: datetime.datetime | None = None
) -> tuple[str | None, str]:
    """Write: compute ``project``'s health and store it on the project; return (previous level, new level).

    A change of level is announced to webhook subscribers (``project.health_changed``), except the very
    first assessment, which has nothing to change from. The project's row is locked while the level is
    compared and written, so two concurrent recomputations announce a change once.
    """
    health = project_health(project=project, now=now)
    level = health["level"]
    with transaction.atomic():
        previous, previous_score = (
            Project.objects.select_for_update()
            .filter(pk=project.pk)
            .values_list("health_level", "health_score")
            .get()
        )
        Project.objects.filter(pk=project.pk).update(
            health_level=level, health_score=health["score"], health_checked_at=health["checked_at"]
        )
        if (previous, previous_score) != (level, health["score"]):
            # The portfolio (dashboard) shows the recorded level and score.
            project_cache_invalidate(project_id=project.pk)
        if previous and previous != level:
            webhook_event_emit(
                project_id=project.pk,
                event=WebhookEvent.PROJECT_HEALTH_CHANGED,
                data={
                    "project": project.key,
                    "previous_level": previous,
                    "level": level,
                    "score": health["score"],
                    "reasons": health["reasons"],
                },
            )
    project.health_level, project.health_score = level, health["score"]
    project.health_checked_at = health["checked_at"]
    return previous or None, level
