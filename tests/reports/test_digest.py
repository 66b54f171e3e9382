"""Reports and batch jobs: the digest, CSV exports, export jobs, purges, recomputation and the schedule."""

from __future__ import annotations

import csv
import datetime
import io
from pathlib import Path

import pytest
from celery import current_app
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from apm.schedule import schedule_defaults_install
from projects.models import HealthLevel, Project
from projects.services import project_cache_invalidate
from reports.exports import ExportFailed, export_request, export_run, exports_purge
from reports.models import ExportJob
from reports.tasks import project_digests_weekly_task
from repos.models import Commit, IngestionRun
from repos.services import ingestion_request, repository_register
from repos.tasks import ingestion_runs_purge_task, repositories_ingest_all_task
from tasks.models import TaskEvent
from tasks.services import task_transition
from tests.factories import IngestionRunFactory, ProjectFactory, RepositoryFactory, TaskFactory
from tests.repos.gitrepo import GitRepo

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(tmp_path: Path, settings) -> Path:
    settings.APM_REPO_ROOTS = [str(tmp_path)]
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path


@pytest.fixture
def project(root: Path, django_capture_on_commit_callbacks) -> Project:
    """APM with a closed task, a late one, an open one, and a repository of three commits, ingested."""
    project = ProjectFactory(key="APM", name="Automation")
    done = TaskFactory(project=project, title="Parser | fast")
    TaskFactory(
        project=project,
        title="<script>alert(1)</script>",
        due_date=timezone.localdate() - datetime.timedelta(days=3),
    )
    TaskFactory(project=project, title='=HYPERLINK("http://evil")')
    task_transition(task=done, status="done", source="api")
    repo = GitRepo(root / "app")
    repo.write("src/parser.py", "a\nb\nc\n")
    repo.commit("Parser")
    repo.write("src/parser.py", "a\nb\nc\nd\n")
    repo.write("docs/guide.md", "# Guide\n")
    repo.commit("More parser, a guide")
    repo.write("src/parser.py", "a\n")
    repo.commit("-Shrink the parser")
    repository = repository_register(project=project, source=str(repo.path))
    with django_capture_on_commit_callbacks(execute=True):
        ingestion_request(repository=repository, trigger=IngestionRun.Trigger.COMMAND)
    return project


SINCE = "2023-11-01"  # the test repositories' clock starts in November 2023


def report(*args: str) -> str:
    out = io.StringIO()
    call_command("report_project", *args, stdout=out)
    return out.getvalue()


def test_the_markdown_digest(project: Project) -> None:
    text = report("apm", "--since", SINCE)

    assert text.startswith(f"# APM · Automation: {SINCE} to {timezone.localdate()}")
    assert "3 tasks created, 1 closed, 1 late" in text
    assert "## Closed (1)" in text
    assert "| APM-1 | Parser \\| fast |" in text  # a pipe in a title does not break the table
    assert "| APM-2 | <script>alert(1)</script> |" in text
    assert f"| {timezone.localdate() - datetime.timedelta(days=3)} | 3 | To do |" in text
    assert "| src/parser.py | 3 | 1 |" in text  # 3 changes, 1 line now
    assert "| Ada Lovelace <ada@example.com> | 3 | 0 |" in text  # 3 commits, no merge
    assert "3 commits" in text


def test_the_digest_of_a_quiet_project_covers_its_last_week_of_work(project: Project) -> None:
    # Nothing happened since the repository's last commit (November 2023): no task moved after it.
    last = Commit.objects.filter(repository__project=project).latest("timestamp").timestamp
    TaskEvent.objects.filter(project=project).update(created_at=last - datetime.timedelta(hours=1))
    last_day = timezone.localdate(last)
    first_day = last_day - datetime.timedelta(days=6)

    text = report("APM")
    html = report("APM", "--format", "html")

    assert text.startswith(f"# APM · Automation: {first_day} to {last_day}")
    assert (
        f"_Period: The 7 days from {first_day} to {last_day} (UTC), up to the last activity "
        f"({last.astimezone(datetime.UTC):%Y-%m-%d %H:%M} UTC): no commit and no task change since._"
    ) in text
    assert "3 commits" in text
    assert "| Ada Lovelace <ada@example.com> | 3 | 0 |" in text
    assert "| src/parser.py | 3 | 1 |" in text
    assert f"dormant: no activity since {last_day}" in text  # and the project is not healthy
    assert "100/100" not in text
    assert "up to the last activity" in html


def test_the_digest_of_an_active_project_ends_today(project: Project) -> None:
    today = timezone.localdate()

    text = report("APM")
    until = report("APM", "--until", str(today - datetime.timedelta(days=1)))

    assert text.startswith(f"# APM · Automation: {today - datetime.timedelta(days=6)} to {today}")
    assert f"_Period: The 7 days from {today - datetime.timedelta(days=6)} to {today} (UTC)._" in text
    assert until.startswith(
        f"# APM · Automation: {today - datetime.timedelta(days=7)} to {today - datetime.timedelta(days=1)}"
    )


