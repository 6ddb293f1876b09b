"""Workloads k and m without an offloader: the baseline rows.

k runs the CPU jobs on the event loop, one at a time (an ``async def`` that
never awaits holds the loop); m runs every async job in one process, one
executor.
"""

from __future__ import annotations

from ._offload import cpu_jobs, drive, spin, timed_work
from ._tasks import Tasks
from .antflow_api import map  # the warm-up every run does first

__all__ = ["map", "offload_cpu", "offload_drivers"]


async def offload_cpu(t: Tasks, n: int, workers: int) -> dict[str, float]:
    async def on_the_loop(seconds: float) -> float:
        return spin(seconds)

    return await timed_work(lambda: cpu_jobs(on_the_loop, n, workers))


async def offload_drivers(t: Tasks, n: int, workers: int) -> dict[str, float]:
    return await timed_work(lambda: drive(list(range(n)), workers))
