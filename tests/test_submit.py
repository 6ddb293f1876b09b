"""AsyncExecutor.submit: ordering, bad input, semaphores, retries.

SPEC section pinned here: "submit(fn, /, *args, semaphore=None, retries=0,
retry_delay=..., **kwargs) -> AsyncFuture".
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import math
import threading
import warnings
from collections.abc import Callable, Generator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import tenacity

from antflow import AntFlowError, AsyncExecutor, AsyncFuture, ExecutorShutdownError

pytestmark = pytest.mark.anyio


class Fatal(BaseException):
    """A BaseException that is neither an Exception nor a cancellation."""


class Flaky(Exception):
    pass


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from _leaves(sub)
    else:
        yield exc


def assert_only(raised: BaseException, expected: BaseException) -> None:
    """`raised` is `expected`, or a group whose sole leaf is `expected`."""
    leaves = list(_leaves(raised))
    assert len(leaves) == 1, repr(raised)
    assert leaves[0] is expected, repr(raised)


async def double(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * x


class Gauge:
    """Counts how many gated tasks are inside their critical section."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.entered: list[int] = []

    async def gated(self, release: anyio.Event, i: int) -> int:
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.entered.append(i)
        try:
            await release.wait()
        finally:
            self.active -= 1
        return i


# --------------------------------------------------------------------------
# Basics and ordering
# --------------------------------------------------------------------------


async def test_submit_is_synchronous_and_returns_a_future() -> None:
    """SPEC: submit is synchronous, never blocks and returns at once, even
    with every worker busy and a long queue behind them."""
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
    """SPEC: submit(fn, /, *args, ..., **kwargs): fn is positional-only, so a
    keyword named `fn` is passed through to the function."""

    async def echo(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
        return args, kwargs

    async with AsyncExecutor(max_workers=2) as ex:
        fut = ex.submit(echo, 1, 2, fn="f", x=3)
        assert await fut == ((1, 2), {"fn": "f", "x": 3})


async def test_single_worker_starts_tasks_in_submission_order() -> None:
    """SPEC: tasks start in submission order."""
    started: list[int] = []

    async def work(i: int) -> None:
        started.append(i)
        await anyio.lowlevel.checkpoint()

    async with AsyncExecutor(max_workers=1) as ex:
        for i in range(30):
            ex.submit(work, i)
    assert started == list(range(30))


async def test_freed_worker_takes_the_oldest_queued_task() -> None:
    """SPEC: tasks start in submission order: with 3 workers, each freed slot
    goes to the earliest submission still queued."""
    releases = [anyio.Event() for _ in range(8)]
    started: list[int] = []

    async def work(i: int) -> int:
        started.append(i)
        await releases[i].wait()
        return i

    async with AsyncExecutor(max_workers=3) as ex:
        futs = [ex.submit(work, i) for i in range(8)]
        await anyio.wait_all_tasks_blocked()
        assert sorted(started) == [0, 1, 2]
        for finished, expected in [(1, 3), (0, 4), (3, 5), (2, 6), (4, 7)]:
            releases[finished].set()
            await anyio.wait_all_tasks_blocked()
            assert started[-1] == expected
            assert sorted(started) == list(range(expected + 1))
        for ev in releases:
            ev.set()
    assert [await f for f in futs] == list(range(8))


# --------------------------------------------------------------------------
# After shutdown
# --------------------------------------------------------------------------


async def test_submit_after_async_with_exit_raises_shutdown_error() -> None:
    """SPEC: after shutdown has begun, submit raises ExecutorShutdownError
    (an AntFlowError and a RuntimeError)."""
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
    """SPEC: submit after `await shutdown()` raises ExecutorShutdownError."""
    ex = AsyncExecutor(max_workers=1)
    assert await ex.submit(double, 1) == 2
    await ex.shutdown()
    with pytest.raises(ExecutorShutdownError):
        ex.submit(double, 2)


async def test_submit_after_shutdown_of_never_started_executor() -> None:
    """SPEC: shutdown on an executor that never ran still makes submit raise."""
    ex = AsyncExecutor(max_workers=1)
    await ex.shutdown()
    with pytest.raises(ExecutorShutdownError):
        ex.submit(double, 2)


async def test_submit_while_shutdown_waits_raises() -> None:
    """SPEC: from shutdown's first call on, submit raises, even while it is
    still waiting for running work."""
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
# Bad fn, and what counts as a good one
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [42, "double", None, b"x", [double]])
async def test_non_callable_fn_is_typeerror_at_submit(fn: Any) -> None:
    """SPEC: fn not callable -> TypeError at submit, naming the argument."""
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(TypeError, match=r"\bfn\b"):
            ex.submit(fn)
        assert await ex.submit(double, 1) == 2


