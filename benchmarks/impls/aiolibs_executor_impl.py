"""Peer: aiolibs-executor (PyPI), in a venv of its own; it needs Python 3.13.

``Executor(num_workers)`` runs that many worker tasks on asyncio, each
starting one task per item it takes from an ``asyncio.Queue`` (unbounded by
default). ``submit_nowait(coro)`` takes a coroutine and returns an
``asyncio.Future``; ``map(fn, items)`` yields results in input order, after
it has queued the whole input.
"""

from __future__ import annotations

import asyncio
import time

from aiolibs_executor import Executor

from ._measure import check, queue_metrics, settled_rss
from ._tasks import HOL_LIMIT, HOL_SLOW, Finish, Tasks


async def map(t: Tasks, n: int, workers: int) -> dict[str, float]:
    async with Executor(workers) as ex:
        results = [result async for result in ex.map(t.checkpoint, range(n))]
    check(results == list(range(n)), "map results out of order")
    return {}


async def as_completed(t: Tasks, n: int, workers: int) -> dict[str, float]:
    total = 0
    async with Executor(workers) as ex:
        futures = [ex.submit_nowait(t.checkpoint(i)) for i in range(n)]
        for next_done in asyncio.as_completed(futures):
            total += await next_done
    check(total == n * (n - 1) // 2, "as_completed lost results")
    return {}


async def map_iter(t: Tasks, n: int, workers: int) -> dict[str, float]:
    expected = 0
    async with Executor(workers) as ex:
        async for result in ex.map(t.checkpoint, (i for i in range(n))):
            check(result == expected, "map_iter results out of order")
            expected += 1
    check(expected == n, "map_iter lost results")
    return {}


async def sleep(t: Tasks, n: int, workers: int) -> dict[str, float]:
    async with Executor(workers) as ex:
        results = [result async for result in ex.map(t.sleep, range(n))]
    check(len(results) == n, "sleep lost results")
    return {}


async def hol(t: Tasks, n: int, workers: int) -> dict[str, float]:
    # A started slow task waits for the shared semaphore inside its worker.
    start = time.perf_counter()
    slow_done, quick_done = Finish(), Finish()
    limit = asyncio.Semaphore(HOL_LIMIT)

    async def slow() -> None:
        async with limit:
            await t.slow(slow_done)

    async with Executor(workers) as ex:
        futures = [ex.submit_nowait(slow()) for _ in range(HOL_SLOW)]
        futures += [ex.submit_nowait(t.quick(quick_done)) for _ in range(n)]
        for future in futures:
            await future
    check(slow_done.count == HOL_SLOW and quick_done.count == n, "hol lost tasks")
    return {"t_quick": quick_done.last - start, "t_slow": slow_done.last - start}


async def submit(t: Tasks, n: int, workers: int) -> dict[str, float]:
    gate, finish = t.gate(workers), Finish()
    async with Executor(workers) as ex:
        blockers = [ex.submit_nowait(t.gated(gate)) for _ in range(workers)]
        await gate.ready.wait()  # every worker is now busy: what follows queues
        rss_before = settled_rss()
        start = time.perf_counter()
        futures = [ex.submit_nowait(t.quick(finish)) for _ in range(n)]
        seconds = time.perf_counter() - start
        for _ in range(3):
            await t.checkpoint(0)
        rss_after = settled_rss()
        gate.open.set()
        for future in blockers + futures:
            await future
    check(finish.count == n, "submit lost tasks")
    return queue_metrics(n, seconds, rss_before, rss_after)
