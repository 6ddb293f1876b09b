"""AsyncExecutor.statistics().

Rules pinned here, from docs/guide.md, "Statistics", and the
``ExecutorStatistics`` docstring (docs/api.md, "Limits and counters"):

* ``statistics()`` returns a frozen dataclass ``ExecutorStatistics`` with
  ``max_workers, submitted, queued, running, succeeded, failed, cancelled,
  retries``.
* At every moment ``submitted == queued + running + succeeded + failed +
  cancelled``.
* Tasks waiting for a worker, a limiter (semaphore) or a rate token count as
  queued; a task in a worker counts as running, retry back-off included.
* ``retries`` counts attempts beyond the first.

"Every moment" is checked between steps and from done callbacks, and the
counts are compared with what the futures themselves say.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from antflow import (
    AsyncExecutor,
    AsyncFuture,
    CancelledError,
    ExecutorStatistics,
    RateLimiter,
)

pytestmark = pytest.mark.anyio

HANG_GUARD = 100

FIELDS = [
    "max_workers",
    "submitted",
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "retries",
]


class Boom(Exception):
    pass


def snapshot(ex: AsyncExecutor) -> ExecutorStatistics:
    """The executor's statistics, checked for the invariant."""
    s = ex.statistics()
    assert isinstance(s, ExecutorStatistics)
    assert s.submitted == s.queued + s.running + s.succeeded + s.failed + s.cancelled, s
    assert min(dataclasses.astuple(s)) >= 0, s
    return s


def counts(ex: AsyncExecutor) -> tuple[int, int, int, int, int, int, int]:
    """(submitted, queued, running, succeeded, failed, cancelled, retries)."""
    s = snapshot(ex)
    return (
        s.submitted,
        s.queued,
        s.running,
        s.succeeded,
        s.failed,
        s.cancelled,
        s.retries,
    )


def as_seen_by_futures(futures: Iterable[AsyncFuture[Any]]) -> tuple[int, ...]:
    """(queued, running, succeeded, failed, cancelled) as the futures say."""
    queued = running = succeeded = failed = cancelled = 0
    for f in futures:
        if f.cancelled():
            cancelled += 1
        elif f.done():
            if f.exception() is None:
                succeeded += 1
            else:
                failed += 1
        elif f.running():
            running += 1
        else:
            queued += 1
    return (queued, running, succeeded, failed, cancelled)


def from_stats(s: ExecutorStatistics) -> tuple[int, ...]:
    return (s.queued, s.running, s.succeeded, s.failed, s.cancelled)


class Gate:
    """Tasks that wait for ``release(x)``, then return ``x`` or raise."""

    def __init__(self) -> None:
        self.started: list[Any] = []
        self.errors: dict[Any, BaseException] = {}
        self._events: dict[Any, anyio.Event] = {}

    def _event(self, x: Any) -> anyio.Event:
        return self._events.setdefault(x, anyio.Event())

    def release(self, *xs: Any) -> None:
        for x in xs:
            self._event(x).set()

    async def task(self, x: Any) -> Any:
        self.started.append(x)
        await self._event(x).wait()
        if x in self.errors:
            raise self.errors[x]
        return x


# --------------------------------------------------------------------------
# the dataclass
# --------------------------------------------------------------------------


async def test_statistics_is_a_frozen_dataclass_with_the_documented_fields() -> None:
    async with AsyncExecutor(max_workers=3) as ex:
        s = ex.statistics()
        assert type(s) is ExecutorStatistics
        assert dataclasses.is_dataclass(s)
        assert [f.name for f in dataclasses.fields(s)] == FIELDS
        with pytest.raises(dataclasses.FrozenInstanceError):
            s.submitted = 5  # type: ignore[misc]
        assert s == ExecutorStatistics(3, 0, 0, 0, 0, 0, 0, 0)


async def test_each_call_returns_a_new_snapshot_that_does_not_change() -> None:
    gate = Gate()
    async with AsyncExecutor(max_workers=1) as ex:
        before = ex.statistics()
        fut = ex.submit(gate.task, 1)
        after = ex.statistics()
        gate.release(1)
        await fut
        assert before == ExecutorStatistics(1, 0, 0, 0, 0, 0, 0, 0)
        assert after.submitted == 1
        assert ex.statistics() == ExecutorStatistics(1, 1, 0, 0, 1, 0, 0, 0)


async def test_statistics_before_start_and_after_close() -> None:
    ex = AsyncExecutor(max_workers=4)
    assert ex.statistics() == ExecutorStatistics(4, 0, 0, 0, 0, 0, 0, 0)
    async with ex:
        gate = Gate()
        gate.release("x")
        assert await ex.submit(gate.task, "x") == "x"
    assert ex.statistics() == ExecutorStatistics(4, 1, 0, 0, 1, 0, 0, 0)