async def test_coroutine_object_is_typeerror_and_is_closed() -> None:
    """SPEC: a coroutine object instead of a function is a TypeError at submit,
    and the coroutine is closed so no "never awaited" warning follows."""
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
    """SPEC: fn(*args) returning a non-awaitable: the future fails with a
    TypeError that names the function; other work is undisturbed."""
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
    """SPEC: functools.partial of an async function is accepted."""

    async def add(a: int, b: int, *, c: int = 0) -> int:
        return a + b + c

    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(functools.partial(add, 1, c=100), 10)
        assert await fut == 111


async def test_object_with_async_call_is_accepted() -> None:
    """SPEC: an object with `async def __call__` is accepted."""

    class Doubler:
        async def __call__(self, x: int) -> int:
            await anyio.lowlevel.checkpoint()
            return x * 2

    async with AsyncExecutor(max_workers=1) as ex:
        assert await ex.submit(Doubler(), 21) == 42


async def test_lambda_returning_coroutine_is_accepted() -> None:
    """SPEC: a lambda returning a coroutine is accepted."""
    async with AsyncExecutor(max_workers=1) as ex:
        assert await ex.submit(lambda x: double(x), 8) == 16


async def test_callable_returning_generic_awaitable_is_accepted() -> None:
    """SPEC: only a non-awaitable return is an error; any awaitable runs."""

    class Awaitable:
        def __init__(self, x: int) -> None:
            self.x = x

        def __await__(self) -> Generator[Any, None, int]:
            return (yield from double(self.x).__await__())

    async with AsyncExecutor(max_workers=1) as ex:
        assert await ex.submit(Awaitable, 5) == 10  # type: ignore[arg-type]


async def test_bound_async_method_is_accepted() -> None:
    """SPEC: any callable returning an awaitable; bound async methods too."""

    class Service:
        def __init__(self) -> None:
            self.base = 100

        async def add(self, x: int) -> int:
            return self.base + x

    async with AsyncExecutor(max_workers=1) as ex:
        assert await ex.submit(Service().add, 1) == 101


# --------------------------------------------------------------------------
# Semaphores
# --------------------------------------------------------------------------

_COMMON_KINDS = ["anyio.CapacityLimiter", "anyio.Semaphore"]
_ASYNCIO_KINDS = ["asyncio.Semaphore", "asyncio.BoundedSemaphore"]
_TRIO_KINDS = ["trio.Semaphore", "trio.CapacityLimiter"]


def _make_limiter(kind: str, n: int) -> Any:
    if kind == "anyio.CapacityLimiter":
        return anyio.CapacityLimiter(n)
    if kind == "anyio.Semaphore":
        return anyio.Semaphore(n)
    if kind == "asyncio.Semaphore":
        return asyncio.Semaphore(n)
    if kind == "asyncio.BoundedSemaphore":
        return asyncio.BoundedSemaphore(n)
    import trio

    if kind == "trio.Semaphore":
        return trio.Semaphore(n)
    return trio.CapacityLimiter(n)


@pytest.mark.parametrize("kind", _COMMON_KINDS + _ASYNCIO_KINDS + _TRIO_KINDS)
async def test_semaphore_kinds_limit_concurrency(
    kind: str, anyio_backend_name: str
) -> None:
    """SPEC: anyio.CapacityLimiter / anyio.Semaphore on every backend,
    asyncio.Semaphore on asyncio, trio.Semaphore / trio.CapacityLimiter on
    trio (backend-specific kinds are skipped on the other backend) cap the
    tasks that use them, independently of max_workers."""
    if kind in _ASYNCIO_KINDS and anyio_backend_name != "asyncio":
        pytest.skip("asyncio primitive: asyncio backends only")
    if kind in _TRIO_KINDS and anyio_backend_name != "trio":
        pytest.skip("trio primitive: trio backend only")
    limiter = _make_limiter(kind, 2)
    gauge = Gauge()
    release = anyio.Event()
    async with AsyncExecutor(max_workers=5) as ex:
        futs = [ex.submit(gauge.gated, release, i, semaphore=limiter) for i in range(6)]
        await anyio.wait_all_tasks_blocked()
        assert gauge.active == 2
        release.set()
    assert gauge.peak == 2
    assert sorted(gauge.entered) == list(range(6))
    assert [await f for f in futs] == list(range(6))


