"""The panels of the project and repository pages, rendered to HTML once and cached.

A panel is a fragment of HTML (``insights/panels/<name>.html``) the page loads after its first paint. Its
context is built here from the cached selectors, and the rendered fragment is cached too, in the
project's cache generation (``insights.selectors.analytics_cached``): any change to the project's tasks
and every ingestion of its repositories drops it with the figures it was drawn from.

A fragment depends on the project and the window only, never on who asks: it is rendered without the
request (no user, no CSRF token), after the view has checked that the viewer may see the project. So one
cached fragment serves every member, and nothing of one viewer can reach another.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone

from apm.cache import PORTFOLIO_NAMESPACE, cached
from apm.replicas import replica_reads
from insights.analytics import Quadrant
from insights.charts import Marker, Series, bar_list, line_chart
from insights.selectors import (
    analytics_cached,
    code_figures_cached,
    page_window_days,
    project_charts_cached,
    project_commits_recent_cached,
    project_health_cached,
    project_history_start,
    project_progress_cached,
    repository_languages_cached,
    task_priorities_cached,
)
from projects.models import HealthLevel, Project
from repos.models import Repository

# Rows of each table panel, and of each quadrant.
PANEL_ROWS = 10
QUADRANT_ROWS = 5
# Longer windows are drawn and tabulated by week: a year of days is more points than a chart is wide.
DAILY_UP_TO = 120
# The shape of the rendered fragments: part of their cache keys, raise it when a template changes or
# what a fragment shows does (6: the portfolio's activity leaves out repositories being deleted).
FRAGMENT_FORMAT = 6


@dataclass(frozen=True)
class Panel:
    name: str
    title: str
    windowed: bool = True
    wide: bool = False
    short: bool = False
    # Charts the fragment draws side by side: their room is kept while it loads, so that nothing below
    # moves when they arrive (cumulative layout shift).
    charts: int = 0


PROJECT_PANELS = (
    Panel("burndown", "Burndown and burnup", wide=True, charts=2),
    Panel("progress", "Progress trend", charts=1),
    Panel("health", "Health", windowed=False),
    Panel("priorities", "Priorities", windowed=False, wide=True),
    Panel("hotspots", "Hotspots"),
    Panel("contributors", "Contributors"),
    Panel("coupling", "Change coupling", wide=True),
    Panel("commits", "Recent commits", windowed=False, wide=True),
)
REPOSITORY_PANELS = (
    Panel("hotspots", "Hotspots"),
    Panel("contributors", "Contributors"),
    Panel("coupling", "Change coupling", wide=True),
    Panel("languages", "Languages", windowed=False),
)


def _labels(dates: list[datetime.date]) -> list[str]:
    """Axis labels: "Sep 8" within a year, "Sep 2016" over longer spans (where "Dec 1" is ambiguous)."""
    if dates and (dates[-1] - dates[0]).days > 366:
        return [f"{day:%b %Y}" for day in dates]
    return [f"{day:%b} {day.day}" for day in dates]


def short_path(path: str, parts: int = 2) -> str:
    """The last ``parts`` segments of a path ("…/ingestion/pipeline.py"), for labels with little room."""
    segments = path.split("/")
    return path if len(segments) <= parts else "…/" + "/".join(segments[-parts:])


def _weekly(days: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Long series by week: the first day, then each week's last day with the week's scope changes
    summed. Weeks end on the last day, so the latest point is today's."""
    weeks: list[dict[str, Any]] = []
    for end in range(len(days) - 1, 0, -7):
        chunk = days[max(1, end - 6) : end + 1]
        weeks.append(
            {
                **chunk[-1],
                "added": sum(day["added"] for day in chunk),
                "removed": sum(day["removed"] for day in chunk),
            }
        )
    return [days[0], *weeks[::-1]]


