"""Workload h: what each of antflow's features costs when it is on but never bites.

Every point runs the same ``map`` of one-checkpoint tasks as workload a, with
one option turned on at a setting that never holds anything up: a limiter
larger than the load, a rate nobody reaches, retries nothing needs, a
deadline nobody meets. Its ratio to plain ``map`` in the same run is that
feature's cost on the path where it should cost nearly nothing. Two more
points compare ``map_iter`` in input order with completion order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from antflow import AsyncExecutor, RateLimiter

from ._measure import check
from ._tasks import Tasks

UNREACHABLE_RATE = 10**9
"""Starts per second: far beyond what any loop here can do, so it never waits."""

# point -> the options of the map call, made inside the event loop.
CALL_OPTIONS: dict[str, Callable[[], dict[str, Any]]] = {
    "plain": dict,
    "semaphore-50": lambda: {"semaphore": anyio.CapacityLimiter(50)},
    "semaphore-100": lambda: {"semaphore": anyio.CapacityLimiter(100)},
    "rate-limit": lambda: {"rate_limit": RateLimiter(UNREACHABLE_RATE)},
    "retries": lambda: {"retries": 3},
    "task-timeout": lambda: {"task_timeout": 10},
}


async def features(t: Tasks, n: int, workers: int, point: str) -> dict[str, float]:
    """Run point ``point`` of workload h; "" or a name in catalog._FEATURES."""
    if point == "map-iter":
        return await _map_iter(t, n, workers, ordered=True)
    if point == "map-iter-unordered":
        return await _map_iter(t, n, workers, ordered=False)
    executor_options: dict[str, Any] = {}
    if point == "rate-limit-executor":
        executor_options["rate_limit"] = RateLimiter(UNREACHABLE_RATE)
        call_options: dict[str, Any] = {}
    else:
        call_options = CALL_OPTIONS[point or "plain"]()
    async with AsyncExecutor(max_workers=workers, **executor_options) as ex:
        results = await ex.map(t.checkpoint, range(n), **call_options)
        check(results == list(range(n)), "map results out of order")
    return {}


async def _map_iter(t: Tasks, n: int, workers: int, ordered: bool) -> dict[str, float]:
    count = total = 0
    async with AsyncExecutor(max_workers=workers) as ex:
        async for result in ex.map_iter(t.checkpoint, range(n), ordered=ordered):
            check(not ordered or result == count, "map_iter results out of order")
            count += 1
            total += result
    check(count == n and total == n * (n - 1) // 2, "map_iter lost results")
    return {}


async def warm_up(t: Tasks, workers: int, point: str) -> None:
    """Before the clock (see child.py): the same point, small, so one-time
    costs (tenacity's import for ``retries=``, say) are not counted."""
    await features(t, workers, workers, point)
