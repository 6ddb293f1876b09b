"""map_iter(..., ordered=False): results in completion order (issue 6).

Rules pinned here, from the issue: results are yielded in completion order,
"with the same bounded read-ahead and early-exit cancellation" as ordered
``map_iter`` (SPEC: leaving the loop early by ``break``, an exception or
``aclose()`` cancels the tasks still in flight and stops reading the input;
API.md: at most ``2 * max_workers`` items read ahead). A failure is raised
when it is reached in completion order and cancels the rest.

Completion order is driven by per-item events and
``wait_all_tasks_blocked``; ``TestVirtualTime`` checks it with sleeps on the
virtual clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from antflow import AsyncExecutor

pytestmark = pytest.mark.anyio

HANG_GUARD = 1000


class Boom(Exception):
    pass


class Probe:
    """Per-item tasks: each waits for ``release(x)`` (unless it is in
    ``instant``), then returns ``x * 10`` or raises ``errors[x]``."""

    def __init__(self, instant: Callable[[Any], bool] = lambda x: False) -> None:
        self.instant = instant
        self.errors: dict[Any, BaseException] = {}
        self.started: list[Any] = []
        self.finished: list[Any] = []
        self.cancelled: list[Any] = []
        self._events: dict[Any, anyio.Event] = {}

    def _event(self, x: Any) -> anyio.Event:
        return self._events.setdefault(x, anyio.Event())

    def release(self, *xs: Any) -> None:
        for x in xs:
            self._event(x).set()

    def running(self) -> set[Any]:
        return set(self.started) - set(self.finished) - set(self.cancelled)

    async def task(self, x: Any) -> Any:
        self.started.append(x)
        try:
            if self.instant(x):
                await anyio.lowlevel.checkpoint()
            else:
                await self._event(x).wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(x)
            raise
        self.finished.append(x)
        if x in self.errors:
            raise self.errors[x]
        return x * 10


class Source:
    """An endless sync iterable counting how many items were pulled."""

    def __init__(self) -> None:
        self.pulled = 0

    def __iter__(self) -> Iterator[int]:
        for i in itertools.count():
            self.pulled += 1
            yield i


class AsyncSource:
    """A finite async iterator (a class, not a generator, so dropping it
    half-way is no resource warning) counting pulled items."""

    def __init__(self, items: list[Any]) -> None:
        self.pulled = 0
        self._items = iter(items)

    def __aiter__(self) -> AsyncSource:
        return self

    async def __anext__(self) -> Any:
        await anyio.lowlevel.checkpoint()
        try:
            item = next(self._items)
        except StopIteration:
            raise StopAsyncIteration from None
        self.pulled += 1
        return item


async def settle() -> None:
    """wait_all_tasks_blocked, after letting woken tasks run first: on
    asyncio it polls every 0.1 s while any task is runnable."""
    for _ in range(10):
        await anyio.lowlevel.checkpoint()
    await anyio.wait_all_tasks_blocked()


# --------------------------------------------------------------------------
# completion order
# --------------------------------------------------------------------------


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))), ids=str)
async def test_yields_in_completion_order(order: tuple[int, ...]) -> None:
    """Each of the 24 completion orders of 4 items comes out as it happened;
    each result is available before the next item finishes."""
    probe = Probe()
    with anyio.fail_after(HANG_GUARD):
        async with (
            AsyncExecutor(max_workers=4) as ex,
            ex.map_iter(probe.task, range(4), ordered=False) as results,
        ):
            for i, x in enumerate(order):
                probe.release(x)
                assert await results.__anext__() == x * 10
                if i == 0:
                    await anyio.wait_all_tasks_blocked()
                    assert sorted(probe.started) == [0, 1, 2, 3]
            with pytest.raises(StopAsyncIteration):
                await results.__anext__()
    assert probe.finished == list(order)


async def test_a_finished_item_is_not_held_back_by_an_earlier_slow_one() -> None:
    """Unlike ordered mode, item 0 still running does not delay items 1..4."""
    probe = Probe(instant=lambda x: x != 0)
    got: list[int] = []
    with anyio.fail_after(HANG_GUARD):
        async with (
            AsyncExecutor(max_workers=5) as ex,
            ex.map_iter(probe.task, range(5), ordered=False) as results,
        ):
            for _ in range(4):
                got.append(await results.__anext__())
            assert probe.running() == {0}
            probe.release(0)
            got.extend([r async for r in results])
    assert sorted(got[:4]) == [10, 20, 30, 40]
    assert got[4] == 0


async def test_every_result_exactly_once_over_a_longer_input() -> None:
    """60 items through 3 workers, finishing in a scrambled order."""
    probe = Probe(instant=lambda x: x % 3 != 0)
    got: list[int] = []
    with anyio.fail_after(HANG_GUARD):
        async with (
            AsyncExecutor(max_workers=3) as ex,
            anyio.create_task_group() as tg,
        ):

            async def release_slow_ones() -> None:
                for x in range(0, 60, 3):
                    await settle()
                    probe.release(x)

            tg.start_soon(release_slow_ones)
            async for r in ex.map_iter(probe.task, range(60), ordered=False):
                got.append(r)
    assert sorted(got) == [x * 10 for x in range(60)]
    assert got != sorted(got)  # slow items overtaken by later fast ones


@pytest.mark.parametrize("kind", ["sync", "async", "zip"])
async def test_sync_async_and_zipped_inputs(kind: str) -> None:
    async def add(*xs: int) -> int:
        await anyio.lowlevel.checkpoint()
        return sum(xs)

    async with AsyncExecutor(max_workers=3) as ex:
        if kind == "sync":
            got = [r async for r in ex.map_iter(add, range(10), ordered=False)]
            assert sorted(got) == list(range(10))
        elif kind == "async":
            source = AsyncSource(list(range(10)))
            got = [r async for r in ex.map_iter(add, source, ordered=False)]
            assert sorted(got) == list(range(10))
            assert source.pulled == 10
        else:
            got = [
                r async for r in ex.map_iter(add, range(10), [100] * 4, ordered=False)
            ]
            assert sorted(got) == [100, 101, 102, 103]


async def test_empty_input_yields_nothing() -> None:
    async def never(x: int) -> int:
        raise AssertionError("called")

    async with AsyncExecutor(max_workers=2) as ex:
        assert [r async for r in ex.map_iter(never, [], ordered=False)] == []
        assert ex.statistics().submitted == 0


async def test_retries_work_unordered() -> None:
    tries: dict[int, int] = {}

    async def flaky(x: int) -> int:
        tries[x] = tries.get(x, 0) + 1
        await anyio.lowlevel.checkpoint()
        if x % 2 and tries[x] < 3:
            raise Boom(x)
        return x

    async with AsyncExecutor(max_workers=2) as ex:
        got = [
            r
            async for r in ex.map_iter(
                flaky, range(6), ordered=False, retries=2, retry_delay=0
            )
        ]
    assert sorted(got) == list(range(6))
    assert tries == {0: 1, 1: 3, 2: 1, 3: 3, 4: 1, 5: 3}


# --------------------------------------------------------------------------
# bounded read-ahead
# --------------------------------------------------------------------------


@pytest.mark.parametrize("max_workers", [1, 3])
async def test_read_ahead_is_bounded_while_the_consumer_is_slow(
    max_workers: int,
) -> None:
    """Endless input, instant tasks, a consumer that takes one result and
    then lets everything else finish: the items read but not yet yielded
    never exceed 2 * max_workers, and all workers are kept fed."""
    source = Source()
    probe = Probe(instant=lambda x: True)
    yielded = 0
    with anyio.fail_after(HANG_GUARD):
        async with (
            AsyncExecutor(max_workers=max_workers) as ex,
            ex.map_iter(probe.task, source, ordered=False) as results,
        ):
            for _ in range(12):
                await results.__anext__()
                yielded += 1
                await settle()
                ahead = source.pulled - yielded
                assert max_workers <= ahead <= 2 * max_workers
                s = ex.statistics()
                assert s.submitted == source.pulled
    assert yielded == 12


async def test_read_ahead_is_bounded_while_the_tasks_are_slow() -> None:
    """No item finishes: the input is read no further than 2 * max_workers."""
    source = Source()
    probe = Probe()
    with anyio.fail_after(HANG_GUARD):
        async with (
            AsyncExecutor(max_workers=2) as ex,
            anyio.create_task_group() as tg,
        ):
            results = ex.map_iter(probe.task, source, ordered=False)

            async def consume() -> None:
                async with results:
                    async for _ in results:
                        pass

            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            assert 2 <= source.pulled <= 4
            assert sorted(probe.started) == [0, 1]
            s = ex.statistics()
            assert (s.running, s.queued) == (2, source.pulled - 2)
            tg.cancel_scope.cancel()
    assert probe.running() == set()


# --------------------------------------------------------------------------
# early exit and failure
# --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["break", "aclose", "async_with", "exception"])
async def test_early_exit_cancels_the_tasks_in_flight_and_stops_reading(
    how: str,
) -> None:
    probe = Probe()
    source = Source()
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=3) as ex:
            results = ex.map_iter(probe.task, source, ordered=False)
            probe.release(1)
            if how == "break":
                async with results:
                    async for r in results:
                        assert r == 10
                        break
            elif how == "aclose":
                assert await results.__anext__() == 10
                await results.aclose()
            elif how == "async_with":
                async with results:
                    assert await results.__anext__() == 10
            else:
                with pytest.raises(KeyError):
                    async with results:
                        async for r in results:
                            raise KeyError(r)
            pulled = source.pulled
            assert probe.running() == set()
            # Item 1's worker may have taken item 3 before the loop stopped.
            assert {0, 1, 2} <= set(probe.started) <= {0, 1, 2, 3}
            assert sorted(probe.cancelled) == sorted(set(probe.started) - {1})
            # The executor is fine and the input is read no further.
            probe.release("after")
            assert await ex.submit(probe.task, "after") == "after" * 10
            await anyio.wait_all_tasks_blocked()
            assert source.pulled == pulled
            with pytest.raises(StopAsyncIteration):
                await results.__anext__()
            s = ex.statistics()
            assert (s.queued, s.running) == (0, 0)
            assert s.succeeded == 2


async def test_failure_is_raised_in_completion_order_and_cancels_the_rest() -> None:
    """Item 2 fails while 0, 1 and 3 still run: its error is raised at once
    (ordered mode would wait for item 0), and the others are cancelled and
    have exited by then."""
    probe = Probe()
    error = Boom("item 2")
    probe.errors[2] = error
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=4) as ex:
            results = ex.map_iter(probe.task, range(8), ordered=False)
            probe.release(3)
            assert await results.__anext__() == 30
            probe.release(2)
            with pytest.raises(Boom) as info:
                await results.__anext__()
            assert info.value is error
            assert probe.running() == set()
            # 4 took item 3's worker; 5 may or may not have taken item 2's
            # before the consumer stopped the iteration.
            assert {0, 1, 2, 3, 4} <= set(probe.started) <= {0, 1, 2, 3, 4, 5}
            assert sorted(probe.cancelled) == sorted(set(probe.started) - {2, 3})
            with pytest.raises(StopAsyncIteration):
                await results.__anext__()
            s = ex.statistics()
            assert (s.queued, s.running, s.succeeded, s.failed) == (0, 0, 1, 1)
            assert s.cancelled == s.submitted - 2


async def test_results_finished_before_a_failure_are_yielded_first() -> None:
    probe = Probe()
    probe.errors[0] = Boom("item 0")
    got: list[int] = []
    with anyio.fail_after(HANG_GUARD):
        async with (
            AsyncExecutor(max_workers=3) as ex,
            ex.map_iter(probe.task, range(3), ordered=False) as results,
        ):
            await anyio.wait_all_tasks_blocked()
            probe.release(2)
            got.append(await results.__anext__())
            probe.release(1)
            got.append(await results.__anext__())
            probe.release(0)
            with pytest.raises(Boom, match="item 0"):
                await results.__anext__()
    assert got == [20, 10]


async def test_map_iter_unordered_failure_inside_async_for_propagates_as_is() -> None:
    probe = Probe(instant=lambda x: True)
    probe.errors[3] = Boom("three")
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=2) as ex:
            got: list[int] = []
            with pytest.raises(Boom, match="three"):
                async for r in ex.map_iter(probe.task, range(10), ordered=False):
                    got.append(r)
            assert 30 not in got
            assert probe.running() == set()


# --------------------------------------------------------------------------
# virtual time
# --------------------------------------------------------------------------


@pytest.mark.virtual_time
class TestVirtualTime:
    async def test_completion_order_follows_the_durations(self) -> None:
        durations = [5, 3, 6, 1, 4, 2]
        t0 = anyio.current_time()
        seen: list[tuple[int, float]] = []

        async def work(d: int) -> int:
            await anyio.sleep(d)
            return d

        async with AsyncExecutor(max_workers=6) as ex:
            async for r in ex.map_iter(work, durations, ordered=False):
                seen.append((r, anyio.current_time() - t0))
        assert seen == [(d, float(d)) for d in sorted(durations)]

    async def test_workers_refill_as_items_finish(self) -> None:
        """2 workers: 4, 1, 1, 1 -> results at 1 (b), 2 (c), 3 (d), 4 (a)."""
        t0 = anyio.current_time()
        seen: list[tuple[str, float]] = []

        async def work(name: str, d: int) -> str:
            await anyio.sleep(d)
            return name

        async with AsyncExecutor(max_workers=2) as ex:
            async for r in ex.map_iter(work, "abcd", [4, 1, 1, 1], ordered=False):
                seen.append((r, anyio.current_time() - t0))
        assert seen == [("b", 1.0), ("c", 2.0), ("d", 3.0), ("a", 4.0)]

    async def test_timeout_is_one_deadline_for_the_whole_iteration(self) -> None:
        t0 = anyio.current_time()
        cancelled: list[int] = []
        got: list[int] = []

        async def work(d: int) -> int:
            try:
                await anyio.sleep(d)
            except anyio.get_cancelled_exc_class():
                cancelled.append(d)
                raise
            return d

        async with AsyncExecutor(max_workers=4) as ex:
            with pytest.raises(TimeoutError):
                async for r in ex.map_iter(
                    work, [10, 1, 3, 7], ordered=False, timeout=5
                ):
                    got.append(r)
            assert anyio.current_time() - t0 == 5.0
        assert got == [1, 3]
        assert sorted(cancelled) == [7, 10]