def test_the_html_digest_escapes_what_people_wrote(project: Project) -> None:
    text = report("APM", "--since", SINCE, "--format", "html")

    assert text.startswith("<!doctype html>")
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_csv_of_tasks_and_commits(project: Project, tmp_path: Path) -> None:
    tasks = list(csv.reader(io.StringIO(report("APM", "--format", "csv"))))
    output = tmp_path / "commits.csv"
    call_command(
        "report_project",
        "APM",
        "--format",
        "csv",
        "--export",
        "commits",
        "--output",
        str(output),
        stderr=io.StringIO(),
    )
    commits = list(csv.reader(output.open(encoding="utf-8")))

    assert tasks[0][:3] == ["key", "title", "status"]
    assert [row[:3] for row in tasks[1:]] == [
        ["APM-1", "Parser | fast", "done"],
        ["APM-2", "<script>alert(1)</script>", "todo"],
        # A formula stays text in a spreadsheet.
        ["APM-3", '\'=HYPERLINK("http://evil")', "todo"],
    ]
    assert [row[-1] for row in commits[1:]] == ["'-Shrink the parser", "More parser, a guide", "Parser"]
    assert {row[0] for row in commits[1:]} == {"app"}
    assert report("APM", "--format", "csv", "--export", "commits", "--until", "2020-01-01").count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["NOPE"], "No project has the key 'NOPE'."),
        (["APM", "--since", "yesterday"], "--since 'yesterday' is not a date; give YYYY-MM-DD."),
        (
            ["APM", "--until", "9999-12-31"],
            "--until 9999-12-31: Give a day between 1900-01-01 and 2999-12-31.",
        ),
        (["APM", "--since", "2026-02-30"], "--since '2026-02-30' is not a date; give YYYY-MM-DD."),
        (
            ["APM", "--since", "2026-02-01", "--until", "2026-01-01"],
            "APM: since: The start of the period is after its end.",
        ),
        (
            ["APM", "--format", "csv", "--since", "2026-02-01", "--until", "2026-01-01"],
            "APM: until: The end of the period is before its start.",
        ),
    ],
)
def test_report_project_names_what_is_wrong(project: Project, args: list[str], message: str) -> None:
    with pytest.raises(CommandError) as error:
        report(*args)
    assert str(error.value) == message


def test_report_project_names_an_output_it_cannot_write(project: Project, root: Path) -> None:
    (root / "read-only").write_text("a file, where a directory must be")  # what root cannot write either
    target = root / "read-only" / "digest.md"

    with pytest.raises(CommandError) as error:
        report("APM", "--output", str(target))

    assert str(error.value) == f"Cannot write {target}: Not a directory."


