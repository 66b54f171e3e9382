"""The stress scenario's shape: users added in steps, with short waits, until the server stops keeping up.

Every ``APM_LOADTEST_STEP_SECONDS`` (20) seconds ``APM_LOADTEST_STEP_USERS`` (5) more users join. At the
end of each step the shape asks loadtests.knee whether this step is the knee (errors during it, or a p95
over the last 10 s past 1 s); when it is, or at ``APM_LOADTEST_MAX_USERS`` (200) users or
``APM_LOADTEST_MAX_SECONDS`` (600) seconds, it writes what it saw to ``APM_LOADTEST_KNEE`` (JSON) and
stops the test. Loaded beside the users: ``locust -f loadtests/locustfile.py,loadtests/stress_shape.py``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from locust import LoadTestShape

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.knee import P95_LIMIT_MS, knee_reason


class StepShape(LoadTestShape):
    step_users = int(os.environ.get("APM_LOADTEST_STEP_USERS", "5"))
    step_seconds = float(os.environ.get("APM_LOADTEST_STEP_SECONDS", "20"))
    max_users = int(os.environ.get("APM_LOADTEST_MAX_USERS", "200"))
    max_seconds = float(os.environ.get("APM_LOADTEST_MAX_SECONDS", "600"))
    knee_path = os.environ.get("APM_LOADTEST_KNEE", "knee.json")

    def __init__(self) -> None:
        super().__init__()
        self.step = 0
        self.failures_before = 0
        self.steps: list[dict[str, Any]] = []
        self.done = False

    def tick(self) -> tuple[int, float] | None:
        if self.done:
            return None
        elapsed = self.get_run_time()
        step = int(elapsed // self.step_seconds)
        if step > self.step:
            # The step that just ended: judged on the last seconds of traffic at its user count.
            total = self.runner.stats.total
            users = (self.step + 1) * self.step_users
            failures = total.num_failures - self.failures_before
            p95 = total.get_current_response_time_percentile(0.95)
            seen = {
                "users": users,
                "rps": round(total.current_rps, 1),
                "p95_ms": p95,
                "failures": failures,
                "seconds": round(elapsed, 1),
            }
            self.steps.append(seen)
            self.failures_before = total.num_failures
            self.step = step
            reason = knee_reason(p95, failures)
            if reason is not None:
                return self._stop({**seen, "reached": True, "reason": reason})
            if users >= self.max_users or elapsed >= self.max_seconds:
                return self._stop(
                    {**seen, "reached": False, "reason": f"cap of {users} users or {elapsed:.0f} s reached"}
                )
        return (min(self.max_users, (step + 1) * self.step_users), float(self.step_users))

    def _stop(self, knee: dict[str, Any]) -> None:
        knee["p95_limit_ms"] = P95_LIMIT_MS
        knee["steps"] = self.steps
        Path(self.knee_path).write_text(json.dumps(knee, indent=2) + "\n")
        self.done = True
