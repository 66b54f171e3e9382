"""``manage.py restore [NAME | --path FILE] [--database ALIAS] [--source-database ALIAS] [--force]``.

Restores the named backup of the backup storage (without a name, the newest backup of the database
alias, ``--source-database`` or else ``--database``, by this deployment, ``APM_BACKUP_NAME``), or a local
file, into an empty database; ``--force`` replaces the contents of one that is not empty (not on
MariaDB). The file is checked first, and a failed restore leaves the database as it was.
docs/operations.md, "Backups and restore".
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils.connection import ConnectionDoesNotExist

from apm.backups import BackupError, backup_restore


class Command(BaseCommand):
    help = "Restore a backup (default: the newest in the backup storage) into an empty database."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", nargs="?", default="", help="Backup name in the backup storage.")
        parser.add_argument("--path", default="", help="Restore this local file instead.")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias to restore into.")
        parser.add_argument(
            "--source-database",
            default="",
            help="Without a NAME, restore the newest backup of this alias (default: the --database alias).",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Replace the contents of a database that is not empty (stop web, workers and beat first; "
            "refused on MariaDB: restore into a new database instead).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            connections[options["database"]]
        except ConnectionDoesNotExist as exc:
            raise CommandError(f"No database {options['database']!r} in DATABASES.") from exc
        try:
            restored = backup_restore(
                name=options["name"],
                path=options["path"],
                database=options["database"],
                source=options["source_database"],
                force=options["force"],
            )
        except BackupError as exc:
            raise CommandError(f"Nothing was restored: {exc}.") from exc
        replaced = f", replacing {restored.replaced} tables" if restored.replaced else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"Restored {restored.backup} into {restored.database}: {restored.tables} tables{replaced}."
            )
        )
        self.stdout.write("Run `manage.py migrate` if this release has migrations the backup predates.")
