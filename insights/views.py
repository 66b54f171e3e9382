"""The pages people look at: the dashboard, a page per project and per repository, and their panels.

Server-rendered, signed-in, scoped by project membership (staff see every project). The first paint
costs a few queries and cached reads; the heavy panels (charts, code figures) arrive afterwards as
fragments (``insights.panels``), each cached once for every member of the project.
"""

from __future__ import annotations

import functools
from typing import Any, NoReturn, cast

from django.conf import settings
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render, resolve_url
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.safestring import mark_safe
from django.views import View
from django.views.decorators.gzip import gzip_page
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, renderers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apm.cache import PORTFOLIO_NAMESPACE, generation_get
from insights.api.serializers import PortfolioRowSerializer
from insights.charts import sparkline
from insights.panels import (
    PROJECT_PANELS,
    REPOSITORY_PANELS,
    portfolio_table_html,
    project_panel_html,
    repository_panel_html,
)
from insights.selectors import (
    PAGE_WINDOW_DEFAULT,
    PAGE_WINDOWS,
    ingestion_runs_recent,
    project_dashboard,
    project_summary_cached,
    repository_counts_cached,
    tasks_assigned_open,
)
from projects.models import HealthLevel, Project
from projects.selectors import project_get_by_key, project_role
from repos.models import Repository


class DashboardView(APIView):
    """``GET /dashboard``: an HTML page for people, the same rows as JSON for ``Accept: application/json``.

    Session or token authentication, so browsers and load tests hit the same code path. The portfolio
    comes from the cache (``projects:list``); the page costs the membership lookup and nothing else.
    """

    renderer_classes = [renderers.TemplateHTMLRenderer, renderers.JSONRenderer]
    template_name = "insights/dashboard.html"

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        # Before the rows: a write committed after this read bumps past it (insights.panels).
        generation = generation_get(PORTFOLIO_NAMESPACE)
        rows = project_dashboard(user=request.user)
        data = PortfolioRowSerializer(rows, many=True).data
        if request.accepted_renderer.format == "json":
            return Response(data)
        totals = {
            name: sum(row[name] for row in rows) for name in ("tasks_total", "tasks_open", "tasks_done")
        }

        def table() -> str:
            projects = [
                {
                    **row,
                    "status_label": Project.Status(row["status"]).label,
                    "health_label": HealthLevel(row["health_level"]).label if row["health_level"] else "",
                    "percent": round(row["progress"] * 100),
                    "sparkline": _activity_sparkline(row),
                }
                for row in rows
            ]
            return render_to_string("insights/portfolio_table.html", {"projects": projects})

        html = portfolio_table_html(generation=generation, rows=rows, render=table)
        table_html = mark_safe(html)  # noqa: S308 (rendered by an autoescaping template)
        return Response(
            {
                "projects": rows,
                "portfolio_table": table_html,
                "totals": totals,
                "user": request.user,
                "my_tasks": tasks_assigned_open(user=request.user),
                "runs": ingestion_runs_recent(user=request.user),
            }
        )

    def options(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Response:
        # The route's metadata, always as JSON (the HTML template is for the page, not for OPTIONS).
        drf_request = cast(Request, request)  # DRF's, by the time a handler runs
        drf_request.accepted_renderer = renderers.JSONRenderer()
        drf_request.accepted_media_type = "application/json"
        return super().options(drf_request, *args, **kwargs)

    def permission_denied(self, request: Request, message: Any = None, code: Any = None) -> NoReturn:
        # People who are not signed in go to the sign-in page; API clients get the usual 401/403.
        renderer = getattr(request, "accepted_renderer", None)
        if not request.successful_authenticator and renderer is not None and renderer.format == "html":
            raise _Redirect(f"{resolve_url(settings.LOGIN_URL)}?next={request.path}")
        super().permission_denied(request, message=message, code=code)

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, _Redirect):
            return redirect(exc.location)  # type: ignore[return-value]
        if isinstance(exc, exceptions.APIException) and self.request.accepted_renderer.format == "html":
            self.request.accepted_renderer = renderers.JSONRenderer()
            self.request.accepted_media_type = "application/json"
        return super().handle_exception(exc)


class _Redirect(Exception):
    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def _activity_sparkline(row: dict[str, Any]) -> str:
    activity = row["activity"]
    commits, closed = activity["commits"], activity["closed"]
    label = (
        f"{row['key']}, last {len(commits)} weeks: {sum(commits)} commits "
        f"(this week {commits[-1]}), {sum(closed)} tasks closed (this week {closed[-1]})"
    )
    return sparkline(label=label, bars=commits, line=closed)


WINDOW_LABELS = {"30": "30 days", "90": "90 days", "365": "A year", "all": "All"}


def _window(request: HttpRequest) -> str | None:
    window = request.GET.get("window", PAGE_WINDOW_DEFAULT)
    return window if window in PAGE_WINDOWS else None


