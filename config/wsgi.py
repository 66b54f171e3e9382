"""WSGI entry point (gunicorn ``config.wsgi``)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from config.otel import tracing_setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
tracing_setup()  # OpenTelemetry, when the OTEL_* variables ask for it (config/otel.py)

application = get_wsgi_application()
