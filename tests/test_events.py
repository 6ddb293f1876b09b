"""Task events: ``on_event`` on the executor and on a call (antflow.events).

Rules pinned here, from docs/observability.md:

* Each job's events: one ``Queued`` first; ``Waiting`` when it parks at a
  limiter; ``Started`` per attempt, numbered from 1; ``TimedOut`` and
  ``Retrying`` about the attempt that just ran; exactly one final event
  (``Succeeded``, ``Failed``, ``Cancelled``) last, whichever way the job
  ends: return, raise, ``cancel()``, a map deadline, an early exit of
  map_iter, ``shutdown(cancel_futures=True)``, an error in the block, outer
  cancellation ("Order").
* Times are the loop's clock, durations differences of it ("What an event
  says"); exact here in virtual time.
* Sync hooks run at once; ``Queued`` in the submitter's context, ``Started``
  in the job's own; a hook that raises is logged and changes nothing else
  ("Hooks").
* Async hooks are awaited one at a time, in order, by a task of the
  executor: the ``async with`` exit waits for them; when the executor is
  cancelled they still receive every event, cut short at their first await
  ("Async hooks").
* Without a hook nothing of this is imported or run ("Cost").

The model test (properties/test_model.py) checks the order rules at random,
with every option and every ending.
"""

from __future__ import annotations

import contextvars
import logging
import subprocess
import sys
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _strategies import Boom, event_problems, hang_guard, us

from antflow import AsyncExecutor, CancelledError, RateLimiter
from antflow.events import (
    Cancelled,
    Failed,
    Queued,
    Retrying,
    Started,
    Succeeded,
    TaskEvent,
    TimedOut,
    Waiting,
)

pytestmark = pytest.mark.anyio


class Log:
    """A sync hook that keeps every event."""

    def __init__(self) -> None:
        self.events: list[TaskEvent] = []

    def __call__(self, event: TaskEvent) -> None:
        self.events.append(event)

    def of(self, job: int) -> list[TaskEvent]:
        return [e for e in self.events if e.job == job]

    def kinds(self, job: int) -> list[str]:
        return [type(e).__name__ for e in self.of(job)]

    def check(self) -> None:
        assert event_problems(self.events) == []


