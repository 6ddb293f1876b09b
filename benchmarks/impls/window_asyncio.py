"""Baseline: the hand-written ordered window on raw asyncio, the reference for ordered ``map_iter``.

W worker tasks pull items from one shared iterator, as in the hand-written
pool. Taking an item and appending a future for its result to the window
happen with no ``await`` between them, so the window's deque holds the
futures in input order. A worker stops taking items while 2 x W results are
waiting for the consumer (the read-ahead bound), and parks on a future of its
own until the consumer takes one. The consumer awaits the oldest future. That
is what ordered ``map_iter`` must do at the least: bounded read-ahead,
results in input order, no task per item.

It is an async context manager around an async iterator, as aiometer's
``amap`` is, so no task group stays open across a bare ``yield``. (Reading
the input in the consumer and handing jobs to parked workers instead was as
fast here, and slower on anyio; see ``window_anyio``.)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from ._measure import check
from ._tasks import Tasks

T = TypeVar("T")


@asynccontextmanager
async def ordered_window(
    fn: Callable[[Any], Awaitable[T]], items: Iterator[Any], workers: int
) -> AsyncGenerator[AsyncIterator[T]]:
    loop = asyncio.get_running_loop()
    window: deque[asyncio.Future[T]] = deque()  # in input order
    ahead = 2 * workers
    parked: list[asyncio.Future[None]] = []  # workers waiting for room
    consumer: list[asyncio.Future[None]] = []  # the consumer, waiting for a future
    running = workers

    def wake(waiters: list[asyncio.Future[None]]) -> None:
        if waiters:
            waiters.pop().set_result(None)

    async def worker() -> None:
        nonlocal running
        try:
            for item in items:
                future = loop.create_future()
                window.append(future)
                wake(consumer)
                try:
                    future.set_result(await fn(item))
                except Exception as error:
                    future.set_exception(error)
                while len(window) >= ahead:
                    room = loop.create_future()
                    parked.append(room)
                    await room
        finally:
            running -= 1
            if not running:
                wake(consumer)  # the input has ended

    async def results() -> AsyncIterator[T]:
        while window or running:
            if not window:
                consumer.append(loop.create_future())
                await consumer[-1]
                continue
            result = await window[0]
            window.popleft()
            wake(parked)
            yield result

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(worker()) for _ in range(workers)]
        try:
            yield results()
        finally:
            for task in tasks:  # left early: stop reading the input
                task.cancel()


async def map_iter(t: Tasks, n: int, workers: int) -> dict[str, float]:
    expected = 0
    async with ordered_window(t.checkpoint, (i for i in range(n)), workers) as results:
        async for result in results:
            check(result == expected, "map_iter results out of order")
            expected += 1
    check(expected == n, "map_iter lost results")
    return {}


async def scaling(t: Tasks, n: int, workers: int) -> dict[str, float]:
    return await map_iter(t, n, workers)


async def map(t: Tasks, n: int, workers: int) -> dict[str, float]:
    """The warm-up every run does first (see child.py)."""
    results: list[int] = []
    async with ordered_window(t.checkpoint, iter(range(n)), workers) as stream:
        async for result in stream:
            results.append(result)
    check(results == list(range(n)), "map results out of order")
    return {}
