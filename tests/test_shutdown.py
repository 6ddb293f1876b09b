"""AsyncExecutor.shutdown: idempotence, wait, cancel_futures, deadlocks, leaks.

SPEC sections pinned here: "shutdown(wait=True, cancel_futures=False)", the
max_workers=1 self-deadlock rule of "What tasks raise", and the structured
concurrency ground rule (no task outlives its executor).
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from antflow import AsyncExecutor, AsyncFuture, CancelledError, ExecutorShutdownError

pytestmark = pytest.mark.anyio


def task_count() -> int:
    return len(anyio.get_running_tasks())


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


async def double(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * x


# --------------------------------------------------------------------------
# Idempotence
# --------------------------------------------------------------------------


async def test_shutdown_is_idempotent_manual() -> None:
    """SPEC: shutdown is idempotent."""
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
    """SPEC: shutdown is idempotent, also combined with the `async with` exit."""
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
    """SPEC: shutting down an executor that never ran is fine, repeatedly."""
    before = task_count()
    ex = AsyncExecutor(max_workers=2)
    await ex.shutdown()
    await ex.shutdown(wait=False, cancel_futures=True)
    assert task_count() == before


async def test_concurrent_shutdown_calls_all_wait() -> None:
    """SPEC: shutdown is idempotent: two concurrent wait=True calls both
    return only once every task has finished."""
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
# wait=True
# --------------------------------------------------------------------------


@pytest.mark.parametrize("use_async_with", [True, False], ids=["async-with", "manual"])
async def test_wait_true_returns_once_every_task_finished(use_async_with: bool) -> None:
    """SPEC: shutdown(wait=True) returns once every task has finished,
    queued ones included; nothing is cancelled."""
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
# cancel_futures=True
# --------------------------------------------------------------------------


@pytest.mark.parametrize("use_async_with", [True, False], ids=["async-with", "manual"])
async def test_cancel_futures_cancels_queued_and_running(use_async_with: bool) -> None:
    """SPEC: cancel_futures=True: queued futures are cancelled without
    starting; running tasks are cancelled through their cancel scopes and
    their futures end cancelled; with wait=True it returns only after their
    finally blocks have run."""
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
    """SPEC: idempotent shutdown; a later cancel_futures=True call still
    cancels what an earlier graceful shutdown was waiting for."""
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
    """SPEC: cancel_futures touches only outstanding work; finished futures
    keep their results and exceptions."""

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
# wait=False
# --------------------------------------------------------------------------


async def test_wait_false_returns_at_once_and_async_with_exit_waits() -> None:
    """SPEC: wait=False returns at once; the work goes on in the background;
    the `async with` exit still waits for it."""
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
    """SPEC: shutdown(wait=False, cancel_futures=True) (the guide's example)
    returns at once; the exit waits for the cancelled tasks to unwind and
    every future ends cancelled."""
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
    """SPEC: manual use: after shutdown(wait=False) the work goes on; a later
    shutdown() (wait=True) waits for it."""
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
# The max_workers=1 self-deadlock
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
    """SPEC: a task awaiting a task of its own max_workers=1 executor
    deadlocks; shutdown(cancel_futures=True) must still break it."""
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
    """SPEC: the max_workers=1 self-deadlock is broken by outer cancellation
    (here: a cancel scope around the `async with`, cancelled while its exit
    waits for the deadlocked work)."""
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
class TestVirtualTime:
    """Exact elapsed times on asyncio (async_solipsism) and trio (MockClock)."""

    async def test_self_deadlock_broken_by_move_on_after(self) -> None:
        """SPEC: outer cancellation by a deadline breaks the deadlock exactly
        at the deadline."""
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
        """SPEC: shutdown(wait=True) returns once every task has finished: at
        the virtual time the slowest one ends, not before."""

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
        """SPEC: wait=False returns at once (no virtual time passes)."""

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
# No leaked tasks
# --------------------------------------------------------------------------


async def test_no_task_leaked_after_block_exception() -> None:
    """SPEC: no task started by an executor outlives it, also when the block
    raises with work outstanding."""
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
    """SPEC: manual use: after shutdown(cancel_futures=True) returns, no task
    of the executor is left running."""
    gate = Gate()
    before = task_count()
    ex = AsyncExecutor(max_workers=3)
    for _ in range(6):
        ex.submit(gate)
    await gate.started.wait()
    assert task_count() > before
    await ex.shutdown(cancel_futures=True)
    assert task_count() == before
