from __future__ import annotations

from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        # Adds this app's part to every project's deletion (projects.deletion), children before parents.
        from webhooks import deletion  # noqa: F401, PLC0415
