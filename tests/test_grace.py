"""shutdown(grace=): wait up to a grace period, then cancel what is left
(docs/guide.md, "shutdown's options"; docs/semantics.md, "Shutdown").

All in virtual time, so the moments are exact. Pinned here:

* work that ends within the grace ends on its own; at the grace's end the
  rest (queued and running) is cancelled, ``finally`` blocks run, and the
  call returns then;
* ``cancel_futures=True`` with a grace cancels queued work at once and
  gives the running work the grace; ``grace=0`` is ``cancel_futures=True``;
* ``wait=False``: the grace runs in the background (the ``async with`` exit
  waits for it); a later call may shorten it, never extend it;
* cancelling the caller of ``shutdown`` ends its wait only; in ``async
  with``, cancellation reaching the block cancels everything at once;
* from inside a task: ``wait=False`` with a grace works (the task itself is
  cancelled at its end), ``wait=True`` is refused as before;
* manual use (no ``async with``), and the bad values of ``grace``.
"""

from __future__ import annotations

import anyio
import pytest

from antflow import AsyncExecutor

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


class Work:
    """Jobs that sleep a given time and note how they ended, and when."""

    def __init__(self) -> None:
        self.ended: dict[str, tuple[str, float]] = {}

    async def job(self, name: str, seconds: float) -> str:
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            self.ended[name] = ("cancelled", anyio.current_time())
            raise
        self.ended[name] = ("done", anyio.current_time())
        return name


async def test_work_within_the_grace_finishes_and_the_rest_is_cancelled() -> None:
    work = Work()
    async with AsyncExecutor(max_workers=2) as ex:
        start = anyio.current_time()
        short = ex.submit(work.job, "short", 1)
        long = ex.submit(work.job, "long", 100)
        queued = ex.submit(work.job, "queued", 1)  # starts at 1 s, ends at 2 s
        late = ex.submit(work.job, "late", 100)  # starts at 2 s, cut at 5 s
        await ex.shutdown(grace=5)
        assert anyio.current_time() - start == 5
    assert await short == "short" and await queued == "queued"
    assert long.cancelled() and late.cancelled()
    assert work.ended == {
        "short": ("done", start + 1),
        "queued": ("done", start + 2),
        "long": ("cancelled", start + 5),
        "late": ("cancelled", start + 5),
    }


async def test_nothing_left_returns_at_once() -> None:
    async with AsyncExecutor() as ex:
        start = anyio.current_time()
        future = ex.submit(anyio.sleep, 1)
        await ex.shutdown(grace=100)
        assert anyio.current_time() - start == 1
        assert future.done() and not future.cancelled()


async def test_cancel_futures_with_a_grace_cancels_queued_work_at_once() -> None:
    work = Work()
    async with AsyncExecutor(max_workers=1) as ex:
        start = anyio.current_time()
        running = ex.submit(work.job, "running", 3)
        queued = ex.submit(work.job, "queued", 1)
        await anyio.sleep(0)
        await ex.shutdown(cancel_futures=True, grace=10)
        assert anyio.current_time() - start == 3
    assert await running == "running"
    assert queued.cancelled() and "queued" not in work.ended


@pytest.mark.parametrize("how", ["grace=0", "cancel_futures"])
async def test_grace_zero_is_cancel_futures(how: str) -> None:
    work = Work()
    async with AsyncExecutor(max_workers=1) as ex:
        start = anyio.current_time()
        running = ex.submit(work.job, "running", 3)
        queued = ex.submit(work.job, "queued", 1)
        await anyio.sleep(0)
        if how == "grace=0":
            await ex.shutdown(grace=0)
        else:
            await ex.shutdown(cancel_futures=True)
        assert anyio.current_time() == start
    assert running.cancelled() and queued.cancelled()


async def test_without_waiting_the_grace_runs_in_the_background() -> None:
    work = Work()
    async with AsyncExecutor(max_workers=2) as ex:
        start = anyio.current_time()
        long = ex.submit(work.job, "long", 100)
        await ex.shutdown(wait=False, grace=4)
        assert anyio.current_time() == start
    # The async with exit waited for the grace period's end.
    assert anyio.current_time() - start == 4
    assert long.cancelled() and work.ended["long"] == ("cancelled", start + 4)


