"""The task bodies every implementation runs, built from the backend's own primitives.

Every implementation of a workload on a given backend awaits exactly the same
task functions, so the numbers differ only by the machinery around them. The
bodies use the backend's native calls (``asyncio.sleep(0)``, trio's
``checkpoint()``) rather than anyio's wrappers, which would add a layer of
calls to the baselines that do not use anyio at all.

This module must import on the AntFlow 0.10 venv, which has neither anyio nor
trio: only the chosen backend's modules are imported, and only when asked.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

SLEEP_S = 0.01
"""Workload d: each task sleeps this long."""
SLOW_S = 0.02
"""Workload e: each slow task holds the shared semaphore this long."""
HOL_SLOW = 200
"""Workload e: how many slow tasks are submitted first."""
HOL_LIMIT = 5
"""Workload e: the slow tasks share one semaphore of this size."""


@dataclass
class Finish:
    """Counts finished tasks and notes when the last one finished."""

    count: int = 0
    last: float = 0.0

    def done(self) -> None:
        self.count += 1
        self.last = time.perf_counter()


@dataclass
class Gate:
    """Holds ``target`` tasks until ``open`` is set; ``ready`` is set once all started."""

    target: int
    open: Any
    ready: Any
    started: int = field(default=0)


@dataclass(frozen=True)
class Tasks:
    """One backend's primitives and the task bodies built on them."""

    checkpoint: Callable[[int], Awaitable[int]]
    """``await checkpoint(x)`` yields to the loop once and returns ``x``."""
    sleep: Callable[[int], Awaitable[int]]
    """``await sleep(x)`` sleeps ``SLEEP_S`` and returns ``x``."""
    slow: Callable[[Finish], Awaitable[None]]
    """Sleeps ``SLOW_S`` (the caller holds the semaphore), then notes it finished."""
    quick: Callable[[Finish], Awaitable[None]]
    """Yields once, then notes it finished."""
    gated: Callable[[Gate], Awaitable[None]]
    """Counts itself started, then waits for the gate to open."""
    Event: Callable[[], Any]
    Semaphore: Callable[[int], Any]
    nap: Callable[[float], Awaitable[Any]]
    """``await nap(seconds)``: the backend's own sleep (workload o's requests)."""

    def gate(self, target: int) -> Gate:
        return Gate(target, self.Event(), self.Event())


async def _gated_body(gate: Gate) -> None:
    gate.started += 1
    if gate.started == gate.target:
        gate.ready.set()
    await gate.open.wait()


def for_backend(backend: str) -> Tasks:
    """The task bodies for ``backend`` ("asyncio", "uvloop" or "trio")."""
    return _trio_tasks() if backend == "trio" else _asyncio_tasks()


def _asyncio_tasks() -> Tasks:
    import asyncio

    sleep_for = asyncio.sleep

    async def checkpoint(x: int) -> int:
        await sleep_for(0)
        return x

    async def sleep(x: int) -> int:
        await sleep_for(SLEEP_S)
        return x

    async def slow(finish: Finish) -> None:
        await sleep_for(SLOW_S)
        finish.done()

    async def quick(finish: Finish) -> None:
        await sleep_for(0)
        finish.done()

    return Tasks(
        checkpoint,
        sleep,
        slow,
        quick,
        _gated_body,
        asyncio.Event,
        asyncio.Semaphore,
        sleep_for,
    )


def _trio_tasks() -> Tasks:
    import trio

    yield_once = trio.lowlevel.checkpoint
    sleep_for = trio.sleep

    async def checkpoint(x: int) -> int:
        await yield_once()
        return x

    async def sleep(x: int) -> int:
        await sleep_for(SLEEP_S)
        return x

    async def slow(finish: Finish) -> None:
        await sleep_for(SLOW_S)
        finish.done()

    async def quick(finish: Finish) -> None:
        await yield_once()
        finish.done()

    return Tasks(
        checkpoint,
        sleep,
        slow,
        quick,
        _gated_body,
        trio.Event,
        trio.Semaphore,
        sleep_for,
    )
