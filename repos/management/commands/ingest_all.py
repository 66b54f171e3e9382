"""``manage.py ingest_all``: ingest every active repository incrementally (safe to run twice at once)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from repos.models import IngestionRun
from repos.services import repositories_ingest_all


class Command(BaseCommand):
    help = "Queue an incremental ingestion of every active repository; one already under way is left alone."

    def handle(self, *args: Any, **options: Any) -> None:
        requests = repositories_ingest_all(trigger=IngestionRun.Trigger.SCHEDULE)
        for request in requests:
            request.run.refresh_from_db()
            self.stdout.write(f"{request.run.repository.name}: run {request.run.pk} {request.run.status}")
        queued = sum(1 for request in requests if request.created)
        self.stdout.write(
            self.style.SUCCESS(f"{queued} ingestion(s) queued, {len(requests) - queued} already under way.")
        )