async def quick(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return x


async def fail(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    raise Boom(x)


async def forever() -> None:
    await anyio.sleep_forever()


# -- each ending -------------------------------------------------------------------


async def test_a_job_that_returns() -> None:
    log = Log()
    async with AsyncExecutor(2, on_event=log) as ex:
        assert await ex.submit(quick, 7) == 7
    assert log.kinds(1) == ["Queued", "Started", "Succeeded"]
    queued, started, done = log.of(1)
    assert isinstance(queued, Queued) and queued.limiters == ()
    assert isinstance(started, Started) and started.attempt == 1
    assert isinstance(done, Succeeded) and done.attempts == 1
    assert queued.function == "quick" and queued.position is None
    log.check()


async def test_a_job_that_raises_carries_its_error() -> None:
    log = Log()
    async with AsyncExecutor(2, on_event=log) as ex:
        future = ex.submit(fail, 1)
        with pytest.raises(Boom):
            await future
    assert log.kinds(1) == ["Queued", "Started", "Failed"]
    final = log.of(1)[-1]
    assert isinstance(final, Failed) and final.error is future.exception()
    log.check()


async def test_retries_then_failure() -> None:
    log = Log()
    async with AsyncExecutor(2, on_event=log) as ex:
        with pytest.raises(Boom):
            await ex.submit(fail, 1, retries=2, retry_delay=0.001)
    assert log.kinds(1) == [
        "Queued",
        *["Started", "Retrying"] * 2,
        "Started",
        "Failed",
    ]
    retries = [e for e in log.of(1) if isinstance(e, Retrying)]
    assert [(r.attempt, r.delay) for r in retries] == [(1, 0.001), (2, 0.002)]
    assert all(isinstance(r.error, Boom) for r in retries)
    log.check()


async def test_cancel_before_it_starts() -> None:
    log = Log()
    async with AsyncExecutor(1, on_event=log) as ex:
        blocker = ex.submit(forever)
        queued = ex.submit(quick, 1)
        await anyio.wait_all_tasks_blocked()
        assert queued.cancel()
        blocker.cancel()
    assert log.kinds(2) == ["Queued", "Cancelled"]
    final = log.of(2)[-1]
    assert isinstance(final, Cancelled) and final.attempts == 0
    assert final.run_time == 0
    assert log.kinds(1) == ["Queued", "Started", "Cancelled"]
    log.check()


async def test_cancel_while_it_backs_off() -> None:
    log = Log()
    async with AsyncExecutor(1, on_event=log) as ex:
        future = ex.submit(fail, 1, retries=3, retry_delay=1000)
        with anyio.fail_after(hang_guard()):
            while "Retrying" not in log.kinds(1):
                await anyio.lowlevel.checkpoint()
        future.cancel()
    assert log.kinds(1) == ["Queued", "Started", "Retrying", "Cancelled"]
    log.check()


async def test_waiting_for_a_semaphore_and_cancelled_while_parked() -> None:
    log = Log()
    limiter = anyio.CapacityLimiter(1)
    async with AsyncExecutor(3, on_event=log) as ex:
        first = ex.submit(forever, semaphore=limiter)
        second = ex.submit(quick, 2, semaphore=limiter)
        await anyio.wait_all_tasks_blocked()
        second.cancel()
        first.cancel()
    assert log.kinds(2) == ["Queued", "Waiting", "Cancelled"]
    queued, waiting, _ = log.of(2)
    assert isinstance(queued, Queued) and queued.limiters == (limiter,)
    assert isinstance(waiting, Waiting) and waiting.limiter is limiter
    log.check()


async def test_waiting_for_a_rate_limit_names_the_rate_limiter() -> None:
    log = Log()
    rate = RateLimiter(1, per=1000, burst=1)
    async with AsyncExecutor(2, rate_limit=rate, on_event=log) as ex:
        a, b = ex.submit(quick, 1), ex.submit(quick, 2)
        assert await a == 1
        await anyio.wait_all_tasks_blocked()
        b.cancel()
    assert log.kinds(2) == ["Queued", "Waiting", "Cancelled"]
    waiting = log.of(2)[1]
    assert isinstance(waiting, Waiting) and waiting.limiter is rate
    assert isinstance(log.of(2)[0], Queued) and log.of(2)[0].limiters == (rate,)
    log.check()


@pytest.mark.parametrize("ending", ["deadline", "failure", "break", "aclose"])
async def test_map_items_end_with_one_final_event_each(ending: str) -> None:
    log = Log()

    async def item(x: int) -> int:
        if x == 3:
            if ending == "failure":
                raise Boom(x)
            await anyio.sleep_forever()
        await anyio.lowlevel.checkpoint()
        return x

    async with AsyncExecutor(4, on_event=log) as ex:
        if ending in ("deadline", "failure"):
            with pytest.raises(TimeoutError if ending == "deadline" else Boom):
                await ex.map(
                    item, range(20), timeout=0.05 if ending == "deadline" else None
                )
        else:
            results = ex.map_iter(item, range(20))
            async for x in results:
                if x == 2:
                    break
            if ending == "aclose":
                await results.aclose()
            else:
                del results  # leaving the loop drops it: __del__ cancels
    finals = [e for e in log.events if isinstance(e, Succeeded | Failed | Cancelled)]
    queued = [e for e in log.events if isinstance(e, Queued)]
    assert len(finals) == len(queued) >= 4
    assert sorted(e.position for e in queued) == list(range(len(queued)))
    assert any(isinstance(e, Cancelled) for e in finals)
    log.check()


@pytest.mark.parametrize("ending", ["shutdown", "error", "outer"])
async def test_executor_endings_give_every_job_a_final_event(ending: str) -> None:
    log = Log()
    limiter = anyio.Semaphore(1)

    async def run() -> None:
        async with AsyncExecutor(2, on_event=log) as ex:
            ex.submit(forever)
            ex.submit(fail, 1, retries=5, retry_delay=1000)
            ex.submit(forever, semaphore=limiter)
            ex.submit(quick, 4, semaphore=limiter)  # parks
            ex.submit(quick, 5)  # queued for a worker
            await anyio.wait_all_tasks_blocked()
            if ending == "shutdown":
                await ex.shutdown(cancel_futures=True)
            elif ending == "error":
                raise Boom("block")
            else:
                scope.cancel()
                await anyio.sleep_forever()

    with anyio.CancelScope() as scope:
        if ending == "error":
            with pytest.raises(Boom):
                await run()
        else:
            await run()
    assert len(log.events) >= 5 * 2
    assert {e.job for e in log.events} == {1, 2, 3, 4, 5}
    for job in range(1, 6):
        assert log.kinds(job)[-1] == "Cancelled", (job, log.kinds(job))
    log.check()


# -- timing, in virtual time ------------------------------------------------------


@pytest.mark.virtual_time
async def test_times_and_durations_are_the_loop_clock() -> None:
    log = Log()

    async def slow(x: int) -> int:
        await anyio.sleep(2)
        if x < 2:
            raise Boom(x)
        return x

    limiter = anyio.CapacityLimiter(1)
    async with AsyncExecutor(2, on_event=log) as ex:
        start = anyio.current_time()
        ex.submit(slow, 1, semaphore=limiter, retries=1, retry_delay=3)
        ex.submit(slow, 2, semaphore=limiter)
    kinds1 = log.kinds(1)
    assert kinds1 == ["Queued", "Started", "Retrying", "Started", "Failed"]
    events1 = log.of(1)
    retry = events1[2]
    assert isinstance(retry, Retrying)
    assert (us(retry.duration), us(retry.delay)) == (2_000_000, 3_000_000)
    second = events1[3]
    assert isinstance(second, Started) and second.attempt == 2
    assert us(second.time - start) == 5_000_000
    assert us(second.waited) == 0  # the back-off ended at 5 s; token free by then
    final = events1[4]
    assert isinstance(final, Failed)
    assert (us(final.duration), us(final.run_time)) == (7_000_000, 7_000_000)
    job2 = log.of(2)
    started2 = job2[2]
    assert isinstance(started2, Started)
    assert us(started2.time - start) == 2_000_000
    assert (us(started2.waited), us(started2.limiter_wait)) == (2_000_000, 2_000_000)
    done2 = job2[-1]
    assert isinstance(done2, Succeeded)
    assert (us(done2.duration), us(done2.run_time)) == (4_000_000, 2_000_000)
    log.check()


@pytest.mark.virtual_time
async def test_a_task_timeout_is_timed_out_then_retried() -> None:
    log = Log()
    async with AsyncExecutor(1, on_event=log) as ex:
        with pytest.raises(TimeoutError):
            await ex.submit(forever, task_timeout=2, retries=1, retry_delay=1)
    assert log.kinds(1) == [
        "Queued",
        "Started",
        "TimedOut",
        "Retrying",
        "Started",
        "TimedOut",
        "Failed",
    ]
    timed_out = [e for e in log.of(1) if isinstance(e, TimedOut)]
    assert [(e.attempt, e.timeout, us(e.duration)) for e in timed_out] == [
        (1, 2, 2_000_000),
        (2, 2, 2_000_000),
    ]
    log.check()


async def test_a_timeout_error_of_the_task_itself_is_not_timed_out() -> None:
    log = Log()

    async def own_timeout() -> None:
        await anyio.lowlevel.checkpoint()
        raise TimeoutError("mine")

    async with AsyncExecutor(1, on_event=log) as ex:
        with pytest.raises(TimeoutError, match="mine"):
            await ex.submit(own_timeout, task_timeout=100)
    assert log.kinds(1) == ["Queued", "Started", "Failed"]


# -- hooks -----------------------------------------------------------------------------


async def test_a_call_hook_hears_its_own_jobs_after_the_executor_hook() -> None:
    heard: list[tuple[str, int, str]] = []
    async with AsyncExecutor(
        2, on_event=lambda e: heard.append(("executor", e.job, type(e).__name__))
    ) as ex:
        await ex.submit(quick, 1)
        await ex.submit(
            quick, 2, on_event=lambda e: heard.append(("call", e.job, type(e).__name__))
        )
        assert await ex.map(
            quick, [3], on_event=[lambda e: heard.append(("map", e.job, ""))]
        ) == [3]
    assert [h for h in heard if h[1] == 1] == [
        ("executor", 1, "Queued"),
        ("executor", 1, "Started"),
        ("executor", 1, "Succeeded"),
    ]
    assert [h for h in heard if h[1] == 2] == [
        ("executor", 2, "Queued"),
        ("call", 2, "Queued"),
        ("executor", 2, "Started"),
        ("call", 2, "Started"),
        ("executor", 2, "Succeeded"),
        ("call", 2, "Succeeded"),
    ]
    assert [h[0] for h in heard if h[1] == 3] == ["executor", "map"] * 3


async def test_a_call_hook_without_an_executor_hook() -> None:
    log = Log()
    async with AsyncExecutor(2) as ex:
        await ex.submit(quick, 1)
        await ex.submit(quick, 2, on_event=log)
        got = [x async for x in ex.map_iter(quick, [3, 4], on_event=log)]
    assert got == [3, 4]
    assert {e.job for e in log.events} == {2, 3, 4}
    assert sorted({e.position for e in log.events if e.job > 2}) == [0, 1]
    log.check()


@pytest.mark.parametrize("bad", [3, "hook", [], [print, 3], (None,)], ids=repr)
async def test_a_bad_hook_is_a_type_error_naming_on_event(bad: Any) -> None:
    with pytest.raises(TypeError, match="on_event"):
        AsyncExecutor(2, on_event=bad)
    async with AsyncExecutor(2) as ex:
        with pytest.raises(TypeError, match="on_event"):
            ex.submit(quick, 1, on_event=bad)
        with pytest.raises(TypeError, match="on_event"):
            ex.map_iter(quick, [1], on_event=bad)
        assert ex.statistics().submitted == 0


async def test_a_hook_that_raises_is_logged_and_changes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Log()

    def broken(event: TaskEvent) -> None:
        raise Boom(type(event).__name__)

    async with AsyncExecutor(2, on_event=[broken, log]) as ex:
        assert await ex.submit(quick, 1) == 1
        with pytest.raises(Boom, match="task"):
            await ex.submit(fail, "task")  # type: ignore[arg-type]
        assert await ex.map(quick, [1, 2]) == [1, 2]
    assert log.kinds(1) == ["Queued", "Started", "Succeeded"]
    messages = [r for r in caplog.records if r.name == "antflow"]
    assert len(messages) == len(log.events)
    assert all("on_event hook" in r.getMessage() for r in messages)
    assert all(r.exc_info and isinstance(r.exc_info[1], Boom) for r in messages)
    stats = ex.statistics()
    assert (stats.succeeded, stats.failed) == (3, 1)


async def test_statistics_agree_inside_the_final_hook() -> None:
    seen: list[int] = []
    ex = AsyncExecutor(2)

    def hook(event: TaskEvent) -> None:
        if isinstance(event, Succeeded):
            seen.append(ex.statistics().succeeded)

    async with ex:
        for x in range(3):
            await ex.submit(quick, x, on_event=hook)
    assert seen == [1, 2, 3]


async def test_queued_runs_in_the_submitter_context_started_in_the_jobs() -> None:
    request = contextvars.ContextVar("request", default="none")
    marked = contextvars.ContextVar("marked", default="")
    heard: list[tuple[str, str]] = []

    def hook(event: TaskEvent) -> None:
        heard.append((type(event).__name__, request.get()))
        if isinstance(event, Started):
            marked.set(f"attempt {event.attempt}")

    async def task() -> str:
        await anyio.lowlevel.checkpoint()
        return marked.get()

    async with AsyncExecutor(2, on_event=hook) as ex:
        request.set("r1")
        assert await ex.submit(task) == "attempt 1"
        request.set("r2")
        assert await ex.map(lambda _: task(), [0]) == ["attempt 1"]
    assert marked.get() == ""  # never leaks to the caller
    assert ("Queued", "r1") in heard and ("Started", "r1") in heard
    assert ("Queued", "r2") in heard and ("Started", "r2") in heard


async def test_manual_use_hears_every_event() -> None:
    log = Log()
    ex = AsyncExecutor(2, on_event=log)
    futures = [ex.submit(quick, x) for x in range(3)]
    futures[2].cancel()
    assert [await f for f in futures[:2]] == [0, 1]
    await ex.shutdown()
    assert [log.kinds(j)[-1] for j in (1, 2, 3)] == [
        "Succeeded",
        "Succeeded",
        "Cancelled",
    ]
    log.check()


# -- async hooks ---------------------------------------------------------------------------


async def test_an_async_hook_gets_every_event_in_order_before_the_exit() -> None:
    log = Log()
    received: list[TaskEvent] = []
    running = 0

    async def hook(event: TaskEvent) -> None:
        nonlocal running
        running += 1
        assert running == 1  # one at a time
        await anyio.sleep(0.001)
        received.append(event)
        running -= 1

    async with AsyncExecutor(3, on_event=[log, hook]) as ex:
        await ex.map(quick, range(10))
        with pytest.raises(Boom):
            await ex.submit(fail, 1, retries=1, retry_delay=0)
        # The job does not wait for the hook.
        assert len(received) < len(log.events)
    assert received == log.events
    assert len(received) == 10 * 3 + 5


async def test_an_async_hook_in_manual_use_is_awaited_before_shutdown_returns() -> None:
    received: list[str] = []

    async def hook(event: TaskEvent) -> None:
        await anyio.sleep(0.001)
        received.append(type(event).__name__)

    ex = AsyncExecutor(2, on_event=hook)
    assert await ex.submit(quick, 1) == 1
    await ex.shutdown()
    assert received == ["Queued", "Started", "Succeeded"]


@pytest.mark.parametrize("ending", ["error", "outer", "shutdown"])
async def test_an_async_hook_still_hears_every_final_event_when_cancelled(
    ending: str,
) -> None:
    received: list[TaskEvent] = []
    after_await: list[TaskEvent] = []

    async def hook(event: TaskEvent) -> None:
        received.append(event)
        await anyio.sleep(0)
        after_await.append(event)

    async def run() -> None:
        async with AsyncExecutor(2, on_event=hook) as ex:
            for _ in range(4):
                ex.submit(forever)
            await anyio.wait_all_tasks_blocked()
            if ending == "error":
                raise Boom("block")
            if ending == "outer":
                scope.cancel()
                await anyio.sleep_forever()
            await ex.shutdown(cancel_futures=True)

    with anyio.CancelScope() as scope:
        if ending == "error":
            with pytest.raises(Boom):
                await run()
        else:
            await run()
    assert event_problems(received) == []
    assert sorted(type(e).__name__ for e in received).count("Cancelled") == 4
    if ending == "shutdown":
        assert after_await == received  # nothing was cancelled but the jobs


async def test_an_async_hook_that_raises_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def hook(event: TaskEvent) -> None:
        await anyio.lowlevel.checkpoint()
        raise Boom("hook")

    async with AsyncExecutor(2, on_event=hook) as ex:
        assert await ex.submit(quick, 1) == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "antflow"]
    assert messages == ["async on_event hook raised"] * 3


# -- logs --------------------------------------------------------------------------------------


@pytest.mark.virtual_time
async def test_retries_and_timeouts_are_logged_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="antflow")

    async def flaky(x: int) -> int:
        if flaky.calls == 0:  # type: ignore[attr-defined]
            flaky.calls += 1  # type: ignore[attr-defined]
            await anyio.sleep_forever()
        flaky.calls += 1  # type: ignore[attr-defined]
        if flaky.calls < 3:  # type: ignore[attr-defined]
            raise Boom(x)
        return x

    flaky.calls = 0  # type: ignore[attr-defined]
    async with AsyncExecutor(1) as ex:
        assert (
            await ex.submit(flaky, 5, task_timeout=1, retries=3, retry_delay=0.5) == 5
        )
    records = [r for r in caplog.records if r.name == "antflow"]
    assert [r.levelno for r in records] == [logging.DEBUG] * 3
    assert [r.getMessage() for r in records] == [
        "test_retries_and_timeouts_are_logged_at_debug.<locals>.flaky: attempt 1 of 4 "
        "timed out (task_timeout=1 s)",
        "test_retries_and_timeouts_are_logged_at_debug.<locals>.flaky: attempt 1 of 4 "
        "failed with TimeoutError('attempt took longer than task_timeout=1'); "
        "retrying in 0.5 s",
        "test_retries_and_timeouts_are_logged_at_debug.<locals>.flaky: attempt 2 of 4 "
        "failed with Boom(5); retrying in 1 s",
    ]


