"""The answer to a download of an export's file, the same from the API and from the admin.

The caller has checked who may download (project membership, the admin's permission). Local files
(the embedded default) are sent by this process. From object storage the answer is, by default
(``APM_EXPORT_DOWNLOADS=redirect``), a redirect to a URL of the object signed for
``AWS_QUERYSTRING_EXPIRE`` seconds: the client fetches the bytes from the store, and no web process
is held for a large file or a slow client. ``stream`` sends the object through this process instead,
for a store the clients cannot reach.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import FileResponse, HttpResponseBase, HttpResponseRedirect

from reports.exports import export_content_type
from reports.models import ExportJob
from reports.storage import storage_is_local

# An HTML digest opened from APM must not run anything in APM's origin.
SANDBOX = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


def export_download(job: ExportJob) -> HttpResponseBase:
    """The response that hands ``job``'s file (it has one) to a client allowed to have it."""
    filename = (job.file.name or "").rsplit("/", 1)[-1]
    content_type = export_content_type(job)
    response: HttpResponseBase
    if storage_is_local(job.file.storage) or settings.APM_EXPORT_DOWNLOADS == "stream":
        response = FileResponse(
            job.file.open("rb"), as_attachment=True, filename=filename, content_type=content_type
        )
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
