"""The dashboard: the portfolio of the projects a person works on, in one cached read."""

from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from django.shortcuts import redirect
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, renderers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from insights.api.serializers import PortfolioRowSerializer
from insights.selectors import project_dashboard


class DashboardView(APIView):
    """``GET /dashboard``: an HTML page for people, the same rows as JSON for ``Accept: application/json``.

    Session or token authentication, so browsers and load tests hit the same code path. The portfolio
    comes from the cache (``projects:list``); the page costs the membership lookup and nothing else.
    """

    renderer_classes = [renderers.TemplateHTMLRenderer, renderers.JSONRenderer]
    template_name = "insights/dashboard.html"

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        rows = project_dashboard(user=request.user)
        data = PortfolioRowSerializer(rows, many=True).data
        if request.accepted_renderer.format == "json":
            return Response(data)
        totals = {
            name: sum(row[name] for row in rows) for name in ("tasks_total", "tasks_open", "tasks_done")
        }
        return Response({"projects": data, "totals": totals, "user": request.user})

    def permission_denied(self, request: Request, message: Any = None, code: Any = None) -> NoReturn:
        # People who are not signed in go to the sign-in page; API clients get the usual 401/403.
        renderer = getattr(request, "accepted_renderer", None)
        if not request.successful_authenticator and renderer is not None and renderer.format == "html":
            raise _Redirect(f"{settings.LOGIN_URL}?next={request.path}")
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
