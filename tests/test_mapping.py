"""map() and map_iter(): ordering, zip semantics, laziness, failure, timeout.

The rules pinned here are stated in docs/semantics.md, "map and map_iter"
(input order, or completion order with ``ordered=False``; zip semantics; lazy
input read at most ``2 * max_workers`` items ahead; the first failure in input
order wins and the other items are cancelled and have exited; leaving early)
and "Timeouts" (one deadline from the call), and in docs/guide.md, "Mapping
over inputs" and "Streaming results with map_iter".

Ordering is driven by per-item ``anyio.Event``s and
``anyio.wait_all_tasks_blocked()``; timing assertions live only in the
``@pytest.mark.virtual_time`` classes ``TestVirtualTime`` and
``TestUnorderedVirtualTime``.

The last part of the file is ``map_iter(ordered=False)``: results come in
completion order, with the same bounded read-ahead and early-exit
cancellation as ordered ``map_iter``; a failure is raised when it is reached
in completion order and cancels the rest.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from antflow import AsyncExecutor, ExecutorShutdownError

pytestmark = pytest.mark.anyio

# Guard against hangs: on trio's autojump clock this fires the moment the test
# deadlocks; on real-time asyncio only a broken implementation ever waits it out.
HANG_GUARD = 10


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


class Probe:
    """Records what each task did; a per-item event decides when it finishes.

    ``blocked(x)`` says whether item ``x`` waits for ``release(x)``; the others
    finish at once. An item listed in ``errors`` raises that exception object
    when it finishes; the others return ``x * 10``.
    """

    def __init__(self, blocked: Callable[[Any], bool] = lambda x: True) -> None:
        self.blocked = blocked
        self.errors: dict[Any, BaseException] = {}
        self.started: list[Any] = []
        self.finished: list[Any] = []  # returned or raised on its own
        self.cancelled: list[Any] = []
        self._events: dict[Any, anyio.Event] = {}
        self._changed: anyio.Event | None = None

    def _event(self, x: Any) -> anyio.Event:
        if x not in self._events:
            self._events[x] = anyio.Event()
        return self._events[x]

    def release(self, *xs: Any) -> None:
        for x in xs:
            self._event(x).set()

    def notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    def running(self) -> set[Any]:
        return set(self.started) - set(self.finished) - set(self.cancelled)

    async def task(self, x: Any) -> Any:
        self.started.append(x)
        self.notify()
        try:
            if self.blocked(x):
                await self._event(x).wait()
            else:
                await anyio.lowlevel.checkpoint()
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(x)
            self.notify()
            raise
        self.finished.append(x)
        self.notify()
        if x in self.errors:
            raise self.errors[x]
        return x * 10


class Source:
    """A sync or async iterable that counts how many items were pulled from it.

    The async flavour is a plain async iterator class, not an async generator,
    so abandoning it half-way is not itself a resource warning.
    """

    def __init__(self, items: Iterable[Any]) -> None:
        self.pulled = 0
        self._items = iter(items)

    def sync(self) -> Iterator[Any]:
        for item in self._items:
            self.pulled += 1
            yield item

    def asynchronous(self) -> _AsyncSource:
        return _AsyncSource(self)


class _AsyncSource:
    def __init__(self, source: Source) -> None:
        self._source = source

    def __aiter__(self) -> _AsyncSource:
        return self

    async def __anext__(self) -> Any:
        await anyio.lowlevel.checkpoint()
        try:
            item = next(self._source._items)
        except StopIteration:
            raise StopAsyncIteration from None
        self._source.pulled += 1
        return item


def make_input(kind: str, source: Source) -> Any:
    return source.sync() if kind == "sync" else source.asynchronous()


async def double(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * x


async def add(*xs: int) -> int:
    await anyio.lowlevel.checkpoint()
    return sum(xs)


async def agen(items: Iterable[Any]) -> Any:
    for item in items:
        await anyio.lowlevel.checkpoint()
        yield item


def task_count() -> int:
    return len(anyio.get_running_tasks())


# --------------------------------------------------------------------------
# ordering
# --------------------------------------------------------------------------


async def test_map_returns_results_in_input_order_whatever_the_completion_order() -> (
    None
):
    """map returns results in input order; the items here finish in reverse
    order (docs/semantics.md, "map and map_iter")."""
    probe = Probe()
    out: dict[str, Any] = {}
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=5) as ex:

            async def run() -> None:
                out["result"] = await ex.map(probe.task, range(5))

            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                await probe.until(lambda: len(probe.started) == 5)
                for x in reversed(range(5)):
                    probe.release(x)
                    await probe.until(lambda x=x: x in probe.finished)
    assert probe.finished == [4, 3, 2, 1, 0]
    assert out["result"] == [0, 10, 20, 30, 40]


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))), ids=str)
async def test_map_iter_yields_in_input_order_for_every_completion_order(
    order: tuple[int, ...],
) -> None:
    """map_iter yields in input order, for each of the 24 completion orders
    (docs/semantics.md, "map and map_iter")."""
    probe = Probe()
    got: list[int] = []
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=4) as ex:

            async def consume() -> None:
                async for r in ex.map_iter(probe.task, range(4)):
                    got.append(r)

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await probe.until(lambda: len(probe.started) == 4)
                for x in order:
                    probe.release(x)
                    await probe.until(lambda x=x: x in probe.finished)
    assert probe.finished == list(order)
    assert got == [0, 10, 20, 30]


async def test_map_iter_yields_each_result_once_it_and_all_before_it_are_ready() -> (
    None
):
    """map_iter yields a result as soon as it and every result before it are
    ready (docs/guide.md, "Streaming results with map_iter")."""
    probe = Probe()
    got: list[int] = []
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=4) as ex:

            async def consume() -> None:
                async for r in ex.map_iter(probe.task, range(4)):
                    got.append(r)
                    probe.notify()

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await probe.until(lambda: len(probe.started) == 4)

                probe.release(1)  # item 0 still pending: nothing may be yielded
                await anyio.wait_all_tasks_blocked()
                assert probe.finished == [1]
                assert got == []

                probe.release(0)  # unblocks 0 and the already-finished 1
                await probe.until(lambda: len(got) == 2)
                assert got == [0, 10]

                probe.release(3)  # 2 still pending
                await anyio.wait_all_tasks_blocked()
                assert got == [0, 10]

                probe.release(2)
                await probe.until(lambda: len(got) == 4)
    assert got == [0, 10, 20, 30]


async def test_map_runs_up_to_max_workers_items_at_once() -> None:
    """map runs its items concurrently, at most max_workers at once
    (docs/guide.md, "Creating an executor"; "Mapping over inputs")."""
    probe = Probe()
    out: dict[str, Any] = {}
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=3) as ex:

            async def run() -> None:
                out["result"] = await ex.map(probe.task, range(7))

            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                await probe.until(lambda: len(probe.started) == 3)
                await anyio.wait_all_tasks_blocked()
                assert probe.started == [0, 1, 2]
                for x in range(7):
                    await probe.until(lambda x=x: x in probe.started)
                    assert len(probe.running()) <= 3
                    probe.release(x)
    assert out["result"] == [x * 10 for x in range(7)]


# --------------------------------------------------------------------------
# zip semantics, empty input, kinds of iterables
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("iterables", "expected"),
    [
        pytest.param(([1, 2, 3], [10, 20, 30]), [11, 22, 33], id="equal-lengths"),
        pytest.param(([1, 2, 3], [10, 20]), [11, 22], id="second-shorter"),
        pytest.param(([1, 2], [10, 20, 30, 40]), [11, 22], id="first-shorter"),
        pytest.param(([1, 2, 3], [10, 20, 30], [100, 200]), [111, 222], id="three"),
        pytest.param(([1, 2, 3], []), [], id="one-empty"),
        pytest.param(([5, 6],), [5, 6], id="single"),
    ],
)
async def test_map_and_map_iter_have_zip_semantics(
    iterables: tuple[list[int], ...], expected: list[int]
) -> None:
    """Several iterables are zipped; the shortest ends the map
    (docs/semantics.md, "map and map_iter")."""
    async with AsyncExecutor(max_workers=2) as ex:
        assert await ex.map(add, *iterables) == expected
        assert [r async for r in ex.map_iter(add, *iterables)] == expected


async def test_map_zip_stops_at_the_shortest_infinite_partner() -> None:
    """Several iterables are zipped, so a finite iterable bounds an infinite
    one (docs/semantics.md, "map and map_iter")."""
    async with AsyncExecutor(max_workers=2) as ex:
        assert await ex.map(add, [1, 2, 3], itertools.count(10)) == [11, 13, 15]
        assert await ex.map(add, itertools.count(10), [1, 2, 3]) == [11, 13, 15]


@pytest.mark.parametrize(
    "empty",
    [
        pytest.param(list, id="list"),
        pytest.param(lambda: iter(()), id="iterator"),
        pytest.param(lambda: agen([]), id="async-gen"),
    ],
)
async def test_map_of_empty_input_is_empty_list_and_never_calls_fn(
    empty: Callable[[], Any],
) -> None:
    """Empty input gives [] (docs/semantics.md, "map and map_iter")."""
    probe = Probe()
    async with AsyncExecutor(max_workers=2) as ex:
        assert await ex.map(probe.task, empty()) == []
        assert [r async for r in ex.map_iter(probe.task, empty())] == []
    assert probe.started == []


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: [1, 2, 3, 4], id="list"),
        pytest.param(lambda: (1, 2, 3, 4), id="tuple"),
        pytest.param(lambda: range(1, 5), id="range"),
        pytest.param(lambda: (x for x in [1, 2, 3, 4]), id="generator"),
        pytest.param(lambda: {1: "a", 2: "b", 3: "c", 4: "d"}, id="dict"),
        pytest.param(lambda: agen([1, 2, 3, 4]), id="async-generator"),
        pytest.param(lambda: Source([1, 2, 3, 4]).asynchronous(), id="async-iterator"),
    ],
)
async def test_map_accepts_sync_and_async_iterables(make: Callable[[], Any]) -> None:
    """Inputs may be sync or async iterables (docs/semantics.md,
    "map and map_iter")."""
    async with AsyncExecutor(max_workers=2) as ex:
        assert await ex.map(double, make()) == [2, 4, 6, 8]
        assert [r async for r in ex.map_iter(double, make())] == [2, 4, 6, 8]


async def test_map_zips_a_sync_and_an_async_iterable() -> None:
    """Several iterables, each sync or async, zip together (docs/guide.md,
    "Mapping over inputs": "in any mix")."""
    async with AsyncExecutor(max_workers=2) as ex:
        # The async generators here are the shortest input, so zip exhausts
        # them; an abandoned async generator is a ResourceWarning on trio.
        assert await ex.map(add, agen([1, 2, 3]), [10, 20, 30, 40]) == [11, 22, 33]
        assert await ex.map(add, Source([1, 2, 3]).asynchronous(), range(10, 20)) == [
            11,
            13,
            15,
        ]
        assert [r async for r in ex.map_iter(add, agen([1, 2]), range(10, 20))] == [
            11,
            13,
        ]


# --------------------------------------------------------------------------
# lazy consumption, bounded read-ahead
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_map_reads_ahead_at_most_2x_max_workers_behind_a_slow_first_item(
    kind: str,
) -> None:
    """map reads its input lazily, at most 2 * max_workers items ahead of the
    consumer (docs/semantics.md, "map and map_iter").

    Item 0 blocks and every other item finishes at once, so an eager map
    would race through all 1000 items while the result list waits for item 0."""
    mw = 3
    probe = Probe(blocked=lambda x: x == 0)
    source = Source(range(1000))
    out: dict[str, Any] = {}
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=mw) as ex:

            async def run() -> None:
                out["result"] = await ex.map(probe.task, make_input(kind, source))

            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                await probe.until(lambda: 0 in probe.started)
                await anyio.wait_all_tasks_blocked()
                assert mw <= source.pulled <= 2 * mw
                assert probe.running() == {0}
                probe.release(0)
    assert out["result"] == [x * 10 for x in range(1000)]
    assert source.pulled == 1000


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_map_iter_read_ahead_is_bounded_while_the_consumer_is_blocked(
    kind: str,
) -> None:
    """map_iter reads at most 2 * max_workers items ahead of the consumer, on
    any input length (docs/semantics.md, "map and map_iter").

    Every task finishes at once; the consumer stops asking for results, so
    only the read-ahead bound keeps the input from being drained."""
    mw = 2
    probe = Probe(blocked=lambda x: False)
    source = Source(itertools.count())
    consumed = 0
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=mw) as ex:
            results = ex.map_iter(probe.task, make_input(kind, source))
            try:
                for step in range(1, 4):
                    # take a few more results, then block the consumer
                    for _ in range(step):
                        assert await results.__anext__() == consumed * 10
                        consumed += 1
                    await anyio.wait_all_tasks_blocked()
                    assert mw <= source.pulled - consumed <= 2 * mw
            finally:
                await results.aclose()
    assert consumed == 6


async def test_map_iter_over_an_infinite_generator_with_break() -> None:
    """map_iter works on an endless input, and break ends it
    (docs/semantics.md, "map and map_iter")."""
    mw = 4
    source = Source(itertools.count())
    got: list[int] = []
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=mw) as ex:
            async for r in ex.map_iter(double, source.sync()):
                got.append(r)
                if len(got) == 50:
                    break
            pulled_at_break = source.pulled
            await anyio.wait_all_tasks_blocked()
            assert source.pulled == pulled_at_break
    assert got == [2 * x for x in range(50)]
    assert 50 <= pulled_at_break <= 50 + 2 * mw


# --------------------------------------------------------------------------
# failure
# --------------------------------------------------------------------------


@pytest.mark.parametrize("item0_fails", [False, True], ids=["item0-ok", "item0-fails"])
async def test_map_raises_first_failure_in_input_order_and_cancels_the_rest(
    item0_fails: bool,
) -> None:
    """map raises the exception of the first item, in input order, that failed,
    as list(concurrent.futures.Executor.map(...)) does; the map's other items
    are cancelled and none keeps running once map has raised (docs/semantics.md,
    "map and map_iter", "First failure wins, in input order").

    Item 3 fails first, then item 1; map must still wait for item 0, which
    could fail too and would then be the first failure in input order."""
    probe = Probe()
    errors = {0: KeyError("item 0"), 1: ValueError("item 1"), 3: ValueError("item 3")}
    probe.errors = {k: v for k, v in errors.items() if k != 0 or item0_fails}
    out: dict[str, Any] = {}
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=6) as ex:

            async def run() -> None:
                try:
                    out["result"] = await ex.map(probe.task, range(6))
                except Exception as exc:
                    out["exc"] = exc
                    out["running_at_raise"] = probe.running()
                    probe.notify()

            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                await probe.until(lambda: len(probe.started) == 6)

                probe.release(3)
                await anyio.wait_all_tasks_blocked()
                assert out == {}  # items 0..2 might still fail first
                assert {0, 1, 2} <= probe.running()

                probe.release(1)
                await anyio.wait_all_tasks_blocked()
                assert out == {}  # item 0 might still fail first
                assert 0 in probe.running()

                probe.release(0)
                await probe.until(lambda: bool(out))

    expected = errors[0] if item0_fails else errors[1]
    assert out["exc"] is expected
    assert sorted(probe.finished) == [0, 1, 3]
    assert sorted(probe.cancelled) == [2, 4, 5]


@pytest.mark.parametrize("cause", ["failure", "timeout"])
async def test_map_has_no_task_still_running_when_it_raises(cause: str) -> None:
    """Before raising, on a failure or on its deadline, map cancels its other
    unfinished items and waits until they have exited: once `await map(...)`
    has raised, every task it started has run its finally block; nothing is
    left winding down behind the caller's back (docs/semantics.md,
    "map and map_iter"; docs/semantics.md, "Timeouts")."""
    probe = Probe(blocked=lambda x: x not in (0, 1))
    if cause == "failure":
        probe.errors = {1: ValueError("item 1")}
    out: dict[str, Any] = {}
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=4) as ex:
            try:
                if cause == "failure":
                    await ex.map(probe.task, range(8))
                else:
                    await ex.map(probe.task, range(8), timeout=0.01)
            except (ValueError, TimeoutError) as exc:
                out["exc"] = exc
                out["running_at_raise"] = probe.running()
                out["started_at_raise"] = list(probe.started)
            await anyio.wait_all_tasks_blocked()
            # whatever was running then has been cancelled by now
            assert probe.running() == set()
    expected_exc = ValueError if cause == "failure" else TimeoutError
    assert type(out["exc"]) is expected_exc
    assert len(out["started_at_raise"]) >= 4
    assert out["running_at_raise"] == set()


async def test_map_failure_is_raised_unwrapped_and_executor_stays_usable() -> None:
    """map raises the failed item's own exception object, not an
    ExceptionGroup (docs/guide.md, "Errors"; docs/semantics.md,
    "map and map_iter"); the executor stays usable (docs/semantics.md,
    "Exceptions")."""
    boom = ZeroDivisionError("boom")
    probe = Probe(blocked=lambda x: False)
    probe.errors = {2: boom}
    async with AsyncExecutor(max_workers=2) as ex:
        with pytest.raises(ZeroDivisionError) as info:
            await ex.map(probe.task, range(3))
        assert info.value is boom
        assert await ex.map(double, [1, 2]) == [2, 4]


async def test_map_iter_yields_results_before_the_first_failure_then_raises_it() -> (
    None
):
    """map_iter has map's ordering: the earlier results, then the first
    failure in input order; its other items in flight are cancelled
    (docs/semantics.md, "map and map_iter")."""
    probe = Probe()
    boom = ValueError("item 2")
    probe.errors = {2: boom}
    got: list[Any] = []
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=5) as ex:

            async def consume() -> None:
                try:
                    async for r in ex.map_iter(probe.task, range(5)):
                        got.append(r)
                except ValueError as exc:
                    got.append(exc)
                probe.notify()

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await probe.until(lambda: len(probe.started) == 5)
                probe.release(2)  # fails before the items ahead of it finish
                await anyio.wait_all_tasks_blocked()
                assert got == []
                probe.release(0, 1)
                await probe.until(lambda: len(got) == 3)
                await anyio.wait_all_tasks_blocked()
                assert probe.running() == set()
    assert got[:2] == [0, 10]
    assert got[2] is boom
    assert sorted(probe.cancelled) == [3, 4]


# --------------------------------------------------------------------------
# leaving map_iter early
# --------------------------------------------------------------------------


class LeaveEarly(Exception):
    pass


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("how", ["break", "exception", "aclose", "async-with-break"])
async def test_leaving_map_iter_early_cancels_in_flight_tasks_and_stops_reading(
    how: str, kind: str
) -> None:
    """Leaving map_iter early (break, an exception, aclose()) cancels the
    items still in flight and stops reading the input (docs/semantics.md,
    "map and map_iter", "Leaving early"). Items 0 and 1 finish at once, the
    rest block until cancelled; the input is endless."""
    mw = 3
    probe = Probe(blocked=lambda x: x >= 2)
    source = Source(itertools.count())
    got: list[int] = []
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=mw) as ex:
            if how == "break":
                async for r in ex.map_iter(probe.task, make_input(kind, source)):
                    got.append(r)
                    if len(got) == 2:
                        break
            elif how == "exception":
                with pytest.raises(LeaveEarly):
                    async for r in ex.map_iter(probe.task, make_input(kind, source)):
                        got.append(r)
                        if len(got) == 2:
                            raise LeaveEarly
            elif how == "aclose":
                results = ex.map_iter(probe.task, make_input(kind, source))
                got.append(await results.__anext__())
                got.append(await results.__anext__())
                await probe.until(lambda: len(probe.running()) == mw)
                await results.aclose()
            else:
                async with ex.map_iter(probe.task, make_input(kind, source)) as results:
                    async for r in results:
                        got.append(r)
                        if len(got) == 2:
                            break
            pulled_at_exit = source.pulled
            await anyio.wait_all_tasks_blocked()
            assert probe.running() == set()
            assert sorted(probe.finished) == [0, 1]
            assert sorted(probe.cancelled) == sorted(set(probe.started) - {0, 1})
            assert source.pulled == pulled_at_exit
            # the executor goes on working; the abandoned input stays untouched
            assert await ex.map(double, [1, 2, 3]) == [2, 4, 6]
            assert source.pulled == pulled_at_exit
    assert got == [0, 10]
    assert 2 <= pulled_at_exit <= 2 + 2 * mw


async def test_map_iter_aclose_before_iterating_starts_nothing_or_cancels_it() -> None:
    """aclose() on a fresh map_iter leaves no task running
    (docs/semantics.md, "map and map_iter", "Leaving early")."""
    probe = Probe()
    source = Source(range(100))
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=2) as ex:
            results = ex.map_iter(probe.task, source.sync())
            await results.aclose()
            pulled = source.pulled
            await anyio.wait_all_tasks_blocked()
            assert probe.running() == set()
            assert source.pulled == pulled
            with pytest.raises(StopAsyncIteration):
                await results.__anext__()


# --------------------------------------------------------------------------
# retries
# --------------------------------------------------------------------------


class Flaky:
    """Item x fails on its first ``x % 3`` attempts, each with a new exception."""

    def __init__(self) -> None:
        self.attempts: dict[int, int] = {}
        self.raised: dict[int, list[Exception]] = {}

    async def __call__(self, x: int) -> int:
        await anyio.lowlevel.checkpoint()
        self.attempts[x] = self.attempts.get(x, 0) + 1
        if self.attempts[x] <= x % 3:
            exc = RuntimeError(f"item {x} attempt {self.attempts[x]}")
            self.raised.setdefault(x, []).append(exc)
            raise exc
        return x * 10


async def test_map_retries_each_item_up_to_retries_plus_one_attempts() -> None:
    """map takes submit's per-task options (docs/guide.md,
    "Mapping over inputs"): retries=N gives each item up to N + 1 attempts
    (docs/guide.md, "Retries")."""
    flaky = Flaky()
    async with AsyncExecutor(max_workers=3) as ex:
        assert await ex.map(flaky, range(6), retries=2, retry_delay=0) == [
            0,
            10,
            20,
            30,
            40,
            50,
        ]
        got = [
            r async for r in ex.map_iter(Flaky(), range(6), retries=2, retry_delay=0)
        ]
    assert got == [0, 10, 20, 30, 40, 50]
    assert flaky.attempts == {0: 1, 1: 2, 2: 3, 3: 1, 4: 2, 5: 3}


async def test_map_with_too_few_retries_raises_the_original_exception() -> None:
    """After the last attempt the item's own exception is raised, not
    tenacity.RetryError (docs/guide.md, "Retries"): item 2 needs 3 attempts
    but gets 2."""
    flaky = Flaky()
    async with AsyncExecutor(max_workers=3) as ex:
        with pytest.raises(RuntimeError) as info:
            await ex.map(flaky, range(3), retries=1, retry_delay=0)
    assert info.value is flaky.raised[2][-1]
    assert flaky.attempts[2] == 2


# --------------------------------------------------------------------------
# misc: shutdown, leaks
# --------------------------------------------------------------------------


async def test_map_after_shutdown_raises_executor_shutdown_error() -> None:
    """From shutdown's first call on, map raises ExecutorShutdownError
    (docs/semantics.md, "Shutdown")."""
    async with AsyncExecutor(max_workers=2) as ex:
        await ex.shutdown()
        with pytest.raises(ExecutorShutdownError):
            await ex.map(double, [1, 2])


@pytest.mark.parametrize(
    "scenario", ["ok", "failure", "timeout", "map-iter-break", "map-iter-failure"]
)
async def test_map_leaks_no_task(scenario: str) -> None:
    """No task started by an executor outlives it (docs/semantics.md,
    "Shutdown"), whichever way a map ends."""
    before = task_count()
    probe = Probe(blocked=lambda x: x >= 2)
    probe.errors = {1: ValueError("item 1")} if "failure" in scenario else {}
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=3) as ex:
            if scenario == "ok":
                assert await ex.map(double, range(20)) == [2 * x for x in range(20)]
            elif scenario == "failure":
                with pytest.raises(ValueError, match="item 1"):
                    await ex.map(probe.task, range(20))
            elif scenario == "timeout":
                # real time on asyncio: only the structure is asserted here
                with pytest.raises(TimeoutError):
                    await ex.map(probe.task, range(20), timeout=0.01)
            elif scenario == "map-iter-break":
                async for _ in ex.map_iter(probe.task, itertools.count()):
                    break
            else:
                with pytest.raises(ValueError, match="item 1"):
                    async for _ in ex.map_iter(probe.task, itertools.count()):
                        pass
    assert task_count() == before
    assert probe.running() == set()


# --------------------------------------------------------------------------
# virtual time: the map deadline
# --------------------------------------------------------------------------


class Sleeper:
    """Item x sleeps ``durations[x]`` (default 1.0) seconds, recording its fate."""

    def __init__(self, durations: dict[int, float] | None = None) -> None:
        self.durations = durations or {}
        self.started: dict[int, float] = {}
        self.finished: dict[int, float] = {}
        self.cancelled: dict[int, float] = {}

    def running(self) -> set[int]:
        return set(self.started) - set(self.finished) - set(self.cancelled)

    async def __call__(self, x: int) -> int:
        self.started[x] = anyio.current_time()
        try:
            await anyio.sleep(self.durations.get(x, 1.0))
        except anyio.get_cancelled_exc_class():
            self.cancelled[x] = anyio.current_time()
            raise
        self.finished[x] = anyio.current_time()
        return x * 10


@pytest.mark.virtual_time
class TestVirtualTime:
    """Exact elapsed times, on async_solipsism (asyncio) and trio's MockClock."""

    async def test_map_timeout_is_one_deadline_for_the_whole_call(self) -> None:
        """map's timeout is one deadline for the whole call, not per item;
        TimeoutError on expiry; the unfinished items are cancelled, none left
        running (docs/semantics.md, "Timeouts"; docs/semantics.md,
        "map and map_iter", "One deadline")."""
        sleeper = Sleeper()
        async with AsyncExecutor(max_workers=1) as ex:
            t0 = anyio.current_time()
            with pytest.raises(TimeoutError):
                await ex.map(sleeper, range(5), timeout=2.5)
            assert anyio.current_time() - t0 == pytest.approx(2.5, abs=1e-9)
        assert sleeper.running() == set()
        assert sorted(sleeper.finished) == [0, 1]
        assert sorted(sleeper.cancelled) == [2]
        assert sleeper.cancelled[2] - t0 == pytest.approx(2.5, abs=1e-9)
        assert sorted(sleeper.started) == [0, 1, 2]  # 3 and 4 never start

    async def test_map_timeout_is_measured_from_the_call_not_from_task_start(
        self,
    ) -> None:
        """map's deadline is counted from the call, so time spent queued
        behind unrelated work counts; the unrelated work is not disturbed
        (docs/semantics.md, "Timeouts")."""
        sleeper = Sleeper({0: 1.0})
        async with AsyncExecutor(max_workers=1) as ex:

            async def unrelated() -> str:
                await anyio.sleep(2.0)
                return "unrelated"

            other = ex.submit(unrelated)
            t0 = anyio.current_time()
            with pytest.raises(TimeoutError):
                await ex.map(sleeper, [0], timeout=1.5)
            assert anyio.current_time() - t0 == pytest.approx(1.5, abs=1e-9)
            assert await other.result() == "unrelated"
            assert anyio.current_time() - t0 == pytest.approx(2.0, abs=1e-9)
        assert sleeper.started == {}

    async def test_map_that_beats_its_deadline_returns_at_completion(self) -> None:
        """A deadline that does not expire changes nothing
        (docs/semantics.md, "Timeouts")."""
        sleeper = Sleeper()
        async with AsyncExecutor(max_workers=2) as ex:
            t0 = anyio.current_time()
            assert await ex.map(sleeper, range(4), timeout=2.5) == [0, 10, 20, 30]
            assert anyio.current_time() - t0 == pytest.approx(2.0, abs=1e-9)

    async def test_map_iter_timeout_is_one_deadline_for_the_whole_iteration(
        self,
    ) -> None:
        """map_iter has map's timeout: one deadline from the call,
        TimeoutError, the unfinished items cancelled (docs/semantics.md,
        "Timeouts")."""
        sleeper = Sleeper()
        times: list[float] = []
        async with AsyncExecutor(max_workers=1) as ex:
            t0 = anyio.current_time()
            with pytest.raises(TimeoutError):
                async for r in ex.map_iter(sleeper, range(5), timeout=2.5):
                    times.append(anyio.current_time() - t0)
                    assert r == 10 * (len(times) - 1)
            assert anyio.current_time() - t0 == pytest.approx(2.5, abs=1e-9)
        assert sleeper.running() == set()
        assert times == pytest.approx([1.0, 2.0], abs=1e-9)
        assert sorted(sleeper.cancelled) == [2]

    async def test_map_retry_back_off_is_exponential_in_retry_delay(self) -> None:
        """Back-off 0.5, 1, ... for retry_delay=0.5; map passes it on to each
        item (docs/guide.md, "Retries"; "Mapping over inputs")."""
        attempts: list[float] = []

        async def fails_twice(x: int) -> int:
            attempts.append(anyio.current_time())
            if len(attempts) <= 2:
                raise OSError("flaky")
            return x

        async with AsyncExecutor(max_workers=1) as ex:
            t0 = anyio.current_time()
            assert await ex.map(fails_twice, [7], retries=2, retry_delay=0.5) == [7]
        assert [t - t0 for t in attempts] == pytest.approx([0.0, 0.5, 1.5], abs=1e-9)

    async def test_map_timeout_cancels_a_task_in_retry_back_off(self) -> None:
        """At map's deadline its unfinished items (here: one waiting to
        retry) are cancelled; no further attempt is made (docs/semantics.md,
        "Timeouts"; "Cancellation")."""
        attempts: list[float] = []

        async def always_fails(x: int) -> int:
            attempts.append(anyio.current_time())
            raise OSError("down")

        async with AsyncExecutor(max_workers=1) as ex:
            t0 = anyio.current_time()
            with pytest.raises(TimeoutError):
                await ex.map(always_fails, [1], retries=5, retry_delay=1.0, timeout=2.5)
            assert anyio.current_time() - t0 == pytest.approx(2.5, abs=1e-9)
            await anyio.sleep(100)
        # attempts at 0, 1 (after 1.0), 3 would be after 2.0 more: cut off at 2.5
        assert [t - t0 for t in attempts] == pytest.approx([0.0, 1.0], abs=1e-9)


