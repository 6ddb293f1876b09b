"""Baseline: aiometer 1.0 with ``max_at_once`` as the pool size.

aiometer starts one task per item once a slot is free. ``run_all`` is its
ordered map, ``amap`` its stream in completion order (so it runs cu, not c).
``amap`` wants a ``Sequence``, so cu hands it a lazy ``range`` rather than a
generator.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable

import aiometer
import anyio

from ._measure import check
from ._tasks import HOL_LIMIT, HOL_SLOW, Finish, Tasks


async def map(t: Tasks, n: int, workers: int) -> dict[str, float]:
    jobs = [functools.partial(t.checkpoint, i) for i in range(n)]
    results = await aiometer.run_all(jobs, max_at_once=workers)
    check(results == list(range(n)), "map results out of order")
    return {}


async def as_completed(t: Tasks, n: int, workers: int) -> dict[str, float]:
    total = 0
    async with aiometer.amap(t.checkpoint, range(n), max_at_once=workers) as results:
        async for result in results:
            total += result
    check(total == n * (n - 1) // 2, "as_completed lost results")
    return {}


async def map_iter_unordered(t: Tasks, n: int, workers: int) -> dict[str, float]:
    count = total = 0
    async with aiometer.amap(t.checkpoint, range(n), max_at_once=workers) as results:
        async for result in results:
            count += 1
            total += result
    check(count == n and total == n * (n - 1) // 2, "map_iter lost results")
    return {}


async def sleep(t: Tasks, n: int, workers: int) -> dict[str, float]:
    await aiometer.run_on_each(t.sleep, range(n), max_at_once=workers)
    return {}


async def hol(t: Tasks, n: int, workers: int) -> dict[str, float]:
    # A started slow task waits for the shared semaphore inside its slot.
    start = time.perf_counter()
    slow_done, quick_done = Finish(), Finish()
    limit = anyio.Semaphore(HOL_LIMIT)

    async def slow() -> None:
        async with limit:
            await t.slow(slow_done)

    jobs: list[Callable[[], Awaitable[None]]] = [slow] * HOL_SLOW
    jobs += [functools.partial(t.quick, quick_done)] * n
    await aiometer.run_all(jobs, max_at_once=workers)
    check(slow_done.count == HOL_SLOW and quick_done.count == n, "hol lost tasks")
    return {"t_quick": quick_done.last - start, "t_slow": slow_done.last - start}
