"""Workloads k and l through ``DaskPool`` on a ``LocalCluster`` it starts:
two worker processes of one thread each, on 127.0.0.1.

Runs in the ``dask`` environment (envs.py), which adds Dask distributed.
"""

from __future__ import annotations

from antflow.dask import DaskPool

from ._offload import PROCESSES, cpu_jobs, spin, timed, tiny_jobs
from ._tasks import Tasks
from .antflow_api import map  # the warm-up every run does first

__all__ = ["map", "offload_cpu", "offload_tiny"]


def _cluster() -> DaskPool:
    return DaskPool(n_workers=PROCESSES, threads_per_worker=1)


async def offload_cpu(t: Tasks, n: int, workers: int) -> dict[str, float]:
    numbers: dict[str, float] = {}
    async with timed(_cluster(), numbers) as dask:
        await cpu_jobs(dask.wrap(spin), n, workers, slots=dask.slots)
    return numbers


async def offload_tiny(t: Tasks, n: int, workers: int, point: str) -> dict[str, float]:
    numbers: dict[str, float] = {}
    async with timed(_cluster(), numbers) as dask:
        await tiny_jobs(dask, n, workers, point)
    return numbers