@pytest.mark.parametrize("kind", _ASYNCIO_KINDS)
async def test_asyncio_semaphore_on_trio_is_typeerror_at_submit(
    kind: str, anyio_backend_name: str
) -> None:
    """SPEC: an asyncio primitive on trio is a TypeError at submit."""
    if anyio_backend_name != "trio":
        pytest.skip("trio backend only")
    calls: list[int] = []

    async def record() -> None:
        calls.append(1)

    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(TypeError, match="semaphore"):
            ex.submit(record, semaphore=_make_limiter(kind, 1))
        assert await ex.submit(double, 1) == 2
    assert calls == []


@pytest.mark.parametrize("bad", [5, "sem", threading.Semaphore(1), object()])
async def test_semaphore_that_is_not_an_async_context_manager_is_typeerror(
    bad: Any,
) -> None:
    """SPEC: misuse gets a clear error at the call, naming the argument: a
    semaphore that is not an async context manager is a TypeError at submit."""
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(TypeError, match="semaphore"):
            ex.submit(double, 1, semaphore=bad)


async def test_generic_async_context_manager_as_semaphore() -> None:
    """SPEC: `semaphore` is any async context manager limiter; a user-defined
    one is entered and exited around each task."""
    log: list[str] = []

    class Tracker:
        async def __aenter__(self) -> None:
            log.append("enter")

        async def __aexit__(self, *exc_info: object) -> None:
            log.append("exit")

    async def work(i: int) -> int:
        log.append(f"run{i}")
        return i

    async with AsyncExecutor(max_workers=1) as ex:
        futs = [ex.submit(work, i, semaphore=Tracker()) for i in range(2)]
    assert [await f for f in futs] == [0, 1]
    assert log == ["enter", "run0", "exit", "enter", "run1", "exit"]


async def test_task_waiting_for_semaphore_holds_no_worker_slot() -> None:
    """SPEC: a task waiting for its semaphore does not occupy a worker slot,
    so unrelated work keeps every free worker busy."""
    limiter = anyio.CapacityLimiter(1)
    gauge = Gauge()
    release = anyio.Event()
    free = Gauge()
    async with AsyncExecutor(max_workers=3) as ex:
        holder = ex.submit(gauge.gated, release, 0, semaphore=limiter)
        waiters = [
            ex.submit(gauge.gated, release, i, semaphore=limiter) for i in range(1, 6)
        ]
        others = [ex.submit(free.gated, release, 100 + i) for i in range(4)]
        await anyio.wait_all_tasks_blocked()
        # One worker runs the holder; the 5 waiters hold no slot, so the two
        # other workers run unrelated tasks.
        assert gauge.active == 1
        assert gauge.entered == [0]
        assert free.active == 2
        assert sorted(free.entered) == [100, 101]
        assert [w.done() for w in waiters] == [False] * 5
        release.set()
    assert await holder == 0
    assert [await w for w in waiters] == [1, 2, 3, 4, 5]
    assert [await o for o in others] == [100, 101, 102, 103]
    assert gauge.peak == 1
    # After the release the three workers may briefly all run unrelated
    # tasks (the waiters hold no slot): 2 or 3, never more than max_workers.
    assert free.peak in (2, 3)


