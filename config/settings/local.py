"""Local development: DEBUG on, django-debug-toolbar, a fixed non-secret key, console logs."""

from __future__ import annotations

from .base import *  # noqa: F403
from .base import INSTALLED_APPS, MIDDLEWARE, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="apm-local-development-key-not-for-production")
INTERNAL_IPS = ["127.0.0.1"]

# The toolbar is for development only: never installed in the test or production settings.
if env.bool("APM_DEBUG_TOOLBAR", default=True):
    INSTALLED_APPS = [*INSTALLED_APPS, "debug_toolbar"]
    MIDDLEWARE = [
        MIDDLEWARE[0],
        "debug_toolbar.middleware.DebugToolbarMiddleware",
        *MIDDLEWARE[1:],
    ]
    # Collapsed to its handle: the pages are what a first visit looks at, the panels are a click away.
    DEBUG_TOOLBAR_CONFIG = {"ROOT_TAG_EXTRA_ATTRS": "hx-preserve", "SHOW_COLLAPSED": True}
