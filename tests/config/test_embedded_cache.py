"""The embedded default's cache is shared by every process of the machine.

`make run` serves in one process while `manage.py ingest_repo` (or a shell, or a second server) writes in
another: the writer's invalidation must reach the server, or the server keeps showing figures from before
the write for as long as they live. Each step below is its own process, on the embedded default's
settings (config.settings.local) with a database and a cache directory of the test's own.
"""

from __future__ import annotations

from pathlib import Path

from tests.processes import manage

SETUP = """
from django.contrib.auth.models import User
from projects.services import project_create
owner = User.objects.create_user("owner")
project_create(name="Shared", key="SHR", owner=owner)
"""

READ = """
from insights.selectors import project_dashboard, project_summary_cached
from django.contrib.auth.models import User
from projects.models import Project
summary = project_summary_cached(project=Project.objects.get(key="SHR"))
rows = project_dashboard(user=User.objects.get(username="owner"))
from prometheus_client import REGISTRY
hits = REGISTRY.get_sample_value("apm_cache_lookups_total", {"family": "summary", "result": "hit"})
print("tasks", summary["tasks_total"], rows[0]["tasks_total"], "summary hits", int(hits))
"""

WRITE = """
from django.contrib.auth.models import User
from projects.models import Project
from tasks.services import task_create
task_create(project=Project.objects.get(key="SHR"), title="Written elsewhere", source="api",
            actor=User.objects.get(username="owner"))
"""


def test_a_write_in_one_process_shows_in_the_next_read_of_another(tmp_path: Path):
    environment = {
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'apm.sqlite3'}",
        "CACHE_DIR": str(tmp_path / "cache"),
        "APM_DEBUG_TOOLBAR": "false",
    }

    def run(*args: str) -> str:
        result = manage(*args, **environment)
        assert result.returncode == 0, result.stderr
        return result.stdout

    run("migrate", "--noinput", "-v0")
    run("shell", "--no-imports", "-c", SETUP)
    assert "tasks 0 0 summary hits 0" in run("shell", "--no-imports", "-c", READ)
    # Cached now, in files: the next process is served the same entry.
    assert "tasks 0 0 summary hits 1" in run("shell", "--no-imports", "-c", READ)

    run("shell", "--no-imports", "-c", WRITE)

    # The writer's invalidation reached the files: the next reader computes, and sees the task.
    assert "tasks 1 1 summary hits 0" in run("shell", "--no-imports", "-c", READ)