async def test_semaphore_shared_by_two_executors() -> None:
    """SPEC: one limiter may be shared by many executors; it caps the total."""
    limiter = anyio.CapacityLimiter(2)
    gauge = Gauge()
    release = anyio.Event()
    async with AsyncExecutor(max_workers=3) as ex1, AsyncExecutor(max_workers=3) as ex2:
        futs = [
            ex1.submit(gauge.gated, release, i, semaphore=limiter) for i in range(3)
        ]
        futs += [
            ex2.submit(gauge.gated, release, i, semaphore=limiter) for i in range(3, 6)
        ]
        await anyio.wait_all_tasks_blocked()
        assert gauge.active == 2
        assert limiter.borrowed_tokens == 2
        release.set()
    assert gauge.peak == 2
    assert [await f for f in futs] == list(range(6))
    assert limiter.borrowed_tokens == 0


async def test_semaphore_is_released_when_task_fails_or_is_cancelled() -> None:
    """SPEC: the semaphore is held only while an attempt runs: a failed or
    cancelled task gives it back."""
    limiter = anyio.CapacityLimiter(1)
    started = anyio.Event()

    async def fail() -> None:
        raise Flaky("x")

    async def block() -> None:
        started.set()
        await anyio.sleep_forever()

    async with AsyncExecutor(max_workers=2) as ex:
        failed = ex.submit(fail, semaphore=limiter)
        blocked = ex.submit(block, semaphore=limiter)
        await started.wait()
        assert isinstance(failed.exception(), Flaky)
        assert limiter.borrowed_tokens == 1
        assert blocked.cancel() is True
        after = ex.submit(double, 5, semaphore=limiter)
        assert await after == 10
    assert blocked.cancelled()
    assert limiter.borrowed_tokens == 0


# --------------------------------------------------------------------------
# Retries (structure; timing is in TestVirtualTime below)
# --------------------------------------------------------------------------


def _failing(
    times: int, value: Any = "ok"
) -> tuple[Callable[[], Any], list[BaseException]]:
    """An async fn failing `times` times with fresh Flaky instances."""
    raised: list[BaseException] = []

    async def fn() -> Any:
        await anyio.lowlevel.checkpoint()
        if len(raised) < times:
            exc = Flaky(f"attempt {len(raised) + 1}")
            raised.append(exc)
            raise exc
        return value

    return fn, raised


@pytest.mark.parametrize("retries", [0, 1, 3])
async def test_retries_make_n_plus_one_attempts_then_reraise_original(
    retries: int,
) -> None:
    """SPEC: retries=N: up to N+1 attempts; after the last one the original
    exception is raised (not tenacity.RetryError)."""
    fn, raised = _failing(times=100)
    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(fn, retries=retries, retry_delay=0)
    assert len(raised) == retries + 1
    exc = fut.exception()
    assert exc is raised[-1]
    assert not isinstance(exc, tenacity.RetryError)
    with pytest.raises(Flaky) as info:
        await fut
    assert info.value is raised[-1]


async def test_retries_stop_at_first_success() -> None:
    """SPEC: retries are attempts "up to" N+1: success ends them."""
    fn, raised = _failing(times=2, value=0)
    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(fn, retries=5, retry_delay=0)
    assert len(raised) == 2
    assert await fut == 0


async def test_every_exception_subclass_is_retried() -> None:
    """SPEC: every Exception is retried (not just some types)."""
    errors = [KeyError("k"), TypeError("t"), RuntimeError("r"), OSError("o")]
    attempts: list[int] = []

    async def fn() -> str:
        attempts.append(1)
        if len(attempts) <= len(errors):
            raise errors[len(attempts) - 1]
        return "done"

    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(fn, retries=4, retry_delay=0)
    assert await fut == "done"
    assert len(attempts) == 5


async def test_baseexception_is_never_retried() -> None:
    """SPEC: BaseExceptions that are not Exceptions are never retried; it
    propagates through the executor."""
    fatal = Fatal("stop")
    attempts: list[int] = []
    futs: list[AsyncFuture[None]] = []

    async def fn() -> None:
        attempts.append(1)
        await anyio.lowlevel.checkpoint()
        raise fatal

    async def run() -> None:
        async with AsyncExecutor(max_workers=1) as ex:
            futs.append(ex.submit(fn, retries=3, retry_delay=0))

    with pytest.raises(BaseException) as info:
        await run()
    assert_only(info.value, fatal)
    assert attempts == [1]
    assert futs[0].done()


