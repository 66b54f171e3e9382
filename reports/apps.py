from __future__ import annotations

from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "reports"
    verbose_name = "Reports"

    def ready(self) -> None:
        # The deploy check of export storage; the exports (with their files) in every project's deletion.
        from reports import checks, deletion  # noqa: F401, PLC0415
