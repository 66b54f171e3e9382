"""Top-level URLs: admin, monitoring endpoints and (when DEBUG) the debug toolbar."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "APM administration"
admin.site.site_title = "APM"
admin.site.index_title = "AutoProjectManagement"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("monitoring.urls")),
]

if "debug_toolbar" in settings.INSTALLED_APPS:
    urlpatterns += [path("__debug__/", include("debug_toolbar.urls"))]
