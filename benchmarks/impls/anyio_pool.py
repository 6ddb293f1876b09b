"""Baseline: raw anyio, a fixed set of worker tasks pulling from one shared iterator.

Each worker runs ``for item in items: ...``; advancing an iterator never
awaits, so the workers share it safely. Results come back through a memory
object stream where the workload streams them, in completion order. This is
the reference for ``map_iter`` (workload c).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from ._measure import check
from ._tasks import HOL_LIMIT, HOL_SLOW, Finish, Tasks


async def map(t: Tasks, n: int, workers: int) -> dict[str, float]:
    results: list[int | None] = [None] * n
    items = iter(range(n))

    async def worker() -> None:
        for i in items:
            results[i] = await t.checkpoint(i)

    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)
    check(results == list(range(n)), "map results out of order")
    return {}


async def as_completed(t: Tasks, n: int, workers: int) -> dict[str, float]:
    send, receive = anyio.create_memory_object_stream[int](math.inf)
    items = iter(range(n))
    total = 0

    async def worker() -> None:
        for i in items:
            send.send_nowait(await t.checkpoint(i))

    with send, receive:
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
            for _ in range(n):
                total += await receive.receive()
    check(total == n * (n - 1) // 2, "as_completed lost results")
    return {}


async def map_iter(t: Tasks, n: int, workers: int) -> dict[str, float]:
    # A bounded stream keeps memory flat: workers wait while the reader lags.
    send, receive = anyio.create_memory_object_stream[int](workers)
    items: Iterator[int] = (i for i in range(n))
    count = total = 0

    async def worker(out: MemoryObjectSendStream[int]) -> None:
        with out:
            for i in items:
                await out.send(await t.checkpoint(i))

    async with anyio.create_task_group() as tg:
        with send:
            for _ in range(workers):
                tg.start_soon(worker, send.clone())
        with receive:
            async for result in receive:
                count += 1
                total += result
    check(count == n and total == n * (n - 1) // 2, "map_iter lost results")
    return {}


async def sleep(t: Tasks, n: int, workers: int) -> dict[str, float]:
    items = iter(range(n))

    async def worker() -> None:
        for i in items:
            await t.sleep(i)

    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)
    return {}


async def hol(t: Tasks, n: int, workers: int) -> dict[str, float]:
    # A worker that picks a slow item waits for the shared semaphore while
    # it holds its place in the pool.
    start = time.perf_counter()
    slow_done, quick_done = Finish(), Finish()
    limit = anyio.Semaphore(HOL_LIMIT)
    items = iter([True] * HOL_SLOW + [False] * n)

    async def worker() -> None:
        for is_slow in items:
            if is_slow:
                async with limit:
                    await t.slow(slow_done)
            else:
                await t.quick(quick_done)

    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)
    check(slow_done.count == HOL_SLOW and quick_done.count == n, "hol lost tasks")
    return {"t_quick": quick_done.last - start, "t_slow": slow_done.last - start}
