"""AsyncExecutor: construction, ``async with``, loop binding, submit, shutdown.

The rules pinned here are stated in docs/semantics.md, "Shutdown" (the end of
an ``async with`` block, ``shutdown()``, manual use, one executor per loop),
"Exceptions" (a task's BaseException, misuse) and "Deadlock on a full pool",
and in docs/guide.md, "Creating an executor" and "Submitting work".
"""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import warnings
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _strategies import Gauge, assert_only, task_count

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


async def double(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * x


# --------------------------------------------------------------------------
# Construction and max_workers validation
# --------------------------------------------------------------------------


def test_construct_needs_no_running_loop() -> None:
    """Constructing an executor needs no running event loop (docs/guide.md,
    "Creating an executor")."""
    ex = AsyncExecutor(max_workers=3)
    assert ex.max_workers == 3


def test_default_max_workers_is_5() -> None:
    """max_workers defaults to 5, as in AntFlow 0.10 (docs/guide.md,
    "Creating an executor"; docs/semantics.md, "Differences")."""
    assert AsyncExecutor().max_workers == 5


def test_max_workers_one_is_valid() -> None:
    """max_workers is an int of at least 1; 1 is the smallest valid value
    (docs/guide.md, "Creating an executor")."""
    assert AsyncExecutor(max_workers=1).max_workers == 1


@pytest.mark.parametrize("value", [0, -1, -100])
def test_max_workers_below_one_is_valueerror(value: int) -> None:
    """0 or a negative max_workers is a ValueError (docs/guide.md,
    "Creating an executor"). The exact message,
    "max_workers must be at least 1", is not stated in docs/."""
    with pytest.raises(ValueError, match=r"^max_workers must be at least 1$"):
        AsyncExecutor(max_workers=value)


@pytest.mark.parametrize("value", [True, False, 1.0, 2.5, "3", None, [2]])
def test_max_workers_non_int_is_typeerror(value: Any) -> None:
    """A max_workers that is not an int (a float, a bool, ...) raises
    TypeError naming it (docs/guide.md, "Creating an executor";
    docs/semantics.md, "Exceptions")."""
    with pytest.raises(TypeError, match="max_workers"):
        AsyncExecutor(max_workers=value)


def test_submit_without_running_loop_is_runtimeerror() -> None:
    """The first submit starts the executor
    "from inside a running event loop" (docs/semantics.md, "Shutdown",
    "Without async with"); with no loop at all the misuse is a RuntimeError,
    not a silent no-op (docs/api.md, AsyncExecutor.submit:
    "RuntimeError: called outside the executor's event loop")."""
    ex = AsyncExecutor(max_workers=1)
    with pytest.raises(RuntimeError):
        ex.submit(double, 1)


# --------------------------------------------------------------------------
# async with: start, drain, shut down
# --------------------------------------------------------------------------


async def test_async_with_returns_the_executor() -> None:
    """`async with AsyncExecutor(...) as ex` gives the executor itself
    (docs/guide.md, "Creating an executor")."""
    ex = AsyncExecutor(max_workers=2)
    async with ex as entered:
        assert entered is ex
        fut = ex.submit(double, 21)
        assert isinstance(fut, AsyncFuture)
        assert await fut.result() == 42


async def test_exit_waits_for_every_task() -> None:
    """A normal exit waits until the executor is idle; every future it handed
    out is final afterwards and every task has finished (docs/semantics.md,
    "Shutdown"; "The life of a task")."""
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
    """Running tasks may submit more work while the block drains, and that
    work is waited for too (docs/semantics.md, "Shutdown")."""
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
    """Draining covers queued (not yet started) work as well
    (docs/semantics.md, "Shutdown")."""
    async with AsyncExecutor(max_workers=1) as ex:
        futs = [ex.submit(double, i) for i in range(50)]
    assert [f.done() for f in futs] == [True] * 50
    assert [await f for f in futs] == [2 * i for i in range(50)]


async def test_failed_task_does_not_disturb_exit() -> None:
    """An Exception from a task is stored in its future and never disturbs
    the executor or its other tasks (docs/semantics.md, "Exceptions")."""

    async def fail() -> None:
        await anyio.lowlevel.checkpoint()
        raise Boom("task failed")

    async with AsyncExecutor(max_workers=2) as ex:
        bad = ex.submit(fail)
        good = [ex.submit(double, i) for i in range(5)]
    assert isinstance(bad.exception(), Boom)
    assert [await f for f in good] == [0, 2, 4, 6, 8]


async def test_block_exception_propagates_unchanged_and_cancels_work() -> None:
    """If the block raises, outstanding work is cancelled and the block's own
    exception propagates unchanged, not as an ExceptionGroup
    (docs/semantics.md, "Shutdown")."""
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
    """The block's exception propagates unchanged even when a task has
    failed: a task's Exception lives in its future, not in the exit
    (docs/semantics.md, "Shutdown"; "Exceptions")."""

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
    """The block's exception propagates unchanged with no work at all
    (docs/semantics.md, "Shutdown")."""
    boom = Boom()
    with pytest.raises(Boom) as info:
        async with AsyncExecutor(max_workers=2):
            raise boom
    assert info.value is boom


async def test_outer_cancellation_inside_block() -> None:
    """If the block is cancelled, outstanding work is cancelled, the
    cancellation propagates (caught by the outer scope, not wrapped) and
    every future is final (docs/semantics.md, "Shutdown"; "Cancellation")."""
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
    """A cancellation arriving while the exit waits for idle cancels the
    outstanding work; the exit returns with every future final
    (docs/semantics.md, "Shutdown"; "Cancellation")."""
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
    """An executor is used once: entering it again raises RuntimeError
    (docs/semantics.md, "Shutdown", "One executor, one loop, one use")."""
    ex = AsyncExecutor(max_workers=1)
    async with ex:
        pass
    with pytest.raises(RuntimeError):
        async with ex:
            pytest.fail("second entry must not run the body")


async def test_entering_twice_nested_is_runtimeerror() -> None:
    """Entering an executor twice raises RuntimeError; the first entry keeps
    working (docs/semantics.md, "Shutdown",
    "One executor, one loop, one use")."""
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(RuntimeError):
            async with ex:
                pytest.fail("nested entry must not run the body")
        assert await ex.submit(double, 4).result() == 8


async def test_entering_after_manual_shutdown_is_runtimeerror() -> None:
    """An executor that was shut down cannot be entered (docs/semantics.md,
    "Shutdown", "One executor, one loop, one use")."""
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
    """An executor belongs to the loop that started it; submit from another
    loop (another thread running its own anyio.run) is a RuntimeError
    (docs/semantics.md, "Shutdown", "One executor, one loop, one use")."""

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
    """Using the executor from another loop raises RuntimeError; that covers
    `await shutdown()`, which must neither hang nor shut it down
    (docs/semantics.md, "Shutdown", "One executor, one loop, one use")."""

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
    """Entering a started executor again, here from another loop, is a
    RuntimeError (docs/semantics.md, "Shutdown",
    "One executor, one loop, one use")."""

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
    """Without `async with`, submit from inside a running loop starts the
    executor and `await shutdown()` stops it, on every backend, leaving no
    task behind (docs/semantics.md, "Shutdown", "Without async with")."""
    before = len(anyio.get_running_tasks())
    ex = AsyncExecutor(max_workers=3)
    futs = [ex.submit(double, i) for i in range(10)]
    assert [await f.result() for f in futs] == [2 * i for i in range(10)]
    await ex.shutdown(wait=True)
    assert len(anyio.get_running_tasks()) == before
    with pytest.raises(ExecutorShutdownError):
        ex.submit(double, 1)


async def test_manual_shutdown_waits_for_outstanding_work() -> None:
    """Manual use: shutdown(wait=True) returns once every task has finished
    (docs/semantics.md, "Shutdown")."""
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
    """In manual use a task's exception is stored in its future, as with
    `async with` (docs/semantics.md, "Exceptions")."""

    async def fail() -> None:
        raise Boom("manual")

    ex = AsyncExecutor(max_workers=1)
    fut = ex.submit(fail)
    with pytest.raises(Boom, match="manual"):
        await fut.result()
    assert await ex.submit(double, 2).result() == 4
    await ex.shutdown()


async def test_async_with_leaves_no_task_behind() -> None:
    """No task started by an executor outlives it (docs/semantics.md,
    "Shutdown": "An executor with no work holds no task"; docs/index.md,
    "What you get")."""
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
    """A BaseException that is not an Exception is never stored as a result:
    it stops the executor, the other work is cancelled, every future ends
    final, and the task's own future ends cancelled (docs/semantics.md,
    "Exceptions")."""
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
    """A task's BaseException propagates out of `async with` even while the
    block is still waiting on another future: the waiter is not left hanging
    (docs/semantics.md, "Exceptions")."""
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
    """ExecutorShutdownError is an AntFlowError and a RuntimeError;
    CancelledError is concurrent.futures' and an Exception
    (docs/semantics.md, "Exceptions", the exception tree)."""
    import concurrent.futures

    assert issubclass(ExecutorShutdownError, AntFlowError)
    assert issubclass(ExecutorShutdownError, RuntimeError)
    assert issubclass(AntFlowError, Exception)
    assert issubclass(CancelledError, concurrent.futures.CancelledError)
    assert issubclass(CancelledError, Exception)


# --------------------------------------------------------------------------
# submit: synchronous, positional-only fn
# --------------------------------------------------------------------------


async def test_submit_is_synchronous_and_returns_a_future() -> None:
    """submit is a plain method that never blocks and returns its future at
    once, even with every worker busy and a long queue behind them
    (docs/guide.md, "Submitting work")."""
    release = anyio.Event()
    gauge = Gauge()
    async with AsyncExecutor(max_workers=1) as ex:
        futs = [ex.submit(gauge.gated, release, i) for i in range(100)]
        assert all(isinstance(f, AsyncFuture) for f in futs)
        ids = [f.sequence_id for f in futs]
        assert ids == list(range(ids[0], ids[0] + 100))
        assert [f.done() for f in futs] == [False] * 100
        release.set()
    assert [await f for f in futs] == list(range(100))


async def test_args_and_kwargs_reach_fn_and_fn_is_positional_only() -> None:
    """Keyword arguments go to fn, except antflow's own options
    (docs/guide.md, "Submitting work"): fn is positional-only, so a keyword
    named `fn` is passed through to the function."""

    async def echo(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
        return args, kwargs

    async with AsyncExecutor(max_workers=2) as ex:
        fut = ex.submit(echo, 1, 2, fn="f", x=3)
        assert await fut == ((1, 2), {"fn": "f", "x": 3})


# --------------------------------------------------------------------------
# submit after shutdown
# --------------------------------------------------------------------------


async def test_submit_after_async_with_exit_raises_shutdown_error() -> None:
    """After shutdown has begun, submit raises ExecutorShutdownError, an
    AntFlowError and a RuntimeError (docs/semantics.md, "Shutdown")."""
    calls: list[int] = []

    async def record() -> None:
        calls.append(1)

    async with AsyncExecutor(max_workers=1) as ex:
        pass
    with pytest.raises(ExecutorShutdownError) as info:
        ex.submit(record)
    assert isinstance(info.value, AntFlowError)
    assert isinstance(info.value, RuntimeError)
    assert calls == []


async def test_submit_after_manual_shutdown_raises() -> None:
    """submit after `await shutdown()` raises ExecutorShutdownError
    (docs/semantics.md, "Shutdown")."""
    ex = AsyncExecutor(max_workers=1)
    assert await ex.submit(double, 1) == 2
    await ex.shutdown()
    with pytest.raises(ExecutorShutdownError):
        ex.submit(double, 2)


async def test_submit_after_shutdown_of_never_started_executor() -> None:
    """shutdown() on an executor that never ran still makes submit raise
    (docs/semantics.md, "Shutdown": "From the first call on")."""
    ex = AsyncExecutor(max_workers=1)
    await ex.shutdown()
    with pytest.raises(ExecutorShutdownError):
        ex.submit(double, 2)


async def test_submit_while_shutdown_waits_raises() -> None:
    """From shutdown's first call on, submit raises, even while it is still
    waiting for running work (docs/semantics.md, "Shutdown")."""
    release = anyio.Event()
    gauge = Gauge()
    ex = AsyncExecutor(max_workers=1)
    fut = ex.submit(gauge.gated, release, 0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(ex.shutdown)
        await anyio.wait_all_tasks_blocked()
        assert not fut.done()
        with pytest.raises(ExecutorShutdownError):
            ex.submit(double, 1)
        release.set()
    assert await fut == 0


# --------------------------------------------------------------------------
# submit: a bad fn, and what counts as a good one
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [42, "double", None, b"x", [double]])
async def test_non_callable_fn_is_typeerror_at_submit(fn: Any) -> None:
    """A fn that is not callable is a TypeError at submit, naming the
    argument (docs/guide.md, "Errors"; docs/semantics.md, "Exceptions")."""
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(TypeError, match=r"\bfn\b"):
            ex.submit(fn)
        assert await ex.submit(double, 1) == 2


async def test_coroutine_object_is_typeerror_and_is_closed() -> None:
    """A coroutine object instead of a function is a TypeError at submit, and
    the coroutine is closed so no "never awaited" warning follows
    (docs/guide.md, "Submitting work")."""
    async with AsyncExecutor(max_workers=1) as ex:
        coro = double(3)
        with pytest.raises(TypeError):
            ex.submit(coro)  # type: ignore[arg-type]
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del coro
            gc.collect()
        assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []


def plain_function_returning_int(x: int) -> int:
    return x


async def test_non_awaitable_return_fails_future_naming_the_function() -> None:
    """fn(*args) returning something not awaitable fails the future with a
    TypeError naming the function; other work is undisturbed (docs/guide.md,
    "Errors")."""
    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(plain_function_returning_int, 5)  # type: ignore[arg-type]
        lam = ex.submit(lambda: 7)  # type: ignore[arg-type,return-value]
        ok = ex.submit(double, 4)
    exc = fut.exception()
    assert type(exc) is TypeError
    assert "plain_function_returning_int" in str(exc)
    with pytest.raises(TypeError, match="plain_function_returning_int"):
        await fut
    lam_exc = lam.exception()
    assert type(lam_exc) is TypeError
    assert "<lambda>" in str(lam_exc)
    assert await ok == 8


async def test_partial_of_async_function_is_accepted() -> None:
    """A functools.partial of an async function is accepted (docs/guide.md,
    "Submitting work")."""

    async def add(a: int, b: int, *, c: int = 0) -> int:
        return a + b + c

    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(functools.partial(add, 1, c=100), 10)
        assert await fut == 111


async def test_object_with_async_call_is_accepted() -> None:
    """An object with `async def __call__` is accepted (docs/guide.md,
    "Submitting work")."""

    class Doubler:
        async def __call__(self, x: int) -> int:
            await anyio.lowlevel.checkpoint()
            return x * 2

    async with AsyncExecutor(max_workers=1) as ex:
        assert await ex.submit(Doubler(), 21) == 42


async def test_lambda_returning_coroutine_is_accepted() -> None:
    """A lambda returning a coroutine is accepted: any callable that returns
    an awaitable (docs/guide.md, "Submitting work")."""
    async with AsyncExecutor(max_workers=1) as ex:
        assert await ex.submit(lambda x: double(x), 8) == 16


async def test_callable_returning_generic_awaitable_is_accepted() -> None:
    """Any callable that returns an awaitable runs, not only coroutines
    (docs/guide.md, "Submitting work")."""

    class Awaitable:
        def __init__(self, x: int) -> None:
            self.x = x

        def __await__(self) -> Generator[Any, None, int]:
            return (yield from double(self.x).__await__())

    async with AsyncExecutor(max_workers=1) as ex:
        assert await ex.submit(Awaitable, 5) == 10  # type: ignore[arg-type]


async def test_bound_async_method_is_accepted() -> None:
    """Any callable that returns an awaitable; bound async methods too
    (docs/guide.md, "Submitting work")."""

    class Service:
        def __init__(self) -> None:
            self.base = 100

        async def add(self, x: int) -> int:
            return self.base + x

    async with AsyncExecutor(max_workers=1) as ex:
        assert await ex.submit(Service().add, 1) == 101


# --------------------------------------------------------------------------
# shutdown(): idempotence
# --------------------------------------------------------------------------


class Gate:
    """A task body that reports it started, blocks until released, and
    takes a few checkpoints (shielded) in its finally block."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.cleaned_up = False
        self.finished = False

    async def __call__(self, value: Any = "done") -> Any:
        self.started.set()
        try:
            await self.release.wait()
        finally:
            # Clean-up that itself needs the loop: shutdown must wait for it.
            with anyio.CancelScope(shield=True):
                for _ in range(3):
                    await anyio.lowlevel.checkpoint()
            self.cleaned_up = True
        self.finished = True
        return value


async def test_shutdown_is_idempotent_manual() -> None:
    """shutdown is idempotent (docs/semantics.md, "Shutdown")."""
    before = task_count()
    ex = AsyncExecutor(max_workers=2)
    assert await ex.submit(double, 1) == 2
    await ex.shutdown()
    await ex.shutdown()
    await ex.shutdown(wait=False)
    await ex.shutdown(cancel_futures=True)
    assert task_count() == before
    with pytest.raises(ExecutorShutdownError):
        ex.submit(double, 1)


async def test_shutdown_inside_and_after_async_with() -> None:
    """shutdown is idempotent, also combined with the `async with` exit
    (docs/semantics.md, "Shutdown")."""
    before = task_count()
    async with AsyncExecutor(max_workers=2) as ex:
        fut = ex.submit(double, 4)
        await ex.shutdown()
        assert fut.done()
        await ex.shutdown()
    await ex.shutdown()
    assert await fut == 8
    assert task_count() == before


async def test_shutdown_of_never_started_executor() -> None:
    """Shutting down an executor that never ran is fine, repeatedly
    (docs/semantics.md, "Shutdown": idempotent)."""
    before = task_count()
    ex = AsyncExecutor(max_workers=2)
    await ex.shutdown()
    await ex.shutdown(wait=False, cancel_futures=True)
    assert task_count() == before


async def test_concurrent_shutdown_calls_all_wait() -> None:
    """shutdown is idempotent: two concurrent wait=True calls both return
    only once every task has finished (docs/semantics.md, "Shutdown")."""
    gate = Gate()
    returned: list[int] = []
    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(gate, "v")
        await gate.started.wait()
        async with anyio.create_task_group() as tg:

            async def stop(i: int) -> None:
                await ex.shutdown(wait=True)
                assert fut.done()
                returned.append(i)

            tg.start_soon(stop, 1)
            tg.start_soon(stop, 2)
            await anyio.wait_all_tasks_blocked()
            assert returned == []
            gate.release.set()
        assert sorted(returned) == [1, 2]
    assert await fut == "v"


# --------------------------------------------------------------------------
# shutdown: wait=True
# --------------------------------------------------------------------------


@pytest.mark.parametrize("use_async_with", [True, False], ids=["async-with", "manual"])
async def test_wait_true_returns_once_every_task_finished(use_async_with: bool) -> None:
    """shutdown(wait=True) returns once every task has finished, queued ones
    included; nothing is cancelled (docs/semantics.md, "Shutdown")."""
    gates = [Gate() for _ in range(4)]
    before = task_count()
    ex = AsyncExecutor(max_workers=2)
    returned = anyio.Event()

    async def body() -> list[AsyncFuture[Any]]:
        futs = [ex.submit(g, i) for i, g in enumerate(gates)]
        async with anyio.create_task_group() as tg:

            async def stop() -> None:
                await ex.shutdown(wait=True)
                returned.set()

            tg.start_soon(stop)
            for g in gates:
                await anyio.wait_all_tasks_blocked()
                assert not returned.is_set()
                g.release.set()
        assert [f.done() for f in futs] == [True] * 4
        return futs

    if use_async_with:
        async with ex:
            futs = await body()
    else:
        futs = await body()
    assert returned.is_set()
    assert [await f for f in futs] == [0, 1, 2, 3]
    assert all(g.finished for g in gates)
    assert task_count() == before


# --------------------------------------------------------------------------
# shutdown: cancel_futures=True
# --------------------------------------------------------------------------


@pytest.mark.parametrize("use_async_with", [True, False], ids=["async-with", "manual"])
async def test_cancel_futures_cancels_queued_and_running(use_async_with: bool) -> None:
    """shutdown(cancel_futures=True): queued futures are cancelled without
    starting; running tasks are cancelled and their futures end cancelled;
    with wait=True it returns only after their finally blocks have run
    (docs/semantics.md, "Shutdown")."""
    before = task_count()
    gates = [Gate() for _ in range(2)]
    started: list[int] = []

    async def record(i: int) -> None:
        started.append(i)

    ex = AsyncExecutor(max_workers=2)

    async def body() -> tuple[list[AsyncFuture[Any]], list[AsyncFuture[Any]]]:
        running = [ex.submit(g) for g in gates]
        queued = [ex.submit(record, i) for i in range(5)]
        for g in gates:
            await g.started.wait()
        await ex.shutdown(wait=True, cancel_futures=True)
        assert [g.cleaned_up for g in gates] == [True, True]
        assert [g.finished for g in gates] == [False, False]
        return running, queued

    if use_async_with:
        async with ex:
            running, queued = await body()
    else:
        running, queued = await body()
    assert started == []
    assert [f.cancelled() for f in running + queued] == [True] * 7
    for fut in running + queued:
        with pytest.raises(CancelledError):
            await fut
    with pytest.raises(ExecutorShutdownError):
        ex.submit(double, 1)
    assert task_count() == before


async def test_cancel_futures_after_plain_shutdown_started() -> None:
    """shutdown is idempotent, and a later cancel_futures=True call still
    cancels what an earlier graceful shutdown was waiting for
    (docs/semantics.md, "Shutdown")."""
    gate = Gate()
    async with AsyncExecutor(max_workers=1) as ex:
        running = ex.submit(gate)
        queued = ex.submit(double, 1)
        await gate.started.wait()
        async with anyio.create_task_group() as tg:
            tg.start_soon(ex.shutdown)
            await anyio.wait_all_tasks_blocked()
            assert not running.done()
            await ex.shutdown(cancel_futures=True)
            assert running.cancelled()
    assert queued.cancelled()
    assert gate.cleaned_up


async def test_cancel_futures_leaves_finished_futures_alone() -> None:
    """cancel_futures touches only unfinished work; finished futures keep
    their results and exceptions: a final state never changes again
    (docs/semantics.md, "The life of a task")."""

    async def fail() -> None:
        raise ValueError("kept")

    gate = Gate()
    async with AsyncExecutor(max_workers=1) as ex:
        ok = ex.submit(double, 2)
        bad = ex.submit(fail)
        blocker = ex.submit(gate)
        await gate.started.wait()
        await ex.shutdown(cancel_futures=True)
    assert await ok == 4
    assert isinstance(bad.exception(), ValueError)
    assert blocker.cancelled()


# --------------------------------------------------------------------------
# shutdown: wait=False
# --------------------------------------------------------------------------


async def test_wait_false_returns_at_once_and_async_with_exit_waits() -> None:
    """shutdown(wait=False) returns at once; the work goes on in the
    background, and the `async with` exit still waits for it
    (docs/semantics.md, "Shutdown")."""
    gate = Gate()
    before = task_count()
    async with AsyncExecutor(max_workers=1) as ex:
        running = ex.submit(gate, "bg")
        queued = ex.submit(double, 7)
        await gate.started.wait()
        # The gate is never released before this returns: waiting would hang
        # (on the virtual clock the guard then fires at once).
        with anyio.fail_after(5):
            await ex.shutdown(wait=False)
        assert not running.done()
        assert running.running()
        assert not queued.done()
        with pytest.raises(ExecutorShutdownError):
            ex.submit(double, 1)
        gate.release.set()
    assert await running == "bg"
    assert await queued == 14
    assert task_count() == before


async def test_wait_false_with_cancel_futures_returns_at_once() -> None:
    """shutdown(wait=False, cancel_futures=True) returns at once; the exit
    waits for the cancelled tasks to unwind and every future ends cancelled
    (docs/semantics.md, "Shutdown"; docs/guide.md, "shutdown's options")."""
    gate = Gate()
    started: list[int] = []

    async def record() -> None:
        started.append(1)

    before = task_count()
    async with AsyncExecutor(max_workers=1) as ex:
        running = ex.submit(gate)
        queued = ex.submit(record)
        await gate.started.wait()
        with anyio.fail_after(5):
            await ex.shutdown(wait=False, cancel_futures=True)
        assert queued.cancelled()
    assert gate.cleaned_up
    assert running.cancelled()
    assert started == []
    assert task_count() == before


async def test_wait_false_then_wait_true_manual() -> None:
    """Manual use: after shutdown(wait=False) the work goes on; a later
    shutdown() (wait=True) waits for it (docs/semantics.md, "Shutdown")."""
    gate = Gate()
    before = task_count()
    ex = AsyncExecutor(max_workers=1)
    fut = ex.submit(gate, "later")
    await gate.started.wait()
    with anyio.fail_after(5):
        await ex.shutdown(wait=False)
    assert fut.running()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ex.shutdown)
        await anyio.wait_all_tasks_blocked()
        assert not fut.done()
        gate.release.set()
    assert await fut == "later"
    assert task_count() == before


# --------------------------------------------------------------------------
# shutdown: the max_workers=1 self-deadlock
# --------------------------------------------------------------------------


def _deadlocking(ex: AsyncExecutor, log: list[str], box: list[AsyncFuture[Any]]) -> Any:
    async def inner() -> str:
        log.append("inner ran")
        return "inner"

    async def outer() -> str:
        log.append("outer started")
        fut = ex.submit(inner)
        box.append(fut)
        try:
            return await fut.result()  # never: the only worker is ours
        finally:
            log.append("outer cleaned up")

    return outer


async def test_self_deadlock_broken_by_shutdown_cancel_futures() -> None:
    """A task awaiting a task of its own max_workers=1 executor deadlocks;
    shutdown(cancel_futures=True) breaks it (docs/semantics.md,
    "Deadlock on a full pool")."""
    log: list[str] = []
    box: list[AsyncFuture[Any]] = []
    before = task_count()
    async with AsyncExecutor(max_workers=1) as ex:
        outer = ex.submit(_deadlocking(ex, log, box))
        await anyio.wait_all_tasks_blocked()
        assert log == ["outer started"]
        assert not outer.done()
        with anyio.fail_after(5):  # a hang would be the bug
            await ex.shutdown(cancel_futures=True)
    assert log == ["outer started", "outer cleaned up"]
    assert outer.cancelled()
    assert box[0].cancelled()
    assert task_count() == before


async def test_self_deadlock_broken_by_outer_cancellation() -> None:
    """The max_workers=1 self-deadlock is broken by cancelling the
    surrounding scope (here: a cancel scope around the `async with`,
    cancelled while its exit waits for the deadlocked work)
    (docs/semantics.md, "Deadlock on a full pool")."""
    log: list[str] = []
    box: list[AsyncFuture[Any]] = []
    futs: list[AsyncFuture[Any]] = []
    before = task_count()
    scope = anyio.CancelScope()

    async def run() -> None:
        with scope:
            async with AsyncExecutor(max_workers=1) as ex:
                futs.append(ex.submit(_deadlocking(ex, log, box)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await anyio.wait_all_tasks_blocked()
        assert log == ["outer started"]
        scope.cancel()
    assert scope.cancelled_caught
    assert log == ["outer started", "outer cleaned up"]
    assert futs[0].cancelled()
    assert box[0].cancelled()
    assert task_count() == before


@pytest.mark.virtual_time
class TestShutdownInVirtualTime:
    """Exact elapsed times on asyncio (async_solipsism) and trio (MockClock)."""

    async def test_self_deadlock_broken_by_move_on_after(self) -> None:
        """A deadline around the block breaks the deadlock exactly at the
        deadline (docs/semantics.md, "Deadlock on a full pool")."""
        log: list[str] = []
        box: list[AsyncFuture[Any]] = []
        start = anyio.current_time()
        with anyio.move_on_after(7) as scope:
            async with AsyncExecutor(max_workers=1) as ex:
                outer = ex.submit(_deadlocking(ex, log, box))
        assert scope.cancelled_caught
        assert anyio.current_time() - start == pytest.approx(7, abs=1e-9)
        assert outer.cancelled()
        assert box[0].cancelled()

    async def test_wait_true_returns_when_the_last_task_ends(self) -> None:
        """shutdown(wait=True) returns once every task has finished: at the
        virtual time the slowest one ends, not before (docs/semantics.md,
        "Shutdown")."""

        async def nap(t: float) -> float:
            await anyio.sleep(t)
            return t

        ex = AsyncExecutor(max_workers=2)
        start = anyio.current_time()
        futs = [ex.submit(nap, t) for t in (3, 1, 4, 2)]
        await ex.shutdown(wait=True)
        # Two workers: 3 | 1 then 4 (ends at 5) | 2 (ends at 5)... slot
        # timeline: w1: 3 -> 2 (ends 5); w2: 1 -> 4 (ends 5).
        assert anyio.current_time() - start == pytest.approx(5, abs=1e-9)
        assert [await f for f in futs] == [3, 1, 4, 2]

    async def test_wait_false_takes_no_time(self) -> None:
        """shutdown(wait=False) returns at once: no virtual time passes
        (docs/semantics.md, "Shutdown")."""

        async def nap() -> None:
            await anyio.sleep(10)

        async with AsyncExecutor(max_workers=1) as ex:
            fut = ex.submit(nap)
            start = anyio.current_time()
            await ex.shutdown(wait=False)
            assert anyio.current_time() == start
        assert fut.done()
        assert anyio.current_time() - start == pytest.approx(10, abs=1e-9)


# --------------------------------------------------------------------------
# shutdown: no leaked tasks
# --------------------------------------------------------------------------


async def test_no_task_leaked_after_block_exception() -> None:
    """No task started by an executor outlives it, also when the block raises
    with work outstanding (docs/semantics.md, "Shutdown")."""
    gate = Gate()
    before = task_count()

    async def run() -> None:
        async with AsyncExecutor(max_workers=3) as ex:
            for _ in range(5):
                ex.submit(gate)
            await gate.started.wait()
            raise KeyError("block")

    with pytest.raises(KeyError):
        await run()
    assert gate.cleaned_up
    assert task_count() == before


async def test_no_task_leaked_after_manual_cancel_futures() -> None:
    """Manual use: after shutdown(cancel_futures=True) returns, no task of
    the executor is left running (docs/semantics.md, "Shutdown")."""
    gate = Gate()
    before = task_count()
    ex = AsyncExecutor(max_workers=3)
    for _ in range(6):
        ex.submit(gate)
    await gate.started.wait()
    assert task_count() > before
    await ex.shutdown(cancel_futures=True)
    assert task_count() == before
