"""AsyncFuture: result/timeout, state queries, cancel, callbacks, loops, gc.

The rules pinned here are stated in docs/guide.md, "Futures", and
docs/semantics.md, "Cancellation", "Timeouts", "Done callbacks" and
"Exceptions" (the very same exception object; a failure nobody read is
logged when the future is garbage-collected).
"""

from __future__ import annotations

import concurrent.futures
import functools
import gc
import logging
import math
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _strategies import swallow_cancellation

from antflow import AsyncExecutor, AsyncFuture, CancelledError

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


class FalsyError(Exception):
    """An exception object that is falsy."""

    def __bool__(self) -> bool:
        return False

    def __len__(self) -> int:
        return 0


class Gate:
    """A task body that reports it started and blocks until released."""

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
            self.cleaned_up = True
        self.finished = True
        return value


async def double(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * x


async def fail_with(exc: BaseException) -> None:
    await anyio.lowlevel.checkpoint()
    raise exc


def states(fut: AsyncFuture[Any]) -> tuple[bool, bool, bool]:
    """(done, running, cancelled), each checked to be a plain bool."""
    values = (fut.done(), fut.running(), fut.cancelled())
    assert [type(v) for v in values] == [bool, bool, bool]
    return values


# --------------------------------------------------------------------------
# result() and await
# --------------------------------------------------------------------------


async def test_result_and_await_return_the_value() -> None:
    """`await fut.result()` gives the value; `await fut` is the same
    (docs/guide.md, "Futures")."""
    async with AsyncExecutor(max_workers=2) as ex:
        fut = ex.submit(double, 21)
        assert await fut.result() == 42
        assert await fut == 42
        assert await fut.result() == 42  # repeatable


async def test_result_reraises_the_tasks_own_exception_object() -> None:
    """result() raises the very same exception object the task raised
    (docs/semantics.md, "Exceptions")."""
    boom = Boom("own")
    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(fail_with, boom)
        with pytest.raises(Boom) as first:
            await fut.result()
        with pytest.raises(Boom) as second:
            await fut
    assert first.value is boom
    assert second.value is boom


async def test_cancelled_future_raises_antflow_cancellederror() -> None:
    """result() on a cancelled future raises antflow.CancelledError, a
    concurrent.futures.CancelledError, never the backend's cancellation
    (docs/semantics.md, "Cancellation")."""
    gate = Gate()
    async with AsyncExecutor(max_workers=1) as ex:
        ex.submit(gate)
        queued = ex.submit(double, 1)
        assert queued.cancel() is True
        with pytest.raises(CancelledError) as info:
            await queued.result()
        with pytest.raises(CancelledError):
            await queued
        gate.release.set()
    assert isinstance(info.value, concurrent.futures.CancelledError)
    assert isinstance(info.value, Exception)
    assert not isinstance(info.value, anyio.get_cancelled_exc_class())


async def test_timeout_raises_builtin_timeouterror_and_task_keeps_running() -> None:
    """On timeout result() raises the builtin TimeoutError (never
    trio.TooSlowError) and the task keeps running (docs/semantics.md,
    "Timeouts")."""
    gate = Gate()
    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(gate, "late")
        await gate.started.wait()
        with pytest.raises(TimeoutError) as info:
            await fut.result(timeout=0.01)
        assert type(info.value) is TimeoutError
        assert states(fut) == (False, True, False)
        assert not gate.cleaned_up
        gate.release.set()
        assert await fut.result() == "late"


async def test_timeout_zero_on_pending_future_times_out() -> None:
    """timeout=0 on a pending future raises TimeoutError at once
    (docs/semantics.md, "Timeouts"; docs/guide.md, "Waiting with a timeout")."""
    gate = Gate()
    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(gate)
        with pytest.raises(TimeoutError):
            await fut.result(timeout=0)
        assert not fut.done()
        gate.release.set()


@pytest.mark.parametrize("timeout", [math.nan, -1, -0.001, -math.inf])
async def test_nan_or_negative_timeout_is_valueerror(timeout: float) -> None:
    """A NaN or negative timeout is a ValueError, naming the argument; the
    task is unaffected (docs/semantics.md, "Timeouts")."""
    gate = Gate()
    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(gate, 1)
        await gate.started.wait()
        with pytest.raises(ValueError, match=r"\btimeout\b"):
            await fut.result(timeout=timeout)
        assert states(fut) == (False, True, False)
        gate.release.set()
        assert await fut == 1


@pytest.mark.parametrize(
    "value", [None, 0, 0.0, "", b"", False, [], {}, ()], ids=lambda v: repr(v)
)
async def test_falsy_results_come_back_as_they_are(value: Any) -> None:
    """The return value comes back as it is, a falsy one (None, 0, "")
    included (docs/guide.md, "Futures")."""

    async def give() -> Any:
        return value

    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(give)
        got = await fut
    assert got is value or (got == value and type(got) is type(value))
    assert type(got) is type(value)
    assert fut.exception() is None
    assert (await fut.result(timeout=0)) == value


async def test_falsy_exception_comes_back_as_it_is() -> None:
    """A falsy exception object is stored and raised again as it is, and
    exception() returns it, not None (docs/semantics.md, "Exceptions")."""
    falsy = FalsyError("falsy")
    assert not falsy
    seen: list[BaseException | None] = []
    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(fail_with, falsy)
        fut.add_done_callback(lambda f: seen.append(f.exception()))
    assert states(fut) == (True, False, False)
    assert fut.exception() is falsy
    assert seen == [falsy]
    with pytest.raises(FalsyError) as info:
        await fut
    assert info.value is falsy


async def test_falsy_exception_is_retried() -> None:
    """Every Exception is retried, a falsy one included (docs/guide.md,
    "Retries")."""
    attempts: list[int] = []
    last = FalsyError("last")

    async def fn() -> None:
        attempts.append(1)
        raise last if len(attempts) == 3 else FalsyError("early")

    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(fn, retries=2, retry_delay=0)
    assert len(attempts) == 3
    assert fut.exception() is last


# --------------------------------------------------------------------------
# done / running / cancelled / exception
# --------------------------------------------------------------------------


async def test_state_queries_through_the_life_cycle() -> None:
    """done(), cancelled() and running() are plain booleans that follow the
    life of a task: queued, running, finished (docs/semantics.md,
    "The life of a task"; docs/guide.md, "Futures")."""
    gate = Gate()
    async with AsyncExecutor(max_workers=1) as ex:
        running = ex.submit(gate, "r")
        queued = ex.submit(double, 2)
        await gate.started.wait()
        assert states(running) == (False, True, False)
        assert states(queued) == (False, False, False)
        gate.release.set()
        assert await running == "r"
        assert states(running) == (True, False, False)
        assert await queued == 4
        assert states(queued) == (True, False, False)


async def test_exception_is_synchronous_and_none_while_pending() -> None:
    """exception() never waits, and returns None while not done
    (docs/guide.md, "Futures")."""
    gate = Gate()
    async with AsyncExecutor(max_workers=1) as ex:
        running = ex.submit(gate)
        queued = ex.submit(double, 1)
        await gate.started.wait()
        assert running.exception() is None
        assert queued.exception() is None
        gate.release.set()


async def test_exception_after_success_failure_and_cancel() -> None:
    """exception() is None after success, the exception after failure, and
    raises antflow.CancelledError if cancelled (docs/guide.md, "Futures")."""
    boom = Boom()
    gate = Gate()
    async with AsyncExecutor(max_workers=1) as ex:
        ok = ex.submit(double, 1)
        bad = ex.submit(fail_with, boom)
        blocker = ex.submit(gate)
        queued = ex.submit(double, 2)
        await gate.started.wait()
        assert queued.cancel() is True
        gate.release.set()
    assert ok.exception() is None
    assert bad.exception() is boom
    assert blocker.exception() is None
    with pytest.raises(CancelledError):
        queued.exception()
    assert states(bad) == (True, False, False)
    assert states(queued) == (True, False, True)


# --------------------------------------------------------------------------
# cancel()
# --------------------------------------------------------------------------


async def test_cancel_queued_task_never_starts() -> None:
    """cancel() on a queued task returns True and the task never starts
    (docs/semantics.md, "Cancellation")."""
    gate = Gate()
    calls: list[int] = []

    async def record() -> None:
        calls.append(1)

    async with AsyncExecutor(max_workers=1) as ex:
        ex.submit(gate)
        queued = ex.submit(record)
        await gate.started.wait()
        assert queued.cancel() is True
        assert states(queued) == (True, False, True)
        gate.release.set()
    assert calls == []
    assert queued.cancelled()


async def test_cancel_running_task_through_its_cancel_scope() -> None:
    """cancel() on a running task cancels its cancel scope; its future ends
    cancelled, its finally block ran, and the freed worker takes the next
    task (docs/semantics.md, "Cancellation")."""
    gate = Gate()
    async with AsyncExecutor(max_workers=1) as ex:
        running = ex.submit(gate)
        after = ex.submit(double, 5)
        await gate.started.wait()
        assert running.cancel() is True
        with pytest.raises(CancelledError):
            await running.result()
        assert gate.cleaned_up
        assert not gate.finished
        assert states(running) == (True, False, True)
        assert await after == 10


async def test_cancel_finished_or_failed_returns_false() -> None:
    """cancel() is False on a future with a result or an exception
    (docs/semantics.md, "Cancellation")."""
    async with AsyncExecutor(max_workers=1) as ex:
        ok = ex.submit(double, 3)
        bad = ex.submit(fail_with, Boom())
    assert ok.cancel() is False
    assert bad.cancel() is False
    assert states(ok) == (True, False, False)
    assert states(bad) == (True, False, False)
    assert await ok == 6
    assert isinstance(bad.exception(), Boom)


async def test_cancel_already_cancelled_returns_true() -> None:
    """cancel() on a cancelled future returns True, as concurrent.futures
    does (docs/semantics.md, "Cancellation")."""
    gate = Gate()
    async with AsyncExecutor(max_workers=1) as ex:
        ex.submit(gate)
        queued = ex.submit(double, 1)
        assert queued.cancel() is True
        assert queued.cancel() is True
        gate.release.set()
    assert queued.cancel() is True


async def test_cancelled_task_that_swallows_cancellation_ends_cancelled() -> None:
    """A running task cancelled by cancel() ends cancelled even if it caught
    the cancellation and returned a value (docs/semantics.md,
    "Cancellation")."""
    started = anyio.Event()

    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(swallow_cancellation, started)
        await started.wait()
        assert fut.cancel() is True
    assert fut.cancelled()
    with pytest.raises(CancelledError):
        await fut


async def test_a_cancelled_task_still_runs_until_its_cleanup_is_done() -> None:
    """cancel() on a running task returns True at once, but the future stays
    running (not done) while the task's shielded cleanup runs; cancel() again
    is True, and the worker takes the next task only after
    (docs/semantics.md, "Cancellation")."""
    cleanup_started, finish_cleanup = anyio.Event(), anyio.Event()

    async def with_cleanup() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                cleanup_started.set()
                await finish_cleanup.wait()

    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(with_cleanup)
        after = ex.submit(double, 4)
        await anyio.wait_all_tasks_blocked()
        assert fut.cancel() is True
        await cleanup_started.wait()
        await anyio.wait_all_tasks_blocked()
        assert states(fut) == (False, True, False)
        assert repr(fut) == "<AsyncFuture #1 cancelling>"
        assert fut.cancel() is True
        assert not after.running()
        finish_cleanup.set()
        with pytest.raises(CancelledError):
            await fut
        assert states(fut) == (True, False, True)
        assert await after == 8


# --------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------


async def test_done_callbacks_run_once_in_order_when_final() -> None:
    """add_done_callback(fn): fn(future) runs once, when the future is final;
    several callbacks run in the order they were added (docs/semantics.md,
    "Done callbacks"; docs/guide.md, "Futures")."""
    gate = Gate()
    calls: list[tuple[str, AsyncFuture[Any], bool]] = []
    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(gate, "v")
        fut.add_done_callback(lambda f: calls.append(("first", f, f.done())))
        fut.add_done_callback(lambda f: calls.append(("second", f, f.done())))
        await gate.started.wait()
        assert calls == []
        gate.release.set()
        assert await fut == "v"
        assert await fut == "v"
    assert calls == [("first", fut, True), ("second", fut, True)]


async def test_done_callback_on_final_future_runs_at_once() -> None:
    """add_done_callback on a future that is already final runs fn at once,
    for results, failures and cancellations alike (docs/guide.md, "Futures")."""
    gate = Gate()
    async with AsyncExecutor(max_workers=1) as ex:
        ok = ex.submit(double, 1)
        bad = ex.submit(fail_with, Boom())
        ex.submit(gate)
        cancelled = ex.submit(double, 2)
        cancelled.cancel()
        await ok
        await gate.started.wait()
        gate.release.set()
    for fut in (ok, bad, cancelled):
        seen: list[AsyncFuture[Any]] = []
        fut.add_done_callback(seen.append)
        assert seen == [fut]
    assert bad.exception() is not None


async def test_done_callback_sees_cancellation_of_queued_and_running() -> None:
    """Callbacks run when the future becomes final by cancellation too
    (docs/guide.md, "Futures")."""
    gate = Gate()
    seen: list[tuple[str, bool]] = []
    async with AsyncExecutor(max_workers=1) as ex:
        running = ex.submit(gate)
        queued = ex.submit(double, 1)
        running.add_done_callback(lambda f: seen.append(("running", f.cancelled())))
        queued.add_done_callback(lambda f: seen.append(("queued", f.cancelled())))
        await gate.started.wait()
        queued.cancel()
        assert seen == [("queued", True)]
        running.cancel()
    assert seen == [("queued", True), ("running", True)]


async def test_remove_done_callback_returns_count_and_prevents_call() -> None:
    """remove_done_callback(fn) removes every registration of fn and returns
    how many there were (docs/semantics.md, "Done callbacks")."""
    gate = Gate()
    calls: list[str] = []

    def a(f: AsyncFuture[Any]) -> None:
        calls.append("a")

    def b(f: AsyncFuture[Any]) -> None:
        calls.append("b")

    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(gate)
        fut.add_done_callback(a)
        fut.add_done_callback(b)
        fut.add_done_callback(a)
        assert fut.remove_done_callback(a) == 2
        assert fut.remove_done_callback(a) == 0
        gate.release.set()
    assert calls == ["b"]


async def test_raising_callback_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A done callback that raises is logged by the `antflow` logger and
    otherwise ignored; later callbacks and other work go on
    (docs/semantics.md, "Exceptions")."""
    caplog.set_level(logging.ERROR, logger="antflow")
    oops = ValueError("callback-oops-marker")
    later: list[str] = []

    def bad_callback(f: AsyncFuture[Any]) -> None:
        raise oops

    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(double, 1)
        fut.add_done_callback(bad_callback)
        fut.add_done_callback(lambda f: later.append("ran"))
        other = ex.submit(double, 2)
        assert await fut == 2
    assert await other == 4
    assert later == ["ran"]
    records = [r for r in caplog.records if r.name.split(".")[0] == "antflow"]
    assert len(records) == 1
    assert records[0].levelno >= logging.ERROR
    assert records[0].exc_info is not None
    assert records[0].exc_info[1] is oops


async def test_raising_callback_on_final_future_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A callback added to a final future runs at once; if it raises, the
    error is logged, not raised from add_done_callback (docs/semantics.md,
    "Exceptions"; docs/guide.md, "Futures")."""
    caplog.set_level(logging.ERROR, logger="antflow")
    oops = RuntimeError("late-callback-marker")

    def bad_callback(f: AsyncFuture[Any]) -> None:
        raise oops

    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(double, 1)
        await fut
        fut.add_done_callback(bad_callback)
    records = [r for r in caplog.records if r.name.split(".")[0] == "antflow"]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert records[0].exc_info[1] is oops


# --------------------------------------------------------------------------
# Waiting never cancels the task
# --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["result", "await"])
async def test_cancelling_the_waiter_does_not_cancel_the_task(how: str) -> None:
    """Waiting never cancels: cancelling the task that awaits a result ends
    only the wait (docs/semantics.md, "Cancellation")."""
    gate = Gate()
    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(gate, "kept")
        await gate.started.wait()
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def waiter() -> None:
                    if how == "result":
                        await fut.result()
                    else:
                        await fut

                tg.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()
                scope.cancel()
        assert scope.cancelled_caught
        assert states(fut) == (False, True, False)
        assert not gate.cleaned_up
        gate.release.set()
        assert await fut == "kept"


async def test_many_waiters_all_get_the_value() -> None:
    """Several tasks awaiting one future all get its value (docs/guide.md,
    "Futures")."""
    gate = Gate()
    got: list[Any] = []
    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(gate, "shared")
        async with anyio.create_task_group() as tg:
            for _ in range(5):

                async def waiter() -> None:
                    got.append(await fut)

                tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert got == []
            gate.release.set()
    assert got == ["shared"] * 5


# --------------------------------------------------------------------------
# Another event loop
# --------------------------------------------------------------------------


@pytest.mark.parametrize("other_backend", ["asyncio", "trio"])
@pytest.mark.parametrize("how", ["result", "result-timeout", "await"])
async def test_awaiting_pending_future_from_another_loop_raises_at_once(
    other_backend: str, how: str
) -> None:
    """Awaiting a pending future from another event loop (another anyio.run
    in another thread) raises RuntimeError at once rather than hanging; the
    task is unaffected (docs/semantics.md, "Shutdown",
    "One executor, one loop, one use")."""
    gate = Gate()

    async def other_loop(fut: AsyncFuture[Any]) -> BaseException | None:
        with anyio.fail_after(3):  # real time in this fresh loop: hang guard
            try:
                if how == "result":
                    await fut.result()
                elif how == "result-timeout":
                    await fut.result(timeout=2)
                else:
                    await fut
            except Exception as exc:
                return exc
        return None

    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(gate, "mine")
        await gate.started.wait()
        raised = await anyio.to_thread.run_sync(
            functools.partial(anyio.run, other_loop, fut, backend=other_backend)
        )
        assert type(raised) is RuntimeError, repr(raised)
        assert states(fut) == (False, True, False)
        gate.release.set()
        assert await fut == "mine"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_future_escaping_its_loop_is_final_and_never_hangs(backend: str) -> None:
    """A future of a manual executor left running when its event loop ends is
    final afterwards (docs/semantics.md, "What happens to every future");
    awaiting it in a second anyio.run raises at once (it was cancelled, or
    belongs to another loop), never hangs (docs/semantics.md, "Shutdown",
    "One executor, one loop, one use")."""
    box: list[AsyncFuture[Any]] = []

    async def first() -> None:
        ex = AsyncExecutor(max_workers=1)
        box.append(ex.submit(anyio.sleep_forever))
        await anyio.wait_all_tasks_blocked()

    anyio.run(first, backend=backend)
    fut = box[0]
    assert fut.done()
    assert fut.cancelled()

    async def second() -> BaseException | None:
        with anyio.fail_after(3):
            try:
                await fut
            except Exception as exc:
                return exc
        return None

    raised = anyio.run(second, backend=backend)
    assert isinstance(raised, CancelledError | RuntimeError), repr(raised)


# --------------------------------------------------------------------------
# Unretrieved exceptions
# --------------------------------------------------------------------------


async def _run_and_drop(
    fn: Callable[[], Any], handle: Callable[[AsyncFuture[Any]], Any]
) -> None:
    """Run fn in an executor, let `handle` touch the future, drop every ref."""
    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(fn)
    await handle(fut)
    del fut, ex


def _antflow_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.split(".")[0] == "antflow"]


