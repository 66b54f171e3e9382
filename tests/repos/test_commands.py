"""ingest_repo, ingest_all and the admin's "Ingest now", on real repositories."""

from __future__ import annotations

import os
from io import StringIO
from pathlib import Path

import pytest
import redis
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from config import topology
from repos.models import Commit, IngestionRun, Repository
from repos.tasks import repositories_ingest_all_task
from tests.conftest import require_service
from tests.factories import ProjectFactory
from tests.isolation import redis_broker
from tests.processes import celery_worker_start, celery_worker_stop, database_url, manage, worker_database_env
from tests.repos.gitrepo import GitRepo

# The producer here is an operator's manage.py on the default settings, which take no key prefix: the
# test keeps to a queue named after its process (tests/isolation.py).
BROKER = redis_broker(keyprefix=False)

pytestmark = pytest.mark.django_db(transaction=True)  # runs are enqueued on commit, as in production


@pytest.fixture
def repo(tmp_path: Path, settings) -> GitRepo:
    settings.APM_REPO_ROOTS = [str(tmp_path)]
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    settings.APM_INGEST_THREADS = 2  # committed data: the eager fan-out runs its chunks on two threads
    settings.APM_INGEST_CHUNK_COMMITS = 1
    repo = GitRepo(tmp_path / "service")
    for number in range(3):
        repo.write(f"module_{number}.py", "x = 1\n" * (number + 1))
        repo.commit(f"Add module {number}")
    return repo


def run_command(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_ingest_repo_registers_ingests_and_summarises(repo: GitRepo):
    ProjectFactory(key="APM")

    output = run_command("ingest_repo", str(repo.path), "--project", "apm")

    repository = Repository.objects.get()
    assert (repository.name, repository.kind, repository.project.key) == ("service", "local", "APM")
    assert Commit.objects.filter(repository=repository).count() == 3
    assert "service: 3 new commits, 3 file changes, +6/-0 lines, 3 files at" in output
    assert "on main in" in output

    repo.write("module_9.py", "y = 2\n")
    repo.commit("One more")
    assert "service: 1 new commits" in run_command("ingest_repo", str(repo.path), "--project", "APM")
    assert Repository.objects.count() == 1


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("--upload-pack=touch /tmp/apm-pwned", "cannot start with '-'"),
        ("/etc", "not under an allowed repository root"),
        ("https://user:secret@git.example.com/x.git", "cannot carry credentials"),
    ],
)
def test_ingest_repo_names_a_bad_source_and_writes_nothing(repo: GitRepo, source: str, message: str):
    ProjectFactory(key="APM")

    with pytest.raises(CommandError, match=message):
        run_command("ingest_repo", source, "--project", "APM")

    assert not Repository.objects.exists()
    assert not IngestionRun.objects.exists()


def test_ingest_repo_names_an_unknown_project(repo: GitRepo):
    with pytest.raises(CommandError, match="No project has the key 'NOPE'"):
        run_command("ingest_repo", str(repo.path), "--project", "NOPE")


def test_ingest_repo_reports_a_failed_run(repo: GitRepo):
    ProjectFactory(key="APM")

    with pytest.raises(CommandError, match=r"failed .*branch 'missing' does not exist"):
        run_command("ingest_repo", str(repo.path), "--project", "APM", "--branch", "missing")

    assert IngestionRun.objects.get().status == "failed"


