"""``manage.py retention [--dry-run]``: how many rows of each retention member are old, and delete them."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reports.retention import FAMILY, MEMBERS, member_old_count, member_purge


class Command(BaseCommand):
    help = (
        "Apply the retention settings (APM_*_KEEP_DAYS) now: print, per kind of row, how many are older than "
        "its setting, and delete them in batches. A setting of 0 keeps that kind forever."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what is old; delete nothing.")
        parser.add_argument("--only", choices=sorted(MEMBERS), help="One kind of row instead of all.")
        parser.add_argument("--batch-size", type=int, default=1000, metavar="N")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError(f"--batch-size must be 1 or more, not {options['batch_size']}.")
        members = [MEMBERS[options["only"]]] if options["only"] else list(FAMILY)
        for member in members:
            days = member.days()
            if not days:
                self.stdout.write(f"{member.name}: kept forever ({member.setting}=0)")
                continue
            old = member_old_count(member)
            if options["dry_run"]:
                self.stdout.write(f"{member.name}: {old} older than {days} days (dry run, nothing deleted)")
                continue
            deleted = member_purge(member, batch_size=options["batch_size"])
            self.stdout.write(f"{member.name}: {old} older than {days} days, {deleted} deleted")
