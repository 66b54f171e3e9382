from __future__ import annotations

from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Tasks"

    def ready(self) -> None:
        # Adds this app's part to every project's deletion (projects.deletion), children before parents.
        from tasks import deletion  # noqa: F401, PLC0415