async def test_unretrieved_exception_is_logged_on_gc(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failed future whose exception was never retrieved is logged by the
    `antflow` logger when it is garbage-collected, as asyncio does
    (docs/semantics.md, "Exceptions", "Nobody read it")."""
    caplog.set_level(logging.DEBUG, logger="antflow")

    async def fail() -> None:
        raise Boom("never-retrieved-marker")

    async def ignore(fut: AsyncFuture[Any]) -> None:
        assert fut.done()

    await _run_and_drop(fail, ignore)
    gc.collect()
    records = _antflow_records(caplog)
    assert len(records) == 1
    assert records[0].levelno >= logging.ERROR
    assert "never-retrieved-marker" in caplog.text


async def _retrieve_result(fut: AsyncFuture[Any]) -> None:
    with pytest.raises(Boom):
        await fut.result()


async def _retrieve_await(fut: AsyncFuture[Any]) -> None:
    with pytest.raises(Boom):
        await fut


async def _retrieve_exception(fut: AsyncFuture[Any]) -> None:
    assert isinstance(fut.exception(), Boom)


@pytest.mark.parametrize(
    "handle",
    [_retrieve_result, _retrieve_await, _retrieve_exception],
    ids=["result", "await", "exception"],
)
async def test_retrieved_exception_is_not_logged(
    caplog: pytest.LogCaptureFixture, handle: Callable[[AsyncFuture[Any]], Any]
) -> None:
    """Only an exception nobody retrieved (by awaiting, result() or
    exception()) is reported on gc (docs/semantics.md, "Exceptions",
    "Nobody read it")."""
    caplog.set_level(logging.DEBUG, logger="antflow")

    async def fail() -> None:
        raise Boom("retrieved-marker")

    await _run_and_drop(fail, handle)
    gc.collect()
    assert _antflow_records(caplog) == []


async def test_success_and_cancel_are_not_logged_on_gc(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The gc report is for failed futures only (docs/semantics.md,
    "Exceptions", "Nobody read it")."""
    caplog.set_level(logging.DEBUG, logger="antflow")

    async def nothing(fut: AsyncFuture[Any]) -> None:
        pass

    await _run_and_drop(functools.partial(double, 1), nothing)

    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(anyio.sleep_forever)
        await anyio.wait_all_tasks_blocked()
        fut.cancel()
    del fut, ex
    gc.collect()
    assert _antflow_records(caplog) == []


# --------------------------------------------------------------------------
# Exact timing (virtual clock)
# --------------------------------------------------------------------------


@pytest.mark.virtual_time
class TestVirtualTime:
    """Exact elapsed times on asyncio (async_solipsism) and trio (MockClock)."""

    async def test_timeout_expires_exactly_and_task_goes_on(self) -> None:
        """result(timeout) raises TimeoutError after `timeout` seconds; the
        task keeps running and later delivers its value (docs/semantics.md,
        "Timeouts")."""

        async def slow() -> str:
            await anyio.sleep(10)
            return "slow"

        async with AsyncExecutor(max_workers=1) as ex:
            start = anyio.current_time()
            fut = ex.submit(slow)
            with pytest.raises(TimeoutError):
                await fut.result(timeout=2.5)
            assert anyio.current_time() - start == pytest.approx(2.5, abs=1e-9)
            assert states(fut) == (False, True, False)
            assert await fut.result(timeout=100) == "slow"
            assert anyio.current_time() - start == pytest.approx(10, abs=1e-9)

    @pytest.mark.parametrize("timeout", [0, 0.0, 1, 5.5, math.inf, None])
    async def test_final_future_returns_at_once_whatever_the_timeout(
        self, timeout: float | None
    ) -> None:
        """On a future that is already final, any timeout (0 included)
        returns at once: result, exception and cancellation alike
        (docs/semantics.md, "Timeouts")."""
        gate = Gate()
        boom = Boom()
        async with AsyncExecutor(max_workers=1) as ex:
            ok = ex.submit(double, 4)
            bad = ex.submit(fail_with, boom)
            ex.submit(gate)
            cancelled = ex.submit(double, 5)
            cancelled.cancel()
            await gate.started.wait()
            gate.release.set()
        start = anyio.current_time()
        assert await ok.result(timeout=timeout) == 8
        with pytest.raises(Boom) as info:
            await bad.result(timeout=timeout)
        assert info.value is boom
        with pytest.raises(CancelledError):
            await cancelled.result(timeout=timeout)
        assert anyio.current_time() == start

    async def test_timeout_zero_on_pending_takes_no_time(self) -> None:
        """timeout=0 on a pending future: TimeoutError without waiting
        (docs/semantics.md, "Timeouts")."""

        async def slow() -> None:
            await anyio.sleep(10)

        async with AsyncExecutor(max_workers=1) as ex:
            fut = ex.submit(slow)
            start = anyio.current_time()
            with pytest.raises(TimeoutError):
                await fut.result(timeout=0)
            assert anyio.current_time() == start
            assert not fut.done()

    async def test_cancelled_waiter_leaves_the_task_to_finish(self) -> None:
        """A waiter cancelled by a deadline stops waiting; the task finishes
        on its own schedule (docs/semantics.md, "Cancellation")."""

        async def slow() -> str:
            await anyio.sleep(10)
            return "slow"

        async with AsyncExecutor(max_workers=1) as ex:
            start = anyio.current_time()
            fut = ex.submit(slow)
            with anyio.move_on_after(3) as scope:
                await fut
            assert scope.cancelled_caught
            assert anyio.current_time() - start == pytest.approx(3, abs=1e-9)
            assert fut.running()
        assert anyio.current_time() - start == pytest.approx(10, abs=1e-9)
        assert await fut == "slow"
