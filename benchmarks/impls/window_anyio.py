"""Baseline: the hand-written ordered window on anyio, the reference for ordered ``map_iter`` on trio.

The same window as ``window_asyncio``: W worker tasks pull items from one
shared iterator, each appends a result slot for its item to the window (in
input order, since nothing awaits between taking an item and appending its
slot), and stops taking items while 2 x W results wait for the consumer.
anyio has no future, so a slot is a small object its worker fills, and only
a waiter costs an ``anyio.Event``: the consumer when the oldest slot is not
filled yet, a worker when the window is full. That is what ordered
``map_iter`` must do at the least, on every backend.

(A first version read the input in the consumer and handed each item to a
parked worker; on trio it made an Event per item and cost 20-40 % more.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar, cast

import anyio

from ._measure import check
from ._tasks import Tasks

T = TypeVar("T")


class _Slot(Generic[T]):
    """One item's result, filled by the worker that ran it."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = False
        self.value: T | None = None
        self.error: Exception | None = None


@asynccontextmanager
async def ordered_window(
    fn: Callable[[Any], Awaitable[T]], items: Iterator[Any], workers: int
) -> AsyncGenerator[AsyncIterator[T]]:
    window: deque[_Slot[T]] = deque()  # in input order
    ahead = 2 * workers
    parked: list[anyio.Event] = []  # workers waiting for room
    consumer: list[anyio.Event] = []  # the consumer, waiting for the oldest slot
    running = workers

    def wake(waiters: list[anyio.Event]) -> None:
        if waiters:
            waiters.pop().set()

    async def worker() -> None:
        nonlocal running
        try:
            for item in items:
                slot: _Slot[T] = _Slot()
                window.append(slot)
                try:
                    slot.value = await fn(item)
                except Exception as error:
                    slot.error = error
                slot.done = True
                if window[0] is slot:
                    wake(consumer)
                while len(window) >= ahead:
                    room = anyio.Event()
                    parked.append(room)
                    await room.wait()
        finally:
            running -= 1
            if not running:
                wake(consumer)  # the input has ended

    async def results() -> AsyncIterator[T]:
        while window or running:
            if not (window and window[0].done):
                consumer.append(anyio.Event())
                await consumer[-1].wait()
                continue
            slot = window.popleft()
            wake(parked)
            if slot.error is not None:
                raise slot.error
            yield cast(T, slot.value)

    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)
        try:
            yield results()
        finally:
            tg.cancel_scope.cancel()  # left early: stop reading the input


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
