"""``manage.py ingest_repo <path-or-url> --project KEY [--branch B]``: register and ingest a repository."""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apm.errors import validation_text
from apm.jobs import BrokerUnavailable
from projects.management.base import project_by_key
from repos.models import IngestionRun
from repos.services import ingestion_request, repository_register


class Command(BaseCommand):
    help = "Register a repository (local path under APM_REPO_ROOTS, or https:// URL) and ingest it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", help="Local repository path or https:// URL.")
        parser.add_argument("--project", required=True, help="Key of the project the repository belongs to.")
        parser.add_argument("--branch", default="", help="Branch to ingest (default: the repository's HEAD).")
        parser.add_argument("--name", default="", help="Display name (default: from the source).")

    def handle(self, *args: Any, **options: Any) -> None:
        project = project_by_key(options["project"])
        try:
            repository = repository_register(
                project=project,
                source=options["source"],
                name=options["name"],
                default_branch=options["branch"],
            )
            request = ingestion_request(
                repository=repository, trigger=IngestionRun.Trigger.COMMAND, branch=options["branch"]
            )
        except ValidationError as exc:
            raise CommandError(f"{options['source']}: {validation_text(exc)}") from exc
        except BrokerUnavailable as exc:
            raise CommandError(
                f"{options['source']}: nothing was queued, {exc}. Start the broker (or run without "
                "CELERY_BROKER_URL to ingest in this process) and run the command again."
            ) from exc
        if not request.created:
            self.stdout.write(
                f"An ingestion of {repository.name} is already under way (run {request.run.pk})."
            )
        run = self._follow(request.run)
        if run.status == IngestionRun.Status.FAILED:
            raise CommandError(f"Ingestion of {repository.name} failed (run {run.pk}): {run.error}")
        if run.status != IngestionRun.Status.SUCCEEDED:
            self.stdout.write(
                f"Run {run.pk} continues on the workers: {run.status}, {run.progress:.0%} done."
            )
            return
        seconds = (
            (run.finished_at - run.started_at).total_seconds() if run.started_at and run.finished_at else 0
        )
        read = f" ({run.commits_done} read)" if run.commits_done != run.commits_added else ""
        if run.files_scope == IngestionRun.FilesScope.SKIPPED:
            default = repository.default_branch or "the default branch"
            files = f"the file index follows {default}, not {run.branch}"
        else:
            files = f"{run.files_indexed} files at {run.to_sha[:12] or 'no commits'} on {run.branch or '-'}"
        self.stdout.write(
            self.style.SUCCESS(
                f"{repository.name}: {run.commits_added} new commits{read}, "
                f"{run.file_changes_added} file changes, +{run.lines_added}/-{run.lines_deleted} lines, "
                f"{files} in {seconds:.1f} s (run {run.pk})."
            )
        )
        if run.task_links_created or run.task_requests_applied or run.task_requests_refused:
            self.stdout.write(
                f"Tasks: {run.task_links_created} commit links, {run.task_requests_applied} requests carried "
                f"out, {run.task_requests_refused} refused."
            )
        for note in run.notes:
            self.stdout.write(self.style.WARNING(note))

    def _follow(self, run: IngestionRun, *, timeout: float = 3600) -> IngestionRun:
        """Show a progress bar until the run ends (at once with eager Celery), or until ``timeout``."""
        deadline = time.monotonic() + timeout
        interactive = sys.stdout.isatty()
        while True:
            run.refresh_from_db()
            if interactive:
                filled = int(run.progress * 30)
                self.stdout.write(
                    f"\r[{'#' * filled}{'.' * (30 - filled)}] {run.commits_done}/{run.commits_total} commits "
                    f"{run.files_indexed} files",
                    ending="",
                )
            if (
                run.status not in (IngestionRun.Status.QUEUED, IngestionRun.Status.RUNNING)
                or time.monotonic() > deadline
            ):
                if interactive:
                    self.stdout.write("")
                return run
            time.sleep(0.5)
