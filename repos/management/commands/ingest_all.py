"""``manage.py ingest_all``: ingest every active repository incrementally (safe to run twice at once)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from repos.models import IngestionRun, Repository
from repos.services import ingestion_request


class Command(BaseCommand):
    help = "Queue an incremental ingestion of every active repository; one already under way is left alone."

    def handle(self, *args: Any, **options: Any) -> None:
        queued = skipped = 0
        for repository in Repository.objects.filter(is_active=True).order_by("pk").iterator(chunk_size=500):
            request = ingestion_request(repository=repository, trigger=IngestionRun.Trigger.SCHEDULE)
            if request.created:
                queued += 1
            else:
                skipped += 1
            request.run.refresh_from_db()
            self.stdout.write(f"{repository.name}: run {request.run.pk} {request.run.status}")
        self.stdout.write(self.style.SUCCESS(f"{queued} ingestion(s) queued, {skipped} already under way."))
