"""Liveness of the Celery worker and beat: a file their main process touches, and the probe that reads it.

``celery inspect ping`` would go through the broker: a broker outage would fail it on every worker at
once and restart them all, which mends nothing (they reconnect by themselves) and interrupts the tasks
they run. What a liveness probe must catch is a process that no longer runs: frozen, deadlocked, stuck
in a loop outside any task. So the worker's main process (config.celery_app) and beat (apm.beat) touch
``APM_HEARTBEAT_FILE`` every ``APM_HEARTBEAT_SECONDS``, whatever the broker does, and the probe is

    python -m apm.heartbeat /tmp/apm-heartbeat --max-age 60

which exits 0 when the file was touched within the last 60 seconds, 1 when it is older, missing, not a
regular file, unreadable or dated in the future (more than a few seconds: a time that no heartbeat
wrote), and 2 on a wrong ``--max-age`` (a finite number of seconds above 0). It
imports neither Django nor Celery: the kubelet runs it every period, inside the pod's memory limit.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
import sys
import threading
import time
from pathlib import Path


def heartbeat_touch(path: str | os.PathLike[str]) -> None:
    """Set the file's modification time to now, creating it (and its directory) if needed."""
    target = Path(path)
    try:
        os.utime(target)
    except FileNotFoundError:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()


# How far in the future a file's time may be and still count as now: the clocks of one machine, read a
# moment apart. Beyond it the time was set by something else than the heartbeat (a restored file, a
# clock that jumped back), and a file "touched in an hour" would count as fresh for an hour and more.
FUTURE_TOLERANCE_SECONDS = 5.0


def _max_age(text: str) -> float:
    """``--max-age``: a finite number of seconds above zero (NaN would make every file fresh)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"a finite number of seconds above 0, not {text!r}")
    return value


class HeartbeatThread(threading.Thread):
    """Touches ``path`` now and then every ``seconds``, until ``stop()``.

    A thread of the process, not a timer of Celery's event loop: that loop stands still while the
    consumer reconnects to a broker that is down, and liveness must not depend on the broker. The thread
    stops with its process (frozen or dead), which is what the probe is for.
    """

    def __init__(self, path: str, seconds: float) -> None:
        super().__init__(name="apm-heartbeat-file", daemon=True)
        self.path = path
        self.seconds = seconds
        self._stopped = threading.Event()

    def run(self) -> None:
        while True:
            try:
                heartbeat_touch(self.path)
            except OSError as exc:  # a full or read-only disk: said once a period, the probe will tell
                print(f"apm.heartbeat: cannot touch {self.path}: {exc}", file=sys.stderr)
            if self._stopped.wait(self.seconds):
                return

    def stop(self) -> None:
        self._stopped.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m apm.heartbeat",
        description="Exit 0 when FILE was touched within --max-age seconds, 1 when it is older or missing.",
    )
    parser.add_argument("file")
    parser.add_argument("--max-age", type=_max_age, required=True, metavar="SECONDS")
    arguments = parser.parse_args(argv)
    try:
        status = os.stat(arguments.file)
    except FileNotFoundError:
        print(f"{arguments.file}: missing", file=sys.stderr)
        return 1
    except OSError as exc:  # a file where a directory of the path should be, no permission
        print(f"{arguments.file}: cannot be read: {exc.strerror or exc}", file=sys.stderr)
        return 1
    age = time.time() - status.st_mtime
    if not stat.S_ISREG(status.st_mode):
        # A directory's time changes when files come and go in it, not when a heartbeat touches it.
        print(f"{arguments.file}: not a regular file", file=sys.stderr)
        return 1
    if age < -FUTURE_TOLERANCE_SECONDS:
        print(f"{arguments.file}: stale, its time is {-age:.0f} s in the future", file=sys.stderr)
        return 1
    if age > arguments.max_age:
        print(
            f"{arguments.file}: stale, touched {age:.0f} s ago (max {arguments.max_age:g} s)", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
