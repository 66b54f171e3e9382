"""Exports through the API: request, follow, download; bad filters are field errors."""

from __future__ import annotations

import csv
import io

import pytest

from reports.models import ExportJob

pytestmark = pytest.mark.django_db


def test_a_member_requests_an_export_and_downloads_it(world, django_capture_on_commit_callbacks) -> None:
    client = world.client("member")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/projects/alpha/exports/",
            {"kind": "tasks_csv", "filters": {"status": ["todo"]}},
            format="json",
        )
    assert response.status_code == 202
    job = response.json()
    assert response["Location"] == f"/api/v1/projects/ALPHA/exports/{job['id']}/"
    assert (job["kind"], job["filters"], job["requested_by"]) == ("tasks_csv", {"status": ["todo"]}, "member")

    detail = world.client("viewer").get(response["Location"]).json()
    assert (detail["status"], detail["rows"]) == ("succeeded", 2)
    download = world.client("viewer").get(detail["download"])

    assert download.status_code == 200
    assert download["Content-Type"] == "text/csv; charset=utf-8"
    assert download["Content-Disposition"].startswith('attachment; filename="alpha-tasks-csv-')
    rows = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode())))
    assert [row[:2] for row in rows] == [["key", "title"], ["ALPHA-1", "First"], ["ALPHA-2", "Second"]]


def test_bad_filters_are_field_errors_and_store_nothing(world) -> None:
    response = world.client("member").post(
        "/api/v1/projects/ALPHA/exports/",
        {
            "kind": "commits_csv",
            "filters": {"repository": world.objects["other_repository"].pk, "until": "x"},
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["errors"] == {
        "repository": [f"ALPHA has no repository with the id {world.objects['other_repository'].pk}."],
        "until": ["Give a date as YYYY-MM-DD."],
    }
    assert not ExportJob.objects.exists()


def test_an_unfinished_export_has_no_download(world) -> None:
    job = ExportJob.objects.create(project=world.project, kind=ExportJob.Kind.COMMITS_CSV)

    response = world.client("owner").get(f"/api/v1/projects/ALPHA/exports/{job.pk}/download/")

    assert response.status_code == 404
    assert response.json()["detail"] == f"Export {job.pk} has no file: it is queued."
    assert world.client("owner").get(f"/api/v1/projects/ALPHA/exports/{job.pk}/").json()["download"] is None


def test_another_projects_export_does_not_exist_for_a_member(world) -> None:
    job = ExportJob.objects.create(project=world.other, kind=ExportJob.Kind.TASKS_CSV)

    assert world.client("owner").get(f"/api/v1/projects/BETA/exports/{job.pk}/").status_code == 404
    assert world.client("owner").get(f"/api/v1/projects/ALPHA/exports/{job.pk}/").status_code == 404


def test_days_beyond_the_calendars_edges_are_field_errors(world) -> None:
    client = world.client("owner")

    export = client.post(
        "/api/v1/projects/ALPHA/exports/",
        {"kind": "tasks_csv", "filters": {"until": "9999-12-31"}},
        format="json",
    )
    hotspots = client.get("/api/v1/projects/ALPHA/hotspots/?until=9999-12-31")
    burndown = client.get("/api/v1/projects/ALPHA/burndown/?end=0001-01-05")

    message = ["Give a day between 1900-01-01 and 2999-12-31."]
    assert (export.status_code, export.json()["errors"]) == (400, {"until": message})
    assert (hotspots.status_code, hotspots.json()["errors"]) == (400, {"until": message})
    assert (burndown.status_code, burndown.json()["errors"]) == (400, {"end": message})


def test_an_export_that_cannot_be_stored_is_answered_failed_with_its_reason(
    world, settings, tmp_path, django_capture_on_commit_callbacks
) -> None:
    # Without workers (the embedded default) the export runs within the request: its failure is the
    # job's, recorded and answered, not the request's.
    (tmp_path / "read-only").write_text("a file, where a directory must be")
    settings.MEDIA_ROOT = str(tmp_path / "read-only" / "media")

    with django_capture_on_commit_callbacks(execute=True):
        response = world.client("member").post(
            "/api/v1/projects/ALPHA/exports/", {"kind": "tasks_csv"}, format="json"
        )

    assert response.status_code == 202
    job = world.client("member").get(response["Location"]).json()
    assert (job["status"], job["download"]) == ("failed", None)
    assert job["error"] == (
        "The export could not be stored: the file store refused it (the operators' log has the details)."
    )
    assert str(tmp_path) not in job["error"]
    assert ExportJob.objects.count() == 1
