"""The pool: the order jobs start in, workers that come and go, sharing the loop.

What is pinned here is stated in docs/guide.md, "Submitting work" (tasks
start in the order they were submitted) and docs/semantics.md, "Shutdown"
("Sharing the loop", "Workers come and go with the work").
"""

from __future__ import annotations

import gc
import weakref
from contextvars import ContextVar

import anyio
import pytest

from antflow import AsyncExecutor, RateLimiter

pytestmark = pytest.mark.anyio


async def test_jobs_that_never_await_still_let_other_tasks_run() -> None:
    """Workers take queued jobs without a trip through the loop, but at most
    32 in a row: 500 jobs that never await must not keep an unrelated task
    from running until they are all done (docs/semantics.md, "Shutdown",
    "Sharing the loop")."""
    ran: list[int] = []
    seen: list[int] = []

    async def instant(i: int) -> int:
        ran.append(i)
        return i

    async def observer() -> None:
        while len(ran) < 500:
            await anyio.lowlevel.checkpoint()
            seen.append(len(ran))

    async with anyio.create_task_group() as tg, AsyncExecutor(max_workers=1) as ex:
        tg.start_soon(observer)
        futures = [ex.submit(instant, i) for i in range(500)]
        assert [await f for f in futures] == list(range(500))
    assert ran == list(range(500))
    between = [n for n in seen if 0 < n < 500]
    assert between, f"the observer never ran while jobs were pending: {seen}"
    # A worker takes at most 32 jobs per turn; trio runs each ready task
    # once per batch, in random order, so two worker turns can fall between
    # two observer turns.
    gaps = [b - a for a, b in zip([0, *seen], seen, strict=False)]
    assert max(gaps) <= 2 * 32, gaps


async def test_an_executor_without_work_holds_no_task() -> None:
    """Workers come and go with the work: once every job is done, the
    executor's workers have ended, and a new job starts a new one
    (docs/semantics.md, "Shutdown", "Workers come and go with the work")."""

    async def double(x: int) -> int:
        await anyio.lowlevel.checkpoint()
        return 2 * x

    async with AsyncExecutor(max_workers=4) as ex:
        idle = len(anyio.get_running_tasks())
        assert await ex.map(double, range(10)) == [2 * i for i in range(10)]
        await anyio.wait_all_tasks_blocked()
        assert len(anyio.get_running_tasks()) == idle
        future = ex.submit(double, 21)
        await anyio.wait_all_tasks_blocked()
        assert len(anyio.get_running_tasks()) == idle
        assert await future == 42


async def test_single_worker_starts_tasks_in_submission_order() -> None:
    """Tasks start in the order they were submitted (docs/guide.md,
    "Submitting work")."""
    started: list[int] = []

    async def work(i: int) -> None:
        started.append(i)
        await anyio.lowlevel.checkpoint()

    async with AsyncExecutor(max_workers=1) as ex:
        for i in range(30):
            ex.submit(work, i)
    assert started == list(range(30))


async def test_freed_worker_takes_the_oldest_queued_task() -> None:
    """Tasks start in the order they were submitted: with 3 workers, each
    freed slot goes to the earliest submission still queued (docs/guide.md,
    "Submitting work")."""
    releases = [anyio.Event() for _ in range(8)]
    started: list[int] = []

    async def work(i: int) -> int:
        started.append(i)
        await releases[i].wait()
        return i

    async with AsyncExecutor(max_workers=3) as ex:
        futs = [ex.submit(work, i) for i in range(8)]
        await anyio.wait_all_tasks_blocked()
        assert sorted(started) == [0, 1, 2]
        for finished, expected in [(1, 3), (0, 4), (3, 5), (2, 6), (4, 7)]:
            releases[finished].set()
            await anyio.wait_all_tasks_blocked()
            assert started[-1] == expected
            assert sorted(started) == list(range(expected + 1))
        for ev in releases:
            ev.set()
    assert [await f for f in futs] == list(range(8))


@pytest.mark.virtual_time
async def test_a_line_left_waiting_for_a_slot_is_woken_when_the_last_worker_ends() -> (
    None
):
    """A rate line waits for a free worker slot; its only job is cancelled;
    the worker ends with nothing left. A job parked in that line later must
    still start when its rate token is due (docs/semantics.md, "Liveness";
    found by the model test: the line waited for ever)."""
    rate = RateLimiter(1)  # one start a second
    async with AsyncExecutor(max_workers=1) as ex:
        start = anyio.current_time()
        await ex.submit(anyio.sleep, 0, rate_limit=rate)  # the start at t=0
        parked = ex.submit(anyio.sleep, 0, rate_limit=rate)  # due at t=1: parked
        busy = ex.submit(anyio.sleep, 0.5)  # takes the slot before the line looks
        await anyio.wait_all_tasks_blocked()  # the line waits for a slot
        assert parked.cancel()
        await busy  # the worker ends: nothing is outstanding
        with anyio.fail_after(10):
            await ex.submit(anyio.sleep, 0, rate_limit=rate)  # parks in that line
        assert anyio.current_time() - start == 1


class Payload:
    pass


request: ContextVar[Payload | None] = ContextVar("request", default=None)


@pytest.mark.real_clock
async def test_a_worker_keeps_nothing_of_the_caller_that_started_it() -> None:
    """A worker is started by whichever submit needs one first, and lives on
    while there is work; what that caller set in its context dies with its
    job, not with the worker (docs/semantics.md, "Context variables")."""
    first_may_end, release, submitted = anyio.Event(), anyio.Event(), anyio.Event()
    refs: list[weakref.ref[Payload]] = []

    async with AsyncExecutor(max_workers=4) as ex:

        async def caller_with_a_request() -> None:
            payload = Payload()
            refs.append(weakref.ref(payload))
            request.set(payload)
            first = ex.submit(first_may_end.wait)  # starts a worker
            submitted.set()
            await first

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller_with_a_request)
            await submitted.wait()
            await anyio.wait_all_tasks_blocked()
            # From this task's context: work that keeps the pool busy, so
            # the first worker lives on, idle, after the first job.
            other = ex.submit(release.wait)
            await anyio.wait_all_tasks_blocked()
            first_may_end.set()
        await anyio.wait_all_tasks_blocked()
        gc.collect()
        assert refs[0]() is None
        release.set()
        await other
