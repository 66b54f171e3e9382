from __future__ import annotations

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        # Signal receivers are connected once the apps are loaded (Django's documented place for it).
        from monitoring import deploy_checks, signals  # noqa: F401, PLC0415  (connects the task metrics)
        from monitoring.collectors import database_error_series_start_at_zero  # noqa: PLC0415

        database_error_series_start_at_zero()
