"""Timing shared by the benchmark scripts (they import it from this folder)."""

from __future__ import annotations

import time
from collections.abc import Callable


def seconds_per_call(
    fn: Callable[[], object], calls: int = 1, synchronize: Callable[[], object] | None = None
) -> tuple[float, float]:
    """(wall, CPU) seconds per call of ``fn()`` over ``calls`` calls; ``synchronize()``, when
    given, runs before each reading of the clocks (to wait for a GPU's queued work)."""
    if synchronize is not None:
        synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    if synchronize is not None:
        synchronize()
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls
