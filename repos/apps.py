from __future__ import annotations

from django.apps import AppConfig


class ReposConfig(AppConfig):
    name = "repos"
    verbose_name = "Repositories"

    def ready(self) -> None:
        # Adds this app's part to every project's deletion (projects.deletion), children before parents.
        from repos import deletion  # noqa: F401, PLC0415