def burndown_context(*, project: Project, window: str) -> dict[str, Any]:
    """The burndown and burnup charts of ``project`` over ``window``, with their table."""
    charts = project_charts_cached(project=project, window=window)
    burndown = charts["burndown"]
    days = burndown["days"]
    daily = len(days) <= DAILY_UP_TO
    rows = days if daily else _weekly(days)
    labels = _labels([row["date"] for row in rows])
    first, last = rows[0], rows[-1]
    period = f"from {first['date']:%Y-%m-%d} to {last['date']:%Y-%m-%d}"
    burndown_svg = line_chart(
        title=f"Burndown of {project.key}",
        description=(
            f"Remaining tasks {period}: {first['remaining']} at the start, {last['remaining']} now; the "
            f"ideal line reaches 0 on {burndown['target_date']:%Y-%m-%d}."
        ),
        labels=labels,
        series=[
            Series("Ideal", "ideal", [row["ideal"] for row in rows], dashed=True),
            Series("Remaining", "remaining", [row["remaining"] for row in rows]),
        ],
    )
    markers = [
        Marker(index, f"{row['date']:%Y-%m-%d}: {row['added']} added, {row['removed']} removed", css)
        for index, row in enumerate(rows)
        if row["added"] or row["removed"]
        for css in ("marker-removed" if row["removed"] > row["added"] else "marker",)
    ]
    # The first day's "added" includes the tasks created that day: only changes after the start count.
    added = sum(row["added"] for row in rows[1:])
    removed = sum(row["removed"] for row in rows[1:])
    burnup_svg = line_chart(
        title=f"Burnup of {project.key}",
        description=(
            f"Scope and done tasks {period}: scope went from {first['scope']} to {last['scope']} "
            f"({added} added, {removed} removed), done from {first['done']} to {last['done']}."
        ),
        labels=labels,
        series=[
            Series("Scope", "scope", [row["scope"] for row in rows]),
            Series("Done", "done", [row["done"] for row in rows]),
        ],
        markers=markers[1:] if markers and markers[0].index == 0 else markers,
    )
    return {
        "burndown_svg": burndown_svg,
        "burnup_svg": burnup_svg,
        "rows": rows,
        "rows_text": f"{len(rows)} days" if daily else f"the first day, then {len(rows) - 1} weeks",
        "unit": "day" if daily else "week",
        "target_date": burndown["target_date"],
        "added": added,
        "removed": removed,
    }


def progress_context(*, project: Project, window: str) -> dict[str, Any]:
    """The project's progress over ``window`` (share of the estimated work done), with its trend."""
    charts = project_charts_cached(project=project, window=window)
    points = [{**point, "percent": round(point["progress"] * 100, 1)} for point in charts["progress"]]
    current = project_progress_cached(project=project)
    first, last = points[0], points[-1]
    svg = line_chart(
        title=f"Progress of {project.key}",
        description=(
            f"Share of the estimated work done, from {first['percent']}% on {first['date']:%Y-%m-%d} "
            f"to {last['percent']}% on {last['date']:%Y-%m-%d}."
        ),
        labels=_labels([point["date"] for point in points]),
        series=[Series("Done", "progress", [point["progress"] for point in points])],
        percent=True,
    )
    return {
        "progress_svg": svg,
        "points": points,
        "now_percent": last["percent"],
        "trend": f"{current['trend'] * 100:+.1f}",
        "trend_days": current["trend_days"],
    }


def health_context(*, project: Project, window: str) -> dict[str, Any]:
    health = project_health_cached(project=project)
    recorded = (
        f"{project.get_health_level_display()} ({project.health_score}/100) "
        # The day only: a new record of the same level and score changes no cached figure (and bumps no
        # generation), so a time of day here would be the previous record's.
        f"on {timezone.localtime(project.health_checked_at):%Y-%m-%d}"
        if project.health_level and project.health_checked_at
        else ""
    )
    return {
        "health": health,
        "level_label": HealthLevel(health["level"]).label,
        "reasons": health["reasons"],
        "recorded": recorded,
    }


def priorities_context(*, project: Project, window: str) -> dict[str, Any]:
    tasks = task_priorities_cached(project=project)
    quadrants = []
    for quadrant in Quadrant:
        members = [task for task in tasks if task.quadrant == quadrant.value]
        quadrants.append({"label": quadrant.label, "count": len(members), "tasks": members[:QUADRANT_ROWS]})
    return {"quadrants": quadrants}


def _code(project: Project, figure: str, window: str, repository: Repository | None = None) -> dict[str, Any]:
    """A code figure over the window: 30, 90 or 365 days (up to the last commit when the repositories
    have been quiet since), or "all": from the day the project's history starts."""
    days = page_window_days(window)
    # "all": from the first day of the project's history (at most ten years ago).
    span: dict[str, Any] = (
        {"days": days} if days is not None else {"since": project_history_start(project=project)}
    )
    figures = code_figures_cached(
        project=project,
        figure=figure,
        repository=repository.pk if repository else None,
        limit=PANEL_ROWS,
        **span,
    )
    return {
        "rows": figures["results"],
        "window_text": figures["window"].describe(),
        "no_repository": repository is None
        and not project.repositories.filter(deleting_since__isnull=True).exists(),
    }


