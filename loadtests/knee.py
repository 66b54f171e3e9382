"""Where the stress scenario stops: the first step at which the server no longer keeps up.

Shared by the stress shape (it runs inside Locust) and the report; standard library only.
"""

from __future__ import annotations

P95_LIMIT_MS = 1000.0


def knee_reason(p95_ms: float | None, failures: int, *, p95_limit_ms: float = P95_LIMIT_MS) -> str | None:
    """Why a step is the knee, or None while the server keeps up: errors during the step, or the p95 of
    the last seconds (Locust's current window) past ``p95_limit_ms``."""
    if failures > 0:
        return f"{failures} failed requests"
    if p95_ms is not None and p95_ms > p95_limit_ms:
        return f"p95 {p95_ms:.0f} ms > {p95_limit_ms:.0f} ms"
    return None