# --------------------------------------------------------------------------
# argument validation at the call
# --------------------------------------------------------------------------


async def test_map_and_map_iter_validate_arguments_at_the_call() -> None:
    """Misuse is reported at the call that made it, naming the argument (a
    negative retries: ValueError; a fn that is not callable: TypeError)
    (docs/semantics.md, "Exceptions"); map_iter is a plain call and checks
    its arguments before any iteration (docs/api.md, AsyncExecutor.map_iter)."""
    async with AsyncExecutor(max_workers=2) as ex:
        with pytest.raises(ValueError, match="retries"):
            await ex.map(double, [1], retries=-1)
        with pytest.raises(ValueError, match="retries"):
            ex.map_iter(double, [1], retries=-1)
        with pytest.raises(TypeError):
            await ex.map(42, [1])  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            ex.map_iter(42, [1])  # type: ignore[arg-type]


# ==========================================================================
# map_iter(ordered=False): results in completion order
# ==========================================================================

UNORDERED_HANG_GUARD = 1000


class Boom(Exception):
    pass


class UnorderedProbe:
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


class EndlessSource:
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
    probe = UnorderedProbe()
    with anyio.fail_after(UNORDERED_HANG_GUARD):
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
    probe = UnorderedProbe(instant=lambda x: x != 0)
    got: list[int] = []
    with anyio.fail_after(UNORDERED_HANG_GUARD):
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
    probe = UnorderedProbe(instant=lambda x: x % 3 != 0)
    got: list[int] = []
    with anyio.fail_after(UNORDERED_HANG_GUARD):
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
    source = EndlessSource()
    probe = UnorderedProbe(instant=lambda x: True)
    yielded = 0
    with anyio.fail_after(UNORDERED_HANG_GUARD):
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
    source = EndlessSource()
    probe = UnorderedProbe()
    with anyio.fail_after(UNORDERED_HANG_GUARD):
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
    probe = UnorderedProbe()
    source = EndlessSource()
    with anyio.fail_after(UNORDERED_HANG_GUARD):
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
    probe = UnorderedProbe()
    error = Boom("item 2")
    probe.errors[2] = error
    with anyio.fail_after(UNORDERED_HANG_GUARD):
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
    probe = UnorderedProbe()
    probe.errors[0] = Boom("item 0")
    got: list[int] = []
    with anyio.fail_after(UNORDERED_HANG_GUARD):
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
    probe = UnorderedProbe(instant=lambda x: True)
    probe.errors[3] = Boom("three")
    with anyio.fail_after(UNORDERED_HANG_GUARD):
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
class TestUnorderedVirtualTime:
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
