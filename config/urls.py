"""Top-level URLs: the API, the dashboard, the admin, monitoring endpoints and (DEBUG) the toolbar.

``/projects`` and ``/dashboard`` are the short paths of the guide's load-test scenario: ``/projects`` is
the project list and creation of ``/api/v1/projects/`` (same view, same rules, left out of the schema);
``/dashboard`` is the people's page.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views import defaults

from apm.api import exceptions as api_exceptions
from projects.api.views import ProjectAliasViewSet
from projects.views import DashboardView

admin.site.site_header = "APM administration"
admin.site.site_title = "APM"
admin.site.index_title = "AutoProjectManagement"

urlpatterns = [
    path("api/v1/", include("apm.api.urls")),
    path("projects", ProjectAliasViewSet.as_view({"get": "list", "post": "create"}), name="projects"),
    path("dashboard", DashboardView.as_view(), name="dashboard"),
    path("admin/", admin.site.urls),
    path("", include("monitoring.urls")),
]

if "debug_toolbar" in settings.INSTALLED_APPS:
    urlpatterns += [path("__debug__/", include("debug_toolbar.urls"))]


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


# Under /api/ every answer is JSON, even a URL that matches nothing or an unexpected error.
def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return api_exceptions.api_not_found(request, exception)
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return api_exceptions.api_server_error(request)
    return defaults.server_error(request)


def handler400(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return api_exceptions.api_bad_request(request, exception)
    return defaults.bad_request(request, exception)


def handler403(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return api_exceptions.api_permission_denied(request, exception)
    return defaults.permission_denied(request, exception)
