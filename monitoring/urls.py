from __future__ import annotations

from django.conf import settings
from django.urls import URLPattern, path

from monitoring import views

urlpatterns: list[URLPattern] = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="prometheus-django-metrics"),
]

if settings.APM_LOADTEST_BASELINE:
    # The load scenario's yardstick (loadtests/): a view with nothing to do, behind the same middleware.
    urlpatterns.append(path("loadtest/baseline", views.loadtest_baseline, name="loadtest-baseline"))
