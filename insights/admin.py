"""The project's figures on its admin page (health, progress, priorities, the burndown and progress
charts) and the repository's code figures and languages, each with a link to the matching page."""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

import repos.admin
from apm.admin import admin_table
from insights.analytics import Quadrant
from insights.code import AnalyticsWindow
from insights.panels import project_panel_html, repository_panel_html
from insights.selectors import (
    code_figures_cached,
    project_burndown_cached,
    project_progress_cached,
    task_priorities_cached,
)
from projects.models import Project
from repos.models import Repository
from tasks.admin import ProjectAdmin as TasksProjectAdmin

# Rows of each read-only analytics table on a change page.
PANEL_ROWS = 10


class ProjectAdmin(TasksProjectAdmin):
    """The project with its open tasks (tasks.admin) and its figures."""

    # Read-only, on the change page only. Each panel reads its figure through the cached selectors, so
    # the admin and the API share one entry per figure (a fixed number of queries on a miss, none on a hit).
    panels = (
        "page_link",
        "charts_panel",
        "health_panel",
        "progress_panel",
        "priorities_panel",
        "burndown_panel",
    )

    class Media:
        css = {"all": ("insights/pages.css",)}

    @admin.display(description="Page")
    def page_link(self, obj: Project) -> str:
        url = reverse("insights:project", args=[obj.key])
        return format_html(
            '<a href="{}">Open the project page</a> (charts, code figures, recent commits)', url
        )

    @admin.display(description="Charts (last 90 days)")
    def charts_panel(self, obj: Project) -> str:
        """The project page's burndown, burnup and progress charts: the same cached fragments."""
        # Fragments are rendered by autoescaping templates.
        burndown, progress = (
            mark_safe(project_panel_html(project=obj, name=name, window="90"))  # noqa: S308
            for name in ("burndown", "progress")
        )
        return format_html(
            '<div class="apm admin-charts"><div>{}</div><div>{}</div></div>', burndown, progress
        )

    @admin.display(description="Health")
    def health_panel(self, obj: Project) -> str:
        """The level and score now, when it was last recorded, the reasons: the page's health panel."""
        html = project_panel_html(project=obj, name="health", window="")
        return format_html('<div class="apm">{}</div>', mark_safe(html))  # noqa: S308 (an autoescaped fragment)

    @admin.display(description="Progress")
    def progress_panel(self, obj: Project) -> str:
        progress = project_progress_cached(project=obj)
        return format_html(
            "{}% done ({} of {} estimate hours, {} of {} tasks done); trend {} points per week over {} days",
            f"{progress['progress'] * 100:.1f}",
            f"{progress['estimate_hours_done']:g}",
            f"{progress['estimate_hours_total']:g}",
            progress["tasks_done"],
            progress["tasks_total"] - progress["tasks_cancelled"],
            f"{progress['trend'] * 100:+.1f}",
            progress["trend_days"],
        )

    @admin.display(description="Priorities")
    def priorities_panel(self, obj: Project) -> SafeString:
        tasks = task_priorities_cached(project=obj)[:PANEL_ROWS]
        return admin_table(
            ["Task", "Title", "Score", "Quadrant", "Due", "Priority"],
            (
                (
                    task.key,
                    task.title,
                    task.score,
                    Quadrant(task.quadrant).label,
                    task.due_date or "-",
                    task.get_priority_display(),
                )
                for task in tasks
            ),
            empty="No open task.",
        )

    @admin.display(description="Burndown (last 4 weeks)")
    def burndown_panel(self, obj: Project) -> SafeString:
        today = timezone.localdate()
        days = project_burndown_cached(project=obj, start=today - datetime.timedelta(days=27), end=today)[
            "days"
        ]
        weeks = [days[first : first + 7] for first in range(0, len(days), 7)]
        return admin_table(
            ["Week to", "Scope", "Done", "Remaining", "Ideal", "Added in the week", "Removed in the week"],
            (
                (
                    week[-1]["date"],
                    week[-1]["scope"],
                    week[-1]["done"],
                    week[-1]["remaining"],
                    week[-1]["ideal"],
                    sum(day["added"] for day in week),
                    sum(day["removed"] for day in week),
                )
                for week in weeks
            ),
            empty="No history.",
        )


