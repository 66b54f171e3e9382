"""The pages: a project's page and a repository's page, with the panels they load."""

from __future__ import annotations

from django.urls import path, re_path

from insights import views
from projects.keys import PROJECT_KEY_ANY_CASE

app_name = "insights"

urlpatterns = [
    re_path(rf"^projects/(?P<key>{PROJECT_KEY_ANY_CASE})/$", views.ProjectPageView.as_view(), name="project"),
    re_path(
        rf"^projects/(?P<key>{PROJECT_KEY_ANY_CASE})/panels/(?P<name>[a-z]+)/$",
        views.ProjectPanelView.as_view(),
        name="project-panel",
    ),
    path("repositories/<int:pk>/", views.RepositoryPageView.as_view(), name="repository"),
    path(
        "repositories/<int:pk>/panels/<slug:name>/",
        views.RepositoryPanelView.as_view(),
        name="repository-panel",
    ),
]