async def test_default_max_workers_is_reported() -> None:
    assert AsyncExecutor().statistics().max_workers == 5


# --------------------------------------------------------------------------
# counts through a life cycle
# --------------------------------------------------------------------------


async def test_counts_step_by_step() -> None:
    """Queued behind busy workers, running, succeeded, failed, cancelled
    (queued and running), shut down with cancel_futures: exact counts at
    every step."""
    gate = Gate()
    gate.errors[1] = Boom("one")
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=2) as ex:
            assert counts(ex) == (0, 0, 0, 0, 0, 0, 0)
            futures = [ex.submit(gate.task, i) for i in range(5)]
            assert counts(ex) == (5, 5, 0, 0, 0, 0, 0)  # not yet in a worker
            await anyio.wait_all_tasks_blocked()
            assert counts(ex) == (5, 3, 2, 0, 0, 0, 0)
            gate.release(0)
            assert await futures[0] == 0
            await anyio.wait_all_tasks_blocked()
            assert counts(ex) == (5, 2, 2, 1, 0, 0, 0)
            gate.release(1)
            with pytest.raises(Boom):
                await futures[1]
            await anyio.wait_all_tasks_blocked()
            assert counts(ex) == (5, 1, 2, 1, 1, 0, 0)
            assert futures[4].cancel()  # queued: never starts
            assert counts(ex) == (5, 0, 2, 1, 1, 1, 0)
            assert futures[2].cancel()  # running: cancelled through its scope
            with pytest.raises(CancelledError):
                await futures[2]
            assert counts(ex) == (5, 0, 1, 1, 1, 2, 0)
            more = [ex.submit(gate.task, i) for i in range(5, 8)]
            await anyio.wait_all_tasks_blocked()
            assert counts(ex) == (8, 2, 2, 1, 1, 2, 0)
            await ex.shutdown(cancel_futures=True)
            assert counts(ex) == (8, 0, 0, 1, 1, 6, 0)
    assert counts(ex) == (8, 0, 0, 1, 1, 6, 0)
    assert gate.started == [0, 1, 2, 3, 5]
    assert all(f.cancelled() for f in [futures[2], futures[3], futures[4], *more])


async def test_map_items_are_counted_as_submitted() -> None:
    async def double(x: int) -> int:
        await anyio.lowlevel.checkpoint()
        return 2 * x

    async with AsyncExecutor(max_workers=3) as ex:
        assert await ex.map(double, range(7)) == [2 * x for x in range(7)]
        assert counts(ex) == (7, 0, 0, 7, 0, 0, 0)
        got = [r async for r in ex.map_iter(double, range(4), ordered=False)]
        assert sorted(got) == [0, 2, 4, 6]
        assert counts(ex) == (11, 0, 0, 11, 0, 0, 0)


async def test_early_exit_from_map_iter_counts_cancelled_items() -> None:
    gate = Gate()
    async with AsyncExecutor(max_workers=2) as ex:
        results = ex.map_iter(gate.task, range(10))
        gate.release(0)
        assert await results.__anext__() == 0
        await anyio.wait_all_tasks_blocked()
        s = snapshot(ex)
        assert (s.running, s.succeeded) == (2, 1)
        assert s.submitted == 1 + s.queued + s.running  # the read-ahead window
        await results.aclose()
        s = snapshot(ex)
        assert (s.queued, s.running, s.succeeded, s.failed) == (0, 0, 1, 0)
        assert s.cancelled == s.submitted - 1


# --------------------------------------------------------------------------
# waiting for a limiter or a token is "queued"
# --------------------------------------------------------------------------


async def test_tasks_waiting_for_a_semaphore_count_as_queued() -> None:
    """Free workers, but the semaphore admits one: one running, two queued."""
    gate = Gate()
    limiter = anyio.CapacityLimiter(1)
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=5) as ex:
            futures = [ex.submit(gate.task, i, semaphore=limiter) for i in range(3)]
            await anyio.wait_all_tasks_blocked()
            assert gate.started == [0]
            assert counts(ex) == (3, 2, 1, 0, 0, 0, 0)
            assert as_seen_by_futures(futures) == from_stats(snapshot(ex))
            gate.release(0, 1, 2)
            assert [await f for f in futures] == [0, 1, 2]
            assert counts(ex) == (3, 0, 0, 3, 0, 0, 0)


