"""Fault injection: the executor keeps working and says what happened.

Faults injected here, most of them at random points chosen by hypothesis:

* tasks raising random exceptions: ordinary, falsy, and BaseException
  subclasses (a custom one, KeyboardInterrupt, SystemExit);
* cancellation arriving at a random virtual instant, in every form: the
  caller's cancel scope, a deadline around the block, ``future.cancel()``,
  ``shutdown(cancel_futures=True)`` with and without ``wait``, and hitting
  the task in any phase (queued, waiting for a limiter, mid-attempt, in
  retry back-off);
* done-callbacks that raise, cancel other futures or submit more work;
* tasks that swallow their cancellation (and clean up, shielded);
* a task awaiting a task of its own executor on ``max_workers=1``, broken by
  ``shutdown(cancel_futures=True)`` or outer cancellation;
* futures awaited, waited for or iterated from another event loop.

After every fault: every future is final and says what happened, limiter
tokens are all returned, and no task is left running (docs/semantics.md,
"What happens to every future", "Exceptions", "Cancellation", "Tokens").
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _strategies import (
    EXCEPTION_FACTORIES,
    Boom,
    Crash,
    examples,
    exception_kinds,
    hang_guard,
    task_count,
    ticks,
    us,
    values,
)
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

from antflow import AsyncExecutor, AsyncFuture, CancelledError, ExecutorShutdownError

pytestmark = pytest.mark.anyio


class _ListHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def capture_antflow_log() -> Iterator[list[logging.LogRecord]]:
    """The records the "antflow" logger emits inside the block (caplog is
    function-scoped, so it would pile up across hypothesis examples)."""
    records: list[logging.LogRecord] = []
    handler = _ListHandler(records)
    log = logging.getLogger("antflow")
    log.addHandler(handler)
    try:
        yield records
    finally:
        log.removeHandler(handler)


def leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        found: list[BaseException] = []
        for inner in error.exceptions:
            found += leaves(inner)
        return found
    return [error]


# ==========================================================================
# Tasks raising random exceptions
# ==========================================================================

# (kind, ticks, payload): kind "value" returns payload, "error" raises the
# exception kind named by payload, "crash" raises Crash (a BaseException).
outcomes = st.one_of(
    st.tuples(st.just("value"), st.integers(0, 4), values),
    st.tuples(st.just("error"), st.integers(0, 4), exception_kinds),
    st.tuples(st.just("crash"), st.integers(0, 4), st.none()),
)


@given(
    plan=st.lists(outcomes, min_size=1, max_size=16),
    max_workers=st.integers(1, 4),
    manual=st.booleans(),
)
async def test_random_task_exceptions_are_stored_or_propagate(
    plan: list[tuple[str, int, Any]], max_workers: int, manual: bool
) -> None:
    """An Exception (falsy ones included) is stored as the very object raised
    and disturbs nothing else; a BaseException is never stored: it propagates
    out of `async with` (or out of a manual `shutdown()`) as itself, the
    other work is cancelled, and every future still ends final
    (docs/semantics.md, "Exceptions")."""
    raised: dict[int, BaseException] = {}
    returned: dict[int, Any] = {}
    crashes: list[BaseException] = []

    async def task(i: int) -> Any:
        kind, n, payload = plan[i]
        await ticks(n)
        if kind == "value":
            returned[i] = payload
            return payload
        error: BaseException = (
            Crash(i) if kind == "crash" else EXCEPTION_FACTORIES[payload](i)
        )
        raised[i] = error
        if kind == "crash":
            crashes.append(error)
        raise error

    before = task_count()
    futures: list[AsyncFuture[Any]] = []
    escaped: BaseException | None = None
    with anyio.fail_after(hang_guard()):
        try:
            if manual:
                ex = AsyncExecutor(max_workers=max_workers)
                futures = [ex.submit(task, i) for i in range(len(plan))]
                await ex.shutdown(wait=True)
            else:
                async with AsyncExecutor(max_workers=max_workers) as ex:
                    futures = [ex.submit(task, i) for i in range(len(plan))]
        except BaseException as error:
            escaped = error
    event(f"crashes: {min(len(crashes), 2)}")
    if crashes:
        assert escaped is not None
        # Each crash that happened is reported, as itself; a group only when
        # several tasks crashed before the first one could stop them.
        assert all(leaf in crashes for leaf in leaves(escaped))
        if len(crashes) == 1:
            assert escaped is crashes[0]
    else:
        assert escaped is None
    for i, fut in enumerate(futures):
        assert fut.done()
        if i in returned and not fut.cancelled():
            assert await fut.result(timeout=0) is returned[i]
        elif i in raised and plan[i][0] == "error" and not fut.cancelled():
            assert fut.exception() is raised[i]
        else:
            # Never started, crashed, or cancelled because of a crash.
            assert fut.cancelled()
            assert crashes
        if plan[i][0] == "crash":
            assert fut.cancelled()
    if not crashes:
        assert not any(f.cancelled() for f in futures)
    stats = ex.statistics()
    assert stats.queued == stats.running == 0
    assert stats.succeeded + stats.failed + stats.cancelled == len(plan)
    assert task_count() == before


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("manual", [False, True], ids=["async-with", "manual"])
@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
def test_keyboard_interrupt_and_system_exit_from_a_task(
    backend: str, manual: bool, exc_type: type[BaseException]
) -> None:
    """KeyboardInterrupt and SystemExit from a task propagate out of the
    event loop as themselves (run in a private anyio.run, since asyncio lets
    them escape the loop directly) and every future still ends final
    (docs/semantics.md, "Exceptions")."""
    futures: list[AsyncFuture[Any]] = []
    error = exc_type("from a task")

    async def interrupt() -> None:
        await anyio.lowlevel.checkpoint()
        raise error

    async def main() -> None:
        if manual:
            ex = AsyncExecutor(max_workers=2)
            futures.extend([ex.submit(anyio.sleep, 10), ex.submit(interrupt)])
            futures.append(ex.submit(anyio.sleep, 10))
            await ex.shutdown()
        else:
            async with AsyncExecutor(max_workers=2) as ex:
                futures.extend([ex.submit(anyio.sleep, 10), ex.submit(interrupt)])
                futures.append(ex.submit(anyio.sleep, 10))

    options: dict[str, Any] = {"use_uvloop": True} if backend == "uvloop" else {}
    with pytest.raises(exc_type) as caught:
        anyio.run(
            main,
            backend="trio" if backend == "trio" else "asyncio",
            backend_options=options,
        )
    assert caught.value is error
    assert [f.cancelled() for f in futures] == [True, True, True]


# ==========================================================================
# Cancellation arriving at a random point
# ==========================================================================

CANCEL_KINDS = (
    "outer-scope",  # the caller's cancel scope around the block
    "deadline",  # move_on_after around the block
    "future",  # future.cancel() of one task
    "shutdown-wait",  # shutdown(wait=True, cancel_futures=True)
    "shutdown-nowait",  # shutdown(wait=False, cancel_futures=True)
)


@dataclass(frozen=True)
class FaultTask:
    duration: int  # quarters of a second per attempt
    failures: int
    retries: int
    limiter: int | None
    cleanup: int  # quarters of a second of shielded clean-up when cancelled


@dataclass(frozen=True)
class CancelPlan:
    max_workers: int
    limiter_tokens: tuple[int, ...]
    retry_delay: float
    tasks: tuple[FaultTask, ...]
    kind: str
    at: float  # virtual seconds after the start; off the quarter grid
    target: int


@st.composite
def cancel_plans(draw: st.DrawFn) -> CancelPlan:
    limiter_tokens = tuple(draw(st.lists(st.integers(1, 2), min_size=1, max_size=2)))
    # Mostly limited tasks, so that many wait in a line when the blow comes.
    in_range = st.integers(0, len(limiter_tokens) - 1)
    limiter = st.none() | in_range | in_range
    tasks = tuple(
        draw(
            st.lists(
                st.builds(
                    FaultTask,
                    duration=st.integers(0, 4),
                    failures=st.integers(0, 3),
                    retries=st.integers(0, 3),
                    limiter=limiter,
                    cleanup=st.sampled_from([0, 0, 1, 2]),
                ),
                min_size=3,
                max_size=10,
            )
        )
    )
    return CancelPlan(
        max_workers=draw(st.integers(1, 5)),
        limiter_tokens=limiter_tokens,
        retry_delay=draw(st.sampled_from([0.25, 0.5, 1.0])),
        tasks=tasks,
        kind=draw(st.sampled_from(CANCEL_KINDS)),
        # Every event of the scenario lies on the quarter-second grid; the
        # cancellation lands an eighth off it, so nothing ties with it.
        at=draw(st.integers(0, 12)) / 4 + 1 / 8,
        target=draw(st.integers(0, len(tasks) - 1)),
    )


class CancelProbe:
    def __init__(self, plan: CancelPlan) -> None:
        self.plan = plan
        self.calls = [0] * len(plan.tasks)
        self.in_attempt = [False] * len(plan.tasks)
        self.errors: dict[int, Exception] = {}
        self.cancelled_in_body = [False] * len(plan.tasks)
        self.body_after_cancel: list[int] = []
        self.cancel_time: float | None = None

    async def body(self, i: int) -> int:
        task = self.plan.tasks[i]
        if self.cancel_time is not None and self.plan.kind != "future":
            self.body_after_cancel.append(i)
        self.calls[i] += 1
        self.in_attempt[i] = True
        try:
            await anyio.sleep(task.duration / 4)
        except anyio.get_cancelled_exc_class():
            self.cancelled_in_body[i] = True
            with anyio.CancelScope(shield=True):
                await anyio.sleep(task.cleanup / 4)
            raise
        finally:
            self.in_attempt[i] = False
        if self.calls[i] <= task.failures:
            self.errors[i] = error = Boom(i, self.calls[i])
            raise error
        return i

    def phase(self, i: int, future: AsyncFuture[Any], limiters: list[Any]) -> str:
        """Where the task is, as far as one can tell from outside (a label
        for hypothesis' statistics; the assertions do not depend on it
        beyond "final" and "attempt")."""
        if future.done():
            return "final"
        if self.in_attempt[i]:
            return "attempt"
        lim = self.plan.tasks[i].limiter
        limiter_full = lim is not None and limiters[lim].available_tokens == 0
        if future.running():
            # Between attempts: sleeping, or back in its limiter's line.
            return (
                "re-waiting for limiter"
                if limiter_full and self.calls[i]
                else "back-off"
            )
        return "waiting for limiter" if limiter_full else "queued"


@pytest.mark.virtual_time
class TestCancellationAtRandomPoints:
    @given(plan=cancel_plans())
    @settings(max_examples=examples(1.0))
    async def test_cancellation_at_a_random_instant_leaves_everything_final(
        self, plan: CancelPlan
    ) -> None:
        """Whatever the form of the cancellation and whatever phase it finds
        a task in (queued, waiting for its limiter, mid-attempt, in
        back-off), every future ends final at the instant its task has
        exited, only the futures that were asked to be cancelled end
        cancelled, no task runs after a global cancellation,
        shutdown(wait=True) returns once the cancelled tasks' clean-up is
        done, limiter tokens all come back and no task is left
        (docs/semantics.md, "What happens to every future", "Cancellation",
        "Shutdown", "Tokens")."""
        probe = CancelProbe(plan)
        limiters = [anyio.CapacityLimiter(n) for n in plan.limiter_tokens]
        settled: dict[int, int] = {}
        phases: dict[int, str] = {}
        futures: list[AsyncFuture[int]] = []
        shutdown_returned: list[int] = []
        before = task_count()
        t0 = anyio.current_time()
        cancel_at = t0 + plan.at

        def snapshot() -> None:
            probe.cancel_time = anyio.current_time()
            for i, f in enumerate(futures):
                phases[i] = probe.phase(i, f, limiters)

        async def trigger(ex: AsyncExecutor, outer: anyio.CancelScope) -> None:
            await anyio.sleep(max(0.0, cancel_at - anyio.current_time()))
            snapshot()
            if plan.kind == "outer-scope":
                outer.cancel()
            elif plan.kind == "future":
                futures[plan.target].cancel()
            elif plan.kind == "shutdown-wait":
                await ex.shutdown(wait=True, cancel_futures=True)
                shutdown_returned.append(us(anyio.current_time() - t0))
            elif plan.kind == "shutdown-nowait":
                await ex.shutdown(wait=False, cancel_futures=True)
                shutdown_returned.append(us(anyio.current_time() - t0))

        with anyio.fail_after(hang_guard()):
            async with anyio.create_task_group() as helpers:
                with anyio.CancelScope() as outer:
                    if plan.kind == "deadline":
                        outer.deadline = cancel_at
                    async with AsyncExecutor(max_workers=plan.max_workers) as ex:
                        for i, task in enumerate(plan.tasks):
                            f = ex.submit(
                                probe.body,
                                i,
                                retries=task.retries,
                                retry_delay=plan.retry_delay,
                                semaphore=None
                                if task.limiter is None
                                else limiters[task.limiter],
                            )
                            f.add_done_callback(
                                functools.partial(
                                    lambda i, f: settled.__setitem__(
                                        i, us(anyio.current_time() - t0)
                                    ),
                                    i,
                                )
                            )
                            futures.append(f)
                        if plan.kind == "deadline":
                            helpers.start_soon(self._snapshot_at, cancel_at, snapshot)
                        else:
                            helpers.start_soon(trigger, ex, outer)
                exited = us(anyio.current_time() - t0)
                if plan.kind in ("outer-scope", "deadline") and phases:
                    assert outer.cancelled_caught == any(
                        p != "final" for p in phases.values()
                    )
        at = us(plan.at)
        cancelled_at_t = probe.cancel_time is not None
        note(f"phases={phases} settled={settled} exited={exited}")
        for p in set(phases.values()):
            event(f"{plan.kind}: a task {p}")

        # Every future is final; the block exits once everything has.
        assert all(f.done() for f in futures)
        assert exited == max(settled.values())
        # Tokens all returned; no task left behind.
        assert all(lim.borrowed_tokens == 0 for lim in limiters)
        assert task_count() == before

        for i, (task, f) in enumerate(zip(plan.tasks, futures, strict=True)):
            phase = phases.get(i, "final")
            asked = (
                cancelled_at_t
                and phase != "final"
                and (plan.kind != "future" or i == plan.target)
            )
            if asked:
                assert f.cancelled(), (i, phase)
                # Final once its task has exited: at once unless it was
                # mid-attempt, then after its shielded clean-up.
                cleanup = us(task.cleanup / 4) if phase == "attempt" else 0
                assert settled[i] == at + cleanup, (i, phase)
                assert probe.calls[i] <= min(task.failures, task.retries) + 1
            else:
                # Untouched: the natural outcome, after the natural calls.
                assert not f.cancelled(), (i, phase)
                assert probe.calls[i] == min(task.failures, task.retries) + 1
                if task.failures <= task.retries:
                    assert await f.result(timeout=0) == i
                else:
                    assert f.exception() is probe.errors[i]
        if plan.kind != "future":
            # After a global cancellation nothing starts any more.
            assert probe.body_after_cancel == []
        if shutdown_returned:
            running_cleanups = [
                us(plan.tasks[i].cleanup / 4)
                for i, p in phases.items()
                if p == "attempt"
            ]
            if plan.kind == "shutdown-wait":
                # Returns once the cancelled tasks have exited.
                assert shutdown_returned == [at + max(running_cleanups, default=0)]
            else:
                assert shutdown_returned == [at]

    @staticmethod
    async def _snapshot_at(when: float, snapshot: Any) -> None:
        # The deadline and this wake-up expire at the same instant; the
        # snapshot must see the state before the cancellation lands, so it
        # wakes a hair earlier (still after every task event, which lie on
        # the quarter grid).
        await anyio.sleep(max(0.0, when - 1 / 64 - anyio.current_time()))
        snapshot()


# ==========================================================================
# Done-callbacks that raise or re-enter the executor
# ==========================================================================

callback_actions = st.sampled_from(
    ["raise", "falsy-raise", "cancel-other", "cancel-self", "submit", "nothing"]
)


@given(
    durations=st.lists(st.integers(0, 4), min_size=1, max_size=12),
    actions=st.lists(callback_actions, min_size=1, max_size=12),
    targets=st.lists(st.integers(0, 100), min_size=1, max_size=12),
    max_workers=st.integers(1, 3),
    cancels=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 100)), max_size=4),
)
async def test_done_callbacks_that_raise_cancel_or_submit(
    durations: list[int],
    actions: list[str],
    targets: list[int],
    max_workers: int,
    cancels: list[tuple[int, int]],
) -> None:
    """Each done callback runs once, when the future is final; one that
    raises (even a falsy exception) is logged, never raised into the executor
    (docs/semantics.md, "Done callbacks"; "Exceptions"). Callbacks may cancel
    futures (their own included) and submit more work, and the executor's
    bookkeeping stays exact."""
    with capture_antflow_log() as records:
        await _callbacks_scenario(
            durations, actions, targets, max_workers, cancels, records
        )


async def _callbacks_scenario(
    durations: list[int],
    actions: list[str],
    targets: list[int],
    max_workers: int,
    cancels: list[tuple[int, int]],
    records: list[logging.LogRecord],
) -> None:
    futures: list[AsyncFuture[int]] = []
    calls: dict[AsyncFuture[int], int] = {}
    raised: list[BaseException] = []
    step = [0]

    async def work(i: int, n: int) -> int:
        await ticks(n)
        return i

    with anyio.fail_after(hang_guard()):
        async with AsyncExecutor(max_workers=max_workers) as ex:

            def callback(f: AsyncFuture[int]) -> None:
                assert f.done()
                calls[f] = calls.get(f, 0) + 1
                k = step[0]
                step[0] += 1
                action = actions[k % len(actions)]
                target = futures[targets[k % len(targets)] % len(futures)]
                if action == "raise":
                    raised.append(Boom(k))
                    raise raised[-1]
                if action == "falsy-raise":
                    raised.append(EXCEPTION_FACTORIES["falsy"](k))
                    raise raised[-1]
                if action == "cancel-other":
                    target.cancel()
                elif action == "cancel-self":
                    assert f.cancel() == f.cancelled()
                elif action == "submit" and len(futures) < 40:
                    try:
                        g = ex.submit(work, len(futures), 1)
                    except ExecutorShutdownError:
                        return
                    g.add_done_callback(callback)
                    futures.append(g)

            for i, n in enumerate(durations):
                f = ex.submit(work, i, n)
                f.add_done_callback(callback)
                futures.append(f)
            for n, t in cancels:
                await ticks(n)
                futures[t % len(futures)].cancel()
    assert all(f.done() for f in futures)
    assert all(calls.get(f) == 1 for f in futures)
    for i, f in enumerate(futures):
        if not f.cancelled():
            assert await f.result(timeout=0) == i
    stats = ex.statistics()
    assert stats.submitted == len(futures)
    assert stats.succeeded + stats.cancelled == len(futures)
    assert stats.queued == stats.running == stats.failed == 0
    logged = [
        r.exc_info[1]
        for r in records
        if r.exc_info and r.getMessage().startswith("done callback")
    ]
    assert logged == raised


# ==========================================================================
# Tasks that swallow their cancellation
# ==========================================================================


@pytest.mark.virtual_time
class TestSwallowedCancellation:
    @pytest.mark.parametrize(
        "how", ["cancel", "shutdown-wait", "shutdown-nowait", "outer-scope", "deadline"]
    )
    async def test_a_task_that_swallows_cancellation_still_ends_cancelled(
        self, how: str
    ) -> None:
        """A task cancelled through cancel(), shutdown or the caller's scope
        that swallows the cancellation (then cleans up for 2 s, shielded, and
        returns a value) still ends cancelled; the executor waits for its
        clean-up, then exits; nothing leaks (docs/semantics.md,
        "Cancellation"; "What happens to every future")."""
        before = task_count()
        started = anyio.Event()
        swallowed: list[float] = []

        async def stubborn() -> str:
            started.set()
            try:
                await anyio.sleep(100)
            except anyio.get_cancelled_exc_class():
                swallowed.append(anyio.current_time())
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(2)
            # Further awaits in the cancelled scope fail at once; it returns.
            return "survived"

        t0 = anyio.current_time()
        with anyio.fail_after(1000):
            with anyio.CancelScope() as outer:
                if how == "deadline":
                    outer.deadline = t0 + 1
                async with AsyncExecutor(max_workers=1) as ex:
                    fut = ex.submit(stubborn)
                    queued = ex.submit(anyio.sleep, 0)
                    await started.wait()
                    await anyio.sleep(1)
                    if how == "cancel":
                        assert fut.cancel() is True
                    elif how == "shutdown-wait":
                        await ex.shutdown(wait=True, cancel_futures=True)
                        # Returns after the clean-up, not before.
                        assert us(anyio.current_time() - t0) == us(3)
                    elif how == "shutdown-nowait":
                        await ex.shutdown(wait=False, cancel_futures=True)
                        assert us(anyio.current_time() - t0) == us(1)
                    elif how == "outer-scope":
                        outer.cancel()
                        await anyio.lowlevel.checkpoint()
            if how in ("outer-scope", "deadline"):
                assert outer.cancelled_caught
        assert us(swallowed[0] - t0) == us(1)
        assert fut.cancelled()
        with pytest.raises(CancelledError):
            await fut
        if how == "cancel":
            # The queued task still ran, after the clean-up.
            assert not queued.cancelled()
        else:
            assert queued.cancelled()
        # The block ends once the clean-up is over.
        assert us(anyio.current_time() - t0) == us(3)
        assert task_count() == before


# ==========================================================================
# A task awaiting its own executor on max_workers=1
# ==========================================================================


@pytest.mark.virtual_time
class TestSelfDeadlock:
    @pytest.mark.parametrize(
        "breaker",
        ["shutdown-cancel", "outer-scope", "deadline", "manual-shutdown-cancel"],
    )
    async def test_self_deadlock_on_one_worker_is_broken(self, breaker: str) -> None:
        """A task awaiting a task of its own executor on max_workers=1
        deadlocks, as in concurrent.futures; shutdown(cancel_futures=True)
        and cancelling the surrounding scope break it, at the exact instant,
        and both futures end cancelled (docs/semantics.md,
        "Deadlock on a full pool")."""
        before = task_count()
        children: list[AsyncFuture[int]] = []

        async def child() -> int:
            return 1

        async def parent(ex: AsyncExecutor) -> int:
            children.append(ex.submit(child))
            return await children[0] + 1  # never: the only worker is ours

        t0 = anyio.current_time()
        with anyio.fail_after(1000), anyio.CancelScope() as outer:
            if breaker == "manual-shutdown-cancel":
                ex = AsyncExecutor(max_workers=1)
                fut = ex.submit(parent, ex)
                await anyio.sleep(5)
                assert not fut.done()
                await ex.shutdown(cancel_futures=True)
            elif breaker == "deadline":
                outer.deadline = t0 + 5
                async with AsyncExecutor(max_workers=1) as ex:
                    fut = ex.submit(parent, ex)
                    # The exit waits for the deadlocked task until the
                    # deadline cancels the block.
            else:
                async with AsyncExecutor(max_workers=1) as ex:
                    fut = ex.submit(parent, ex)
                    await anyio.sleep(5)
                    assert not fut.done()
                    if breaker == "shutdown-cancel":
                        await ex.shutdown(wait=True, cancel_futures=True)
                    else:
                        outer.cancel()
        assert outer.cancelled_caught == (breaker in ("outer-scope", "deadline"))
        assert us(anyio.current_time() - t0) == us(5)
        assert fut.cancelled()
        assert children and children[0].cancelled()
        assert task_count() == before

    async def test_waiting_with_a_timeout_inside_the_deadlock(self) -> None:
        """The parent may bound its wait: result(timeout) raises TimeoutError
        inside the task, which then fails with it; the child then runs."""

        async def child() -> int:
            return 1

        async def parent(ex: AsyncExecutor) -> int:
            return await ex.submit(child).result(timeout=2) + 1

        t0 = anyio.current_time()
        async with AsyncExecutor(max_workers=1) as ex:
            fut = ex.submit(parent, ex)
        assert isinstance(fut.exception(), TimeoutError)
        assert us(anyio.current_time() - t0) == us(2)


# ==========================================================================
# Crossing event loops
# ==========================================================================


@pytest.mark.parametrize("other_backend", ["asyncio", "trio"])
@pytest.mark.parametrize(
    "how", ["result", "wait", "as_completed", "submit", "shutdown"]
)
async def test_another_event_loop_gets_runtime_error_at_once(
    other_backend: str, how: str
) -> None:
    """Using a pending future or the executor from another event loop
    (another anyio.run in another thread) raises RuntimeError at once, never
    hangs, and leaves the task alone (docs/semantics.md, "Shutdown",
    "One executor, one loop, one use")."""
    release = anyio.Event()

    async def held() -> str:
        await release.wait()
        return "mine"

    async def elsewhere(ex: AsyncExecutor, fut: AsyncFuture[str]) -> tuple[Any, float]:
        start = anyio.current_time()
        # Real time in this fresh loop: a bound, not a synchronisation.
        with anyio.move_on_after(5):
            try:
                if how == "result":
                    await fut
                elif how == "wait":
                    await ex.wait([fut], timeout=0.3)
                elif how == "as_completed":
                    async for _ in ex.as_completed([fut], timeout=0.3):
                        pass
                elif how == "submit":
                    ex.submit(held)
                else:
                    await ex.shutdown()
            except BaseException as error:
                return error, anyio.current_time() - start
        return None, anyio.current_time() - start

    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(held)
        await anyio.wait_all_tasks_blocked()
        error, took = await anyio.to_thread.run_sync(
            functools.partial(anyio.run, elsewhere, ex, fut, backend=other_backend)
        )
        assert type(error) is RuntimeError, repr(error)
        assert took < 0.25  # "at once": one-sided, generous for a raise
        assert fut.running() and not fut.done()
        release.set()
        assert await fut == "mine"


# ==========================================================================
# A crash while the block is being cancelled
# ==========================================================================


async def test_task_crash_during_outer_cancellation_propagates_as_itself() -> None:
    """A BaseException from a task propagates as itself (docs/semantics.md,
    "Exceptions"). Here the caller's scope is cancelled in the same instant:
    the scope absorbs its own cancellation and the crash comes out bare, as
    on asyncio."""
    crash = Crash("task")

    async def crashing() -> None:
        raise crash

    with pytest.raises(BaseException) as caught:
        with anyio.CancelScope() as outer:
            async with AsyncExecutor(max_workers=1) as ex:
                fut = ex.submit(crashing)
                outer.cancel()
                await anyio.lowlevel.checkpoint()
    assert caught.value is crash
    assert fut.cancelled()


# ==========================================================================
# Jobs waiting for a limiter when the executor is aborted or shut down
# ==========================================================================


class _Holder:
    """A task that takes the limiter's only token and keeps it."""

    def __init__(self) -> None:
        self.started = anyio.Event()

    async def __call__(self) -> None:
        self.started.set()
        await anyio.sleep_forever()


