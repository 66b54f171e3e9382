"""The reports' part of a project's deletion (projects.deletion): its exports, their files first.

Registered when the app is loaded (``ReportsConfig.ready``). The files go before their rows, in each
batch's transaction, as the retention purge does (reports.exports): a store that does not answer stops
the deletion with that batch kept, and the next delivery of the task tries again.
"""

from __future__ import annotations

from projects.deletion import project_part_register, rows_part
from reports.exports import export_files_delete
from reports.models import ExportJob

project_part_register(
    rows_part(
        100,
        "exports",
        lambda project_id: ExportJob.objects.filter(project_id=project_id),
        before_delete=export_files_delete,
    )
)
