"""``manage.py purge_ingestion_runs --older-than DAYS``: delete old finished ingestion runs."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from repos.services import ingestion_runs_purge


class Command(BaseCommand):
    help = (
        "Delete finished ingestion runs older than DAYS days. The latest run of each repository is kept, "
        "and runs still queued or running are never touched. Safe to run twice at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", type=int, required=True, metavar="DAYS")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["older_than"] < 0:
            raise CommandError(f"--older-than must be 0 or more days, not {options['older_than']}.")
        purged = ingestion_runs_purge(older_than_days=options["older_than"])
        self.stdout.write(
            self.style.SUCCESS(f"{purged} ingestion run(s) older than {options['older_than']} days purged.")
        )