def test_ingest_all_runs_every_active_repository(repo: GitRepo, tmp_path: Path):
    other = GitRepo(tmp_path / "other")
    other.write("a.txt", "a\n")
    other.commit("a")
    project = ProjectFactory(key="APM")
    run_command("ingest_repo", str(repo.path), "--project", "APM")
    run_command("ingest_repo", str(other.path), "--project", "APM")
    Repository.objects.create(
        project=project, name="paused", kind="local", source=str(other.path) + "/", is_active=False
    )
    repo.write("new.py", "z = 3\n")
    repo.commit("New")

    output = run_command("ingest_all")

    service_run, other_run = (
        IngestionRun.objects.filter(repository__name=name).latest("id") for name in ("service", "other")
    )
    assert output.splitlines() == [
        f"service (APM) run {service_run.pk}: succeeded, 1 new commit",
        f"other (APM) run {other_run.pk}: succeeded, 0 new commits",
        "2 repositories: 2 succeeded.",
    ]
    assert Commit.objects.filter(repository__name="service").count() == 4
    assert not IngestionRun.objects.filter(repository__name="paused").exists()
    # An operator ran it: recorded as a command, not as the schedule.
    assert (service_run.trigger, other_run.trigger) == ("command", "command")


def broker_queue_remove(broker: str, queue: str) -> None:
    """Delete a test's queue, and the ingestion queue beside it (config/topology.py), from the shared
    Redis broker: their messages and kombu's bindings of them."""
    client = redis.Redis.from_url(broker)
    keys = [
        key
        for name in (queue, topology.ingestion_queue_default(queue))
        for key in client.scan_iter(match=f"*{name}")
    ]
    if keys:
        client.delete(*keys)


def _operator_env(tmp_path: Path, roots: Path, **extra: str) -> dict[str, str]:
    """What an operator's shell holds: this test's database, the allowed roots, a workspace."""
    return {
        "HOME": str(tmp_path),
        "DATABASE_URL": database_url(),
        "DATABASE_POOL_SIZE": "1",
        "APM_REPO_ROOTS": str(roots),
        "APM_WORKSPACE": str(tmp_path / "operator-workspace"),
        **extra,
    }


