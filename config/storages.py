"""Where export files live: S3-compatible object storage in production, local files otherwise.

Export files are written by a worker and read by a web process, which in Kubernetes share no disk (and
whose root filesystem is read-only): ``object_storage`` is the django-storages S3 backend that both
reach, configured from ``AWS_*`` variables in config.settings.base. The tests build the same backend
against their own S3-compatible server.
"""

from __future__ import annotations

from typing import Any

from botocore.config import Config

LOCAL_STORAGE = "django.core.files.storage.FileSystemStorage"
OBJECT_STORAGE = "storages.backends.s3.S3Storage"


def object_storage(
    *,
    bucket: str,
    endpoint_url: str = "",
    access_key: str = "",
    secret_key: str = "",
    region: str = "",
    location: str = "",
    addressing_style: str = "",
    url_expire: int = 60,
    read_timeout: int = 10,
    attempts: int = 2,
) -> dict[str, Any]:
    """The ``STORAGES["default"]`` entry of an S3 bucket (AWS S3, MinIO, Cloudflare R2, Ceph ...).

    ``read_timeout`` and ``attempts`` bound how long a call waits on a store that accepts and never
    answers: a worker's export can afford two reads of 10 s; a web process, whose few threads also
    answer /healthz, is started with one of 5 s (gunicorn.conf.py).
    """
    return {
        "BACKEND": OBJECT_STORAGE,
        "OPTIONS": {
            "bucket_name": bucket,
            # Empty: AWS S3 itself. Credentials left empty fall back on boto3's own chain (the pod's
            # IAM role, AWS_* of the environment).
            "endpoint_url": endpoint_url or None,
            "access_key": access_key or None,
            "secret_key": secret_key or None,
            "region_name": region or None,
            # A prefix inside the bucket ("exports/"), so that one bucket may serve several purposes and
            # a bucket policy can grant APM that prefix only.
            "location": location.strip("/"),
            # Export files are private: no ACL that would make an object public, and every URL handed out
            # is signed and expires (a download's redirect is followed at once).
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": url_expire,
            # Never replace an object: two workers that both took a job (one of them presumed dead) each
            # keep a file of their own name, and the one that loses the job deletes its own.
            "file_overwrite": False,
            # django-storages takes its signature_version and addressing_style options only without a
            # client_config: both are set here.
            "client_config": Config(
                # Signature version 4, which every S3-compatible store accepts (version 2 is refused
                # by AWS in most regions and by R2).
                signature_version="s3v4",
                # S3-compatible servers other than AWS (MinIO, Ceph) rarely answer bucket subdomains.
                s3={"addressing_style": addressing_style or ("path" if endpoint_url else "auto")},
                # A store that does not answer fails the export in seconds, with a reason, instead of
                # holding a worker for botocore's default minute per attempt.
                # Measured (tests/reports/test_export_storage.py): a refused connection fails in well
                # under a second, a store that accepts and never answers in `attempts` read timeouts
                # (a worker: the first try and one retry, 20 s).
                connect_timeout=3,
                read_timeout=read_timeout,
                retries={"mode": "standard", "total_max_attempts": attempts},
            ),
        },
    }


def storage_is_local(entry: dict[str, Any]) -> bool:
    """Whether a ``STORAGES`` entry writes to this machine's disk (which other pods do not see)."""
    return str(entry.get("BACKEND", LOCAL_STORAGE)) == LOCAL_STORAGE
