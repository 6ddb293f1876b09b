"""A job's attempts (``antflow/_attempts.py``), here their ``task_timeout``:
each attempt is cut short at its own deadline and at no other time, whatever
else runs in its worker, and sees that deadline as a cancel scope's
(docs/semantics.md, "Timeouts")."""

from __future__ import annotations

import math
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _strategies import swallow_cancellation

from antflow import AsyncExecutor, CancelledError
from antflow.events import TimedOut

pytestmark = pytest.mark.anyio


async def quick(value: Any = None) -> Any:
    await anyio.lowlevel.checkpoint()
    return value


class RemoteLimiter:
    """A ``semaphore=`` antflow enters around the call (no fast path)."""

    async def __aenter__(self) -> None:
        await anyio.lowlevel.checkpoint()

    async def __aexit__(self, *exc: object) -> None:
        await anyio.lowlevel.checkpoint()


async def nap(seconds: float, value: Any) -> Any:
    await anyio.sleep(seconds)
    return value


@pytest.mark.virtual_time
class TestEachAttemptAtItsOwnDeadline:
    async def test_a_shorter_timeout_submitted_later_fires_first(self) -> None:
        ended: dict[str, float] = {}

        async def hang(name: str) -> None:
            try:
                await anyio.sleep_forever()
            finally:
                ended[name] = anyio.current_time()

        async with AsyncExecutor(max_workers=4) as ex:
            long = ex.submit(hang, "long", task_timeout=5.0)
            await anyio.sleep(0.5)
            short = ex.submit(hang, "short", task_timeout=1.0)
            for future in (long, short):
                with pytest.raises(TimeoutError):
                    await future
        assert ended == {"short": 1.5, "long": 5.0}

    async def test_a_deadline_ends_with_its_attempt(self) -> None:
        """The next job in the same worker runs past the deadline of the
        timed job before it, and so does the next attempt of a retried one."""
        attempts: list[float] = []

        async def second_attempt_is_slow() -> str:
            attempts.append(anyio.current_time())
            await anyio.sleep(0.5 if len(attempts) == 1 else 1.5)
            if len(attempts) == 1:
                raise ValueError("first attempt fails")
            return "done"

        async with AsyncExecutor(max_workers=1) as ex:
            # One worker runs both; the second runs past the first's
            # deadline (t=1) without one of its own.
            first = ex.submit(anyio.sleep, 0.5, task_timeout=1.0)
            second = ex.submit(anyio.sleep, 3.0)
            assert await first is None
            assert await second is None
            assert anyio.current_time() == 3.5
            # Each attempt has a deadline of its own: 2 s from its start.
            retried = ex.submit(
                second_attempt_is_slow, task_timeout=2.0, retries=1, retry_delay=0.25
            )
            assert await retried == "done"
        assert attempts == [3.5, 4.25]

    async def test_a_call_that_swallows_its_timeout_finishes_with_its_value(
        self,
    ) -> None:
        """As under a cancel scope of its own; and the worker's next job,
        after the deadline, is not cancelled by it."""

        async with AsyncExecutor(max_workers=1) as ex:
            # One worker runs all three, one after the other.
            futures = [
                ex.submit(swallow_cancellation, task_timeout=1.0),
                ex.submit(nap, 2.0, "next"),
                ex.submit(nap, 2.0, "timed", task_timeout=3.0),
            ]
            assert [await f for f in futures] == ["swallowed", "next", "timed"]
            assert anyio.current_time() == 5.0

    @pytest.mark.parametrize("limiter", [False, True])
    async def test_the_call_sees_its_deadline(self, limiter: bool) -> None:
        """As inside ``anyio.fail_after``: code that hands the time left on
        (a socket's timeout, an RPC deadline) gets it."""

        async def time_left() -> float:
            return anyio.current_effective_deadline() - anyio.current_time()

        options: dict[str, Any] = {"task_timeout": 5.0}
        if limiter:
            options["semaphore"] = RemoteLimiter()
        async with AsyncExecutor(max_workers=1) as ex:
            assert await ex.submit(time_left, **options) == 5.0
            # Gone after the attempt: the next job has no deadline.
            assert await ex.submit(time_left) == math.inf

    @pytest.mark.parametrize("retries", [0, 2])
    async def test_a_cancel_while_the_limiter_exits_after_a_timeout_wins(
        self, retries: int
    ) -> None:
        """The attempt timed out, but the job is not final while the limiter
        entered around the call still exits: a cancel() then returns True,
        and the job ends cancelled, not with the timeout, nor retried."""

        class SlowExit:
            async def __aenter__(self) -> None:
                pass

            async def __aexit__(self, *exc: object) -> None:
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(1.0)  # releasing a lock on a server

        async with AsyncExecutor(max_workers=1) as ex:
            future = ex.submit(
                anyio.sleep_forever,
                semaphore=SlowExit(),
                task_timeout=1.0,
                retries=retries,
                retry_delay=0.25,
            )
            await anyio.sleep(1.5)  # timed out at 1; the limiter exits till 2
            assert not future.done()
            assert future.cancel()
            with pytest.raises(CancelledError):
                await future
            assert anyio.current_time() == 2.0

    async def test_the_calls_own_deadline_at_the_same_instant_yields_to_it(
        self,
    ) -> None:
        """A cancellation belongs to the outermost scope cancelled, which is
        the attempt's; so its ``TimeoutError`` is the one raised."""

        async def own_deadline() -> None:
            with anyio.fail_after(2.0):
                await anyio.sleep_forever()

        async with AsyncExecutor(max_workers=1) as ex:
            with pytest.raises(TimeoutError, match=r"task_timeout=2\.0"):
                await ex.submit(own_deadline, task_timeout=2.0)
            # A shorter one of its own is the call's own error.
            with pytest.raises(TimeoutError) as raised:
                await ex.submit(own_deadline, task_timeout=3.0)
            assert "task_timeout" not in str(raised.value)

    async def test_the_timed_out_event_says_when(self) -> None:
        events: list[Any] = []
        async with AsyncExecutor(max_workers=2, on_event=events.append) as ex:
            with pytest.raises(TimeoutError):
                await ex.submit(anyio.sleep_forever, task_timeout=2.0)
        (timed_out,) = (e for e in events if isinstance(e, TimedOut))
        assert timed_out.duration == 2.0

    async def test_shutdown_waits_for_a_running_attempt_to_hit_its_deadline(
        self,
    ) -> None:
        """Closing the executor stops new work, not the deadlines of what
        still runs: ``shutdown(wait=True)`` returns when it timed out."""
        async with AsyncExecutor(max_workers=2) as ex:
            future = ex.submit(anyio.sleep_forever, task_timeout=3.0)
            await anyio.sleep(1.0)
            with anyio.fail_after(10.0):
                await ex.shutdown(wait=True)
            assert anyio.current_time() == 3.0
            assert isinstance(future.exception(), TimeoutError)


@pytest.mark.real_clock
async def test_no_task_is_left_once_timed_work_is_done() -> None:
    """The watcher of far-off deadlines ends with the work, not at them."""
    before = len(anyio.get_running_tasks())
    async with AsyncExecutor(max_workers=4) as ex:
        assert await ex.map(quick, range(20), task_timeout=3600.0) == list(range(20))
        await anyio.wait_all_tasks_blocked()
        assert len(anyio.get_running_tasks()) == before
        # And it comes back for the next timed work.
        assert await ex.submit(quick, 1, task_timeout=3600.0) == 1
        await anyio.wait_all_tasks_blocked()
        assert len(anyio.get_running_tasks()) == before
