"""Peer: anyio-executor 0.1 (PyPI), in a venv of its own, on every backend.

``Executor(num_workers)`` starts that many workers on anyio; ``map(fn,
items)`` starts a loader task that queues every item (its queue has no
bound), and the result, awaited, is the list of results in completion order,
or iterated, yields them in that order. It has no ``submit`` and no futures,
so b reads ``map``'s results as they come (as aiometer's ``amap`` does) and
f is not run.
"""

from __future__ import annotations

import time

import anyio
from anyio_executor import Executor

from ._measure import check
from ._tasks import HOL_LIMIT, HOL_SLOW, Finish, Tasks


async def map(t: Tasks, n: int, workers: int) -> dict[str, float]:
    async with Executor(workers) as ex:
        results = await ex.map(t.checkpoint, range(n))
    check(sorted(results) == list(range(n)), "map lost results")
    return {}


async def as_completed(t: Tasks, n: int, workers: int) -> dict[str, float]:
    total = 0
    async with Executor(workers) as ex:
        async for result in ex.map(t.checkpoint, range(n)):
            total += result
    check(total == n * (n - 1) // 2, "as_completed lost results")
    return {}


async def map_iter_unordered(t: Tasks, n: int, workers: int) -> dict[str, float]:
    count = total = 0
    async with Executor(workers) as ex:
        async for result in ex.map(t.checkpoint, (i for i in range(n))):
            count += 1
            total += result
    check(count == n and total == n * (n - 1) // 2, "map_iter lost results")
    return {}


async def sleep(t: Tasks, n: int, workers: int) -> dict[str, float]:
    async with Executor(workers) as ex:
        results = await ex.map(t.sleep, range(n))
    check(len(results) == n, "sleep lost results")
    return {}


async def hol(t: Tasks, n: int, workers: int) -> dict[str, float]:
    # A worker that picks a slow item waits for the shared semaphore while
    # it holds its place in the pool.
    start = time.perf_counter()
    slow_done, quick_done = Finish(), Finish()
    limit = anyio.Semaphore(HOL_LIMIT)

    async def job(is_slow: bool) -> None:
        if is_slow:
            async with limit:
                await t.slow(slow_done)
        else:
            await t.quick(quick_done)

    async with Executor(workers) as ex:
        await ex.map(job, [True] * HOL_SLOW + [False] * n)
    check(slow_done.count == HOL_SLOW and quick_done.count == n, "hol lost tasks")
    return {"t_quick": quick_done.last - start, "t_slow": slow_done.last - start}
