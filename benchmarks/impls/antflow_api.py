"""The workloads written against antflow's public API.

The same code runs this repository's antflow and AntFlow 0.10 from PyPI (in its
own venv, since both are imported as ``antflow``): both offer ``AsyncExecutor``
with ``submit``, ``map``, ``map_iter`` and ``as_completed`` and a
``semaphore=`` option, and nothing else of either is used, except
``map_iter(ordered=False)`` in ``map_iter_unordered``, which only this
repository's antflow runs.
"""

from __future__ import annotations

import time

from antflow import AsyncExecutor

from ._measure import check, queue_metrics, settled_rss
from ._tasks import HOL_LIMIT, HOL_SLOW, Finish, Tasks


async def map(t: Tasks, n: int, workers: int) -> dict[str, float]:
    async with AsyncExecutor(max_workers=workers) as ex:
        results = await ex.map(t.checkpoint, range(n))
    check(results == list(range(n)), "map results out of order")
    return {}


async def as_completed(t: Tasks, n: int, workers: int) -> dict[str, float]:
    total = 0
    async with AsyncExecutor(max_workers=workers) as ex:
        futures = [ex.submit(t.checkpoint, i) for i in range(n)]
        async for future in ex.as_completed(futures):
            total += await future.result()
    check(total == n * (n - 1) // 2, "as_completed lost results")
    return {}


async def map_iter(t: Tasks, n: int, workers: int) -> dict[str, float]:
    expected = 0
    async with AsyncExecutor(max_workers=workers) as ex:
        async for result in ex.map_iter(t.checkpoint, (i for i in range(n))):
            check(result == expected, "map_iter results out of order")
            expected += 1
    check(expected == n, "map_iter lost results")
    return {}


async def map_iter_unordered(t: Tasks, n: int, workers: int) -> dict[str, float]:
    count = total = 0
    async with AsyncExecutor(max_workers=workers) as ex:
        results = ex.map_iter(t.checkpoint, (i for i in range(n)), ordered=False)
        async for result in results:
            count += 1
            total += result
    check(count == n and total == n * (n - 1) // 2, "map_iter lost results")
    return {}


async def scaling(t: Tasks, n: int, workers: int) -> dict[str, float]:
    """Workload i: the same ordered ``map_iter`` as c, at each size and pool."""
    return await map_iter(t, n, workers)


async def sleep(t: Tasks, n: int, workers: int) -> dict[str, float]:
    async with AsyncExecutor(max_workers=workers) as ex:
        results = await ex.map(t.sleep, range(n))
    check(len(results) == n, "sleep lost results")
    return {}


async def hol(t: Tasks, n: int, workers: int) -> dict[str, float]:
    start = time.perf_counter()
    slow_done, quick_done = Finish(), Finish()
    limit = t.Semaphore(HOL_LIMIT)
    async with AsyncExecutor(max_workers=workers) as ex:
        slow = [ex.submit(t.slow, slow_done, semaphore=limit) for _ in range(HOL_SLOW)]
        quick = [ex.submit(t.quick, quick_done) for _ in range(n)]
        for future in quick + slow:
            await future.result()
    check(slow_done.count == HOL_SLOW and quick_done.count == n, "hol lost tasks")
    return {"t_quick": quick_done.last - start, "t_slow": slow_done.last - start}


async def submit(t: Tasks, n: int, workers: int) -> dict[str, float]:
    gate, finish = t.gate(workers), Finish()
    async with AsyncExecutor(max_workers=workers) as ex:
        blockers = [ex.submit(t.gated, gate) for _ in range(workers)]
        await gate.ready.wait()  # every worker is now busy: what follows queues
        rss_before = settled_rss()
        start = time.perf_counter()
        futures = [ex.submit(t.quick, finish) for _ in range(n)]
        seconds = time.perf_counter() - start
        for _ in range(3):  # let any task the submits spawned reach its first await
            await t.checkpoint(0)
        rss_after = settled_rss()
        gate.open.set()
        for future in blockers + futures:
            await future.result()
    check(finish.count == n, "submit lost tasks")
    return queue_metrics(n, seconds, rss_before, rss_after)