@pytest.mark.parametrize("json_logs", ["false", "true"])
def test_ingest_all_names_each_failure_on_its_line_and_exits_non_zero(
    repo: GitRepo, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, json_logs: str
):
    apm, shop, docs = (ProjectFactory(key=key) for key in ("APM", "SHOP", "DOCS"))
    run_command("ingest_repo", str(repo.path), "--project", "APM")
    repo.write("new.py", "z = 3\n")
    repo.commit("New")
    # Registered when the operator allowed it; APM_REPO_ROOTS no longer covers it.
    elsewhere = GitRepo(tmp_path_factory.mktemp("elsewhere") / "shop")
    elsewhere.write("a.txt", "a\n")
    elsewhere.commit("a")
    Repository.objects.create(project=shop, name="shop", kind="local", source=str(elsewhere.path))
    manual = GitRepo(tmp_path / "manual")
    manual.write("index.md", "# Manual\n")
    manual.commit("Manual")
    Repository.objects.create(
        project=docs, name="manual", kind="local", source=str(manual.path), default_branch="missing"
    )
    # Nothing listens on port 1: the host does not answer.
    Repository.objects.create(
        project=apm, name="mirror", kind="remote", source="https://127.0.0.1:1/team/app.git"
    )
    busy = Repository.objects.create(project=apm, name="busy", kind="local", source=str(manual.path) + "/")
    busy_run = IngestionRun.objects.create(
        repository=busy, status="running", trigger="schedule", heartbeat_at=timezone.now()
    )

    result = manage(
        "ingest_all",
        **_operator_env(
            tmp_path,
            tmp_path,
            APM_GIT_ALLOWED_NETWORKS="127.0.0.0/8",
            DJANGO_LOG_JSON=json_logs,
        ),
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "CommandError: 3 of 5 ingestions failed: shop, manual, mirror" in result.stderr
    runs = {
        name: IngestionRun.objects.filter(repository__name=name).latest("id")
        for name in ("service", "shop", "manual", "mirror")
    }
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    assert lines[0] == f"service (APM) run {runs['service'].pk}: succeeded, 1 new commit"
    assert lines[1].startswith(
        f"shop (SHOP) run {runs['shop'].pk}: failed: {elsewhere.path} is not under an allowed repository root"
    )
    assert lines[2] == (
        f"manual (DOCS) run {runs['manual'].pk}: failed: branch 'missing' does not exist in the repository"
    )
    assert lines[3].startswith(f"mirror (APM) run {runs['mirror'].pk}: failed: git clone failed: ")
    assert "127.0.0.1 port 1" in lines[3]
    assert lines[4] == f"busy (APM) run {busy_run.pk}: already under way (running, 0% done)"
    # The reasons are on the runs too, and every run the command started says an operator started it.
    assert [runs[name].status for name in runs] == ["succeeded", "failed", "failed", "failed"]
    assert runs["shop"].error in lines[1]
    assert runs["mirror"].error in lines[3]
    assert {runs[name].trigger for name in runs} == {"command"}
    assert IngestionRun.objects.filter(repository=busy).count() == 1


def test_ingest_all_goes_on_after_a_repository_refused_before_its_run(repo: GitRepo, tmp_path: Path):
    other = GitRepo(tmp_path / "other")
    other.write("a.txt", "a\n")
    other.commit("a")
    ProjectFactory(key="APM")
    run_command("ingest_repo", str(repo.path), "--project", "APM")
    run_command("ingest_repo", str(other.path), "--project", "APM")
    # A branch name written around the services (a database edit, a restore) is refused before a run.
    Repository.objects.filter(name="service").update(default_branch="x..y")
    out = StringIO()

    with pytest.raises(CommandError, match=r"^1 of 2 ingestions failed: service$"):
        call_command("ingest_all", stdout=out)

    other_run = IngestionRun.objects.filter(repository__name="other").latest("id")
    assert out.getvalue().splitlines() == [
        "service (APM) no run: failed: 'x..y' is not a valid branch name.",
        f"other (APM) run {other_run.pk}: succeeded, 0 new commits",
    ]


def test_ingest_all_refuses_a_timeout_without_wait(repo: GitRepo):
    with pytest.raises(CommandError, match="--timeout applies to --wait only") as refused:
        run_command("ingest_all", "--timeout", "5")

    assert refused.value.returncode == 2  # a usage error, as argparse's own


def test_the_schedule_records_its_runs_as_scheduled(repo: GitRepo):
    ProjectFactory(key="APM")
    run_command("ingest_repo", str(repo.path), "--project", "APM")

    assert repositories_ingest_all_task.apply().get() == 1

    assert IngestionRun.objects.latest("id").trigger == "schedule"


def test_ingest_all_on_workers_queues_and_waits_for_the_outcome(repo: GitRepo, tmp_path: Path):
    require_service(BROKER)
    apm, docs = ProjectFactory(key="APM"), ProjectFactory(key="DOCS")
    service = Repository.objects.create(project=apm, name="service", kind="local", source=str(repo.path))
    manual = GitRepo(tmp_path / "manual")
    manual.write("index.md", "# Manual\n")
    manual.commit("Manual")
    Repository.objects.create(
        project=docs, name="manual", kind="local", source=str(manual.path), default_branch="missing"
    )
    queue = f"apm-ingest-all-{os.getpid()}"
    env = _operator_env(
        tmp_path,
        tmp_path,
        CELERY_BROKER_URL=BROKER,
        CELERY_RESULT_BACKEND=BROKER,
        CELERY_TASK_DEFAULT_QUEUE=queue,
    )
    worker = None
    try:
        # No worker yet: the runs wait on the broker, and so does the operator who asked to wait.
        queued = manage("ingest_all", **env)
        runs = {run.repository.name: run for run in IngestionRun.objects.select_related("repository")}
        assert queued.returncode == 0, queued.stdout + queued.stderr
        assert queued.stdout.splitlines() == [
            f"service (APM) run {runs['service'].pk}: queued on the workers",
            f"manual (DOCS) run {runs['manual'].pk}: queued on the workers",
            "2 repositories: 2 queued on the workers.",
        ]
        timed_out = manage("ingest_all", "--wait", "--timeout", "2", **env)
        assert timed_out.returncode == 1
        assert timed_out.stdout.splitlines() == [
            f"service (APM) run {runs['service'].pk}: still queued after 2 s (0% done)",
            f"manual (DOCS) run {runs['manual'].pk}: still queued after 2 s (0% done)",
        ]
        assert "2 of 2 ingestions did not end within 2 s: service, manual" in timed_out.stderr

        worker = celery_worker_start(
            queue=queue,
            env={
                **worker_database_env(home=str(tmp_path), broker=BROKER, queue=queue),
                "APM_REPO_ROOTS": str(tmp_path),
                "APM_WORKSPACE": str(tmp_path / "worker-workspace"),
            },
        )
        waited = manage("ingest_all", "--wait", "--timeout", "120", **env)
    finally:
        if worker is not None:
            celery_worker_stop(worker)
        broker_queue_remove(BROKER, queue)

    assert waited.returncode == 1, waited.stdout + waited.stderr
    assert "Traceback" not in waited.stdout + waited.stderr
    assert sorted(waited.stdout.splitlines()) == [
        f"manual (DOCS) run {runs['manual'].pk}: failed: branch 'missing' does not exist in the repository",
        f"service (APM) run {runs['service'].pk}: succeeded, 3 new commits",
    ]
    assert "CommandError: 1 of 2 ingestions failed: manual" in waited.stderr
    assert Commit.objects.filter(repository=service).count() == 3
    assert IngestionRun.objects.count() == 2  # the waiting operators followed the queued runs


def test_the_admin_action_ingests_now(repo: GitRepo, admin_client):
    project = ProjectFactory(key="APM")
    run_command("ingest_repo", str(repo.path), "--project", "APM")
    repository = Repository.objects.get(project=project)
    repo.write("later.py", "w = 4\n")
    repo.commit("Later")

    response = admin_client.post(
        reverse("admin:repos_repository_changelist"),
        {"action": "ingest_now", "_selected_action": [repository.pk]},
        follow=True,
    )

    assert response.status_code == 200
    latest = IngestionRun.objects.filter(repository=repository).latest("id")
    assert (latest.trigger, latest.status, latest.commits_total) == ("admin", "succeeded", 1)
    assert f"ingestion run {latest.pk} queued" in response.content.decode()


def test_the_admin_refuses_an_unsafe_source_on_the_form(admin_client, repo: GitRepo):
    project = ProjectFactory(key="APM")

    response = admin_client.post(
        reverse("admin:repos_repository_add"),
        {
            "project": project.pk,
            "name": "x",
            "source": "ext::sh -c id",
            "default_branch": "",
            "is_active": "on",
            "ingestion_runs-TOTAL_FORMS": "0",
            "ingestion_runs-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 200
    assert "Transport helpers" in response.content.decode()
    assert not Repository.objects.exists()


def _admin_add(admin_client, project, source: str, **fields: str):
    return admin_client.post(
        reverse("admin:repos_repository_add"),
        {
            "project": project.pk,
            "name": "x",
            "source": source,
            "default_branch": "",
            "ingestion_runs-TOTAL_FORMS": "0",
            "ingestion_runs-INITIAL_FORMS": "0",
            **fields,
        },
    )


def test_the_admin_refuses_a_remote_inside_the_network_on_the_form(admin_client):
    response = _admin_add(
        admin_client, ProjectFactory(key="APM"), "https://127.0.0.1/team/app.git", is_active="on"
    )

    assert response.status_code == 200
    assert "resolves to 127.0.0.1, a loopback address" in response.content.decode()
    assert not Repository.objects.exists()


def test_the_admin_registers_an_inactive_repository(admin_client, repo: GitRepo):
    response = _admin_add(admin_client, ProjectFactory(key="APM"), str(repo.path))  # the box left unticked

    assert response.status_code == 302
    assert Repository.objects.get().is_active is False
