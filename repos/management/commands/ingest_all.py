"""``manage.py ingest_all [--wait [--timeout SECONDS]]``: ingest every active repository incrementally.

Safe to run twice at once (the schedule and an operator): a repository whose ingestion is under way is
left alone. One line per repository, then an exit status a cron job can act on: 0 when every run
succeeded, is under way elsewhere, or is queued on the workers; 1 when a run failed, or did not end
within ``--timeout`` under ``--wait``.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from celery import current_app
from django.core.management.base import BaseCommand, CommandError, CommandParser

from repos.ingestion.pipeline import ACTIVE_STATUSES
from repos.models import IngestionRun, Repository
from repos.services import repositories_ingest_all

DEFAULT_TIMEOUT = 3600.0
POLL_SECONDS = 1.0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds above 0")
    return seconds


SUCCEEDED, FAILED, UNDER_WAY, QUEUED, UNFINISHED = (
    "succeeded",
    "failed",
    "already under way",
    "queued on the workers",
    "did not end in time",
)


@dataclass
class _Line:
    """What the command says about one repository: ``kind`` is one of the outcomes above."""

    repository: Repository
    run: IngestionRun | None
    kind: str
    text: str

    def __str__(self) -> str:
        run = f"run {self.run.pk}" if self.run is not None else "no run"
        return _one_line(f"{self.repository.name} ({self.repository.project.key}) {run}: {self.text}")


def _ended(repository: Repository, run: IngestionRun) -> _Line:
    if run.status == IngestionRun.Status.FAILED:
        return _Line(repository, run, FAILED, f"failed: {run.error or 'no reason recorded'}")
    commits = run.commits_added
    return _Line(repository, run, SUCCEEDED, f"succeeded, {commits} new commit{'' if commits == 1 else 's'}")


class Command(BaseCommand):
    help = (
        "Ingest every active repository incrementally; one already under way is left alone. Prints one "
        "line per repository and fails (exit status 1) when a run failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--wait",
            action="store_true",
            help="With workers (CELERY_BROKER_URL): follow every run until it ends, and fail if one failed.",
        )
        parser.add_argument(
            "--timeout",
            type=_positive_seconds,
            default=None,
            metavar="SECONDS",
            help=f"How long --wait follows the runs; those still going then count as failed "
            f"(default {DEFAULT_TIMEOUT:.0f}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["timeout"] is not None and not options["wait"]:
            raise CommandError("--timeout applies to --wait only.", returncode=2)
        timeout = options["timeout"] or DEFAULT_TIMEOUT
        lines = self._ingest_all(wait=options["wait"], timeout=timeout)
        self._summarise(lines, timeout=timeout)

    def _ingest_all(self, *, wait: bool, timeout: float) -> list[_Line]:
        """Request each repository's run (with eager Celery it happens here) and say how it went."""
        eager = current_app.conf.task_always_eager
        lines: list[_Line] = []
        followed: dict[int, Repository] = {}
        for entry in repositories_ingest_all(trigger=IngestionRun.Trigger.COMMAND):
            repository, request = entry.repository, entry.request
            if request is None:  # refused before any run was recorded; the others go on
                lines.append(self._say(_Line(repository, None, FAILED, f"failed: {entry.refusal}")))
                continue
            run = request.run
            run.refresh_from_db()
            if run.status not in ACTIVE_STATUSES:
                lines.append(self._say(_ended(repository, run)))
            elif wait:
                followed[run.pk] = repository
            elif not request.created:
                text = f"{UNDER_WAY} ({run.status}, {run.progress:.0%} done)"
                lines.append(self._say(_Line(repository, run, UNDER_WAY, text)))
            elif eager:
                # No worker exists to continue it: the run stopped on an error the log names.
                text = f"failed: stopped while {run.status}; the log above says why"
                lines.append(self._say(_Line(repository, run, FAILED, text)))
            else:
                lines.append(self._say(_Line(repository, run, QUEUED, QUEUED)))
        if followed:
            lines += self._follow(followed, timeout=timeout)
        return lines

    def _follow(self, followed: dict[int, Repository], *, timeout: float) -> list[_Line]:
        """Report each followed run as it ends; after ``timeout`` seconds, the ones still going."""
        deadline = time.monotonic() + timeout
        lines: list[_Line] = []
        while followed:
            for run in IngestionRun.objects.filter(pk__in=list(followed)).exclude(status__in=ACTIVE_STATUSES):
                lines.append(self._say(_ended(followed.pop(run.pk), run)))
            if not followed:
                break
            if time.monotonic() >= deadline:
                for run in IngestionRun.objects.filter(pk__in=list(followed)).order_by("pk"):
                    text = f"still {run.status} after {timeout:.0f} s ({run.progress:.0%} done)"
                    lines.append(self._say(_Line(followed.pop(run.pk), run, UNFINISHED, text)))
                break
            time.sleep(POLL_SECONDS)
        return lines

    def _say(self, line: _Line) -> _Line:
        problem = line.kind in (FAILED, UNFINISHED)
        self.stdout.write(self.style.ERROR(str(line)) if problem else str(line))
        return line

    def _summarise(self, lines: list[_Line], *, timeout: float) -> None:
        total = len(lines)
        if not total:
            self.stdout.write("No active repository to ingest.")
            return
        failed = [line.repository.name for line in lines if line.kind == FAILED]
        unfinished = [line.repository.name for line in lines if line.kind == UNFINISHED]
        problems = []
        if failed:
            problems.append(f"{len(failed)} of {total} ingestions failed: {', '.join(failed)}")
        if unfinished:
            problems.append(
                f"{len(unfinished)} of {total} ingestions did not end within {timeout:.0f} s: "
                f"{', '.join(unfinished)}"
            )
        if problems:
            raise CommandError(_one_line("; ".join(problems)))
        counts = Counter(line.kind for line in lines)
        summary = ", ".join(
            f"{counts[kind]} {kind}" for kind in (SUCCEEDED, UNDER_WAY, QUEUED) if counts[kind]
        )
        noun = "repository" if total == 1 else "repositories"
        self.stdout.write(self.style.SUCCESS(f"{total} {noun}: {summary}."))