async def test_cancellation_is_never_retried() -> None:
    """SPEC: cancellation is never retried: cancel() during an attempt ends
    the future cancelled after exactly one attempt."""
    started = anyio.Event()
    attempts: list[int] = []

    async def fn() -> None:
        attempts.append(1)
        started.set()
        await anyio.sleep_forever()

    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(fn, retries=3, retry_delay=0)
        await started.wait()
        assert fut.cancel() is True
    assert fut.cancelled()
    assert attempts == [1]


async def test_retry_passes_the_same_arguments_each_attempt() -> None:
    """SPEC: each attempt calls fn(*args, **kwargs) afresh with the same args."""
    seen: list[tuple[int, str]] = []

    async def fn(a: int, *, b: str) -> str:
        seen.append((a, b))
        if len(seen) < 3:
            raise Flaky
        return f"{a}{b}"

    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(fn, 1, b="x", retries=2, retry_delay=0)
    assert await fut == "1x"
    assert seen == [(1, "x")] * 3


@pytest.mark.parametrize("retries", [-1, -10])
async def test_negative_retries_is_valueerror(retries: int) -> None:
    """SPEC: negative retries -> ValueError at submit, naming the argument."""
    calls: list[int] = []

    async def fn() -> None:
        calls.append(1)

    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(ValueError, match=r"\bretries\b"):
            ex.submit(fn, retries=retries)
    assert calls == []


async def test_nan_retries_is_rejected() -> None:
    """SPEC: NaN retries is a ValueError, and a non-int retries a TypeError; a
    float NaN is both, so either is accepted, naming the argument."""
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises((ValueError, TypeError), match=r"\bretries\b"):
            ex.submit(double, 1, retries=math.nan)


@pytest.mark.parametrize("retries", [1.0, 2.5, "3", [1]])
async def test_non_int_retries_is_typeerror(retries: Any) -> None:
    """SPEC: a non-int retries -> TypeError at submit, naming the argument."""
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(TypeError, match=r"\bretries\b"):
            ex.submit(double, 1, retries=retries)


@pytest.mark.parametrize("delay", [-0.1, -1, math.nan, -math.inf])
async def test_negative_or_nan_retry_delay_is_valueerror(delay: float) -> None:
    """SPEC: negative or NaN retry_delay -> ValueError at submit, naming it."""
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(ValueError, match=r"\bretry_delay\b"):
            ex.submit(double, 1, retries=2, retry_delay=delay)


async def test_bad_retry_delay_is_rejected_even_without_retries() -> None:
    """SPEC: bad retry_delay is a ValueError at submit (retries=0 included)."""
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(ValueError, match=r"\bretry_delay\b"):
            ex.submit(double, 1, retry_delay=-1)


@pytest.mark.parametrize("delay", ["0.1", None, [0.1]])
async def test_non_number_retry_delay_is_typeerror(delay: Any) -> None:
    """SPEC: a clear error naming the argument: a non-number retry_delay is a
    TypeError at submit."""
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(TypeError, match=r"\bretry_delay\b"):
            ex.submit(double, 1, retries=1, retry_delay=delay)


# --------------------------------------------------------------------------
# Virtual time: exact back-off and semaphore release during back-off
# --------------------------------------------------------------------------


