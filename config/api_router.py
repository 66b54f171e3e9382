"""``/api/v1/``: every resource of the API, its OpenAPI schema and its documentation pages.

The one place that knows every app's API views: it sits above all the apps (docs/architecture.md).
"""

from __future__ import annotations

from csp.decorators import csp_update
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from apm.api.exceptions import api_not_found
from apm.api.tokens import ApiTokenViewSet, MeView
from insights.api.code import CodeAnalyticsViewSet
from insights.api.views import ProjectAnalyticsViewSet
from projects.api.views import (
    InvitationViewSet,
    MembershipViewSet,
    ProjectViewSet,
    ReceivedInvitationViewSet,
)
from projects.keys import PROJECT_KEY_URL
from reports.api.views import ExportJobViewSet
from repos.api.hooks import PushWebhookView
from repos.api.views import (
    CommitViewSet,
    FileChangeViewSet,
    FileViewSet,
    IngestionRunViewSet,
    RepositoryViewSet,
    TaskCommitsViewSet,
)
from tasks.api.views import TaskViewSet
from webhooks.api.views import WebhookSubscriptionViewSet

app_name = "api"

router = DefaultRouter()
router.include_root_view = False
router.register("projects", ProjectViewSet, basename="project")
# summary/, progress/, health/, priorities/ and burndown/ of a project (insights.api.views).
router.register("projects", ProjectAnalyticsViewSet, basename="project-analytics")
# hotspots/, coupling/ and contributors/ of a project (insights.api.code).
router.register("projects", CodeAnalyticsViewSet, basename="project-code")
router.register(rf"projects/{PROJECT_KEY_URL}/members", MembershipViewSet, basename="member")
router.register(rf"projects/{PROJECT_KEY_URL}/invitations", InvitationViewSet, basename="invitation")
# The invitations addressed to the requesting user, to accept or decline (by project key).
router.register("invitations", ReceivedInvitationViewSet, basename="received-invitation")
router.register(rf"projects/{PROJECT_KEY_URL}/webhooks", WebhookSubscriptionViewSet, basename="webhook")
router.register(rf"projects/{PROJECT_KEY_URL}/exports", ExportJobViewSet, basename="export")
router.register("tasks", TaskViewSet, basename="task")
# commits/ of a task (repos.api.views: the links are the repositories' rows).
router.register("tasks", TaskCommitsViewSet, basename="task-commit")
router.register("repositories", RepositoryViewSet, basename="repository")
router.register("ingestion-runs", IngestionRunViewSet, basename="ingestion-run")
router.register("commits", CommitViewSet, basename="commit")
router.register("file-changes", FileChangeViewSet, basename="file-change")
router.register("files", FileViewSet, basename="file")
router.register("tokens", ApiTokenViewSet, basename="token")

# The schema and its two renderings are public: they describe the API, they hold no data.
# Their bundles (Swagger UI, ReDoc) style what they draw with inline styles, so the Content-Security-Policy
# (docs/security.md) allows those on these two pages alone, and ReDoc's search worker, which it starts
# from a blob: URL. Scripts still come from APM only (Swagger's start-up script is a file of its own:
# the split view), and so do images: ReDoc's footer logo from its vendor's CDN stays refused.
_swagger_csp = csp_update({"style-src": ["'unsafe-inline'"]})
_redoc_csp = csp_update({"style-src": ["'unsafe-inline'"], "worker-src": ["blob:"]})
_public: dict[str, list[type]] = {"authentication_classes": [], "permission_classes": []}

urlpatterns = [
    *router.urls,
    path("me/", MeView.as_view(), name="me"),
    path("hooks/push/", PushWebhookView.as_view(), name="hook-push"),
    path("schema/", SpectacularAPIView.as_view(**_public), name="schema"),
    path(
        "docs/",
        _swagger_csp(SpectacularSwaggerSplitView.as_view(url_name="api:schema", **_public)),
        name="docs",
    ),
    path(
        "redoc/",
        _redoc_csp(
            SpectacularRedocView.as_view(url_name="api:schema", template_name="apm/api/redoc.html", **_public)
        ),
        name="redoc",
    ),
    # Last: a path no route above matches answers the API's JSON 404. Under DEBUG Django answers such a
    # path with its HTML page and never asks handler404 (config.urls). Only paths ending in a slash, so
    # APPEND_SLASH still redirects "projects" to "projects/" instead of this answering for it.
    # No CSRF check either: a POST with a token to a path that does not exist is a 404, not a 403 page.
    re_path(r"^(?:.*/)?$", csrf_exempt(api_not_found), name="not-found"),
]
