"""Leaks: tasks, limiter tokens, references, watchers, warnings.

* The number of running tasks (``anyio.get_running_tasks()``) is the same
  before and after every way in and out of an executor, and every limiter
  token comes back.
* Finished futures drop their function and arguments; futures, their
  arguments and the executor itself are freed once the caller lets go (by
  reference counting alone, except a failure: an exception's traceback holds
  the frames that raised it, so that needs the cycle collector, as anywhere
  in Python). docs/semantics.md, "Memory", promises more for failures (freed
  by reference counting too); faults/test_features_meet.py checks that.
* Leaving ``map_iter`` or ``as_completed`` early releases what they held.
* Nothing is reported at interpreter exit (warnings are errors here; the
  subprocess tests run ``python -W error``).
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _strategies import Boom, Crash, hang_guard, task_count

from antflow import AsyncExecutor, CancelledError, ExecutorShutdownError

pytestmark = pytest.mark.anyio


class Arg:
    """A weak-referenceable argument."""


async def instant(x: Any = None) -> Any:
    await anyio.lowlevel.checkpoint()
    return 1


async def failing(x: Any = None) -> Any:
    await anyio.lowlevel.checkpoint()
    raise Boom("leak")


async def forever(x: Any = None) -> Any:
    await anyio.sleep_forever()


# ==========================================================================
# Tasks and tokens: every path in and out
# ==========================================================================


async def _path_normal(ex: AsyncExecutor, lim: Any) -> None:
    futures = [ex.submit(instant, i, semaphore=lim) for i in range(6)]
    futures.append(ex.submit(failing, semaphore=lim, retries=2, retry_delay=0))
    done, pending = await ex.wait(futures)
    assert len(done) == 7 and not pending
    assert [await f for f in futures[:-1]] == [1] * 6
    assert isinstance(futures[-1].exception(), Boom)


async def _path_block_raises(ex: AsyncExecutor, lim: Any) -> None:
    ex.submit(forever, semaphore=lim)
    ex.submit(forever, semaphore=lim)  # parked behind the first
    ex.submit(forever)
    await anyio.wait_all_tasks_blocked()
    raise Boom("block")


async def _path_outer_cancel(ex: AsyncExecutor, lim: Any) -> None:
    ex.submit(forever)
    ex.submit(forever, semaphore=lim)
    await anyio.wait_all_tasks_blocked()
    raise _CancelMe


async def _path_crash(ex: AsyncExecutor, lim: Any) -> None:
    async def crash() -> None:
        raise Crash("leak")

    ex.submit(forever, semaphore=lim)
    crashed = ex.submit(crash)
    # async with: the crash cancels this wait and comes out of the block;
    # manual: the future ends cancelled and shutdown() re-raises the crash.
    with pytest.raises(CancelledError):
        await crashed


async def _path_shutdown_cancel(ex: AsyncExecutor, lim: Any) -> None:
    for _ in range(5):
        ex.submit(forever, semaphore=lim)
    await anyio.wait_all_tasks_blocked()
    await ex.shutdown(wait=True, cancel_futures=True)


async def _path_shutdown_nowait(ex: AsyncExecutor, lim: Any) -> None:
    futures = [ex.submit(instant, semaphore=lim) for _ in range(5)]
    await ex.shutdown(wait=False)
    with pytest.raises(ExecutorShutdownError):
        ex.submit(instant)
    await ex.shutdown(wait=True)
    assert all(f.done() for f in futures)


async def _path_map_fails(ex: AsyncExecutor, lim: Any) -> None:
    async def item(i: int) -> int:
        if i == 3:
            raise Boom(i)
        await anyio.sleep(0 if i < 3 else 10)
        return i

    with pytest.raises(Boom):
        await ex.map(item, range(20), semaphore=lim)


async def _path_map_timeout(ex: AsyncExecutor, lim: Any) -> None:
    with pytest.raises(TimeoutError):
        await ex.map(forever, range(20), timeout=0.01, semaphore=lim)


async def _path_map_iter_aclose(ex: AsyncExecutor, lim: Any) -> None:
    async with ex.map_iter(instant, range(50), semaphore=lim) as results:
        async for _ in results:
            break


async def _path_map_iter_break(ex: AsyncExecutor, lim: Any) -> None:
    async for _ in ex.map_iter(instant, range(50), semaphore=lim):
        break


async def _path_as_completed_timeout(ex: AsyncExecutor, lim: Any) -> None:
    futures = [ex.submit(forever, semaphore=lim) for _ in range(3)]
    with pytest.raises(TimeoutError):
        async for _ in ex.as_completed(futures, timeout=0.01):
            pass
    for f in futures:
        f.cancel()


async def _path_wait_timeout(ex: AsyncExecutor, lim: Any) -> None:
    futures = [ex.submit(forever, semaphore=lim) for _ in range(3)]
    done, pending = await ex.wait(futures, timeout=0.01, return_when="FIRST_COMPLETED")
    assert not done and len(pending) == 3
    for f in futures:
        f.cancel()


async def _path_result_timeout(ex: AsyncExecutor, lim: Any) -> None:
    f = ex.submit(forever, semaphore=lim)
    with pytest.raises(TimeoutError):
        await f.result(timeout=0.01)
    f.cancel()


async def _path_self_deadlock(ex: AsyncExecutor, lim: Any) -> None:
    async def parent() -> Any:
        return await ex.submit(instant)

    ex.submit(parent)
    await anyio.wait_all_tasks_blocked()
    await ex.shutdown(cancel_futures=True)


class _CancelMe(Exception):
    """Tells the harness to cancel the block from outside."""


PATHS: dict[str, Callable[[AsyncExecutor, Any], Awaitable[None]]] = {
    "normal": _path_normal,
    "block-raises": _path_block_raises,
    "outer-cancel": _path_outer_cancel,
    "task-crash": _path_crash,
    "shutdown-cancel": _path_shutdown_cancel,
    "shutdown-nowait": _path_shutdown_nowait,
    "map-fails": _path_map_fails,
    "map-timeout": _path_map_timeout,
    "map_iter-aclose": _path_map_iter_aclose,
    "map_iter-break": _path_map_iter_break,
    "as_completed-timeout": _path_as_completed_timeout,
    "wait-timeout": _path_wait_timeout,
    "result-timeout": _path_result_timeout,
    "self-deadlock": _path_self_deadlock,
}


@pytest.mark.parametrize("manual", [False, True], ids=["async-with", "manual"])
@pytest.mark.parametrize("path", list(PATHS))
async def test_no_task_or_token_is_left_behind(path: str, manual: bool) -> None:
    """No task started by an executor outlives it, on every path out (normal,
    block exception, outer cancellation, a crashing task, shutdown variants,
    map/map_iter/as_completed/wait/result early exits, a broken
    self-deadlock), in `async with` and manual use; every limiter token comes
    back (docs/semantics.md, "Shutdown"; "Tokens")."""
    lim = anyio.CapacityLimiter(2)
    before = task_count()
    with anyio.fail_after(hang_guard()):
        with anyio.CancelScope() as outer:
            try:
                if manual:
                    ex = AsyncExecutor(max_workers=3)
                    ex.submit(instant)  # starts it
                    try:
                        await PATHS[path](ex, lim)
                    except _CancelMe:
                        outer.cancel()
                    finally:
                        with anyio.CancelScope(shield=True):
                            await ex.shutdown(cancel_futures=True)
                else:
                    async with AsyncExecutor(max_workers=3) as ex:
                        try:
                            await PATHS[path](ex, lim)
                        except _CancelMe:
                            outer.cancel()
                            await anyio.lowlevel.checkpoint()
            except (Boom, Crash):
                pass
    # Leaving map_iter with a bare break lets the iterator's finaliser
    # cancel its tasks; give the loop a turn to finish them.
    await anyio.wait_all_tasks_blocked()
    assert task_count() == before
    assert lim.borrowed_tokens == 0
    stats = ex.statistics()
    assert stats.queued == stats.running == 0


# ==========================================================================
# References
# ==========================================================================


@pytest.mark.parametrize(
    "outcome", ["success", "failure", "cancel-queued", "cancel-running"]
)
async def test_finished_futures_their_arguments_and_the_executor_are_freed(
    outcome: str,
) -> None:
    """A final future drops its function and arguments at once (they die
    while the caller still holds the future); once the caller lets go, the
    future and the executor die too: by reference counting alone, except
    after a failure, whose traceback holds the frames (and so the argument)
    until the cycle collector runs."""
    arg = Arg()
    arg_ref = weakref.ref(arg)
    fn = {"success": instant, "failure": failing}.get(outcome, forever)
    gc.collect()
    gc.disable()
    try:
        async with AsyncExecutor(max_workers=1) as ex:
            blocker = ex.submit(forever) if outcome == "cancel-queued" else None
            fut = ex.submit(fn, arg)
            del arg
            await anyio.wait_all_tasks_blocked()
            if outcome.startswith("cancel"):
                assert fut.cancel()
            if blocker is not None:
                assert not fut.running()
                blocker.cancel()
        assert fut.done()
        if outcome == "failure":
            assert isinstance(fut.exception(), Boom)
        else:
            # The future is still held: its argument is gone already.
            assert arg_ref() is None
        future_ref, executor_ref = weakref.ref(fut), weakref.ref(ex)
        del fut, ex, blocker
        if outcome != "failure":
            assert future_ref() is None
            assert executor_ref() is None
    finally:
        gc.enable()
    gc.collect()
    assert future_ref() is None
    assert executor_ref() is None
    assert arg_ref() is None


async def test_many_executors_leave_nothing_behind() -> None:
    """Running 200 short-lived executors leaves no future, executor or task
    alive afterwards (nothing is cached per executor at module level)."""
    before = task_count()
    refs: list[weakref.ref[Any]] = []
    for i in range(200):
        async with AsyncExecutor(max_workers=2) as ex:
            fut = ex.submit(instant, i)
            assert await fut == 1
        refs += [weakref.ref(ex), weakref.ref(fut)]
    del ex, fut
    gc.collect()
    assert [r for r in refs if r() is not None] == []
    assert task_count() == before


# ==========================================================================
# Leaving map_iter / as_completed early
# ==========================================================================


@pytest.mark.parametrize("variant", ["ordered", "unordered", "progress"])
async def test_breaking_out_of_map_iter_cancels_in_flight_tasks(variant: str) -> None:
    """Leaving the loop early with a bare `break` cancels the items still in
    flight and stops reading the input (docs/semantics.md,
    "map and map_iter", "Leaving early")."""
    started: list[int] = []
    cancelled: list[int] = []
    read: list[int] = []

    async def item(i: int) -> int:
        started.append(i)
        try:
            await anyio.sleep(0 if i == 0 else 1000)
        except anyio.get_cancelled_exc_class():
            cancelled.append(i)
            raise
        return i

    def source() -> Any:
        for i in range(1000):
            read.append(i)
            yield i

    options: dict[str, Any] = {}
    if variant == "unordered":
        options["ordered"] = False
    elif variant == "progress":
        options["progress"] = lambda done, total: None
    before = task_count()
    with anyio.fail_after(hang_guard()):
        async with AsyncExecutor(max_workers=4) as ex:
            async for value in ex.map_iter(item, source(), **options):
                assert value == 0
                break
            await anyio.wait_all_tasks_blocked()
            # Everything that started, except item 0, was cancelled; reading
            # stopped at the window.
            assert sorted(cancelled) == sorted(set(started) - {0})
            assert len(read) <= 2 * ex.max_workers + 1
    assert task_count() == before


async def test_breaking_out_of_as_completed_releases_its_watchers() -> None:
    """as_completed: leaving the loop with a bare `break` leaves nothing
    registered on the futures still pending (100 early exits over the same
    long-running futures hold no memory)."""
    from antflow._wait import AsCompleted

    def watchers() -> int:
        return sum(isinstance(o, AsCompleted) for o in gc.get_objects())

    async with AsyncExecutor(max_workers=4) as ex:
        done = ex.submit(instant)
        await done
        pending = [ex.submit(forever) for _ in range(3)]
        base = watchers()
        for _ in range(100):
            async for _f in ex.as_completed([done, *pending]):
                break
        del _f
        gc.collect()
        alive = watchers() - base
        for f in pending:
            f.cancel()
    assert alive == 0


# ==========================================================================
# Interpreter exit
# ==========================================================================


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_manual_executor_never_shut_down_exits_cleanly(backend: str) -> None:
    """A manual executor whose loop ends without shutdown(): the loop's own
    clean-up cancels it; no warning, no "Task was destroyed", no "never
    awaited", no unraisable exception at exit (run with -W error)."""
    proc = _run_python(
        f"""
        import anyio
        from antflow import AsyncExecutor

        futures = []

        async def main():
            ex = AsyncExecutor(max_workers=2)
            futures.extend(ex.submit(anyio.sleep_forever) for _ in range(5))
            await anyio.wait_all_tasks_blocked()

        anyio.run(main, backend={backend!r})
        assert all(f.cancelled() for f in futures), futures
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert proc.stderr == ""


def test_unretrieved_failure_alive_at_interpreter_exit_is_quiet() -> None:
    """A failed future never retrieved and still referenced when the
    interpreter exits is reported (or skipped) without an exception inside
    __del__."""
    proc = _run_python(
        """
        import anyio
        from antflow import AsyncExecutor

        async def boom():
            raise ValueError("never retrieved")

        async def main():
            async with AsyncExecutor(max_workers=1) as ex:
                return ex.submit(boom)

        kept = anyio.run(main)  # a module global: collected at exit
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert "Exception ignored" not in proc.stderr, proc.stderr
