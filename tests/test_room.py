"""Backpressure: ``max_pending``, ``submit`` at the bound, ``asubmit`` and maps
under it (docs/guide.md, "Backpressure"; docs/semantics.md, "Backpressure").

Pinned here:

* pending = not final and holding no worker slot; running work does not
  count; a job admitted at once never counts;
* at the bound ``submit`` raises ExecutorFullError (an anyio.WouldBlock),
  submitting nothing; ``asubmit`` waits, first come first served, and a
  cancelled waiter leaves nothing queued and passes the room on;
* ``map``/``map_iter`` wait for room instead of raising, during a graceful
  shutdown too, and keep the bound;
* shutdown wakes every waiting ``asubmit`` with ExecutorShutdownError.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from _strategies import hang_guard, task_count

from antflow import AsyncExecutor, ExecutorFullError, ExecutorShutdownError

pytestmark = pytest.mark.anyio


def pending(ex: AsyncExecutor) -> int:
    """What max_pending bounds: jobs not final that hold no worker slot.
    (statistics().queued counts jobs handed to a worker that has yet to
    start them too; those hold a slot and are not pending.)"""
    room = ex._life.pool.room  # pyright: ignore[reportPrivateUsage,reportOptionalMemberAccess]
    assert room is not None
    return room.pending()


async def test_max_pending_is_checked_at_the_constructor() -> None:
    with pytest.raises(ValueError, match="max_pending must be at least 1"):
        AsyncExecutor(max_pending=0)
    with pytest.raises(TypeError, match="max_pending must be an int"):
        AsyncExecutor(max_pending=1.5)  # type: ignore[arg-type]
    assert AsyncExecutor(max_pending=3).max_pending == 3
    assert AsyncExecutor().max_pending is None


async def test_submit_at_the_bound_raises_and_submits_nothing() -> None:
    gate = anyio.Event()
    async with AsyncExecutor(max_workers=2, max_pending=3) as ex:
        # Two run, three wait: running work does not count.
        futures = [ex.submit(gate.wait) for _ in range(5)]
        with pytest.raises(ExecutorFullError, match="max_pending=3") as caught:
            ex.submit(gate.wait)
        assert isinstance(caught.value, anyio.WouldBlock)
        assert ex.statistics().submitted == 5
        gate.set()
    assert all(f.done() for f in futures)


async def test_jobs_that_start_at_once_never_count() -> None:
    """A burst of plain submits to an idle executor fills its workers first,
    without a checkpoint in between."""
    gate = anyio.Event()
    async with AsyncExecutor(max_workers=4, max_pending=1) as ex:
        for _ in range(5):
            ex.submit(gate.wait)
        with pytest.raises(ExecutorFullError):
            ex.submit(gate.wait)
        gate.set()


async def test_asubmit_waits_for_room_in_order() -> None:
    gate = anyio.Event()
    order: list[int] = []
    async with AsyncExecutor(max_workers=1, max_pending=1) as ex:
        ex.submit(gate.wait)  # runs
        ex.submit(gate.wait)  # pending: full

        async def producer(i: int) -> None:
            future = await ex.asubmit(record, order, i)
            await future

        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(producer, i)
                await anyio.wait_all_tasks_blocked()
            assert ex.statistics().submitted == 2  # all four wait
            gate.set()
    assert order == [0, 1, 2, 3]


async def record(order: list[int], i: int) -> None:
    await anyio.lowlevel.checkpoint()
    order.append(i)


async def test_a_waiting_asubmit_blocks_plain_submit() -> None:
    """First come, first served: room goes to those waiting before a plain
    submit may take it."""
    gate = anyio.Event()
    async with AsyncExecutor(max_workers=1, max_pending=1) as ex:
        ex.submit(gate.wait)
        ex.submit(gate.wait)
        async with anyio.create_task_group() as tg:
            tg.start_soon(ex.asubmit, gate.wait)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(ExecutorFullError):
                ex.submit(gate.wait)
            gate.set()


async def test_asubmit_without_max_pending_never_waits_but_checkpoints() -> None:
    async with AsyncExecutor(max_workers=1) as ex:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await ex.asubmit(anyio.sleep, 0)
        assert scope.cancelled_caught
        assert ex.statistics().submitted == 0  # cancelled at its checkpoint
        future = await ex.asubmit(anyio.sleep, 0, retries=1)
        await future


async def test_a_cancelled_waiter_leaves_nothing_queued_and_passes_the_room_on() -> (
    None
):
    gate = anyio.Event()
    async with AsyncExecutor(max_workers=1, max_pending=1) as ex:
        ex.submit(gate.wait)
        blocker = ex.submit(gate.wait)
        results: dict[str, Any] = {}

        async def waiter(name: str, scope: anyio.CancelScope) -> None:
            with scope:
                results[name] = await ex.asubmit(anyio.sleep, 0)

        first, second = anyio.CancelScope(), anyio.CancelScope()
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, "first", first)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(waiter, "second", second)
            await anyio.wait_all_tasks_blocked()
            # "first" is cancelled, and room appears (promised to "first",
            # the head of the line) before its task can run: it must pass
            # the room on to "second".
            first.cancel()
            blocker.cancel()
            with anyio.fail_after(hang_guard()):
                while "second" not in results:
                    await anyio.sleep(0)
            gate.set()
        assert first.cancelled_caught and "first" not in results
        stats = ex.statistics()
        assert stats.submitted == 3  # two first ones and "second"'s


class InputBroke(Exception):
    pass


def broken_input() -> Any:
    raise InputBroke
    yield  # a generator that raises when first read


@pytest.mark.parametrize("head_input", ["empty", "raises"])
async def test_room_a_map_does_not_use_goes_to_the_next_in_line(
    head_input: str,
) -> None:
    """Room is promised to the head of the line; a waiter that then submits
    nothing (here a ``map`` whose input turns out to be empty, or raises
    when read) passes it on at once, or the next waiter would sleep until
    some other job happened to change the room (for ever, if none does).
    The model test found it: a map over an empty input, woken for room,
    left three waiters asleep."""
    gate = anyio.Event()
    results: dict[str, Any] = {}
    async with AsyncExecutor(max_workers=1, max_pending=1) as ex:
        ex.submit(gate.wait)  # runs until the end
        blocker = ex.submit(gate.wait)  # pending: the room is full

        async def call(name: str, items: Any) -> None:
            try:
                results[name] = await ex.map(anyio.sleep, items)
            except InputBroke:
                results[name] = "input broke"

        async with anyio.create_task_group() as tg:
            head = [] if head_input == "empty" else broken_input()
            tg.start_soon(call, "head", head)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(call, "next", [0])
            await anyio.wait_all_tasks_blocked()
            assert results == {}  # both wait for room
            blocker.cancel()  # room for one, promised to the head
            # Everything that can move has moved: the head is done, and
            # "next" got the room it did not use and queued its item, while
            # the first job still holds the only worker.
            await anyio.wait_all_tasks_blocked()
            head_result = [] if head_input == "empty" else "input broke"
            assert results == {"head": head_result}
            assert ex.statistics().submitted == 3
            assert pending(ex) == 1
            gate.set()
    assert results == {"head": head_result, "next": [None]}


async def test_a_waiter_cancelled_before_room_appears_leaves_nothing() -> None:
    gate = anyio.Event()
    async with AsyncExecutor(max_workers=1, max_pending=1) as ex:
        ex.submit(gate.wait)
        ex.submit(gate.wait)
        with anyio.move_on_after(0.01):
            await ex.asubmit(anyio.sleep, 0)
        assert ex.statistics().submitted == 2
        gate.set()


async def test_shutdown_wakes_waiters_with_executor_shutdown_error() -> None:
    gate = anyio.Event()
    errors: list[BaseException] = []
    async with AsyncExecutor(max_workers=1, max_pending=1) as ex:
        ex.submit(gate.wait)
        ex.submit(gate.wait)

        async def waiter() -> None:
            try:
                await ex.asubmit(anyio.sleep, 0)
            except ExecutorShutdownError as error:
                errors.append(error)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            await ex.shutdown(wait=False)
            await anyio.wait_all_tasks_blocked()
            assert len(errors) == 2
            gate.set()
        with pytest.raises(ExecutorShutdownError):
            await ex.asubmit(anyio.sleep, 0)
    assert ex.statistics().submitted == 2


@pytest.mark.parametrize("kind", ["map", "map_iter", "unordered", "async input"])
async def test_maps_wait_for_room_and_keep_the_bound(kind: str) -> None:
    """A map never raises for max_pending; it reads input only while there
    is room, so pending never exceeds the bound, even with a producer that
    fills it with asubmit alongside."""
    peak = 0

    async def item(x: int) -> int:
        nonlocal peak
        peak = max(peak, pending(ex))
        await anyio.sleep(0)
        return x

    async def numbers() -> Any:
        for n in range(40):
            await anyio.lowlevel.checkpoint()
            yield n

    async with AsyncExecutor(max_workers=3, max_pending=2) as ex:

        async def producer() -> None:
            for n in range(20):
                peak_here = pending(ex)
                assert peak_here <= 2
                await ex.asubmit(item, 100 + n)

        async with anyio.create_task_group() as tg:
            tg.start_soon(producer)
            if kind == "map":
                results = await ex.map(item, range(40))
            elif kind == "async input":
                results = await ex.map(item, numbers())
            else:
                results = [
                    r
                    async for r in ex.map_iter(
                        item, range(40), ordered=kind == "map_iter"
                    )
                ]
        assert sorted(results) == list(range(40))
        assert ex.statistics().submitted == 60
    assert peak <= 2


async def test_a_map_waiting_for_room_goes_on_through_a_graceful_shutdown() -> None:
    """A running map keeps the executor open during shutdown() (docs/
    semantics.md, "Shutdown"), waiting for room as before."""
    gate = anyio.Event()
    async with AsyncExecutor(max_workers=1, max_pending=1) as ex:
        ex.submit(gate.wait)
        ex.submit(gate.wait)
        got: list[int] = []

        async def run_map() -> None:
            got.extend(await ex.map(anyio.sleep, [0, 0, 0]) and [1, 2, 3])

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_map)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ex.shutdown)
            await anyio.wait_all_tasks_blocked()
            gate.set()
        assert got == [1, 2, 3]


async def test_cancelling_a_map_that_waits_for_room_leaves_nothing() -> None:
    gate = anyio.Event()
    before = task_count()
    async with AsyncExecutor(max_workers=1, max_pending=1) as ex:
        ex.submit(gate.wait)
        ex.submit(gate.wait)
        with anyio.move_on_after(0.01):
            await ex.map(anyio.sleep, [0, 0])
        assert ex.statistics().submitted == 2
        gate.set()
    assert task_count() == before


@pytest.mark.virtual_time
class TestVirtualTime:
    async def test_a_producer_runs_at_the_pace_of_the_workers(self) -> None:
        """1,000 asubmits of 1 s jobs on 10 workers with max_pending=10: the
        producer is never more than 20 jobs ahead of the finished ones, and
        everything takes 100 s."""
        finished = 0

        async def job() -> None:
            nonlocal finished
            await anyio.sleep(1)
            finished += 1

        async with AsyncExecutor(max_workers=10, max_pending=10) as ex:
            start = anyio.current_time()
            for n in range(1_000):
                await ex.asubmit(job)
                assert n + 1 - finished <= 20
        assert anyio.current_time() - start == pytest.approx(100)
        assert finished == 1_000

    async def test_retries_waiting_for_their_limiter_count_as_pending(self) -> None:
        """A retry parked at its semaphore holds no worker: it is pending."""
        limiter = anyio.CapacityLimiter(1)
        calls = 0

        async def flaky() -> None:
            nonlocal calls
            calls += 1
            await anyio.sleep(1)
            if calls == 1:
                raise ValueError("once")

        async with AsyncExecutor(max_workers=2, max_pending=1) as ex:
            first = ex.submit(flaky, semaphore=limiter, retries=1, retry_delay=0.5)
            await anyio.sleep(1.1)  # first failed at 1 s and backs off
            holder = ex.submit(anyio.sleep, 5, semaphore=limiter)
            await anyio.sleep(0.5)  # first's retry came due: parked behind holder
            assert pending(ex) == 1
            with pytest.raises(ExecutorFullError):
                ex.submit(anyio.sleep, 0)
            await first
            await holder
