"""Top-level URLs: the API, the dashboard, the admin, monitoring endpoints and (DEBUG) the toolbar.

``/projects`` and ``/dashboard`` are the short paths of the guide's load-test scenario: ``/projects`` is
the project list and creation of ``/api/v1/projects/`` (same view, same rules, left out of the schema);
``/dashboard`` is the people's page, ``/`` sends people there, and ``/projects/<KEY>/`` and
``/repositories/<id>/`` are the pages of insights.urls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import RedirectView

from apm.api import exceptions as api_exceptions
from insights.views import DashboardView
from projects.api.views import ProjectAliasViewSet

admin.site.site_header = "APM administration"
admin.site.site_title = "APM"
admin.site.index_title = "AutoProjectManagement"

urlpatterns = [
    path("api/v1/", include("config.api_router")),
    # Any other path under /api/ (no version, a version that does not exist) is the API's JSON 404 too.
    # Ending in a slash only, and not /api/v1/ (its own catch-all answers there): a path without its
    # slash is completed before it is resolved (apm.api.middleware.ApiSlashMiddleware).
    re_path(r"^api/(?!v1/)(?:.*/)?$", csrf_exempt(api_exceptions.api_not_found)),
    path("projects", ProjectAliasViewSet.as_view({"get": "list", "post": "create"}), name="projects"),
    path("dashboard", DashboardView.as_view(), name="dashboard"),
    # The address `make run` prints: people land on the dashboard.
    path("", RedirectView.as_view(pattern_name="dashboard"), name="home"),
    path("", include("insights.urls")),
    # Browsers ask for /favicon.ico on pages that name none (the admin's).
    path("favicon.ico", lambda request: redirect(static("insights/favicon.svg")), name="favicon"),
    path("admin/", admin.site.urls),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="insights/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("monitoring.urls")),
]

if "debug_toolbar" in settings.INSTALLED_APPS:
    urlpatterns += [path("__debug__/", include("debug_toolbar.urls"))]


def _json_under_api(api_view: Callable[..., HttpResponse], page_view: Callable[..., HttpResponse]) -> Any:
    """An error handler that answers in JSON under /api/ and with Django's page elsewhere."""

    def handler(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        view = api_view if request.path.startswith("/api/") else page_view
        return view(request, *args, **kwargs)

    return handler


# Under /api/ every answer is JSON, even a URL that matches nothing or an unexpected error.
handler400 = _json_under_api(api_exceptions.api_bad_request, defaults.bad_request)
handler403 = _json_under_api(api_exceptions.api_permission_denied, defaults.permission_denied)
handler404 = _json_under_api(api_exceptions.api_not_found, defaults.page_not_found)
handler500 = _json_under_api(api_exceptions.api_server_error, defaults.server_error)