admin.site.unregister(Project)
admin.site.register(Project, ProjectAdmin)


class RepositoryAdmin(repos.admin.RepositoryAdmin):
    """A repository with its ingestion runs (repos.admin) and its code figures."""

    # Read-only tables of the code figures of the 90 days up to today, or up to the repository's last
    # commit when it has been quiet since. Each panel is one cached selector call, the same entry the API
    # answers ``/projects/{key}/<figure>/?repository=<id>&limit=10`` from.
    panels = ("page_link", "hotspots_panel", "coupling_panel", "contributors_panel", "languages_panel")

    class Media:
        css = {"all": ("insights/pages.css",)}

    @admin.display(description="Page")
    def page_link(self, obj: Repository) -> str:
        url = reverse("insights:repository", args=[obj.pk])
        return format_html('<a href="{}">Open the repository page</a>', url)

    @admin.display(description="Languages")
    def languages_panel(self, obj: Repository) -> str:
        """Lines per language in the tree: the repository page's cached fragment."""
        html = repository_panel_html(repository=obj, name="languages", window="")
        return format_html('<div class="apm">{}</div>', mark_safe(html))  # noqa: S308 (an autoescaped fragment)

    @staticmethod
    def _figures(obj: Repository, figure: str) -> dict[str, Any]:
        return code_figures_cached(project=obj.project, figure=figure, repository=obj.pk, limit=PANEL_ROWS)

    @staticmethod
    def _caption(window: AnalyticsWindow, what: str) -> SafeString:
        return format_html("<p>{}, over {}.</p>", what, window.describe())

    @admin.display(description="Hotspots")
    def hotspots_panel(self, obj: Repository) -> SafeString:
        """The top files by changes x lines over the window."""
        figures = self._figures(obj, "hotspots")
        rows = figures["results"]
        table = admin_table(
            ["File", "Score", "Changes", "Lines", "Churn", "Authors", "Last change (UTC)"],
            (
                (
                    format_html(
                        '<a href="{}">{}</a>',
                        reverse("admin:repos_file_change", args=[row["file"]]),
                        row["path"],
                    ),
                    row["score"],
                    row["changes"],
                    row["lines"],
                    row["churn"],
                    row["authors"],
                    row["last_changed_at"].strftime("%Y-%m-%d %H:%M"),
                )
                for row in rows
            ),
            empty="No file of the tree changed in this window.",
        )
        caption = self._caption(figures["window"], "Ranked by changes x lines (docs/analytics.md)")
        return format_html("{}{}", caption, table)

    @admin.display(description="Change coupling")
    def coupling_panel(self, obj: Repository) -> SafeString:
        """Pairs of files changed by the same commits, over the window."""
        figures = self._figures(obj, "coupling")
        rows = figures["results"]
        table = admin_table(
            ["File", "File", "Shared commits", "Degree"],
            ((row["path_a"], row["path_b"], row["shared"], f"{row['degree']:.0%}") for row in rows),
            empty="No two files changed together often enough.",
        )
        return format_html(
            "{}{}", self._caption(figures["window"], "Files changed by the same commits"), table
        )

    @admin.display(description="Contributors")
    def contributors_panel(self, obj: Repository) -> SafeString:
        """Authors of the window, most commits (merges apart) first."""
        figures = self._figures(obj, "contributors")
        rows = figures["results"]
        table = admin_table(
            ["Author", "Commits", "Merges", "Lines +/-", "Active days", "Main areas"],
            (
                (
                    f"{row['author_name']} <{row['author_email']}>",
                    row["commits"],
                    row["merges"],
                    f"+{row['lines_added']}/-{row['lines_deleted']}",
                    row["active_days"],
                    ", ".join(area["area"] for area in row["main_areas"]),
                )
                for row in rows
            ),
            empty="No commits in this window.",
        )
        caption = self._caption(figures["window"], "Commits and merges counted apart")
        return format_html("{}{}", caption, table)


admin.site.unregister(Repository)
admin.site.register(Repository, RepositoryAdmin)
