"""The answer to a download of an export's file, the same from the API and from the admin.

The caller has checked who may download (project membership, the admin's permission). Local files
(the embedded default) are sent by this process. From object storage the answer is, by default
(``APM_EXPORT_DOWNLOADS=redirect``), a redirect to a URL of the object signed for
``AWS_QUERYSTRING_EXPIRE`` seconds: the client fetches the bytes from the store, and no web process
is held for a large file or a slow client. ``stream`` sends the object through this process instead,
for a store the clients cannot reach; a web process gives up on a store that hangs after one read of
5 s (gunicorn.conf.py), not the workers' two of 10 s.

A file that is gone (deleted from the bucket or from MEDIA_ROOT while its job still says succeeded) is
answered 410, and a store that does not answer 503 with ``Retry-After``, never a 500: sending the file
through this process opens it first, which asks the store whether the object is there (a HEAD request),
so both are known before any byte is sent. A redirect is signed without asking the store (asking would
hold a web thread on a store that hangs, which is what the redirect avoids): the store itself answers
the client 404 for an object that is gone.
"""

from __future__ import annotations

from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.http import FileResponse, HttpResponseBase, HttpResponseRedirect, JsonResponse

from reports.exports import export_content_type
from reports.models import ExportJob
from reports.storage import storage_is_local

# An HTML digest opened from APM must not run anything in APM's origin.
SANDBOX = "default-src 'none'; style-src 'unsafe-inline'; sandbox"

logger = structlog.get_logger(__name__)

GONE = "The file is no longer stored. Request the export again."
UNAVAILABLE = "The file store does not answer. Try again in a minute."
# How long a client is told to wait when the store does not answer (Retry-After, seconds).
STORE_RETRY_AFTER = 60


def export_download(job: ExportJob) -> HttpResponseBase:
    """The response that hands ``job``'s file (it has one) to a client allowed to have it."""
    filename = (job.file.name or "").rsplit("/", 1)[-1]
    content_type = export_content_type(job)
    response: HttpResponseBase
    if storage_is_local(job.file.storage) or settings.APM_EXPORT_DOWNLOADS == "stream":
        try:
            opened = job.file.storage.open(str(job.file.name), "rb")
        except FileNotFoundError:
            logger.warning("export_file_missing", job_id=job.pk, file=job.file.name)
            return JsonResponse({"detail": GONE}, status=410)
        except (BotoCoreError, ClientError, OSError) as exc:
            # Refused, timed out, denied: the store's own words (its endpoint, the bucket) stay in the
            # operators' log.
            logger.warning("export_store_unavailable", job_id=job.pk, error=str(exc)[:500])
            unavailable = JsonResponse({"detail": UNAVAILABLE}, status=503)
            unavailable["Retry-After"] = str(STORE_RETRY_AFTER)
            return unavailable
        response = FileResponse(opened, as_attachment=True, filename=filename, content_type=content_type)
        response["Content-Security-Policy"] = SANDBOX
    else:
        # The store answers with these headers (an attachment of the export's type), whatever the
        # object was stored with.
        storage: Any = job.file.storage  # django-storages' url() takes the signing parameters
        url = storage.url(
            job.file.name,
            parameters={
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
                "ResponseContentType": content_type,
            },
            expire=settings.AWS_QUERYSTRING_EXPIRE,
        )
        response = HttpResponseRedirect(url)
        # The signed URL is this client's, for a minute: no cache may keep or share it.
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"
    response["X-Content-Type-Options"] = "nosniff"
    return response
