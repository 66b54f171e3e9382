"""``manage.py recompute_progress``: recompute progress and health of projects and refresh their caches."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from insights.analytics import project_progress
from insights.services import project_health_record
from projects.management.base import project_by_key
from projects.models import Project
from projects.services import project_cache_invalidate


class Command(BaseCommand):
    help = (
        "Recompute the progress and health of every active project (or of --project KEY), store the "
        "health level (announcing changes to webhook subscribers) and drop the projects' cached views. "
        "Safe to run twice at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", help="Only this project (its key).")

    def handle(self, *args: Any, **options: Any) -> None:
        projects = Project.objects.filter(status=Project.Status.ACTIVE)
        if options["project"]:
            projects = Project.objects.filter(pk=project_by_key(options["project"]).pk)
        for project in projects.order_by("key").iterator(chunk_size=200):
            project_cache_invalidate(project_id=project.pk)
            progress = project_progress(project=project)
            previous, level = project_health_record(project=project)
            change = f" (was {previous})" if previous and previous != level else ""
            trend = progress["trend"] * 100
            self.stdout.write(
                f"{project.key}: progress {progress['progress']:.0%}, trend {trend:+.1f} pts a week, "
                f"health {level} {project.health_score}/100{change}"
            )
