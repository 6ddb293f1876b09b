"""Baseline: asyncio TaskGroup + Semaphore with ``asyncio.eager_task_factory`` (Python 3.12+).

The same code as ``taskgroup_asyncio``; only the loop's task factory
differs. An eager task runs its first step inside ``create_task``, so a task
that finds the semaphore free and finishes without suspending never goes
through the loop's ready queue at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from . import taskgroup_asyncio
from ._tasks import Tasks

Workload = Callable[[Tasks, int, int], Awaitable[dict[str, float]]]


def _eager(workload: Workload) -> Workload:
    async def run(t: Tasks, n: int, workers: int) -> dict[str, float]:
        loop = asyncio.get_running_loop()
        # Looked up by name: Python 3.11's typeshed has no eager_task_factory.
        loop.set_task_factory(getattr(asyncio, "eager_task_factory"))  # noqa: B009
        try:
            return await workload(t, n, workers)
        finally:
            loop.set_task_factory(None)

    run.__name__ = workload.__name__
    return run


map: Any = _eager(taskgroup_asyncio.map)
as_completed: Any = _eager(taskgroup_asyncio.as_completed)
sleep: Any = _eager(taskgroup_asyncio.sleep)
hol: Any = _eager(taskgroup_asyncio.hol)
submit: Any = _eager(taskgroup_asyncio.submit)
