"""Where export files are kept, as the export service and the downloads need to know it.

The default storage is either local files (``FileSystemStorage`` under MEDIA_ROOT, the embedded
default) or an S3-compatible bucket (django-storages, when ``AWS_STORAGE_BUCKET_NAME`` is set;
config.storages). Nothing else of APM depends on which.
"""

from __future__ import annotations

from django.core.files.storage import FileSystemStorage, Storage

# The local backend's name in ``STORAGES`` (config.storages sets it, or the S3 one).
LOCAL_STORAGE_BACKEND = "django.core.files.storage.FileSystemStorage"


def storage_is_local(storage: Storage) -> bool:
    """Whether files are kept on this machine's disk (then served from it, not from a signed URL)."""
    return isinstance(storage, FileSystemStorage)


def storage_describe(storage: Storage) -> str:
    """Where ``storage`` keeps files, for the operators' log of a failed export (never a credential).

    Not for a job's reason: every member of the project reads that, and the store's endpoint and bucket
    are the operators' business."""
    if isinstance(storage, FileSystemStorage):
        return f"directory {storage.location}"
    bucket = getattr(storage, "bucket_name", "") or "?"
    prefix = getattr(storage, "location", "")
    endpoint = getattr(storage, "endpoint_url", None) or "AWS S3"
    return f"bucket {bucket}{'/' + prefix if prefix else ''} at {endpoint}"
