"""``manage.py backup [--keep N] [--database ALIAS] [--no-exports]``: back up the database.

Writes a dump of the database (and a tar of the export files when they are on local disk) to the
backup storage, deletes the oldest backups beyond ``APM_BACKUP_KEEP`` and prints what it wrote and
deleted. The CronJob of k8s/backup-cronjob.yaml runs it; docs/operations.md, "Backups and restore".
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils.connection import ConnectionDoesNotExist

from apm.backups import BackupError, backup_create


class Command(BaseCommand):
    help = "Back up the database (and local export files) to the backup storage, keeping the newest N."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--keep",
            type=int,
            default=None,
            help="Backups to keep, the newest; older ones are deleted (default: APM_BACKUP_KEEP; 0: all).",
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias to back up.")
        parser.add_argument(
            "--no-exports",
            action="store_true",
            help="Leave out the export files even when they are on local disk.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            connections[options["database"]]
        except ConnectionDoesNotExist as exc:
            raise CommandError(f"No database {options['database']!r} in DATABASES.") from exc
        try:
            written = backup_create(
                database=options["database"],
                keep=options["keep"],
                exports=False if options["no_exports"] else None,
            )
        except BackupError as exc:
            raise CommandError(f"Nothing was backed up: {exc}.") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Database: {written.database} ({written.database_bytes} bytes) in {written.storage}."
            )
        )
        if written.exports:
            self.stdout.write(f"Export files: {written.exports} ({written.exports_files} files).")
        for name in written.deleted:
            self.stdout.write(f"Deleted the older backup {name}.")
