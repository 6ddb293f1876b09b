"""Per-task limiters (``semaphore=``): which ones, and how a job waits for one.

What is pinned here is stated in docs/guide.md, "Limiting one kind of work"
(which limiters, waiting holds no worker, held per attempt, shared) and
docs/semantics.md, "Where features meet", "Tokens". How limits meet every
other option and ending is in faults/test_features_meet.py and
properties/test_model.py.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _strategies import Gauge

from antflow import AsyncExecutor

pytestmark = pytest.mark.anyio


class Flaky(Exception):
    pass


async def double(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * x


_COMMON_KINDS = ["anyio.CapacityLimiter", "anyio.Semaphore"]
_ASYNCIO_KINDS = ["asyncio.Semaphore", "asyncio.BoundedSemaphore"]
_TRIO_KINDS = ["trio.Semaphore", "trio.CapacityLimiter"]


def _make_limiter(kind: str, n: int) -> Any:
    if kind == "anyio.CapacityLimiter":
        return anyio.CapacityLimiter(n)
    if kind == "anyio.Semaphore":
        return anyio.Semaphore(n)
    if kind == "asyncio.Semaphore":
        return asyncio.Semaphore(n)
    if kind == "asyncio.BoundedSemaphore":
        return asyncio.BoundedSemaphore(n)
    import trio

    if kind == "trio.Semaphore":
        return trio.Semaphore(n)
    return trio.CapacityLimiter(n)


@pytest.mark.parametrize("kind", _COMMON_KINDS + _ASYNCIO_KINDS + _TRIO_KINDS)
async def test_semaphore_kinds_limit_concurrency(
    kind: str, anyio_backend_name: str
) -> None:
    """anyio.CapacityLimiter and anyio.Semaphore on every backend, asyncio's
    semaphores on asyncio, trio.Semaphore and trio.CapacityLimiter on trio
    cap the tasks that use them, independently of max_workers; a kind of the
    other backend is skipped (docs/guide.md, "Limiting one kind of work")."""
    if kind in _ASYNCIO_KINDS and anyio_backend_name != "asyncio":
        pytest.skip("asyncio primitive: asyncio backends only")
    if kind in _TRIO_KINDS and anyio_backend_name != "trio":
        pytest.skip("trio primitive: trio backend only")
    limiter = _make_limiter(kind, 2)
    gauge = Gauge()
    release = anyio.Event()
    async with AsyncExecutor(max_workers=5) as ex:
        futs = [ex.submit(gauge.gated, release, i, semaphore=limiter) for i in range(6)]
        await anyio.wait_all_tasks_blocked()
        assert gauge.active == 2
        release.set()
    assert gauge.peak == 2
    assert sorted(gauge.entered) == list(range(6))
    assert [await f for f in futs] == list(range(6))


@pytest.mark.parametrize("kind", _COMMON_KINDS + _ASYNCIO_KINDS + _TRIO_KINDS)
async def test_parked_jobs_start_in_order_when_tokens_come_back_together(
    kind: str, anyio_backend_name: str
) -> None:
    """Two holders give their tokens back in the same step, while the
    line's task waits in the limiter's queue for the oldest parked job: the
    parked jobs still start in the order they were submitted (docs/guide.md,
    "Submitting work"), the oldest with the first token and the next with
    the second, whichever worker gives it back."""
    if kind in _ASYNCIO_KINDS and anyio_backend_name != "asyncio":
        pytest.skip("asyncio primitive: asyncio backends only")
    if kind in _TRIO_KINDS and anyio_backend_name != "trio":
        pytest.skip("trio primitive: trio backend only")
    limiter = _make_limiter(kind, 2)
    started: list[int] = []
    release = anyio.Event()

    async def job(i: int) -> None:
        started.append(i)
        if i < 2:
            await release.wait()
        await anyio.lowlevel.checkpoint()

    async with AsyncExecutor(max_workers=5) as ex:
        for i in range(6):
            ex.submit(job, i, semaphore=limiter)
        await anyio.wait_all_tasks_blocked()
        assert started == [0, 1]
        release.set()  # both holders wake in the same step
    assert started == list(range(6))


@pytest.mark.parametrize("kind", _ASYNCIO_KINDS)
async def test_asyncio_semaphore_on_trio_is_typeerror_at_submit(
    kind: str, anyio_backend_name: str
) -> None:
    """An asyncio semaphore on trio is a TypeError at submit (docs/guide.md,
    "Limiting one kind of work"; docs/semantics.md, "Exceptions")."""
    if anyio_backend_name != "trio":
        pytest.skip("trio backend only")
    calls: list[int] = []

    async def record() -> None:
        calls.append(1)

    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(TypeError, match="semaphore"):
            ex.submit(record, semaphore=_make_limiter(kind, 1))
        assert await ex.submit(double, 1) == 2
    assert calls == []


@pytest.mark.parametrize("bad", [5, "sem", threading.Semaphore(1), object()])
async def test_semaphore_that_is_not_an_async_context_manager_is_typeerror(
    bad: Any,
) -> None:
    """Misuse gets a clear error at the call, naming the argument
    (docs/semantics.md, "Exceptions"): a semaphore that is not an async
    context manager is a TypeError at submit."""
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(TypeError, match="semaphore"):
            ex.submit(double, 1, semaphore=bad)


async def test_generic_async_context_manager_as_semaphore() -> None:
    """Any async context manager may be a semaphore; one of your own is
    entered and exited around each attempt, inside the worker (docs/guide.md,
    "Limiting one kind of work"; docs/semantics.md, "Tokens")."""
    log: list[str] = []

    class Tracker:
        async def __aenter__(self) -> None:
            log.append("enter")

        async def __aexit__(self, *exc_info: object) -> None:
            log.append("exit")

    async def work(i: int) -> int:
        log.append(f"run{i}")
        return i

    async with AsyncExecutor(max_workers=1) as ex:
        futs = [ex.submit(work, i, semaphore=Tracker()) for i in range(2)]
    assert [await f for f in futs] == [0, 1]
    assert log == ["enter", "run0", "exit", "enter", "run1", "exit"]


async def test_task_waiting_for_semaphore_holds_no_worker_slot() -> None:
    """A task waiting for its semaphore holds no worker, so unrelated work
    keeps every free worker busy (docs/guide.md, "Limiting one kind of work";
    docs/semantics.md, "The life of a task")."""
    limiter = anyio.CapacityLimiter(1)
    gauge = Gauge()
    release = anyio.Event()
    free = Gauge()
    async with AsyncExecutor(max_workers=3) as ex:
        holder = ex.submit(gauge.gated, release, 0, semaphore=limiter)
        waiters = [
            ex.submit(gauge.gated, release, i, semaphore=limiter) for i in range(1, 6)
        ]
        others = [ex.submit(free.gated, release, 100 + i) for i in range(4)]
        await anyio.wait_all_tasks_blocked()
        # One worker runs the holder; the 5 waiters hold no slot, so the two
        # other workers run unrelated tasks.
        assert gauge.active == 1
        assert gauge.entered == [0]
        assert free.active == 2
        assert sorted(free.entered) == [100, 101]
        assert [w.done() for w in waiters] == [False] * 5
        release.set()
    assert await holder == 0
    assert [await w for w in waiters] == [1, 2, 3, 4, 5]
    assert [await o for o in others] == [100, 101, 102, 103]
    assert gauge.peak == 1
    # After the release the three workers may briefly all run unrelated
    # tasks (the waiters hold no slot): 2 or 3, never more than max_workers.
    assert free.peak in (2, 3)


async def test_semaphore_shared_by_two_executors() -> None:
    """One limiter may be shared by many executors; it caps the total
    (docs/guide.md, "Limiting one kind of work")."""
    limiter = anyio.CapacityLimiter(2)
    gauge = Gauge()
    release = anyio.Event()
    async with AsyncExecutor(max_workers=3) as ex1, AsyncExecutor(max_workers=3) as ex2:
        futs = [
            ex1.submit(gauge.gated, release, i, semaphore=limiter) for i in range(3)
        ]
        futs += [
            ex2.submit(gauge.gated, release, i, semaphore=limiter) for i in range(3, 6)
        ]
        await anyio.wait_all_tasks_blocked()
        assert gauge.active == 2
        assert limiter.borrowed_tokens == 2
        release.set()
    assert gauge.peak == 2
    assert [await f for f in futs] == list(range(6))
    assert limiter.borrowed_tokens == 0


async def test_semaphore_is_released_when_task_fails_or_is_cancelled() -> None:
    """The semaphore is held only while an attempt runs: a failed or
    cancelled task gives it back (docs/semantics.md, "Tokens")."""
    limiter = anyio.CapacityLimiter(1)
    started = anyio.Event()

    async def fail() -> None:
        raise Flaky("x")

    async def block() -> None:
        started.set()
        await anyio.sleep_forever()

    async with AsyncExecutor(max_workers=2) as ex:
        failed = ex.submit(fail, semaphore=limiter)
        blocked = ex.submit(block, semaphore=limiter)
        await started.wait()
        assert isinstance(failed.exception(), Flaky)
        assert limiter.borrowed_tokens == 1
        assert blocked.cancel() is True
        after = ex.submit(double, 5, semaphore=limiter)
        assert await after == 10
    assert blocked.cancelled()
    assert limiter.borrowed_tokens == 0