@pytest.mark.parametrize("where", ["executor", "call"])
async def test_tasks_waiting_for_a_rate_token_count_as_queued(where: str) -> None:
    gate = Gate()
    limiter = RateLimiter(1, per=3600)
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(
            max_workers=5, rate_limit=limiter if where == "executor" else None
        ) as ex:
            per_call = {"rate_limit": limiter} if where == "call" else {}
            futures = [ex.submit(gate.task, i, **per_call) for i in range(3)]
            await anyio.wait_all_tasks_blocked()
            assert gate.started == [0]
            assert counts(ex) == (3, 2, 1, 0, 0, 0, 0)
            assert as_seen_by_futures(futures) == from_stats(snapshot(ex))
            for f in futures[1:]:
                assert f.cancel()
            assert counts(ex) == (3, 0, 1, 0, 0, 2, 0)
            gate.release(0)
            assert await futures[0] == 0
    assert counts(ex) == (3, 0, 0, 1, 0, 2, 0)


async def test_retry_back_off_counts_as_running() -> None:
    """A task in back-off keeps its worker: running. Cancelling it in
    back-off: cancelled, never retried."""
    attempts: list[int] = []

    async def fail() -> None:
        attempts.append(1)
        raise Boom("again")

    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=2) as ex:
            fut = ex.submit(fail, retries=3, retry_delay=3600)
            await anyio.wait_all_tasks_blocked()
            assert attempts == [1]
            assert fut.running()
            s = snapshot(ex)
            assert (s.queued, s.running, s.failed) == (0, 1, 0)
            assert fut.cancel()
            await anyio.wait_all_tasks_blocked()
            assert fut.cancelled()
            s = snapshot(ex)
            assert (s.submitted, s.queued, s.running, s.cancelled) == (1, 0, 0, 1)
    assert attempts == [1]


async def test_retry_waiting_for_its_semaphore_again_counts_as_queued() -> None:
    """A retry waiting for its semaphore again is queued: it has left its
    worker (docs/api.md, ExecutorStatistics.queued)."""
    gate = Gate()
    limiter = anyio.CapacityLimiter(1)
    attempts: list[str] = []
    failed_once = anyio.Event()

    async def flaky() -> str:
        attempts.append("flaky")
        if len(attempts) == 1:
            await failed_once.wait()
            raise Boom("first attempt")
        return "flaky"

    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=3) as ex:
            a = ex.submit(flaky, semaphore=limiter, retries=1, retry_delay=0)
            b = ex.submit(gate.task, "b", semaphore=limiter)
            await anyio.wait_all_tasks_blocked()
            assert counts(ex) == (2, 1, 1, 0, 0, 0, 0)  # b waits for the semaphore
            failed_once.set()
            await anyio.wait_all_tasks_blocked()
            # a failed, gave the semaphore to b, and waits for it again.
            assert gate.started == ["b"]
            assert counts(ex) == (2, 1, 1, 0, 0, 0, 1)
            gate.release("b")
            assert [await a, await b] == ["flaky", "b"]
            assert counts(ex) == (2, 0, 0, 2, 0, 0, 1)


async def test_retries_count_attempts_beyond_the_first() -> None:
    """Exhausted: 3 retries; success on the 2nd attempt: 1; success at once:
    0; not retried (retry_on excludes it): 0; map items: 2 each."""
    tries: dict[str, int] = {}

    async def fails_until(name: str, ok_at: int) -> str:
        tries[name] = tries.get(name, 0) + 1
        await anyio.lowlevel.checkpoint()
        if tries[name] < ok_at:
            raise Boom(name)
        return name

    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=4) as ex:
            exhausted = ex.submit(fails_until, "x", 99, retries=3, retry_delay=0)
            second = ex.submit(fails_until, "s", 2, retries=3, retry_delay=0)
            first = ex.submit(fails_until, "f", 1, retries=3, retry_delay=0)
            not_retried = ex.submit(
                fails_until, "n", 99, retries=3, retry_delay=0, retry_on=KeyError
            )
            with pytest.raises(Boom):
                await exhausted
            assert [await second, await first] == ["s", "f"]
            with pytest.raises(Boom):
                await not_retried
            assert counts(ex) == (4, 0, 0, 2, 2, 0, 4)
            got = await ex.map(
                fails_until, ["m0", "m1"], [3, 3], retries=2, retry_delay=0
            )
            assert got == ["m0", "m1"]
            assert counts(ex) == (6, 0, 0, 4, 2, 0, 8)
    assert tries == {"x": 4, "s": 2, "f": 1, "n": 1, "m0": 3, "m1": 3}


async def test_task_timeout_attempts_count_as_retries() -> None:
    never = anyio.Event()

    async def hang() -> None:
        await never.wait()

    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=1) as ex:
            fut = ex.submit(hang, task_timeout=0.01, retries=2, retry_delay=0)
            with pytest.raises(TimeoutError):
                await fut
            assert counts(ex) == (1, 0, 0, 0, 1, 0, 2)


# --------------------------------------------------------------------------
# "at every moment"
# --------------------------------------------------------------------------


STEPS = 30