async def test_a_later_call_shortens_the_grace_never_extends_it() -> None:
    async with AsyncExecutor(max_workers=2) as ex:
        start = anyio.current_time()
        first = ex.submit(anyio.sleep, 100)
        await ex.shutdown(wait=False, grace=10)
        await ex.shutdown(wait=False, grace=50)  # no longer
        await ex.shutdown(grace=3)  # shorter: wins
        assert anyio.current_time() - start == 3
    assert first.cancelled()
    async with AsyncExecutor(max_workers=2) as ex:
        start = anyio.current_time()
        second = ex.submit(anyio.sleep, 100)
        await ex.shutdown(wait=False, grace=2)
        await ex.shutdown()  # no grace given: the one given stands
        assert anyio.current_time() - start == 2
    assert second.cancelled()


async def test_cancelling_the_waiting_caller_leaves_the_grace_as_it_was() -> None:
    """Waiting never cancels (docs/semantics.md, "Cancellation"): the caller
    stops waiting; the work has its grace period all the same."""
    work = Work()
    async with AsyncExecutor(max_workers=2) as ex:
        start = anyio.current_time()
        ok = ex.submit(work.job, "ok", 3)
        long = ex.submit(work.job, "long", 100)
        with anyio.move_on_after(1):
            await ex.shutdown(grace=6)
        assert anyio.current_time() - start == 1
        assert not long.done()
    assert anyio.current_time() - start == 6
    assert await ok == "ok" and long.cancelled()


async def test_cancellation_reaching_the_block_cancels_everything_at_once() -> None:
    """As for any cancelled async with block: nothing waits out the grace."""
    work = Work()
    with anyio.move_on_after(2):
        async with AsyncExecutor(max_workers=2) as ex:
            start = anyio.current_time()
            long = ex.submit(work.job, "long", 100)
            await ex.shutdown(grace=50)
    assert anyio.current_time() - start == 2
    assert long.cancelled() and work.ended["long"] == ("cancelled", start + 2)


async def test_shutdown_with_a_grace_from_inside_a_task() -> None:
    """wait=False from one of its own tasks: the task is cut at the grace's
    end like the others; wait=True is refused, as without a grace."""
    work = Work()
    async with AsyncExecutor(max_workers=2) as ex:
        start = anyio.current_time()

        async def stopper() -> None:
            with pytest.raises(RuntimeError, match="wait for itself"):
                await ex.shutdown(grace=1)
            await ex.shutdown(wait=False, grace=2)
            await work.job("stopper", 100)

        inside = ex.submit(stopper)
        other = ex.submit(work.job, "other", 100)
    assert anyio.current_time() - start == 2
    assert inside.cancelled() and other.cancelled()
    assert work.ended["stopper"] == ("cancelled", start + 2)


async def test_manual_use() -> None:
    work = Work()
    ex = AsyncExecutor(max_workers=1)
    start = anyio.current_time()
    long = ex.submit(work.job, "long", 100)  # starts the executor
    queued = ex.submit(work.job, "queued", 1)
    await ex.shutdown(grace=3)  # before the runner has even attached
    assert anyio.current_time() - start == 3
    assert long.cancelled() and queued.cancelled()
    assert "queued" not in work.ended


async def test_retries_and_limiters_are_cut_at_the_grace() -> None:
    """A job backing off or parked at its limiter is cancelled at the end of
    the grace like a running one; every token goes back."""
    limiter = anyio.CapacityLimiter(1)

    async def failing() -> None:
        await anyio.sleep(1)
        raise ValueError("again")

    async with AsyncExecutor(max_workers=3) as ex:
        start = anyio.current_time()
        retrying = ex.submit(failing, retries=10, retry_delay=1, semaphore=limiter)
        parked = ex.submit(anyio.sleep, 1, semaphore=limiter)
        await ex.shutdown(grace=2.5)
        assert anyio.current_time() - start == 2.5
    assert retrying.cancelled()
    assert parked.done()
    assert limiter.borrowed_tokens == 0


async def test_bad_grace_is_refused_before_anything_happens() -> None:
    async with AsyncExecutor() as ex:
        with pytest.raises(ValueError, match="grace"):
            await ex.shutdown(grace=-1)
        with pytest.raises(TypeError, match="grace"):
            await ex.shutdown(grace="5")  # type: ignore[arg-type]
        assert ex.submit(anyio.sleep, 0) is not None  # still open
