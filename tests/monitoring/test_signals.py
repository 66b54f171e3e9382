"""A Celery pool process that exits takes its "live" gauges with it (monitoring.signals), as a gunicorn
worker does (gunicorn.conf.py): the pod's database pool is the sum over the processes still running."""

from __future__ import annotations

from pathlib import Path

from tests.processes import manage

# In a process of its own: prometheus_client chooses its multiprocess mode when it is first imported.
_EXIT_OF_A_POOL_PROCESS = """
import os
from pathlib import Path
from celery.signals import worker_process_shutdown
from monitoring.metrics import DATABASE_POOL_IN_USE, CELERY_LAST_TASK_FINISHED
DATABASE_POOL_IN_USE.labels(alias="default").set(3)
CELERY_LAST_TASK_FINISHED.labels(queue="celery").set(1700000000)
directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
before = sorted(path.name.rsplit("_", 1)[0] for path in directory.glob(f"*_{os.getpid()}.db"))
worker_process_shutdown.send(sender="worker@host", pid=os.getpid(), exitcode=0)
after = sorted(path.name.rsplit("_", 1)[0] for path in directory.glob(f"*_{os.getpid()}.db"))
print(before, after)
"""


def test_an_exiting_pool_process_leaves_the_live_gauges_and_keeps_its_timestamps(tmp_path: Path):
    directory = tmp_path / "prometheus"
    directory.mkdir()

    result = manage(
        "shell",
        "--no-imports",
        "-c",
        _EXIT_OF_A_POOL_PROCESS,
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=f"sqlite:///{tmp_path / 'unused.sqlite3'}",
        PROMETHEUS_MULTIPROC_DIR=str(directory),
    )

    assert result.returncode == 0, result.stderr
    before, after = result.stdout.strip().splitlines()[-1].split("] [")
    assert "gauge_livesum" in before
    assert "gauge_livesum" not in after
    # The last task's timestamp ("max") stays true after its process is gone.
    assert "gauge_max" in after