async def _scripted_run(seed: int, observe: Any) -> None:
    """A seeded mix of submissions (plain, semaphore, rate-limited, failing,
    retried), releases and cancellations. ``observe(ex, futures)`` is called
    between every two steps."""
    rng = random.Random(seed)
    gate = Gate()
    semaphore = anyio.CapacityLimiter(2)
    # A round period keeps the bucket arithmetic exact on a real clock (see
    # test_rate.py); the counts are compared with the futures, so a
    # token arriving mid-script changes nothing.
    limiter = RateLimiter(1, per=4.0, burst=3)
    futures: list[AsyncFuture[Any]] = []
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=3) as ex:
            for step in range(STEPS):
                action = rng.choice(["submit", "submit", "release", "cancel"])
                if action == "submit":
                    kind = rng.choice(["plain", "sem", "rate", "fail", "retry"])
                    if kind == "fail":
                        gate.errors[step] = Boom(step)
                        futures.append(ex.submit(gate.task, step))
                    elif kind == "retry":
                        gate.errors[step] = Boom(step)
                        futures.append(
                            ex.submit(gate.task, step, retries=1, retry_delay=0)
                        )
                    elif kind == "sem":
                        futures.append(ex.submit(gate.task, step, semaphore=semaphore))
                    elif kind == "rate":
                        futures.append(ex.submit(gate.task, step, rate_limit=limiter))
                    else:
                        futures.append(ex.submit(gate.task, step))
                elif action == "release" and gate.started:
                    gate.release(rng.choice(gate.started))
                elif action == "cancel" and futures:
                    rng.choice(futures).cancel()
                observe(ex, futures)
                for _ in range(5):  # let woken tasks settle (fewer polls below)
                    await anyio.lowlevel.checkpoint()
                await anyio.wait_all_tasks_blocked()
                observe(ex, futures)
            await ex.shutdown(cancel_futures=True)
            observe(ex, futures)
    observe(ex, futures)
    assert all(f.done() for f in futures)
    for f in futures:  # retrieved, so none is logged as "never retrieved"
        if not f.cancelled():
            f.exception()


@pytest.mark.parametrize("seed", range(4))
async def test_counts_match_the_futures_between_every_step(seed: int) -> None:
    """Between steps, the statistics agree with the futures' own states
    (waiting for a worker, semaphore or token: not running(); no retry waits
    for a semaphore in this script, so those agree too)."""
    seen: list[tuple[int, ...]] = []

    def observe(ex: AsyncExecutor, futures: list[AsyncFuture[Any]]) -> None:
        s = snapshot(ex)
        assert s.submitted == len(futures)
        assert from_stats(s) == as_seen_by_futures(futures)
        seen.append(from_stats(s))

    await _scripted_run(seed, observe)
    assert len(seen) == 2 * STEPS + 2


@pytest.mark.parametrize("seed", range(4))
async def test_invariant_holds_inside_done_callbacks(seed: int) -> None:
    """The invariant and non-negative counts, from every future's done
    callback (an assertion inside a callback would only be logged, so the
    failures are collected)."""
    calls = 0
    failures: list[str] = []
    watched: set[AsyncFuture[Any]] = set()

    def observe(ex: AsyncExecutor, futures: list[AsyncFuture[Any]]) -> None:
        for f in futures:
            if f not in watched:
                watched.add(f)
                f.add_done_callback(lambda _f: check(ex))

    def check(ex: AsyncExecutor) -> None:
        nonlocal calls
        calls += 1
        try:
            snapshot(ex)
        except AssertionError as error:
            failures.append(str(error))

    await _scripted_run(seed, observe)
    assert failures == []
    assert calls == len(watched) > 0


async def test_a_finished_future_is_counted_as_final_inside_its_done_callback() -> None:
    """One task, nothing else: in its done callback, it has succeeded."""
    seen: list[ExecutorStatistics] = []
    async with AsyncExecutor(max_workers=1) as ex:
        gate = Gate()
        gate.release(1)
        fut = ex.submit(gate.task, 1)
        fut.add_done_callback(lambda f: seen.append(ex.statistics()))
        assert await fut == 1
    assert seen == [ExecutorStatistics(1, 1, 0, 0, 1, 0, 0, 0)]


@pytest.mark.parametrize("seed", range(2))
async def test_counts_match_the_futures_inside_done_callbacks(seed: int) -> None:
    mismatches: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    watched: set[AsyncFuture[Any]] = set()

    def observe(ex: AsyncExecutor, futures: list[AsyncFuture[Any]]) -> None:
        for f in futures:
            if f not in watched:
                watched.add(f)
                f.add_done_callback(lambda _f, fs=futures: check(ex, fs))

    def check(ex: AsyncExecutor, futures: list[AsyncFuture[Any]]) -> None:
        got, want = from_stats(snapshot(ex)), as_seen_by_futures(futures)
        if got != want:
            mismatches.append((got, want))

    await _scripted_run(seed, observe)
    assert mismatches == []