def hotspots_context(
    *, project: Project, window: str, repository: Repository | None = None
) -> dict[str, Any]:
    context = _code(project, "hotspots", window, repository)
    context["bars"] = bar_list(
        title="Hotspots",
        rows=[
            (
                short_path(row["path"]),
                row["score"],
                f"{row['path']}: {row['changes']} changes x {row['lines']} lines",
            )
            for row in context["rows"]
        ],
    )
    return context


def coupling_context(
    *, project: Project, window: str, repository: Repository | None = None
) -> dict[str, Any]:
    context = _code(project, "coupling", window, repository)
    context["rows"] = [{**row, "degree_percent": round(row["degree"] * 100)} for row in context["rows"]]
    return context


def contributors_context(
    *, project: Project, window: str, repository: Repository | None = None
) -> dict[str, Any]:
    context = _code(project, "contributors", window, repository)
    context["bars"] = bar_list(
        title="Commits per author",
        rows=[(row["author_name"], row["commits"], row["author_name"]) for row in context["rows"]],
        css="bar-alt",
    )
    return context


def commits_context(*, project: Project, window: str) -> dict[str, Any]:
    return {"commits": project_commits_recent_cached(project=project)}


def languages_context(*, repository: Repository) -> dict[str, Any]:
    rows = repository_languages_cached(repository=repository)
    return {
        "rows": rows,
        "bars": bar_list(
            title="Lines per language",
            rows=[(row["language"], row["lines"], f"{row['files']} files") for row in rows],
        ),
    }


_PROJECT_CONTEXTS: dict[str, Callable[..., dict[str, Any]]] = {
    "burndown": burndown_context,
    "progress": progress_context,
    "health": health_context,
    "priorities": priorities_context,
    "hotspots": hotspots_context,
    "coupling": coupling_context,
    "contributors": contributors_context,
    "commits": commits_context,
}
_REPOSITORY_CONTEXTS: dict[str, Callable[..., dict[str, Any]]] = {
    "hotspots": hotspots_context,
    "coupling": coupling_context,
    "contributors": contributors_context,
    "languages": lambda *, project, window, repository: languages_context(repository=repository),
}


@replica_reads
def project_panel_html(*, project: Project, name: str, window: str) -> str:
    """The rendered fragment of one project panel, cached in the project's generation."""
    panel = next(panel for panel in PROJECT_PANELS if panel.name == name)
    window = window if panel.windowed else ""

    def render() -> str:
        # The project's row as of now, not as the view loaded it before the generation was read: a
        # rename or a health record committed in between would be stored under the newer generation.
        current = Project.objects.get(pk=project.pk)
        context = _PROJECT_CONTEXTS[name](project=current, window=window)
        return render_to_string(f"insights/panels/{name}.html", context)

    return analytics_cached(
        project=project,
        name="fragment",
        parts=(f"f{FRAGMENT_FORMAT}", "project", name, window),
        compute=render,
    )


@replica_reads
def repository_panel_html(*, repository: Repository, name: str, window: str) -> str:
    """The rendered fragment of one repository panel, cached in its project's generation."""
    panel = next(panel for panel in REPOSITORY_PANELS if panel.name == name)
    window = window if panel.windowed else ""
    project = repository.project

    def render() -> str:
        context = _REPOSITORY_CONTEXTS[name](project=project, window=window, repository=repository)
        return render_to_string(f"insights/panels/{name}.html", context)

    return analytics_cached(
        project=project,
        name="fragment",
        parts=(f"f{FRAGMENT_FORMAT}", "repository", repository.pk, name, window),
        compute=render,
    )


@replica_reads
def portfolio_table_html(*, generation: int, rows: list[dict[str, Any]], render: Callable[[], str]) -> str:
    """The dashboard's table of ``rows``, rendered by ``render`` once per set of visible projects.

    Keyed by the portfolio's ``generation`` (any project's change) and by the projects the table shows,
    so two people who see the same projects share one entry and nobody is shown a table of projects they
    may not see; it holds nothing else of the viewer. The caller reads ``generation`` before it reads
    ``rows``: rows read before a write are then stored under the generation the write leaves behind.
    """
    shown = ",".join(str(row["id"]) for row in rows)
    digest = hashlib.sha256(shown.encode()).hexdigest()[:32]
    key = f"{PORTFOLIO_NAMESPACE}:g{generation}:table:f{FRAGMENT_FORMAT}:{digest}"
    return cached(key, render, family="fragment")
