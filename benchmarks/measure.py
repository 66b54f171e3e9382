"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(call: Callable[[], object], repeat: int = 25) -> float:
    """The median of ``repeat`` timed calls, in milliseconds, after one untimed call that warms up."""
    call()  # warm the caches and the connection
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000
