"""``manage.py perf_checklist [--json] [--load-report PATH] [--only NAME ...]``.

The performance checklist against the running configuration (monitoring.checklist): a table of every
item with PASS, FAIL, WARN or SKIP and its evidence, or the same as JSON. Exits non-zero on any FAIL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from monitoring.checklist import CHECKS, FAIL, ChecklistContext, checklist_run


class Command(BaseCommand):
    help = "Check the performance checklist against this configuration; exit non-zero on a failure."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the results as JSON.")
        parser.add_argument(
            "--load-report",
            type=Path,
            default=None,
            help="The load scenario's result.json to judge (default: the newest under APM_LOADTEST_DIR).",
        )
        parser.add_argument(
            "--only",
            nargs="+",
            choices=[name for name, _, _ in CHECKS],
            default=None,
            help="Run these checks only.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = options["load_report"]
        if report is not None and not report.is_file():
            raise CommandError(f"--load-report {report}: no such file")
        items = checklist_run(context=ChecklistContext(load_report=report), only=options["only"])
        failed = [item.name for item in items if item.status == FAIL]
        if options["json"]:
            body = {
                "checked_at": timezone.now().isoformat(),
                "passed": not failed,
                "items": [
                    {"name": i.name, "title": i.title, "status": i.status, "evidence": i.evidence}
                    for i in items
                ],
            }
            self.stdout.write(json.dumps(body, indent=2))
        else:
            width = max(len(item.title) for item in items)
            for item in items:
                style = {FAIL: self.style.ERROR, "WARN": self.style.WARNING}.get(item.status, str)
                self.stdout.write(f"{item.title:<{width}}  {style(f'{item.status:<4}')}  {item.evidence}")
        if failed:
            raise CommandError(f"{len(failed)} of {len(items)} checklist items failed: {', '.join(failed)}")
