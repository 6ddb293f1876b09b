"""What workloads k-n share: the jobs that are offloaded and how a pool is timed.

The jobs are module-level functions here, so a worker process (anyio's, or a
Dask worker) imports them by name, as a user's program would have it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from antflow import AsyncExecutor

from ._measure import check

CPU_JOB_S = 0.020
"""Workload k: each CPU job spins this long."""
BATCHES = 20
"""Workload l: the batched point sends the jobs in this many remote calls."""
DRIVER_CPU_S = 0.0005
DRIVER_IO_S = 0.005
"""Workload m: each async job spins this long, then sleeps this long."""
PROCESSES = 2
"""Worker processes of each pool (ProcessPool's, Dask's): the machine's 2 cores."""


def spin(seconds: float) -> float:
    """CPU work that holds the GIL for ``seconds``."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return seconds


def tiny(x: int) -> int:
    return x + 1


async def cpu_and_io(x: int) -> int:
    spin(DRIVER_CPU_S)
    await anyio.sleep(DRIVER_IO_S)
    return x


async def drive(items: list[int], workers: int) -> int:
    """One driver of workload m: its own executor over its share of the input."""
    async with AsyncExecutor(max_workers=workers) as ex:
        done = await ex.map(cpu_and_io, items)
    check(done == items, "a driver lost or reordered results")
    return len(done)


async def cpu_jobs(
    job: Callable[[float], Awaitable[float]], n: int, workers: int, slots: Any = None
) -> None:
    """Workload k's body: ``n`` CPU jobs through ``job``, admitted by ``slots``."""
    async with AsyncExecutor(max_workers=workers) as ex:
        done = await ex.map(job, [CPU_JOB_S] * n, semaphore=slots)
    check(done == [CPU_JOB_S] * n, "CPU jobs lost results")


async def tiny_jobs(pool: Any, n: int, workers: int, point: str) -> None:
    """Workload l's body: ``n`` tiny jobs through ``pool``, one call each or in
    `BATCHES` calls (``wrap_batch``)."""
    items = list(range(n))
    expected = [x + 1 for x in items]
    async with AsyncExecutor(max_workers=workers) as ex:
        if point == "unbatched":
            results = await ex.map(pool.wrap(tiny), items)
        else:
            size = -(-n // BATCHES)
            chunks = [items[i : i + size] for i in range(0, n, size)]
            batches = await ex.map(pool.wrap_batch(tiny), chunks)
            results = [x for batch in batches for x in batch]
    check(results == expected, "tiny jobs lost or reordered results")


def shards(n: int) -> list[list[int]]:
    """Workload m's input split over two drivers."""
    items = list(range(n))
    return [items[0::2], items[1::2]]


@asynccontextmanager
async def timed(pool: Any, numbers: dict[str, float]) -> AsyncIterator[Any]:
    """Enter ``pool`` and time it: ``start_s`` (entering), ``work_s`` (the
    block), ``stop_s`` (leaving), into ``numbers``."""
    began = time.perf_counter()
    async with pool:
        numbers["start_s"] = time.perf_counter() - began
        began = time.perf_counter()
        yield pool
        numbers["work_s"] = time.perf_counter() - began
        began = time.perf_counter()
    numbers["stop_s"] = time.perf_counter() - began


async def timed_work(work: Callable[[], Awaitable[object]]) -> dict[str, float]:
    """``work_s`` of a run that starts no pool."""
    began = time.perf_counter()
    await work()
    return {"work_s": time.perf_counter() - began}
