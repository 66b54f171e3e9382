"""``/api/v1/``: every resource of the API, its OpenAPI schema and its documentation pages."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from apm.api.tokens import ApiTokenViewSet, MeView
from projects.api.analytics import ProjectAnalyticsViewSet
from projects.api.exports import ExportJobViewSet
from projects.api.views import MembershipViewSet, ProjectViewSet
from projects.api.webhooks import WebhookSubscriptionViewSet
from repos.api.analytics import CodeAnalyticsViewSet
from repos.api.hooks import PushWebhookView
from repos.api.views import (
    CommitViewSet,
    FileChangeViewSet,
    FileViewSet,
    IngestionRunViewSet,
    RepositoryViewSet,
)
from tasks.api.views import TaskViewSet

app_name = "api"

router = DefaultRouter()
router.include_root_view = False
router.register("projects", ProjectViewSet, basename="project")
# progress/, health/, priorities/ and burndown/ of a project (projects.api.analytics).
router.register("projects", ProjectAnalyticsViewSet, basename="project-analytics")
# hotspots/, coupling/ and contributors/ of a project (repos.api.analytics).
router.register("projects", CodeAnalyticsViewSet, basename="project-code")
router.register(
    r"projects/(?P<project_key>[A-Za-z][A-Za-z0-9]{1,9})/members", MembershipViewSet, basename="member"
)
router.register(
    r"projects/(?P<project_key>[A-Za-z][A-Za-z0-9]{1,9})/webhooks",
    WebhookSubscriptionViewSet,
    basename="webhook",
)
router.register(
    r"projects/(?P<project_key>[A-Za-z][A-Za-z0-9]{1,9})/exports", ExportJobViewSet, basename="export"
)
router.register("tasks", TaskViewSet, basename="task")
router.register("repositories", RepositoryViewSet, basename="repository")
router.register("ingestion-runs", IngestionRunViewSet, basename="ingestion-run")
router.register("commits", CommitViewSet, basename="commit")
router.register("file-changes", FileChangeViewSet, basename="file-change")
router.register("files", FileViewSet, basename="file")
router.register("tokens", ApiTokenViewSet, basename="token")

# The schema and its two renderings are public: they describe the API, they hold no data.
_public = {"authentication_classes": [], "permission_classes": []}

urlpatterns = [
    *router.urls,
    path("me/", MeView.as_view(), name="me"),
    path("hooks/push/", PushWebhookView.as_view(), name="hook-push"),
    path("schema/", SpectacularAPIView.as_view(**_public), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema", **_public), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api:schema", **_public), name="redoc"),
]
