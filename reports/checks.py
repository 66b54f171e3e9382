"""``manage.py check --deploy``: where export files go in production.

A worker writes an export's file and a web process hands it out. In Kubernetes (and on any two
machines) they share no disk, so files written to the default MEDIA_ROOT are invisible to the web pods
(and lost with the worker's pod), and a read-only root filesystem refuses them outright.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, register
from django.core.checks import Warning as CheckWarning

from reports.storage import LOCAL_STORAGE_BACKEND

EXPORTS_NOT_SHARED = "apm.W050"


@register(Tags.files, deploy=True)
def export_storage_shared_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn when exports would go to a local MEDIA_ROOT that nobody chose to share."""
    backend = str(settings.STORAGES.get("default", {}).get("BACKEND", LOCAL_STORAGE_BACKEND))
    if backend != LOCAL_STORAGE_BACKEND or settings.APM_MEDIA_ROOT_SET:
        return []
    return [
        CheckWarning(
            f"Export files would be written to the local MEDIA_ROOT ({settings.MEDIA_ROOT}), which the "
            "web processes on other pods or machines do not see.",
            hint=(
                "Set AWS_STORAGE_BUCKET_NAME (with AWS_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY, AWS_S3_REGION_NAME) to keep them in object storage, or set "
                "DJANGO_MEDIA_ROOT to a volume that every web and worker process mounts "
                "(docs/operations.md, 'Export storage')."
            ),
            id=EXPORTS_NOT_SHARED,
        )
    ]