async def _instant() -> str:
    return "ran"


async def test_shutdown_cancel_while_a_job_waits_for_its_limiter() -> None:
    """shutdown(cancel_futures=True) cancels every unfinished future, a job
    parked in its limiter's waiting line included; the executor goes on
    shutting down cleanly, and the limiter gets every token back, as it may
    be shared with other executors (docs/semantics.md, "Shutdown"; "Tokens")."""
    limiter = anyio.CapacityLimiter(1)
    holder = _Holder()

    async def slow_cleanup() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            # Keeps the executor open after the holder has let go.
            with anyio.CancelScope(shield=True):
                for _ in range(5):
                    await anyio.lowlevel.checkpoint()

    with anyio.fail_after(hang_guard()):
        async with AsyncExecutor(max_workers=3) as ex:
            held = ex.submit(holder, semaphore=limiter)
            other = ex.submit(slow_cleanup)
            await holder.started.wait()
            parked = ex.submit(_instant, semaphore=limiter)
            await anyio.wait_all_tasks_blocked()
            await ex.shutdown(wait=False, cancel_futures=True)
    assert [held.cancelled(), other.cancelled(), parked.cancelled()] == [True] * 3
    assert limiter.borrowed_tokens == 0


@pytest.mark.parametrize("how", ["outer-scope", "deadline", "crash"])
async def test_abort_while_a_job_waits_for_its_limiter(how: str) -> None:
    """When the block is cancelled, or a task crashes, every future the
    executor handed out is final afterwards, a job parked in its limiter's
    waiting line included, and awaiting it never hangs (docs/semantics.md,
    "What happens to every future"). The block is in a shielded wait when the
    cancellation lands (a clean-up step, say), so the executor's own tasks
    see it first."""
    limiter = anyio.CapacityLimiter(1)
    holder = _Holder()
    crash = Crash("sibling")
    released = anyio.Event()

    async def crashing() -> None:
        raise crash

    async def release_when_settled() -> None:
        await anyio.wait_all_tasks_blocked()
        released.set()

    raised: BaseException | None = None
    with anyio.fail_after(hang_guard()):
        async with anyio.create_task_group() as helpers:
            try:
                with anyio.CancelScope() as outer:
                    async with AsyncExecutor(max_workers=3) as ex:
                        held = ex.submit(holder, semaphore=limiter)
                        await holder.started.wait()
                        parked = ex.submit(_instant, semaphore=limiter)
                        await anyio.wait_all_tasks_blocked()
                        if how == "outer-scope":
                            outer.cancel()
                        elif how == "deadline":
                            outer.deadline = anyio.current_time()
                        else:
                            ex.submit(crashing)
                        helpers.start_soon(release_when_settled)
                        with anyio.CancelScope(shield=True):
                            await released.wait()
                        await anyio.sleep_forever()
            except Crash as error:
                raised = error
    assert raised is (crash if how == "crash" else None)
    assert outer.cancelled_caught == (how != "crash")
    assert held.cancelled()
    assert parked.done(), f"{parked!r} left pending after the executor exited"
    assert parked.cancelled()
    assert limiter.borrowed_tokens == 0


async def test_block_raising_while_a_job_waits_for_its_limiter() -> None:
    """The block's exception propagates unchanged, and the job parked in its
    limiter's waiting line ends cancelled (docs/semantics.md, "Shutdown")."""
    limiter = anyio.CapacityLimiter(1)
    holder = _Holder()
    oops = Boom("block")
    with anyio.fail_after(hang_guard()), pytest.raises(Boom) as caught:
        async with AsyncExecutor(max_workers=3) as ex:
            held = ex.submit(holder, semaphore=limiter)
            await holder.started.wait()
            parked = ex.submit(_instant, semaphore=limiter)
            await anyio.wait_all_tasks_blocked()
            raise oops
    assert caught.value is oops
    assert held.cancelled() and parked.cancelled()
    assert limiter.borrowed_tokens == 0
