from __future__ import annotations

from django.urls import path
from django_prometheus import exports

from monitoring import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", exports.ExportToDjangoView, name="prometheus-django-metrics"),
]
