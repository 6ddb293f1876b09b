"""Peer: asyncio-pool-ng (PyPI; 0.9 on Python 3.12+, 0.8 on 3.11), in a venv of its own.

It imports as ``asyncio_pool``. ``AsyncioPool(size)`` is a TaskGroup whose
helper task starts one task per item once one of ``size`` semaphore slots is
free; ``spawn(fn, *args)`` returns an ``asyncio.Future`` at once. Its
``itermap`` spawns every item up front and yields the futures in completion
order, so it runs cu (unordered), not c.
"""

from __future__ import annotations

import asyncio
import time

from asyncio_pool import AsyncioPool

from ._measure import check, queue_metrics, settled_rss
from ._tasks import HOL_LIMIT, HOL_SLOW, Finish, Tasks


async def map(t: Tasks, n: int, workers: int) -> dict[str, float]:
    # pool.map returns a set; spawning in order keeps the results in order.
    async with AsyncioPool(workers) as pool:
        futures = [pool.spawn(t.checkpoint, i) for i in range(n)]
        results = [await future for future in futures]
    check(results == list(range(n)), "map results out of order")
    return {}


async def as_completed(t: Tasks, n: int, workers: int) -> dict[str, float]:
    total = 0
    async with AsyncioPool(workers) as pool:
        futures = [pool.spawn(t.checkpoint, i) for i in range(n)]
        for next_done in asyncio.as_completed(futures):
            total += await next_done
    check(total == n * (n - 1) // 2, "as_completed lost results")
    return {}


async def map_iter_unordered(t: Tasks, n: int, workers: int) -> dict[str, float]:
    count = total = 0
    async with AsyncioPool(workers) as pool:
        async for future in pool.itermap(t.checkpoint, (i for i in range(n))):
            count += 1
            total += future.result()
    check(count == n and total == n * (n - 1) // 2, "map_iter lost results")
    return {}


async def sleep(t: Tasks, n: int, workers: int) -> dict[str, float]:
    async with AsyncioPool(workers) as pool:
        futures = [pool.spawn(t.sleep, i) for i in range(n)]
    check(all(future.done() for future in futures), "sleep lost results")
    return {}


async def hol(t: Tasks, n: int, workers: int) -> dict[str, float]:
    # A started slow task waits for the shared semaphore inside its slot.
    start = time.perf_counter()
    slow_done, quick_done = Finish(), Finish()
    limit = asyncio.Semaphore(HOL_LIMIT)

    async def slow() -> None:
        async with limit:
            await t.slow(slow_done)

    async with AsyncioPool(workers) as pool:
        for _ in range(HOL_SLOW):
            pool.spawn(slow)
        for _ in range(n):
            pool.spawn(t.quick, quick_done)
    check(slow_done.count == HOL_SLOW and quick_done.count == n, "hol lost tasks")
    return {"t_quick": quick_done.last - start, "t_slow": slow_done.last - start}


async def submit(t: Tasks, n: int, workers: int) -> dict[str, float]:
    gate, finish = t.gate(workers), Finish()
    async with AsyncioPool(workers) as pool:
        blockers = [pool.spawn(t.gated, gate) for _ in range(workers)]
        await gate.ready.wait()  # every slot is now busy: what follows queues
        rss_before = settled_rss()
        start = time.perf_counter()
        futures = [pool.spawn(t.quick, finish) for _ in range(n)]
        seconds = time.perf_counter() - start
        for _ in range(3):  # let the pool's helper task take what it can
            await t.checkpoint(0)
        rss_after = settled_rss()
        gate.open.set()
    check(all(f.done() for f in blockers + futures), "submit lost futures")
    check(finish.count == n, "submit lost tasks")
    return queue_metrics(n, seconds, rss_before, rss_after)