def _bad_window() -> HttpResponseBadRequest:
    return HttpResponseBadRequest(
        f"window: give one of {', '.join(PAGE_WINDOWS)}.", content_type="text/plain; charset=utf-8"
    )


def _visible_project(request: HttpRequest, key: str) -> Project:
    """The project of ``key`` if the signed-in user may see it; 404 otherwise, as for a missing one."""
    project = project_get_by_key(key=key)
    if project is None or not (request.user.is_staff or project_role(project=project, user=request.user)):
        raise Http404("No such project.")
    return project


def _visible_repository(request: HttpRequest, pk: int) -> Repository:
    # A repository being deleted (repos.deletion) is gone for people at once.
    live = Repository.objects.filter(deleting_since__isnull=True).select_related("project")
    repository = get_object_or_404(live, pk=pk)
    if not (request.user.is_staff or project_role(project=repository.project, user=request.user)):
        raise Http404("No such repository.")
    return repository


def _windows() -> list[dict[str, str]]:
    return [{"value": value, "label": WINDOW_LABELS[value]} for value in PAGE_WINDOWS]


def _panels(panels: Any, url: str, window: str) -> list[dict[str, Any]]:
    return [
        {
            "name": panel.name,
            "title": panel.title,
            "src": f"{url}panels/{panel.name}/" + (f"?window={window}" if panel.windowed else ""),
            "wide": panel.wide,
            "short": panel.short,
            "charts": range(panel.charts),
        }
        for panel in panels
    ]


class ProjectPageView(LoginRequiredMixin, View):
    """``/projects/<KEY>/``: the project's figures; its charts and tables load as panels."""

    def get(self, request: HttpRequest, key: str) -> HttpResponse:
        project = _visible_project(request, key)
        window = _window(request)
        if window is None:
            return _bad_window()
        if key != project.key:
            return redirect(reverse("insights:project", args=[project.key]) + f"?window={window}")
        summary = project_summary_cached(project=project)
        url = reverse("insights:project", args=[project.key])
        context = {
            "project": project,
            "summary": summary,
            "percent": round(summary["progress"] * 100),
            "health_label": HealthLevel(project.health_level).label if project.health_level else "",
            "repositories": list(
                project.repositories.filter(deleting_since__isnull=True)
                .order_by("name")
                .only("pk", "name", "project_id")
            ),
            "window": window,
            "windows": _windows(),
            "panels": _panels(PROJECT_PANELS, url, window),
        }
        return render(request, "insights/project.html", context)


def _panel(request: HttpRequest, panels: Any, name: str, render: Any) -> HttpResponse:
    """One panel's fragment: 404 for a panel that does not exist, 400 for a window that does not."""
    if name not in {panel.name for panel in panels}:
        raise Http404("No such panel.")
    window = _window(request)
    if window is None:
        return _bad_window()
    return HttpResponse(render(name=name, window=window))


# Panels are compressed: they hold no secret (no CSRF token, nothing of the viewer), so compressing them
# gives BREACH nothing to guess; the pages around them carry the sign-out form's token and are not.
@method_decorator(gzip_page, name="dispatch")
class ProjectPanelView(LoginRequiredMixin, View):
    """``/projects/<KEY>/panels/<name>/``: one panel's HTML fragment."""

    # A fragment is fetched by the page's script: a session that has ended answers 403 (the script says
    # so), not a redirect to a sign-in page that would be put inside the panel.
    raise_exception = True

    def get(self, request: HttpRequest, key: str, name: str) -> HttpResponse:
        project = _visible_project(request, key)
        return _panel(request, PROJECT_PANELS, name, functools.partial(project_panel_html, project=project))


class RepositoryPageView(LoginRequiredMixin, View):
    """``/repositories/<id>/``: ingestion runs, then the code figures as panels."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        repository = _visible_repository(request, pk)
        window = _window(request)
        if window is None:
            return _bad_window()
        url = reverse("insights:repository", args=[repository.pk])
        context = {
            "repository": repository,
            "project": repository.project,
            **repository_counts_cached(repository=repository),
            "runs": ingestion_runs_recent(user=request.user, repository=repository, limit=10),
            "window": window,
            "windows": _windows(),
            "panels": _panels(REPOSITORY_PANELS, url, window),
        }
        return render(request, "insights/repository.html", context)


@method_decorator(gzip_page, name="dispatch")
class RepositoryPanelView(LoginRequiredMixin, View):
    """``/repositories/<id>/panels/<name>/``: one panel's HTML fragment."""

    raise_exception = True  # as ProjectPanelView

    def get(self, request: HttpRequest, pk: int, name: str) -> HttpResponse:
        repository = _visible_repository(request, pk)
        render = functools.partial(repository_panel_html, repository=repository)
        return _panel(request, REPOSITORY_PANELS, name, render)
