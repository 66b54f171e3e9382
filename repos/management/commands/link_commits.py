"""Re-apply a project's commit grammar to the history already stored: links only, never transitions."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from projects.management.base import project_by_key
from repos.linking import commits_link_tasks
from repos.models import Repository


class Command(BaseCommand):
    help = (
        "Link the stored commits of a project's repositories to the tasks their messages name, with the "
        "project's current grammar. Existing links are kept; no task is moved and no time is logged. "
        "Safe to run twice, and beside an ingestion."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="Project key, e.g. APM.")
        parser.add_argument("--repository", help="Only this repository of the project (its name).")

    def handle(self, *args: Any, **options: Any) -> None:
        project = project_by_key(options["project"])
        repositories = Repository.objects.filter(project=project).select_related("project").order_by("name")
        if options["repository"]:
            repositories = repositories.filter(name=options["repository"])
            if not repositories.exists():
                raise CommandError(f"{project.key} has no repository named {options['repository']!r}.")
        for repository in repositories:
            report = commits_link_tasks(repository=repository, mode="history")
            self.stdout.write(
                f"{repository.name}: {report.commits_scanned} commits read, {report.links_created} new links."
            )
            for note in report.notes_for_run():
                self.stdout.write(self.style.WARNING(note))
