"""Workloads k-n through ``ProcessPool(2)``.

The pool is started before the jobs' clock (``start_s`` reports it): process
start-up is a one-time cost a program pays once, not per job.
"""

from __future__ import annotations

import time

import anyio

from antflow import AsyncExecutor
from antflow.process import ProcessPool

from ._measure import check
from ._offload import PROCESSES, cpu_jobs, drive, shards, spin, timed, tiny, tiny_jobs
from ._tasks import Tasks
from .antflow_api import map  # the warm-up every run does first

__all__ = ["map", "offload_cancel", "offload_cpu", "offload_drivers", "offload_tiny"]


async def offload_cpu(t: Tasks, n: int, workers: int) -> dict[str, float]:
    numbers: dict[str, float] = {}
    async with timed(ProcessPool(PROCESSES), numbers) as procs:
        await cpu_jobs(procs.wrap(spin), n, workers, slots=procs.slots)
    return numbers


async def offload_tiny(t: Tasks, n: int, workers: int, point: str) -> dict[str, float]:
    numbers: dict[str, float] = {}
    async with timed(ProcessPool(PROCESSES), numbers) as procs:
        await tiny_jobs(procs, n, workers, point)
    return numbers


async def offload_drivers(t: Tasks, n: int, workers: int) -> dict[str, float]:
    """Two drivers, each an ``async def`` job in a worker process with its own
    loop and executor, and half of the workers."""
    numbers: dict[str, float] = {}
    async with timed(ProcessPool(PROCESSES), numbers) as procs:
        counts = [0, 0]

        async def one(index: int, shard: list[int]) -> None:
            counts[index] = await procs.run(drive, shard, workers // PROCESSES)

        async with anyio.create_task_group() as tg:
            for index, shard in enumerate(shards(n)):
                tg.start_soon(one, index, shard)
    check(sum(counts) == n, "the drivers lost jobs")
    return numbers


async def offload_cancel(t: Tasks, n: int, workers: int) -> dict[str, float]:
    """From ``cancel()`` of a running job until its slot is free (its worker
    killed), and until the next job's result, from a freshly started process."""
    async with ProcessPool(1) as procs, AsyncExecutor(max_workers=2) as ex:
        running = ex.submit(procs.wrap(spin), 60.0, semaphore=procs.slots)
        while procs.slots.borrowed_tokens == 0:  # admitted ...
            await anyio.sleep(0.001)
        await anyio.sleep(0.05)  # ... and the call has reached the worker
        began = time.perf_counter()
        running.cancel()
        while procs.slots.borrowed_tokens:
            await anyio.sleep(0)
        freed = time.perf_counter() - began
        check(await ex.submit(procs.wrap(tiny), 1, semaphore=procs.slots) == 2, "tiny")
        return {"freed_s": freed, "next_s": time.perf_counter() - began}