def test_an_export_job_writes_its_file_once(project: Project, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        job = export_request(project=project, kind="commits_csv", filters={"since": SINCE})
    job.refresh_from_db()

    assert (job.status, job.rows, job.filters) == ("succeeded", 3, {"since": SINCE})
    assert job.file.name.endswith(f"apm-commits-csv-{job.pk}.csv")
    assert job.file.open("rb").read().decode().count("\n") == 4
    again = export_run(job_id=job.pk)  # a redelivered task message
    assert (again.status, again.file.name, again.finished_at) == ("succeeded", job.file.name, job.finished_at)


def test_a_failing_export_is_failed_with_its_reason(project: Project) -> None:
    job = ExportJob.objects.create(project=project, kind="tasks_csv", filters={"since": "not a date"})

    with pytest.raises(ExportFailed, match="not a date"):  # the task fails too
        export_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == "failed"
    assert "not a date" in job.error
    assert not job.file


def test_bad_export_filters_store_nothing(project: Project) -> None:
    with pytest.raises(Exception) as error:  # noqa: PT011 (Django's ValidationError, checked below)
        export_request(
            project=project,
            kind="commits_csv",
            filters={"repository": 10**30, "since": "soon", "colour": "red"},
        )
    assert error.value.message_dict == {
        "filters": ["commits_csv takes no filter 'colour'."],
        "since": ["Give a date as YYYY-MM-DD."],
        "repository": ["APM has no repository with the id 1000000000000000000000000000000."],
    }
    assert not ExportJob.objects.exists()


def test_old_exports_are_purged_with_their_files(
    project: Project, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        old = export_request(project=project, kind="tasks_csv", filters={})
        new = export_request(project=project, kind="tasks_csv", filters={})
    ExportJob.objects.filter(pk=old.pk).update(created_at=timezone.now() - datetime.timedelta(days=30))
    old.refresh_from_db()
    path = Path(old.file.path)

    assert exports_purge(older_than_days=7) == 1
    assert list(ExportJob.objects.values_list("pk", flat=True)) == [new.pk]
    assert not path.exists()


def test_the_weekly_digest_job_exports_every_active_project(
    project: Project, django_capture_on_commit_callbacks
) -> None:
    ProjectFactory(status=Project.Status.ARCHIVED)
    with django_capture_on_commit_callbacks(execute=True):
        assert project_digests_weekly_task.apply().get() == 1
    job = ExportJob.objects.get()
    assert (job.project, job.kind, job.status) == (project, "digest_md", "succeeded")
    assert job.file.open("rb").read().decode().startswith("# APM · Automation")


def test_purge_ingestion_runs_keeps_the_latest_run_of_each_repository_and_active_runs() -> None:
    repository, other = RepositoryFactory(), RepositoryFactory()
    long_ago = timezone.now() - datetime.timedelta(days=100)
    old = [IngestionRunFactory(repository=repository) for _ in range(3)]
    running = IngestionRunFactory(repository=repository, status=IngestionRun.Status.RUNNING)
    latest_other = IngestionRunFactory(repository=other, status=IngestionRun.Status.FAILED)
    IngestionRun.objects.filter(pk__in=[run.pk for run in [*old, running, latest_other]]).update(
        created_at=long_ago
    )
    recent = IngestionRunFactory(repository=repository)
    out = io.StringIO()

    call_command("purge_ingestion_runs", "--older-than", "90", stdout=out)

    assert out.getvalue().strip() == "3 ingestion run(s) older than 90 days purged."
    assert set(IngestionRun.objects.values_list("pk", flat=True)) == {running.pk, latest_other.pk, recent.pk}
    assert ingestion_runs_purge_task.apply(kwargs={"older_than_days": 90}).get() == 0
    with pytest.raises(CommandError, match=r"--older-than must be 0 or more days, not -1\."):
        call_command("purge_ingestion_runs", "--older-than", "-1")


def test_recompute_progress_records_health_and_reports_it(project: Project) -> None:
    out = io.StringIO()
    call_command("recompute_progress", stdout=out)
    project.refresh_from_db()

    assert project.health_level in {"healthy", "at_risk", "critical"}
    assert project.health_checked_at is not None
    # One closed task of three, no estimates: each weighs the same.
    assert out.getvalue().startswith("APM: progress 33%, trend +")
    assert f"health {project.health_level} {project.health_score}/100" in out.getvalue()
    with pytest.raises(CommandError, match=r"No project has the key 'NOPE'\."):
        call_command("recompute_progress", project="nope")


def test_the_default_schedule_is_installed_once_and_operators_edits_survive(settings) -> None:
    names = set(settings.APM_SCHEDULE_DEFAULTS)
    current_app.loader.import_default_modules()  # what a worker does when it starts
    assert set(PeriodicTask.objects.values_list("name", flat=True)) >= names  # written by migrate
    for name, (task, _when, _kwargs) in settings.APM_SCHEDULE_DEFAULTS.items():
        assert PeriodicTask.objects.get(name=name).task == task
        assert task in current_app.tasks, f"{name} names {task}, which no worker knows"
    ingest = PeriodicTask.objects.get(name="Ingest every repository")
    ingest.enabled = False
    ingest.save()

    assert schedule_defaults_install() == 0
    assert PeriodicTask.objects.get(name="Ingest every repository").enabled is False
    PeriodicTask.objects.filter(name="Weekly digest").delete()
    assert schedule_defaults_install() == 1
    weekly = PeriodicTask.objects.get(name="Weekly digest").crontab
    assert (weekly.minute, weekly.hour, weekly.day_of_week) == ("0", "7", "1")


def test_the_scheduled_ingestion_queues_every_active_repository(
    root: Path, django_capture_on_commit_callbacks
) -> None:
    project = ProjectFactory()
    sources = []
    for name in ("one", "two"):
        repo = GitRepo(root / name)
        repo.write("a.txt", "1\n")
        repo.commit("First")
        sources.append(repository_register(project=project, source=str(repo.path)))
    RepositoryFactory(project=project, is_active=False)

    with django_capture_on_commit_callbacks(execute=True):
        assert repositories_ingest_all_task.apply().get() == 2
    runs = IngestionRun.objects.filter(trigger=IngestionRun.Trigger.SCHEDULE)
    assert sorted(runs.values_list("repository__name", "status")) == [
        ("one", "succeeded"),
        ("two", "succeeded"),
    ]


def test_the_dashboard_shows_the_recorded_health(
    project: Project, admin_client, django_capture_on_commit_callbacks
) -> None:
    # The ingestion recorded a first assessment: start from a project never assessed.
    with django_capture_on_commit_callbacks(execute=True):
        Project.objects.filter(pk=project.pk).update(
            health_level="", health_score=None, health_checked_at=None
        )
        project_cache_invalidate(project_id=project.pk)
    before = admin_client.get("/dashboard", HTTP_ACCEPT="application/json").json()
    with django_capture_on_commit_callbacks(execute=True):  # the cache is dropped once the change commits
        call_command("recompute_progress", stdout=io.StringIO())
    project.refresh_from_db()
    after = admin_client.get("/dashboard", HTTP_ACCEPT="application/json").json()
    page = admin_client.get("/dashboard").content.decode()

    assert [(row["key"], row["health_level"]) for row in before] == [("APM", None)]
    assert [(row["key"], row["health_level"], row["health_score"]) for row in after] == [
        ("APM", project.health_level, project.health_score)
    ]
    label = HealthLevel(project.health_level).label
    assert f'<span class="health-{project.health_level}">{label}</span>' in page
    assert f'<span class="muted">{project.health_score}/100</span>' in page