async def test_nothing_is_logged_above_debug_for_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="antflow")
    async with AsyncExecutor(2) as ex:
        future = ex.submit(fail, 1, retries=2, retry_delay=0, task_timeout=10)
        with pytest.raises(Boom):
            await future
    levels = {r.levelno for r in caplog.records if r.name == "antflow"}
    assert levels == {logging.DEBUG}
    assert logging.getLogger("antflow").handlers == []


# -- cost ----------------------------------------------------------------------------------------


def test_without_a_hook_no_event_code_is_imported() -> None:
    code = (
        "import anyio, sys\n"
        "from antflow import AsyncExecutor\n"
        "async def one(x):\n"
        "    return x\n"
        "async def main():\n"
        "    async with AsyncExecutor(2) as ex:\n"
        "        await ex.submit(one, 1)\n"
        "        await ex.submit(one, 1, retries=1, task_timeout=5)\n"
        "        await ex.map(one, range(3), semaphore=anyio.Semaphore(1))\n"
        "anyio.run(main)\n"
        "print(sorted(m for m in sys.modules if 'events' in m and 'antflow' in m))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


async def test_without_a_hook_a_plain_call_keeps_the_plain_path() -> None:
    async with AsyncExecutor(2) as ex:
        assert ex._plain_plan is None
        assert await ex.submit(quick, 1) == 1
    async with AsyncExecutor(2, on_event=Log()) as ex:
        assert ex._plain_plan is not None


async def test_cancelled_error_is_unchanged_by_hooks() -> None:
    async with AsyncExecutor(1, on_event=Log()) as ex:
        blocker = ex.submit(forever)
        future = ex.submit(quick, 1)
        future.cancel()
        with pytest.raises(CancelledError):
            await future
        blocker.cancel()