@pytest.mark.virtual_time
class TestVirtualTime:
    """Exact elapsed times on asyncio (async_solipsism) and trio (MockClock)."""

    @staticmethod
    def _timed_failures(
        times: int,
    ) -> tuple[Callable[[], Any], list[float], list[BaseException]]:
        stamps: list[float] = []
        raised: list[BaseException] = []

        async def fn() -> str:
            stamps.append(anyio.current_time())
            if len(stamps) <= times:
                exc = Flaky(f"attempt {len(stamps)}")
                raised.append(exc)
                raise exc
            return "ok"

        return fn, stamps, raised

    @pytest.mark.parametrize(
        ("delay", "expected"),
        [
            (0.5, [0.0, 0.5, 1.5, 3.5]),  # waits 0.5, 1, 2 (the guide's example)
            (0.1, [0.0, 0.1, 0.3, 0.7]),  # waits 0.1, 0.2, 0.4
            (2.0, [0.0, 2.0, 6.0, 14.0]),
            (0.0, [0.0, 0.0, 0.0, 0.0]),
        ],
    )
    async def test_backoff_is_exponential_with_retry_delay_multiplier(
        self, delay: float, expected: list[float]
    ) -> None:
        """SPEC: back-off is exponential with retry_delay as the multiplier
        (0.5, 1, 2, ... for 0.5); the last failure is re-raised as is."""
        fn, stamps, raised = self._timed_failures(times=10)
        start = anyio.current_time()
        async with AsyncExecutor(max_workers=1) as ex:
            fut = ex.submit(fn, retries=3, retry_delay=delay)
        assert [t - start for t in stamps] == pytest.approx(expected, abs=1e-9)
        assert anyio.current_time() - start == pytest.approx(expected[-1], abs=1e-9)
        assert fut.exception() is raised[-1]

    async def test_default_retry_delay_is_0_1(self) -> None:
        """API decision: retry_delay defaults to 0.1."""
        fn, stamps, _ = self._timed_failures(times=2)
        start = anyio.current_time()
        async with AsyncExecutor(max_workers=1) as ex:
            fut = ex.submit(fn, retries=2)
        assert await fut == "ok"
        assert [t - start for t in stamps] == pytest.approx([0.0, 0.1, 0.3], abs=1e-9)

    async def test_semaphore_is_released_during_backoff(self) -> None:
        """SPEC: the semaphore is held only while an attempt runs, not during
        retry back-off: another task takes it while the first one waits."""
        limiter = anyio.CapacityLimiter(1)
        failed_once = anyio.Event()
        stamps: list[tuple[str, float, int]] = []

        async def flaky() -> str:
            stamps.append(("A", anyio.current_time(), limiter.borrowed_tokens))
            if len(stamps) == 1:
                failed_once.set()
                raise Flaky
            return "A"

        async def other() -> str:
            stamps.append(("B", anyio.current_time(), limiter.borrowed_tokens))
            return "B"

        async with AsyncExecutor(max_workers=2) as ex:
            start = anyio.current_time()
            a = ex.submit(flaky, semaphore=limiter, retries=1, retry_delay=100)
            await failed_once.wait()
            b = ex.submit(other, semaphore=limiter)
            assert await b == "B"
            assert not a.done()
        assert await a == "A"
        assert [(name, t - start, held) for name, t, held in stamps] == [
            ("A", 0.0, 1),
            ("B", 0.0, 1),
            ("A", 100.0, 1),
        ]
        assert limiter.borrowed_tokens == 0

    async def test_cancel_during_backoff_stops_retrying(self) -> None:
        """SPEC: cancellation is never retried; back-off sleeps obey the
        task's cancel scope, so cancel() ends it at once."""
        failed_once = anyio.Event()
        attempts: list[float] = []

        async def fn() -> None:
            attempts.append(anyio.current_time())
            failed_once.set()
            raise Flaky

        start = anyio.current_time()
        async with AsyncExecutor(max_workers=1) as ex:
            fut = ex.submit(fn, retries=5, retry_delay=100)
            await failed_once.wait()
            assert fut.cancel() is True
        assert fut.cancelled()
        assert len(attempts) == 1
        assert anyio.current_time() - start == pytest.approx(0.0, abs=1e-9)

    async def test_retry_waits_for_a_busy_semaphore_after_backoff(self) -> None:
        """SPEC: after the back-off a retry needs its semaphore again; it runs
        once the holder gives it back."""
        limiter = anyio.CapacityLimiter(1)
        failed_once = anyio.Event()
        stamps: list[tuple[str, float]] = []

        async def flaky() -> str:
            stamps.append(("A", anyio.current_time()))
            if len(stamps) == 1:
                failed_once.set()
                raise Flaky
            return "A"

        async def hog() -> str:
            stamps.append(("hog", anyio.current_time()))
            await anyio.sleep(5)
            return "hog"

        async with AsyncExecutor(max_workers=2) as ex:
            start = anyio.current_time()
            a = ex.submit(flaky, semaphore=limiter, retries=1, retry_delay=1)
            await failed_once.wait()
            h = ex.submit(hog, semaphore=limiter)
        assert await a == "A"
        assert await h == "hog"
        assert [(n, t - start) for n, t in stamps] == [
            ("A", 0.0),
            ("hog", 0.0),
            ("A", 5.0),
        ]
