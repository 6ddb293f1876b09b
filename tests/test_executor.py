"""AsyncExecutor: construction, ``async with`` semantics, loop binding.

SPEC sections pinned here: "AsyncExecutor(max_workers=...)", the
structured-concurrency ground rule, and "What tasks raise" (BaseException).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from antflow import (
    AntFlowError,
    AsyncExecutor,
    AsyncFuture,
    CancelledError,
    ExecutorShutdownError,
)

pytestmark = pytest.mark.anyio


class Boom(Exception):
    """The block's own exception."""


class Fatal(BaseException):
    """A BaseException that is not an Exception (and not a cancellation)."""


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from _leaves(sub)
    else:
        yield exc


def assert_only(raised: BaseException, expected: BaseException) -> None:
    """`raised` is `expected` itself, or a group whose sole leaf is `expected`.

    SPEC says a task's BaseException propagates "through the executor's task
    group" without saying whether it is wrapped; either way nothing else may
    ride along with it.
    """
    leaves = list(_leaves(raised))
    assert len(leaves) == 1, repr(raised)
    assert leaves[0] is expected, repr(raised)


async def double(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * x


# --------------------------------------------------------------------------
# Construction and max_workers validation
# --------------------------------------------------------------------------


def test_construct_needs_no_running_loop() -> None:
    """SPEC: constructing an executor needs no running event loop."""
    ex = AsyncExecutor(max_workers=3)
    assert ex.max_workers == 3


def test_default_max_workers_is_5() -> None:
    """API decision: default max_workers=5 (AntFlow 0.10's default)."""
    assert AsyncExecutor().max_workers == 5


def test_max_workers_one_is_valid() -> None:
    """SPEC: max_workers is an int >= 1; 1 is the smallest valid value."""
    assert AsyncExecutor(max_workers=1).max_workers == 1


@pytest.mark.parametrize("value", [0, -1, -100])
def test_max_workers_below_one_is_valueerror(value: int) -> None:
    """SPEC: 0 or negative -> ValueError("max_workers must be at least 1")."""
    with pytest.raises(ValueError, match=r"^max_workers must be at least 1$"):
        AsyncExecutor(max_workers=value)


@pytest.mark.parametrize("value", [True, False, 1.0, 2.5, "3", None, [2]])
def test_max_workers_non_int_is_typeerror(value: Any) -> None:
    """SPEC: a non-int max_workers (bool included) raises TypeError naming it."""
    with pytest.raises(TypeError, match="max_workers"):
        AsyncExecutor(max_workers=value)


def test_submit_without_running_loop_is_runtimeerror() -> None:
    """SPEC: submit starts workers "from inside a running loop"; with no loop
    at all the misuse must be a clear RuntimeError, not a silent no-op."""
    ex = AsyncExecutor(max_workers=1)
    with pytest.raises(RuntimeError):
        ex.submit(double, 1)


# --------------------------------------------------------------------------
# async with: start, drain, shut down
# --------------------------------------------------------------------------


async def test_async_with_returns_the_executor() -> None:
    """SPEC: `async with AsyncExecutor(...) as ex` gives the executor itself."""
    ex = AsyncExecutor(max_workers=2)
    async with ex as entered:
        assert entered is ex
        fut = ex.submit(double, 21)
        assert isinstance(fut, AsyncFuture)
        assert await fut.result() == 42


async def test_exit_waits_for_every_task() -> None:
    """SPEC: a normal exit waits until the executor is idle; every future it
    handed out is final afterwards and every task has finished."""
    finished: list[int] = []

    async def work(i: int) -> int:
        for _ in range(i % 4 + 1):
            await anyio.lowlevel.checkpoint()
        await anyio.sleep(0.001 * (i % 3))
        finished.append(i)
        return i * 10

    async with AsyncExecutor(max_workers=3) as ex:
        futs = [ex.submit(work, i) for i in range(12)]
        # The body leaves without awaiting anything.

    assert sorted(finished) == list(range(12))
    assert all(f.done() for f in futs)
    assert [f.exception() for f in futs] == [None] * 12
    assert [await f.result() for f in futs] == [i * 10 for i in range(12)]


async def test_exit_waits_for_work_submitted_while_draining() -> None:
    """SPEC: like a nursery, tasks still running may submit more work while
    the block drains, and that work is waited for too."""
    go = anyio.Event()
    log: list[str] = []

    async def grandchild() -> str:
        await anyio.lowlevel.checkpoint()
        log.append("grandchild")
        return "gc"

    async def child(ex: AsyncExecutor) -> AsyncFuture[str]:
        await anyio.lowlevel.checkpoint()
        log.append("child")
        return ex.submit(grandchild)

    async def parent(ex: AsyncExecutor) -> AsyncFuture[AsyncFuture[str]]:
        await go.wait()
        log.append("parent")
        return ex.submit(child, ex)

    async def trigger() -> None:
        # Every other task is blocked: the block's exit is already waiting
        # for the executor to go idle when `parent` submits new work.
        await anyio.wait_all_tasks_blocked()
        go.set()

    async with AsyncExecutor(max_workers=2) as ex:
        p = ex.submit(parent, ex)
        ex.submit(trigger)

    assert p.done()
    c = await p.result()
    assert c.done()
    g = await c.result()
    assert g.done()
    assert await g.result() == "gc"
    assert log == ["parent", "child", "grandchild"]
    with pytest.raises(ExecutorShutdownError):
        ex.submit(double, 1)


async def test_exit_with_all_slots_busy_and_deep_queue() -> None:
    """SPEC: draining covers queued (not yet started) work as well."""
    async with AsyncExecutor(max_workers=1) as ex:
        futs = [ex.submit(double, i) for i in range(50)]
    assert [f.done() for f in futs] == [True] * 50
    assert [await f for f in futs] == [2 * i for i in range(50)]


async def test_failed_task_does_not_disturb_exit() -> None:
    """SPEC: an Exception from a task is stored in its future and never
    disturbs the executor or its other tasks."""

    async def fail() -> None:
        await anyio.lowlevel.checkpoint()
        raise Boom("task failed")

    async with AsyncExecutor(max_workers=2) as ex:
        bad = ex.submit(fail)
        good = [ex.submit(double, i) for i in range(5)]
    assert isinstance(bad.exception(), Boom)
    assert [await f for f in good] == [0, 2, 4, 6, 8]


async def test_block_exception_propagates_unchanged_and_cancels_work() -> None:
    """SPEC: if the block raises, outstanding work is cancelled and the
    block's own exception propagates unchanged, not as an ExceptionGroup."""
    started = anyio.Event()
    cleaned_up: list[str] = []
    ran: list[str] = []

    async def blocker() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cleaned_up.append("blocker")

    async def queued() -> None:
        ran.append("queued")

    boom = Boom("from the block")
    futs: list[AsyncFuture[None]] = []

    async def block() -> None:
        async with AsyncExecutor(max_workers=1) as ex:
            futs.append(ex.submit(blocker))
            futs.append(ex.submit(queued))
            await started.wait()
            raise boom

    with pytest.raises(Boom) as info:
        await block()

    assert info.value is boom
    assert type(info.value) is Boom
    assert cleaned_up == ["blocker"]
    assert ran == []
    assert [f.cancelled() for f in futs] == [True, True]
    assert [f.done() for f in futs] == [True, True]


async def test_block_exception_wins_over_a_stored_task_exception() -> None:
    """SPEC: the block's exception propagates unchanged even when a task has
    failed (a task's Exception lives in its future, not in the exit)."""

    async def fail() -> None:
        raise ValueError("task")

    boom = Boom("block")
    futs: list[AsyncFuture[None]] = []

    async def block() -> None:
        async with AsyncExecutor(max_workers=2) as ex:
            fut = ex.submit(fail)
            futs.append(fut)
            while not fut.done():
                await anyio.lowlevel.checkpoint()
            raise boom

    with pytest.raises(Boom) as info:
        await block()
    assert info.value is boom
    assert isinstance(futs[0].exception(), ValueError)


async def test_block_raising_before_any_submit() -> None:
    """SPEC: the block's exception propagates unchanged with no work at all."""
    boom = Boom()
    with pytest.raises(Boom) as info:
        async with AsyncExecutor(max_workers=2):
            raise boom
    assert info.value is boom


async def test_outer_cancellation_inside_block() -> None:
    """SPEC: if the block is cancelled, outstanding work is cancelled, the
    cancellation propagates (caught by the outer scope, not wrapped) and every
    future is final."""
    started = anyio.Event()
    cleaned_up: list[str] = []

    async def blocker() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cleaned_up.append("blocker")

    with anyio.CancelScope() as scope:
        async with AsyncExecutor(max_workers=1) as ex:
            running = ex.submit(blocker)
            waiting = ex.submit(double, 1)
            await started.wait()
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert cleaned_up == ["blocker"]
    assert running.cancelled()
    assert waiting.cancelled()


async def test_outer_cancellation_while_exit_is_draining() -> None:
    """SPEC: a cancellation arriving while the exit waits for idle cancels the
    outstanding work; the exit returns with every future final."""
    started = anyio.Event()
    cleaned_up: list[str] = []
    futs: list[AsyncFuture[Any]] = []
    exited = anyio.Event()

    async def blocker() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cleaned_up.append("blocker")

    scope = anyio.CancelScope()

    async def runner() -> None:
        with scope:
            async with AsyncExecutor(max_workers=1) as ex:
                futs.append(ex.submit(blocker))
                futs.append(ex.submit(double, 3))
        exited.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(runner)
        await started.wait()
        await anyio.wait_all_tasks_blocked()
        assert not exited.is_set()
        scope.cancel()

    assert exited.is_set()
    assert scope.cancelled_caught
    assert cleaned_up == ["blocker"]
    assert [f.cancelled() for f in futs] == [True, True]


# --------------------------------------------------------------------------
# Single use and loop binding
# --------------------------------------------------------------------------


async def test_reentering_after_exit_is_runtimeerror() -> None:
    """SPEC: an executor is single-use; entering it again raises RuntimeError."""
    ex = AsyncExecutor(max_workers=1)
    async with ex:
        pass
    with pytest.raises(RuntimeError):
        async with ex:
            pytest.fail("second entry must not run the body")


async def test_entering_twice_nested_is_runtimeerror() -> None:
    """SPEC: entering an executor twice raises RuntimeError; the first entry
    keeps working."""
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(RuntimeError):
            async with ex:
                pytest.fail("nested entry must not run the body")
        assert await ex.submit(double, 4).result() == 8


async def test_entering_after_manual_shutdown_is_runtimeerror() -> None:
    """SPEC: single-use: an executor that was shut down cannot be entered."""
    ex = AsyncExecutor(max_workers=1)
    await ex.shutdown()
    with pytest.raises(RuntimeError):
        async with ex:
            pytest.fail("entry after shutdown must not run the body")


async def _in_other_loop(backend: str, fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``fn`` in a fresh event loop in a worker thread; return what it
    raised (an Exception) or None. Real time there, so fail_after is a guard."""

    async def main() -> Exception | None:
        with anyio.fail_after(3):
            try:
                await fn()
            except Exception as exc:
                return exc
        return None

    return await anyio.to_thread.run_sync(
        functools.partial(anyio.run, main, backend=backend)
    )


async def _exit_guard(scope: anyio.CancelScope) -> None:
    # From here on nothing waits on a thread, so on the virtual clock a
    # deadline only fires if the exit hangs.
    scope.deadline = anyio.current_time() + 10


async def test_submit_from_another_event_loop_is_runtimeerror(
    anyio_backend_name: str,
) -> None:
    """SPEC: an executor is bound to the loop that started it; submit from
    another loop (another thread running its own anyio.run) is RuntimeError."""

    async def use() -> None:
        ex.submit(double, 1)

    with anyio.CancelScope() as guard:
        async with AsyncExecutor(max_workers=2) as ex:
            assert await ex.submit(double, 5).result() == 10
            raised = await _in_other_loop(anyio_backend_name, use)
            await _exit_guard(guard)
            assert isinstance(raised, RuntimeError), repr(raised)
            assert not isinstance(raised, ExecutorShutdownError)
            # The executor is untouched on its own loop.
            assert await ex.submit(double, 6).result() == 12
    assert not guard.cancelled_caught


async def test_shutdown_from_another_event_loop_is_runtimeerror(
    anyio_backend_name: str,
) -> None:
    """SPEC: using the executor from another loop raises RuntimeError; that
    covers `await shutdown()`, which must neither hang nor shut it down."""

    async def use() -> None:
        await ex.shutdown()

    with anyio.CancelScope() as guard:
        async with AsyncExecutor(max_workers=2) as ex:
            assert await ex.submit(double, 5).result() == 10
            raised = await _in_other_loop(anyio_backend_name, use)
            await _exit_guard(guard)
            assert isinstance(raised, RuntimeError), repr(raised)
            assert await ex.submit(double, 6).result() == 12
    assert not guard.cancelled_caught


async def test_enter_from_another_event_loop_is_runtimeerror(
    anyio_backend_name: str,
) -> None:
    """SPEC: entering a started executor again, here from another loop, is a
    RuntimeError."""

    async def use() -> None:
        async with ex:
            pass

    with anyio.CancelScope() as guard:
        async with AsyncExecutor(max_workers=2) as ex:
            assert await ex.submit(double, 5).result() == 10
            raised = await _in_other_loop(anyio_backend_name, use)
            await _exit_guard(guard)
            assert isinstance(raised, RuntimeError), repr(raised)
            assert await ex.submit(double, 6).result() == 12
    assert not guard.cancelled_caught


# --------------------------------------------------------------------------
# Manual use (no async with)
# --------------------------------------------------------------------------


async def test_manual_use_submit_starts_and_shutdown_stops() -> None:
    """SPEC "Manual Shutdown": submit from inside a running loop starts the
    workers; `await shutdown()` stops them; works on every backend and leaves
    no task behind."""
    before = len(anyio.get_running_tasks())
    ex = AsyncExecutor(max_workers=3)
    futs = [ex.submit(double, i) for i in range(10)]
    assert [await f.result() for f in futs] == [2 * i for i in range(10)]
    await ex.shutdown(wait=True)
    assert len(anyio.get_running_tasks()) == before
    with pytest.raises(ExecutorShutdownError):
        ex.submit(double, 1)


async def test_manual_shutdown_waits_for_outstanding_work() -> None:
    """SPEC: manual use; shutdown(wait=True) returns once every task finished."""
    before = len(anyio.get_running_tasks())
    release = anyio.Event()

    async def gated(i: int) -> int:
        await release.wait()
        return i

    ex = AsyncExecutor(max_workers=2)
    futs = [ex.submit(gated, i) for i in range(5)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(ex.shutdown)
        await anyio.wait_all_tasks_blocked()
        assert [f.done() for f in futs] == [False] * 5
        release.set()
    assert [f.done() for f in futs] == [True] * 5
    assert [await f for f in futs] == [0, 1, 2, 3, 4]
    assert len(anyio.get_running_tasks()) == before


async def test_manual_use_stores_task_exceptions() -> None:
    """SPEC: manual mode keeps the same failure semantics as `async with`."""

    async def fail() -> None:
        raise Boom("manual")

    ex = AsyncExecutor(max_workers=1)
    fut = ex.submit(fail)
    with pytest.raises(Boom, match="manual"):
        await fut.result()
    assert await ex.submit(double, 2).result() == 4
    await ex.shutdown()


async def test_async_with_leaves_no_task_behind() -> None:
    """SPEC: no task started by an executor outlives it."""
    before = len(anyio.get_running_tasks())
    async with AsyncExecutor(max_workers=4) as ex:
        for i in range(10):
            ex.submit(double, i)
        assert len(anyio.get_running_tasks()) > before
    assert len(anyio.get_running_tasks()) == before


# --------------------------------------------------------------------------
# BaseException from a task
# --------------------------------------------------------------------------


async def test_task_baseexception_propagates_and_every_future_ends_final() -> None:
    """SPEC: a BaseException that is not an Exception is never stored as a
    result: it propagates through the executor, the other work is cancelled,
    and every future still ends in a final state."""
    started = anyio.Event()
    cleaned_up: list[str] = []
    ran: list[str] = []
    fatal = Fatal("stop everything")

    async def blocker() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cleaned_up.append("blocker")

    async def explode() -> None:
        await started.wait()
        raise fatal

    async def late() -> None:
        ran.append("late")

    futs: dict[str, Any] = {}

    async def block() -> None:
        async with AsyncExecutor(max_workers=2) as ex:
            futs["running"] = ex.submit(blocker)
            futs["bomb"] = ex.submit(explode)
            futs["queued"] = [ex.submit(late) for _ in range(3)]
            futs["done_ok"] = ex.submit(double, 1)

    before = len(anyio.get_running_tasks())
    with pytest.raises(BaseException) as info:
        await block()
    assert_only(info.value, fatal)
    running, bomb = futs["running"], futs["bomb"]
    queued, done_ok = futs["queued"], futs["done_ok"]
    assert cleaned_up == ["blocker"]
    assert running.cancelled()
    # The Fatal is not stored: that future ends cancelled, not failed.
    assert bomb.done()
    assert bomb.cancelled()
    for fut in [*queued, done_ok]:
        assert fut.done()
    assert len(anyio.get_running_tasks()) == before


async def test_task_baseexception_cancels_the_waiting_block() -> None:
    """SPEC: a task's BaseException propagates out of `async with` even while
    the block is still waiting on another future (the waiter is not left
    hanging)."""
    fatal = Fatal("boom")

    async def explode() -> None:
        await anyio.lowlevel.checkpoint()
        raise fatal

    async def forever() -> None:
        await anyio.sleep_forever()

    futs: list[AsyncFuture[None]] = []

    async def block() -> None:
        async with AsyncExecutor(max_workers=2) as ex:
            other = ex.submit(forever)
            futs.append(other)
            ex.submit(explode)
            # Either the block itself is cancelled, or `other` ends cancelled
            # (antflow.CancelledError); either way the Fatal must come out.
            with contextlib.suppress(CancelledError):
                await other.result()

    with pytest.raises(BaseException) as info:
        await block()
    assert_only(info.value, fatal)
    assert futs[0].cancelled()


def test_exception_tree() -> None:
    """SPEC "Public names": ExecutorShutdownError is an AntFlowError and a
    RuntimeError; CancelledError is concurrent.futures' and an Exception."""
    import concurrent.futures

    assert issubclass(ExecutorShutdownError, AntFlowError)
    assert issubclass(ExecutorShutdownError, RuntimeError)
    assert issubclass(AntFlowError, Exception)
    assert issubclass(CancelledError, concurrent.futures.CancelledError)
    assert issubclass(CancelledError, Exception)
