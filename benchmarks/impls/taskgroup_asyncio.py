"""Baseline: raw asyncio, one task per item in a ``TaskGroup``, a ``Semaphore`` as the pool.

This is what the issue calls "TaskGroup + Semaphore" (workloads a, d, e, f)
and, with ``asyncio.as_completed`` reading the tasks, "tasks + as_completed"
(workload b). Streaming a million items (c) would need a million tasks at
once, which is the problem a pool solves, so it is not run here.
"""

from __future__ import annotations

import asyncio
import time

from ._measure import check, queue_metrics, settled_rss
from ._tasks import HOL_LIMIT, HOL_SLOW, Finish, Tasks


async def map(t: Tasks, n: int, workers: int) -> dict[str, float]:
    pool = asyncio.Semaphore(workers)
    results: list[int | None] = [None] * n

    async def run(i: int) -> None:
        async with pool:
            results[i] = await t.checkpoint(i)

    async with asyncio.TaskGroup() as tg:
        for i in range(n):
            tg.create_task(run(i))
    check(results == list(range(n)), "map results out of order")
    return {}


async def as_completed(t: Tasks, n: int, workers: int) -> dict[str, float]:
    pool = asyncio.Semaphore(workers)
    total = 0

    async def run(i: int) -> int:
        async with pool:
            return await t.checkpoint(i)

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(run(i)) for i in range(n)]
        for next_done in asyncio.as_completed(tasks):
            total += await next_done
    check(total == n * (n - 1) // 2, "as_completed lost results")
    return {}


async def sleep(t: Tasks, n: int, workers: int) -> dict[str, float]:
    pool = asyncio.Semaphore(workers)

    async def run(i: int) -> None:
        async with pool:
            await t.sleep(i)

    async with asyncio.TaskGroup() as tg:
        for i in range(n):
            tg.create_task(run(i))
    return {}


async def hol(t: Tasks, n: int, workers: int) -> dict[str, float]:
    # The plain pattern: a slow task takes a pool slot, then waits for the
    # shared semaphore while holding it, so quick tasks queue behind it.
    start = time.perf_counter()
    slow_done, quick_done = Finish(), Finish()
    pool, limit = asyncio.Semaphore(workers), asyncio.Semaphore(HOL_LIMIT)

    async def slow() -> None:
        async with pool, limit:
            await t.slow(slow_done)

    async def quick() -> None:
        async with pool:
            await t.quick(quick_done)

    async with asyncio.TaskGroup() as tg:
        for _ in range(HOL_SLOW):
            tg.create_task(slow())
        for _ in range(n):
            tg.create_task(quick())
    check(slow_done.count == HOL_SLOW and quick_done.count == n, "hol lost tasks")
    return {"t_quick": quick_done.last - start, "t_slow": slow_done.last - start}


async def submit(t: Tasks, n: int, workers: int) -> dict[str, float]:
    # The raw counterpart of a queued future is a created task waiting for a
    # pool slot.
    pool, gate, finish = asyncio.Semaphore(workers), t.gate(workers), Finish()

    async def blocker() -> None:
        async with pool:
            await t.gated(gate)

    async def run() -> None:
        async with pool:
            await t.quick(finish)

    async with asyncio.TaskGroup() as tg:
        for _ in range(workers):
            tg.create_task(blocker())
        await gate.ready.wait()
        rss_before = settled_rss()
        start = time.perf_counter()
        for _ in range(n):
            tg.create_task(run())
        seconds = time.perf_counter() - start
        for _ in range(3):  # let each new task run to its first await
            await t.checkpoint(0)
        rss_after = settled_rss()
        gate.open.set()
    check(finish.count == n, "submit lost tasks")
    return queue_metrics(n, seconds, rss_before, rss_after)
