"""``manage.py report_project KEY --since DATE --format md|html|csv``: a project's digest or CSV export."""

from __future__ import annotations

import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date

from apm.dates import DAY_RANGE_MESSAGE, day_in_range
from projects.management.base import project_by_key
from reports.digest import csv_write, digest_render, export_filters_clean, project_digest
from reports.models import ExportJob


class Command(BaseCommand):
    help = (
        "Write a project's digest for a period (progress, what closed, what slipped, hotspots, "
        "contributors) as Markdown or HTML, or export its tasks or commits as CSV. Writes to standard "
        "output unless --output names a file."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key", help="Project key, e.g. APM.")
        parser.add_argument(
            "--since",
            help="First day of the period, YYYY-MM-DD (digest: default the 7 days up to --until, or up to "
            "today, or up to the project's last commit or task change when nothing happened since; "
            "CSV: default no limit).",
        )
        parser.add_argument("--until", help="Last day of the period, YYYY-MM-DD (default: today).")
        parser.add_argument("--format", choices=["md", "html", "csv"], default="md")
        parser.add_argument(
            "--export",
            choices=["tasks", "commits"],
            default="tasks",
            help="With --format csv: which rows to export (tasks updated, or commits made, in the period).",
        )
        parser.add_argument("--output", help="Write to this file instead of standard output.")

    def handle(self, *args: Any, **options: Any) -> None:
        project = project_by_key(options["key"])
        days = {name: self._date(options[name], name) for name in ("since", "until")}
        fmt = options["format"]
        try:
            out = open(options["output"], "w", encoding="utf-8", newline="") if options["output"] else None  # noqa: SIM115
        except OSError as exc:  # a missing directory, a read-only filesystem, no permission
            raise CommandError(f"Cannot write {options['output']}: {exc.strerror or exc}.") from exc
        try:
            # self.stdout (not sys.stdout) so call_command(stdout=...) captures it.
            target = out or self.stdout
            if fmt == "csv":
                kind = (
                    ExportJob.Kind.TASKS_CSV if options["export"] == "tasks" else ExportJob.Kind.COMMITS_CSV
                )
                filters = export_filters_clean(
                    project=project,
                    kind=kind,
                    filters={name: day.isoformat() for name, day in days.items() if day},
                )
                rows = csv_write(out=target, kind=kind, project=project, filters=filters)
            else:
                digest = project_digest(project=project, since=days["since"], until=days["until"])
                target.write(digest_render(digest, fmt=fmt))
                rows = None
        except ValidationError as exc:
            problems = (
                [
                    f"{field}: {message}"
                    for field, messages in exc.message_dict.items()
                    for message in messages
                ]
                if hasattr(exc, "error_dict")
                else exc.messages
            )
            raise CommandError(f"{project.key}: {'; '.join(problems)}") from exc
        finally:
            if out is not None:
                out.close()
        if options["output"]:
            written = f"{rows} rows" if rows is not None else "the digest"
            self.stderr.write(self.style.SUCCESS(f"Wrote {written} to {options['output']}."))

    @staticmethod
    def _date(value: str | None, name: str) -> datetime.date | None:
        if not value:
            return None
        try:
            day = parse_date(value)
        except ValueError:  # well formed, but no such day (2026-02-30)
            day = None
        if day is None:
            raise CommandError(f"--{name} {value!r} is not a date; give YYYY-MM-DD.")
        if not day_in_range(day):
            raise CommandError(f"--{name} {value}: {DAY_RANGE_MESSAGE}")
        return day
