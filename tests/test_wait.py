"""as_completed() and wait().

The rules pinned here are stated in docs/guide.md, "Processing results as
they complete" and "Waiting for a set of futures", and docs/semantics.md,
"Timeouts" (one deadline for the whole iteration; the futures keep running)
and "Exceptions" (misuse is reported at the call). Where docs/ is silent
(futures of several executors) the tests pin what concurrent.futures does.

Ordering is driven by per-task ``anyio.Event``s; timing assertions live only in
``TestVirtualTime`` (``@pytest.mark.virtual_time``).
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from antflow import AsyncExecutor, AsyncFuture, CancelledError, WaitStrategy

pytestmark = pytest.mark.anyio

# Fires at once on a deadlock under trio's autojump clock; on real-time
# asyncio only a broken implementation ever waits it out.
HANG_GUARD = 10


class Probe:
    """Tasks that wait for ``release(x)``, then return ``x * 10`` or raise
    ``errors[x]``; records starts, finishes and cancellations."""

    def __init__(self) -> None:
        self.errors: dict[Any, BaseException] = {}
        self.started: list[Any] = []
        self.finished: list[Any] = []
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
            await self._event(x).wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(x)
            self.notify()
            raise
        self.finished.append(x)
        self.notify()
        if x in self.errors:
            raise self.errors[x]
        return x * 10


async def settle(*futures: AsyncFuture[Any]) -> None:
    """Wait until the given futures are final, whatever their outcome."""
    for future in futures:
        while not future.done():
            await anyio.wait_all_tasks_blocked()
            if not future.done():
                await anyio.lowlevel.checkpoint()


async def instant(x: Any) -> Any:
    return x


async def failing(exc: BaseException) -> Any:
    raise exc


# --------------------------------------------------------------------------
# as_completed
# --------------------------------------------------------------------------


@pytest.mark.parametrize("order", [(2, 0, 3, 1), (3, 2, 1, 0), (0, 1, 2, 3)], ids=str)
async def test_as_completed_yields_futures_in_completion_order(
    order: tuple[int, ...],
) -> None:
    """as_completed yields the futures as they finish (docs/guide.md,
    "Processing results as they complete")."""
    probe = Probe()
    yielded: list[AsyncFuture[Any]] = []
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=4) as ex:
            futures = [ex.submit(probe.task, i) for i in range(4)]

            async def consume() -> None:
                async for future in ex.as_completed(futures):
                    assert future.done()
                    yielded.append(future)
                    probe.notify()

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await probe.until(lambda: len(probe.started) == 4)
                for n, i in enumerate(order, 1):
                    probe.release(i)
                    await probe.until(lambda n=n: len(yielded) == n)
    assert yielded == [futures[i] for i in order]
    assert all(isinstance(f, AsyncFuture) for f in yielded)


async def test_as_completed_yields_already_finished_futures_first() -> None:
    """as_completed yields those already finished first, before any pending
    one, whatever their input position (docs/guide.md,
    "Processing results as they complete")."""
    probe = Probe()
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=4) as ex:
            done_a = ex.submit(instant, "a")
            done_b = ex.submit(failing, ValueError("b"))
            await settle(done_a, done_b)
            pending_1 = ex.submit(probe.task, 1)
            pending_2 = ex.submit(probe.task, 2)
            await probe.until(lambda: len(probe.started) == 2)

            results = ex.as_completed([pending_1, done_a, pending_2, done_b])
            first_two = {await results.__anext__(), await results.__anext__()}
            assert first_two == {done_a, done_b}
            assert probe.running() == {1, 2}

            probe.release(2)
            assert await results.__anext__() is pending_2
            probe.release(1)
            assert await results.__anext__() is pending_1
            with pytest.raises(StopAsyncIteration):
                await results.__anext__()
    assert done_b.exception() is not None


async def test_as_completed_yields_each_distinct_future_exactly_once() -> None:
    """A future passed twice is yielded once, done and pending duplicates
    alike (docs/guide.md, "Processing results as they complete")."""
    probe = Probe()
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=2) as ex:
            done = ex.submit(instant, "done")
            await settle(done)
            pending = ex.submit(probe.task, 1)
            yielded: list[AsyncFuture[Any]] = []

            async def consume() -> None:
                async for future in ex.as_completed(
                    [done, pending, done, pending, done]
                ):
                    yielded.append(future)
                    probe.notify()

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await probe.until(lambda: len(yielded) == 1)
                probe.release(1)
    assert yielded == [done, pending]


async def test_as_completed_of_nothing_yields_nothing() -> None:
    """An empty input is an empty iteration (docs/guide.md,
    "Processing results as they complete")."""
    async with AsyncExecutor(max_workers=1) as ex:
        assert [f async for f in ex.as_completed([])] == []


async def test_as_completed_yields_failed_and_cancelled_futures_too() -> None:
    """A future "finishes" whatever its final state: result, exception or
    cancelled (docs/guide.md, "Processing results as they complete";
    docs/semantics.md, "The life of a task")."""
    probe = Probe()
    boom = KeyError("boom")
    probe.errors = {1: boom}
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=3) as ex:
            futures = [ex.submit(probe.task, i) for i in range(3)]
            await probe.until(lambda: len(probe.started) == 3)
            yielded: list[AsyncFuture[Any]] = []

            async def consume() -> None:
                async for future in ex.as_completed(futures):
                    yielded.append(future)
                    probe.notify()

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                assert futures[2].cancel() is True
                await probe.until(lambda: len(yielded) == 1)
                probe.release(1)
                await probe.until(lambda: len(yielded) == 2)
                probe.release(0)
    assert yielded == [futures[2], futures[1], futures[0]]
    assert futures[2].cancelled()
    assert futures[1].exception() is boom
    with pytest.raises(CancelledError):
        futures[2].exception()


async def test_leaving_as_completed_early_leaves_the_futures_alone() -> None:
    """Iterating never cancels the futures, as in concurrent.futures: a break
    leaves the others running to completion. docs/ says so for a timeout
    (docs/semantics.md, "Timeouts"), not for a break."""
    probe = Probe()
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=3) as ex:
            futures = [ex.submit(probe.task, i) for i in range(3)]
            await probe.until(lambda: len(probe.started) == 3)
            probe.release(1)
            async for future in ex.as_completed(futures):
                assert future is futures[1]
                break
            await anyio.wait_all_tasks_blocked()
            assert probe.running() == {0, 2}
            probe.release(0, 2)
            assert [await f for f in futures] == [0, 10, 20]
    assert probe.cancelled == []


async def test_as_completed_and_wait_accept_futures_of_several_executors() -> None:
    """concurrent.futures' as_completed and wait take futures of any
    executor; so do these. docs/ does not say so: pinned as what a
    concurrent.futures user expects."""
    probe = Probe()
    with anyio.fail_after(HANG_GUARD):
        async with (
            AsyncExecutor(max_workers=1) as ex1,
            AsyncExecutor(max_workers=1) as ex2,
        ):
            f1 = ex1.submit(probe.task, 1)
            f2 = ex2.submit(probe.task, 2)
            await probe.until(lambda: len(probe.started) == 2)
            probe.release(2)
            done, pending = await ex1.wait(
                [f1, f2], return_when=WaitStrategy.FIRST_COMPLETED
            )
            assert (done, pending) == ({f2}, {f1})
            probe.release(1)
            await settle(f1)
            yielded = [f async for f in ex2.as_completed([f1, f2])]
            assert len(yielded) == 2
            assert set(yielded) == {f1, f2}


async def test_as_completed_rejects_non_futures_at_the_call() -> None:
    """Misuse is reported at the call that made it, naming the argument
    (docs/semantics.md, "Exceptions"): as_completed is a plain call and
    checks its futures at once."""
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(TypeError, match="futures"):
            ex.as_completed([object()])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="futures"):
            await ex.wait([object()])  # type: ignore[list-item]


# --------------------------------------------------------------------------
# wait
# --------------------------------------------------------------------------


async def test_wait_default_waits_for_all_and_partitions_distinct_futures() -> None:
    """wait's default, ALL_COMPLETED, returns when every future is done;
    (done, pending) split the distinct futures passed (duplicates collapse)
    (docs/guide.md, "Waiting for a set of futures")."""
    probe = Probe()
    out: dict[str, Any] = {}
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=3) as ex:
            futures = [ex.submit(probe.task, i) for i in range(3)]

            async def waiter() -> None:
                out["result"] = await ex.wait([*futures, futures[0], futures[2]])

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await probe.until(lambda: len(probe.started) == 3)
                probe.release(0, 2)
                await anyio.wait_all_tasks_blocked()
                assert out == {}
                probe.release(1)
    done, pending = out["result"]
    assert type(done) is set
    assert type(pending) is set
    assert done == set(futures)
    assert pending == set()


async def test_wait_on_no_futures_returns_two_empty_sets() -> None:
    """The split of nothing, at once, whatever the strategy (docs/guide.md,
    "Waiting for a set of futures")."""
    async with AsyncExecutor(max_workers=1) as ex:
        for strategy in WaitStrategy:
            assert await ex.wait([], return_when=strategy) == (set(), set())


async def test_wait_first_completed_returns_as_soon_as_one_is_done() -> None:
    """FIRST_COMPLETED returns as soon as one future is done (docs/guide.md,
    "Waiting for a set of futures")."""
    probe = Probe()
    out: dict[str, Any] = {}
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=3) as ex:
            futures = [ex.submit(probe.task, i) for i in range(3)]

            async def waiter() -> None:
                out["result"] = await ex.wait(
                    futures, return_when=WaitStrategy.FIRST_COMPLETED
                )
                out["running"] = probe.running()
                probe.notify()

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await probe.until(lambda: len(probe.started) == 3)
                await anyio.wait_all_tasks_blocked()
                assert out == {}
                probe.release(1)
                await probe.until(lambda: "result" in out)
            probe.release(0, 2)
    assert out["result"] == ({futures[1]}, {futures[0], futures[2]})
    # the pending ones were still running when wait returned, and not cancelled
    assert out["running"] == {0, 2}
    assert probe.cancelled == []


async def test_wait_first_completed_with_one_already_done_returns_at_once() -> None:
    """FIRST_COMPLETED: a future already done at the call counts
    (docs/guide.md, "Waiting for a set of futures")."""
    probe = Probe()
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=2) as ex:
            done = ex.submit(instant, 1)
            await settle(done)
            pending = ex.submit(probe.task, 1)
            assert await ex.wait(
                [pending, done], return_when=WaitStrategy.FIRST_COMPLETED
            ) == ({done}, {pending})
            probe.release(1)


async def test_wait_first_exception_ignores_success_and_cancellation() -> None:
    """FIRST_EXCEPTION returns as soon as one future has failed; a success
    does not count, and a cancelled future is not a failure (docs/guide.md,
    "Waiting for a set of futures")."""
    probe = Probe()
    probe.errors = {2: OSError("fails")}
    out: dict[str, Any] = {}
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=4) as ex:
            futures = [ex.submit(probe.task, i) for i in range(4)]

            async def waiter() -> None:
                out["result"] = await ex.wait(
                    futures, return_when=WaitStrategy.FIRST_EXCEPTION
                )
                probe.notify()

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await probe.until(lambda: len(probe.started) == 4)

                probe.release(0)  # success
                assert futures[1].cancel() is True  # cancellation
                await anyio.wait_all_tasks_blocked()
                assert futures[0].done()
                assert futures[1].cancelled()
                assert out == {}

                probe.release(2)  # failure
                await probe.until(lambda: "result" in out)
            probe.release(3)
    assert out["result"] == ({futures[0], futures[1], futures[2]}, {futures[3]})
    assert futures[2].exception() is probe.errors[2]


async def test_wait_first_exception_without_failure_returns_when_all_done() -> None:
    """FIRST_EXCEPTION: if none fails, it returns when every future is done,
    a cancelled one included (docs/guide.md, "Waiting for a set of futures")."""
    probe = Probe()
    out: dict[str, Any] = {}
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=3) as ex:
            futures = [ex.submit(probe.task, i) for i in range(3)]

            async def waiter() -> None:
                out["result"] = await ex.wait(
                    futures, return_when=WaitStrategy.FIRST_EXCEPTION
                )

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await probe.until(lambda: len(probe.started) == 3)
                probe.release(0)
                futures[1].cancel()
                await anyio.wait_all_tasks_blocked()
                assert out == {}
                probe.release(2)
    assert out["result"] == (set(futures), set())


async def test_wait_first_exception_with_an_already_failed_future_returns_at_once() -> (
    None
):
    """FIRST_EXCEPTION: a future that already failed at the call counts
    (docs/guide.md, "Waiting for a set of futures")."""
    probe = Probe()
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=2) as ex:
            failed = ex.submit(failing, ValueError("x"))
            await settle(failed)
            pending = ex.submit(probe.task, 1)
            assert await ex.wait(
                [failed, pending], return_when=WaitStrategy.FIRST_EXCEPTION
            ) == ({failed}, {pending})
            probe.release(1)
    assert isinstance(failed.exception(), ValueError)


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(lambda s: s, id="WaitStrategy"),
        pytest.param(lambda s: getattr(cf, s.name), id="concurrent.futures-constant"),
        pytest.param(lambda s: s.value, id="string"),
    ],
)
@pytest.mark.parametrize("strategy", list(WaitStrategy), ids=lambda s: s.name)
async def test_wait_strategies_and_their_spellings(
    strategy: WaitStrategy, spelling: Callable[[WaitStrategy], Any]
) -> None:
    """FIRST_COMPLETED, FIRST_EXCEPTION and ALL_COMPLETED, each also given as a
    concurrent.futures constant or its string (docs/guide.md,
    "Waiting for a set of futures").

    Script: one future done already; then b fails; then c succeeds.
    FIRST_COMPLETED returns at step 0, FIRST_EXCEPTION at step 1,
    ALL_COMPLETED at step 2."""
    return_when = spelling(strategy)
    probe = Probe()
    probe.errors = {"b": LookupError("b")}
    out: dict[str, Any] = {}
    steps: list[int] = []
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=3) as ex:
            a = ex.submit(instant, "a")
            await settle(a)
            b = ex.submit(probe.task, "b")
            c = ex.submit(probe.task, "c")
            await probe.until(lambda: len(probe.started) == 2)

            async def waiter() -> None:
                out["result"] = await ex.wait([a, b, c], return_when=return_when)
                out["step"] = steps[-1]

            async with anyio.create_task_group() as tg:
                steps.append(0)
                tg.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()
                steps.append(1)
                probe.release("b")
                await anyio.wait_all_tasks_blocked()
                steps.append(2)
                probe.release("c")
    expected = {
        WaitStrategy.FIRST_COMPLETED: (0, ({a}, {b, c})),
        WaitStrategy.FIRST_EXCEPTION: (1, ({a, b}, {c})),
        WaitStrategy.ALL_COMPLETED: (2, ({a, b, c}, set())),
    }[strategy]
    assert (out["step"], out["result"]) == expected
    assert b.exception() is probe.errors["b"]


def test_wait_strategy_values_are_the_concurrent_futures_names() -> None:
    """WaitStrategy's values are the names of the concurrent.futures
    constants, which are those constants (docs/api.md, WaitStrategy)."""
    assert [s.value for s in WaitStrategy] == [s.name for s in WaitStrategy]
    for s in WaitStrategy:
        assert getattr(cf, s.name) == s.value
        assert WaitStrategy(getattr(cf, s.name)) is s


@pytest.mark.parametrize("bad", ["SOMETIMES", "first_completed", ""])
async def test_wait_rejects_an_unknown_return_when_naming_the_argument(
    bad: str,
) -> None:
    """A bad return_when is an error at the call, naming the argument
    (docs/semantics.md, "Exceptions")."""
    probe = Probe()
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=1) as ex:
            future = ex.submit(probe.task, 1)
            with pytest.raises(ValueError, match="return_when"):
                await ex.wait([future], return_when=bad)
            # nothing was disturbed
            assert not future.done()
            probe.release(1)
            assert await future == 10


async def test_cancelling_a_wait_leaves_its_futures_running() -> None:
    """Waiting never cancels: cancelling the task that waits ends only the
    wait, here in wait and as_completed (docs/semantics.md, "Cancellation")."""
    probe = Probe()
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=2) as ex:
            futures = [ex.submit(probe.task, i) for i in range(2)]
            await probe.until(lambda: len(probe.started) == 2)
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(ex.wait, futures)

                    async def drain() -> None:
                        async for _ in ex.as_completed(futures):
                            pass

                    tg.start_soon(drain)
                    await anyio.wait_all_tasks_blocked()
                    scope.cancel()
            assert scope.cancelled_caught
            await anyio.wait_all_tasks_blocked()
            assert probe.running() == {0, 1}
            assert not any(f.done() for f in futures)
            probe.release(0, 1)
            assert [await f for f in futures] == [0, 10]


# --------------------------------------------------------------------------
# virtual time: timeouts
# --------------------------------------------------------------------------


async def sleep_then(delay: float, value: Any = None) -> Any:
    await anyio.sleep(delay)
    return value


@pytest.mark.virtual_time
class TestVirtualTime:
    """Exact elapsed times, on async_solipsism (asyncio) and trio's MockClock."""

    async def test_as_completed_timeout_is_one_deadline_for_the_whole_iteration(
        self,
    ) -> None:
        """as_completed's timeout is one deadline for the whole iteration,
        counted from its first step (here right at the call), so time the
        consumer spends in the loop body counts; expiry raises TimeoutError
        and leaves the futures running (docs/semantics.md, "Timeouts")."""
        async with AsyncExecutor(max_workers=3) as ex:
            f1 = ex.submit(sleep_then, 1.0, 1)
            f2 = ex.submit(sleep_then, 2.0, 2)
            f3 = ex.submit(sleep_then, 10.0, 3)
            t0 = anyio.current_time()
            seen: list[tuple[Any, float]] = []
            with pytest.raises(TimeoutError):
                async for future in ex.as_completed([f3, f2, f1], timeout=3.0):
                    seen.append((future, anyio.current_time() - t0))
                    await anyio.sleep(0.5)  # the body's time counts too
            # a per-step timeout would only expire at 2.5 + 3.0 = 5.5
            assert anyio.current_time() - t0 == pytest.approx(3.0, abs=1e-9)
            assert [f for f, _ in seen] == [f1, f2]
            assert [t for _, t in seen] == pytest.approx([1.0, 2.0], abs=1e-9)
            assert not f3.done()
            assert await f3 == 3
            assert anyio.current_time() - t0 == pytest.approx(10.0, abs=1e-9)

    async def test_as_completed_timeout_spares_already_finished_futures(self) -> None:
        """Already-finished futures come first, so even timeout=0 yields
        every finished future before raising for the rest (docs/guide.md,
        "Processing results as they complete"; docs/semantics.md,
        "Timeouts")."""
        async with AsyncExecutor(max_workers=2) as ex:
            done = ex.submit(sleep_then, 0.0, "done")
            assert await done == "done"
            slow = ex.submit(sleep_then, 5.0, "slow")
            t0 = anyio.current_time()
            seen = []
            with pytest.raises(TimeoutError):
                async for future in ex.as_completed([slow, done], timeout=0):
                    seen.append(future)
            assert seen == [done]
            assert anyio.current_time() - t0 == pytest.approx(0.0, abs=1e-9)
            # all finished: timeout=0 is no obstacle
            await slow
            yielded = [f async for f in ex.as_completed([done, slow], timeout=0)]
            assert len(yielded) == 2
            assert set(yielded) == {done, slow}

    async def test_wait_all_completed_timeout_raises_timeout_error(self) -> None:
        """wait's timeout: ALL_COMPLETED (the default) raises TimeoutError at
        the deadline; the futures keep running (docs/semantics.md,
        "Timeouts")."""
        async with AsyncExecutor(max_workers=2) as ex:
            fast = ex.submit(sleep_then, 1.0, "fast")
            slow = ex.submit(sleep_then, 5.0, "slow")
            t0 = anyio.current_time()
            with pytest.raises(TimeoutError):
                await ex.wait([fast, slow], timeout=2.0)
            assert anyio.current_time() - t0 == pytest.approx(2.0, abs=1e-9)
            with pytest.raises(TimeoutError):
                await ex.wait(
                    [fast, slow], timeout=1.0, return_when=WaitStrategy.ALL_COMPLETED
                )
            assert anyio.current_time() - t0 == pytest.approx(3.0, abs=1e-9)
            assert fast.done()
            assert not slow.done()
            assert await slow == "slow"
            assert anyio.current_time() - t0 == pytest.approx(5.0, abs=1e-9)

    @pytest.mark.parametrize(
        "strategy", [WaitStrategy.FIRST_COMPLETED, WaitStrategy.FIRST_EXCEPTION]
    )
    async def test_wait_other_strategies_return_the_partition_at_the_deadline(
        self, strategy: WaitStrategy
    ) -> None:
        """wait's timeout: FIRST_COMPLETED and FIRST_EXCEPTION return the
        split as it stands at the deadline, without raising
        (docs/semantics.md, "Timeouts")."""
        async with AsyncExecutor(max_workers=3) as ex:
            a = ex.submit(sleep_then, 4.0, "a")
            b = ex.submit(sleep_then, 5.0, "b")
            t0 = anyio.current_time()
            assert await ex.wait([a, b], timeout=1.5, return_when=strategy) == (
                set(),
                {a, b},
            )
            assert anyio.current_time() - t0 == pytest.approx(1.5, abs=1e-9)
            if strategy is WaitStrategy.FIRST_EXCEPTION:
                # a success does not end FIRST_EXCEPTION; the deadline does
                assert await ex.wait([a, b], timeout=3.0, return_when=strategy) == (
                    {a},
                    {b},
                )
                assert anyio.current_time() - t0 == pytest.approx(4.5, abs=1e-9)
            assert not b.done()
            assert await b == "b"

    async def test_wait_returns_before_the_deadline_when_satisfied(self) -> None:
        """wait's timeout is only an upper bound (docs/semantics.md,
        "Timeouts")."""
        async with AsyncExecutor(max_workers=2) as ex:
            a = ex.submit(sleep_then, 1.0)
            b = ex.submit(sleep_then, 2.0)
            t0 = anyio.current_time()
            assert await ex.wait(
                [a, b], timeout=10.0, return_when=WaitStrategy.FIRST_COMPLETED
            ) == ({a}, {b})
            assert anyio.current_time() - t0 == pytest.approx(1.0, abs=1e-9)
            assert await ex.wait([a, b], timeout=10.0) == ({a, b}, set())
            assert anyio.current_time() - t0 == pytest.approx(2.0, abs=1e-9)
            # everything done: even timeout=0 is satisfied, no TimeoutError
            assert await ex.wait([a, b], timeout=0) == ({a, b}, set())
