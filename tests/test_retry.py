"""Retries and the per-attempt timeout (antflow/_retry.py, antflow/_attempts.py).

Rules pinned here, from docs/guide.md, "Retries" and "Timing out one
attempt", and docs/semantics.md, "Timeouts" and "Cancellation":

* ``retries=N``: up to N + 1 attempts, with exponential back-off from
  ``retry_delay`` (default 0.1 s); the last attempt's own exception is
  raised. Every ``Exception`` is retried; cancellation and other
  ``BaseException``s never are. During the back-off the task gives its
  semaphore back.
* ``retry_on=``: an exception class, a tuple of classes, or a predicate
  ``exc -> bool`` (default ``Exception``); exceptions it rejects fail at once.
* ``retry_max_delay=``: a cap on one back-off wait (default none).
* ``retry_jitter=``: a random extra wait of up to that many seconds
  (default 0).
* All three on ``submit``, ``map`` and ``map_iter``. Cancellation is never
  retried.
* ``task_timeout=``: a deadline for each attempt; an attempt past it is
  cancelled and fails with the builtin ``TimeoutError`` (on trio too), which
  is retried like any other exception when ``retries`` allows.
* Bad values raise at the call, naming the argument (docs/semantics.md,
  "Exceptions").

Also pinned, though docs/ does not state it: a ``retry_on`` predicate that
raises makes the future fail with the predicate's exception.

Exact times are asserted in the ``@pytest.mark.virtual_time`` classes
``TestVirtualTime`` and ``TestBackOffInVirtualTime``; the module-level tests
run on asyncio, uvloop and trio and assert outcomes and attempt counts only.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import tenacity
from _strategies import assert_only

from antflow import AsyncExecutor, AsyncFuture, CancelledError, RateLimiter

pytestmark = pytest.mark.anyio

HANG_GUARD = 1000


class Boom(Exception):
    pass


class SubValueError(ValueError):
    pass


class Flaky(Exception):
    pass


class Fatal(BaseException):
    """A BaseException that is neither an Exception nor a cancellation."""


class Script:
    """A task that raises ``errors[n]`` on its n-th attempt (0-based) and
    returns ``value`` once the errors run out. Records each attempt's start
    time, relative to the moment the script was made."""

    def __init__(
        self, *errors: BaseException, value: Any = "ok", duration: float = 0
    ) -> None:
        self.errors = list(errors)
        self.value = value
        self.duration = duration
        self.t0 = anyio.current_time()
        self.attempts: list[float] = []
        self.cancelled: list[float] = []

    def now(self) -> float:
        return anyio.current_time() - self.t0

    async def __call__(self, *args: Any) -> Any:
        n = len(self.attempts)
        self.attempts.append(self.now())
        try:
            if self.duration:
                await anyio.sleep(self.duration)
            else:
                await anyio.lowlevel.checkpoint()
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(self.now())
            raise
        if n < len(self.errors):
            raise self.errors[n]
        return self.value if not args else (self.value, *args)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def run_call(
    ex: AsyncExecutor, call: str, fn: Callable[..., Any], **options: Any
) -> Any:
    """Run ``fn`` once through submit, or over one item through map/map_iter."""
    if call == "submit":
        return await ex.submit(fn, **options)
    if call == "map":
        return (await ex.map(fn, [1], **options))[0]
    async with ex.map_iter(fn, [1], ordered=call == "map_iter", **options) as results:
        got = [r async for r in results]
    assert len(got) == 1
    return got[0]


CALLS = ["submit", "map", "map_iter", "map_iter_unordered"]


def expected_value(call: str, value: Any = "ok") -> Any:
    return value if call == "submit" else (value, 1)


# --------------------------------------------------------------------------
# retries= (all backends; timing is in TestBackOffInVirtualTime)
# --------------------------------------------------------------------------


async def double(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * x


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
    """retries=N: up to N + 1 attempts; after the last one, that attempt's
    own exception is raised, not tenacity.RetryError (docs/guide.md,
    "Retries")."""
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
    """retries=N gives "up to N + 1 attempts": success ends them
    (docs/guide.md, "Retries")."""
    fn, raised = _failing(times=2, value=0)
    async with AsyncExecutor(max_workers=1) as ex:
        fut = ex.submit(fn, retries=5, retry_delay=0)
    assert len(raised) == 2
    assert await fut == 0


async def test_every_exception_subclass_is_retried() -> None:
    """Every Exception is retried, not just some types: retry_on defaults to
    Exception (docs/guide.md, "Retries")."""
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
    """BaseExceptions that are not Exceptions are never retried
    (docs/guide.md, "Retries"); it propagates out of the executor
    (docs/semantics.md, "Exceptions")."""
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
    """Cancellation is never retried: cancel() during an attempt ends the
    future cancelled after exactly one attempt (docs/guide.md, "Retries";
    docs/semantics.md, "Cancellation")."""
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
    """Each attempt calls fn(*args, **kwargs) afresh with the same arguments:
    an attempt of the same task (docs/guide.md, "Retries")."""
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
    """A negative retries is a ValueError at submit, naming the argument
    (docs/semantics.md, "Exceptions")."""
    calls: list[int] = []

    async def fn() -> None:
        calls.append(1)

    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(ValueError, match=r"\bretries\b"):
            ex.submit(fn, retries=retries)
    assert calls == []


async def test_nan_retries_is_rejected() -> None:
    """A value out of range is a ValueError, a wrong type a TypeError
    (docs/semantics.md, "Exceptions"); a float NaN is both, so either is
    accepted, naming the argument."""
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises((ValueError, TypeError), match=r"\bretries\b"):
            ex.submit(double, 1, retries=math.nan)


@pytest.mark.parametrize("retries", [1.0, 2.5, "3", [1]])
async def test_non_int_retries_is_typeerror(retries: Any) -> None:
    """A retries that is not an int is a TypeError at submit, naming the
    argument (docs/semantics.md, "Exceptions")."""
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(TypeError, match=r"\bretries\b"):
            ex.submit(double, 1, retries=retries)


@pytest.mark.parametrize("delay", [-0.1, -1, math.nan, -math.inf])
async def test_negative_or_nan_retry_delay_is_valueerror(delay: float) -> None:
    """A negative or NaN retry_delay is a ValueError at submit, naming it
    (docs/semantics.md, "Exceptions")."""
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(ValueError, match=r"\bretry_delay\b"):
            ex.submit(double, 1, retries=2, retry_delay=delay)


async def test_bad_retry_delay_is_rejected_even_without_retries() -> None:
    """A bad retry_delay is a ValueError at submit, with retries=0 too:
    misuse is reported at the call that made it (docs/semantics.md,
    "Exceptions")."""
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(ValueError, match=r"\bretry_delay\b"):
            ex.submit(double, 1, retry_delay=-1)


@pytest.mark.parametrize("delay", ["0.1", None, [0.1]])
async def test_non_number_retry_delay_is_typeerror(delay: Any) -> None:
    """A retry_delay that is not a number is a TypeError at submit, naming
    the argument (docs/semantics.md, "Exceptions")."""
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(TypeError, match=r"\bretry_delay\b"):
            ex.submit(double, 1, retries=1, retry_delay=delay)


# --------------------------------------------------------------------------
# retry_on (all backends)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("call", CALLS)
async def test_retry_on_class_retries_it_and_its_subclasses(call: str) -> None:
    script = Script(ValueError("a"), SubValueError("b"))
    async with AsyncExecutor(max_workers=2) as ex:
        got = await run_call(
            ex, call, script, retries=5, retry_delay=0, retry_on=ValueError
        )
    assert got == expected_value(call)
    assert len(script.attempts) == 3


@pytest.mark.parametrize("call", CALLS)
async def test_retry_on_class_fails_at_once_on_another_exception(call: str) -> None:
    error = KeyError("not retried")
    script = Script(error)
    async with AsyncExecutor(max_workers=2) as ex:
        with pytest.raises(KeyError) as info:
            await run_call(
                ex, call, script, retries=5, retry_delay=0, retry_on=ValueError
            )
    assert info.value is error
    assert len(script.attempts) == 1


async def test_retry_on_tuple_retries_each_listed_class_only() -> None:
    listed = Script(ValueError("v"), KeyError("k"), ValueError("v2"))
    unlisted = Script(KeyError("k"), TypeError("t"))
    async with AsyncExecutor(max_workers=2) as ex:
        ok = ex.submit(
            listed, retries=5, retry_delay=0, retry_on=(ValueError, KeyError)
        )
        bad = ex.submit(
            unlisted, retries=5, retry_delay=0, retry_on=(ValueError, KeyError)
        )
        assert await ok == "ok"
        with pytest.raises(TypeError, match="t"):
            await bad
    assert len(listed.attempts) == 4
    assert len(unlisted.attempts) == 2


async def test_retry_on_empty_tuple_retries_nothing() -> None:
    script = Script(ValueError("v"))
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(ValueError, match="v"):
            await ex.submit(script, retries=5, retry_delay=0, retry_on=())
    assert len(script.attempts) == 1


@pytest.mark.parametrize("call", CALLS)
async def test_retry_on_predicate_decides_per_exception(call: str) -> None:
    """The predicate gets the exception object itself; True retries, False
    fails at once with that exception."""
    transient1, transient2, fatal = Boom("transient"), Boom("transient"), Boom("fatal")
    asked: list[BaseException] = []

    def is_transient(exc: BaseException) -> bool:
        asked.append(exc)
        return isinstance(exc, Boom) and exc.args == ("transient",)

    retried = Script(transient1, transient2)
    stopped = Script(transient1, fatal, Boom("never raised"))
    async with AsyncExecutor(max_workers=2) as ex:
        options = {"retries": 5, "retry_delay": 0, "retry_on": is_transient}
        assert await run_call(ex, call, retried, **options) == expected_value(call)
        assert asked == [transient1, transient2]
        with pytest.raises(Boom) as info:
            await run_call(ex, call, stopped, **options)
    assert info.value is fatal
    assert asked == [transient1, transient2, transient1, fatal]
    assert (len(retried.attempts), len(stopped.attempts)) == (3, 2)


@pytest.mark.parametrize("call", CALLS)
async def test_retry_on_predicate_that_raises_fails_the_future_with_its_error(
    call: str,
) -> None:
    """The predicate's exception ends up in the future (not a crash of the
    executor, not swallowed); the executor and its other tasks go on."""
    broken = RuntimeError("predicate broke")

    def predicate(exc: BaseException) -> bool:
        raise broken

    script = Script(Boom("first"), Boom("second"))
    bystander = Script(Boom("x"))
    async with AsyncExecutor(max_workers=2) as ex:
        other = ex.submit(bystander, retries=1, retry_delay=0)
        with pytest.raises(RuntimeError) as info:
            await run_call(
                ex, call, script, retries=5, retry_delay=0, retry_on=predicate
            )
        assert info.value is broken
        assert await other == "ok"
        assert await ex.submit(Script()) == "ok"
        s = ex.statistics()
        assert (s.succeeded, s.failed, s.cancelled) == (2, 1, 0)
    assert len(script.attempts) == 1
    assert len(bystander.attempts) == 2


async def test_retries_exhausted_raise_the_last_original_exception() -> None:
    last = ValueError("third")
    script = Script(ValueError("first"), ValueError("second"), last)
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(ValueError) as info:
            await ex.submit(script, retries=2, retry_delay=0, retry_on=ValueError)
    assert info.value is last
    assert len(script.attempts) == 3


async def test_retry_on_without_retries_never_retries() -> None:
    script = Script(ValueError("v"))
    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(ValueError, match="v"):
            await ex.submit(
                script, retry_on=ValueError, retry_jitter=1, retry_max_delay=2
            )
    assert len(script.attempts) == 1


@pytest.mark.parametrize(
    "retry_on",
    [BaseException, lambda exc: True, (BaseException, Exception)],
    ids=["BaseException", "always", "tuple"],
)
async def test_cancelling_a_running_attempt_is_never_retried(retry_on: Any) -> None:
    """Even a retry_on that accepts everything does not retry cancellation."""
    started = anyio.Event()
    attempts: list[int] = []

    async def blocked() -> None:
        attempts.append(1)
        started.set()
        await anyio.sleep_forever()

    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=1) as ex:
            fut = ex.submit(blocked, retries=5, retry_delay=0, retry_on=retry_on)
            await started.wait()
            assert fut.cancel() is True
            with pytest.raises(CancelledError):
                await fut
            await anyio.wait_all_tasks_blocked()
            assert ex.statistics().running == 0
    assert attempts == [1]


@pytest.mark.parametrize("how", ["cancel", "shutdown", "outer"])
async def test_cancellation_during_back_off_is_not_retried(how: str) -> None:
    """Cancelled while waiting to retry: the future ends cancelled, and no
    further attempt is made (the back-off would be an hour)."""
    script = Script(*[Boom(i) for i in range(10)])
    fut: Any = None
    with anyio.fail_after(HANG_GUARD):
        with anyio.CancelScope() as outer:
            async with AsyncExecutor(max_workers=1) as ex:
                fut = ex.submit(
                    script, retries=5, retry_delay=3600, retry_on=lambda e: True
                )
                await anyio.wait_all_tasks_blocked()
                assert len(script.attempts) == 1
                assert fut.running()
                if how == "cancel":
                    assert fut.cancel() is True
                    with pytest.raises(CancelledError):
                        await fut
                elif how == "shutdown":
                    await ex.shutdown(cancel_futures=True)
                else:
                    outer.cancel()
                    await anyio.sleep_forever()
        assert outer.cancel_called == (how == "outer")
    assert fut.cancelled()
    assert len(script.attempts) == 1


# --------------------------------------------------------------------------
# bad arguments (all backends)
# --------------------------------------------------------------------------


def _call_with(ex: AsyncExecutor, call: str, **options: Any) -> Any:
    """Make the call; return the coroutine for map (awaited by the caller)."""
    fn = Script()
    if call == "submit":
        return ex.submit(fn, **options)
    if call == "map":
        return ex.map(fn, [1, 2], **options)
    return ex.map_iter(fn, [1, 2], **options)


async def _expect_error_at_call(
    call: str, error: type[Exception], match: str, **options: Any
) -> None:
    async with AsyncExecutor(max_workers=2) as ex:
        with pytest.raises(error, match=match):
            made = _call_with(ex, call, **options)
            if call == "map":
                await made
        assert ex.statistics().submitted == 0


@pytest.mark.parametrize("call", ["submit", "map", "map_iter"])
@pytest.mark.parametrize(
    "retry_on",
    ["ValueError", 42, None, [ValueError], (ValueError, "KeyError"), (ValueError, 3)],
    ids=repr,
)
async def test_bad_retry_on_is_typeerror_at_the_call(call: str, retry_on: Any) -> None:
    await _expect_error_at_call(
        call, TypeError, "retry_on", retries=1, retry_on=retry_on
    )


async def test_bad_retry_on_is_refused_even_without_retries() -> None:
    await _expect_error_at_call("submit", TypeError, "retry_on", retry_on="ValueError")


@pytest.mark.parametrize("retry_on", [int, str, object], ids=repr)
async def test_non_exception_class_as_retry_on_is_typeerror_at_the_call(
    retry_on: Any,
) -> None:
    """A class is callable, but one that is not an exception class is a
    misuse, not a predicate."""
    await _expect_error_at_call(
        "submit", TypeError, "retry_on", retries=1, retry_on=retry_on
    )


@pytest.mark.parametrize("call", ["submit", "map", "map_iter"])
@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("retry_max_delay", -1, ValueError),
        ("retry_max_delay", math.nan, ValueError),
        ("retry_max_delay", "1", TypeError),
        ("retry_max_delay", True, TypeError),
        ("retry_jitter", -0.5, ValueError),
        ("retry_jitter", math.nan, ValueError),
        ("retry_jitter", math.inf, ValueError),
        ("retry_jitter", "0.1", TypeError),
        ("retry_jitter", True, TypeError),
        ("task_timeout", -1, ValueError),
        ("task_timeout", math.nan, ValueError),
        ("task_timeout", "1", TypeError),
        ("task_timeout", True, TypeError),
    ],
    ids=repr,
)
async def test_bad_option_is_an_error_at_the_call_naming_it(
    call: str, name: str, value: Any, error: type[Exception]
) -> None:
    await _expect_error_at_call(call, error, name, retries=1, **{name: value})


@pytest.mark.parametrize("name", ["retry_max_delay", "retry_jitter", "task_timeout"])
async def test_bad_option_is_refused_even_without_retries(name: str) -> None:
    await _expect_error_at_call("submit", ValueError, name, **{name: -1})


# --------------------------------------------------------------------------
# task_timeout (all backends; outcomes only)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("call", CALLS)
async def test_attempt_past_task_timeout_fails_with_builtin_timeouterror(
    call: str,
) -> None:
    """The task waits for an event that never comes: the deadline ends it
    with the builtin TimeoutError (never trio.TooSlowError), after its
    cancellation has run its clean-up."""
    never = anyio.Event()
    cleaned_up: list[bool] = []

    async def hang(*args: Any) -> None:
        try:
            await never.wait()
        finally:
            cleaned_up.append(True)

    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=2) as ex:
            with pytest.raises(TimeoutError) as info:
                await run_call(ex, call, hang, task_timeout=0.05)
            assert ex.statistics().failed == 1
    assert type(info.value) is TimeoutError
    assert cleaned_up == [True]


async def test_timed_out_attempts_are_retried_then_the_timeout_is_raised() -> None:
    never = anyio.Event()
    attempts: list[int] = []

    async def hang() -> None:
        attempts.append(1)
        await never.wait()

    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=1) as ex:
            with pytest.raises(TimeoutError):
                await ex.submit(hang, task_timeout=0.02, retries=2, retry_delay=0)
            assert ex.statistics().retries == 2
    assert attempts == [1, 1, 1]


async def test_task_timeout_does_not_touch_a_fast_attempt() -> None:
    script = Script(value=42)
    async with AsyncExecutor(max_workers=1) as ex:
        assert await ex.submit(script, task_timeout=3600) == 42
        assert await ex.map(script, [1, 2], task_timeout=3600) == [(42, 1), (42, 2)]
    assert script.cancelled == []


async def test_task_timeout_combines_with_retry_on() -> None:
    """TimeoutError is an ordinary exception to retry_on: excluded, the first
    timeout fails the task; included, it is retried."""
    never = anyio.Event()
    attempts: dict[str, int] = {}

    async def hang(name: str) -> None:
        attempts[name] = attempts.get(name, 0) + 1
        await never.wait()

    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=2) as ex:
            excluded = ex.submit(
                hang,
                "excluded",
                task_timeout=0.02,
                retries=3,
                retry_delay=0,
                retry_on=ValueError,
            )
            included = ex.submit(
                hang,
                "included",
                task_timeout=0.02,
                retries=2,
                retry_delay=0,
                retry_on=TimeoutError,
            )
            with pytest.raises(TimeoutError):
                await excluded
            with pytest.raises(TimeoutError):
                await included
    assert attempts == {"excluded": 1, "included": 3}


async def test_cancel_during_a_timed_attempt_is_cancellation_not_timeout() -> None:
    started = anyio.Event()
    attempts: list[int] = []

    async def blocked() -> None:
        attempts.append(1)
        started.set()
        await anyio.sleep_forever()

    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=1) as ex:
            fut = ex.submit(blocked, task_timeout=3600, retries=3, retry_delay=0)
            await started.wait()
            assert fut.cancel()
            with pytest.raises(CancelledError):
                await fut
            assert fut.cancelled()
    assert attempts == [1]


# --------------------------------------------------------------------------
# exact times (virtual clock)
# --------------------------------------------------------------------------


@pytest.mark.virtual_time
class TestVirtualTime:
    """Back-off waits and attempt deadlines, to the virtual second."""

    # -- retry_max_delay ----------------------------------------------------

    @pytest.mark.parametrize("call", CALLS)
    async def test_retry_max_delay_caps_each_wait(self, call: str) -> None:
        """Back-off 1, 2, 4, 8 capped at 3: waits 1, 2, 3, 3."""
        script = Script(*[Boom(i) for i in range(4)])
        async with AsyncExecutor(max_workers=1) as ex:
            got = await run_call(
                ex, call, script, retries=4, retry_delay=1, retry_max_delay=3
            )
        assert got == expected_value(call)
        assert script.attempts == [0.0, 1.0, 3.0, 6.0, 9.0]

    async def test_without_retry_max_delay_the_waits_keep_doubling(self) -> None:
        script = Script(*[Boom(i) for i in range(4)])
        async with AsyncExecutor(max_workers=1) as ex:
            assert await ex.submit(script, retries=4, retry_delay=1) == "ok"
        assert script.attempts == [0.0, 1.0, 3.0, 7.0, 15.0]

    async def test_retry_max_delay_above_every_wait_changes_nothing(self) -> None:
        script = Script(Boom(1), Boom(2))
        async with AsyncExecutor(max_workers=1) as ex:
            assert (
                await ex.submit(script, retries=2, retry_delay=1, retry_max_delay=100)
                == "ok"
            )
        assert script.attempts == [0.0, 1.0, 3.0]

    async def test_retry_max_delay_zero_retries_at_once(self) -> None:
        script = Script(Boom(1), Boom(2))
        async with AsyncExecutor(max_workers=1) as ex:
            assert (
                await ex.submit(script, retries=2, retry_delay=5, retry_max_delay=0)
                == "ok"
            )
        assert script.attempts == [0.0, 0.0, 0.0]

    async def test_retry_max_delay_caps_the_jittered_wait(self) -> None:
        """The cap is on one whole wait: back-off 1, 2, 4 plus up to 10 s of
        jitter never waits more than 1.5 s."""
        script = Script(*[Boom(i) for i in range(3)])
        async with AsyncExecutor(max_workers=1) as ex:
            assert (
                await ex.submit(
                    script,
                    retries=3,
                    retry_delay=1,
                    retry_jitter=10,
                    retry_max_delay=1.5,
                )
                == "ok"
            )
        waits = gaps(script.attempts)
        assert len(waits) == 3
        assert all(1.0 - 1e-9 <= w <= 1.5 + 1e-9 for w in waits), waits

    # -- retry_jitter --------------------------------------------------------

    @pytest.mark.parametrize("call", CALLS)
    async def test_retry_jitter_adds_up_to_that_much_to_each_wait(
        self, call: str
    ) -> None:
        """Back-off 1, 2, 4 plus jitter in [0, 0.5]; over several tasks the
        extra waits are not all equal (they are random)."""
        scripts = [Script(*[Boom(i) for i in range(3)]) for _ in range(8)]
        async with AsyncExecutor(max_workers=8) as ex, anyio.create_task_group() as tg:
            for script in scripts:
                tg.start_soon(
                    functools.partial(
                        run_call,
                        ex,
                        call,
                        script,
                        retries=3,
                        retry_delay=1,
                        retry_jitter=0.5,
                    )
                )
        extras: list[float] = []
        for script in scripts:
            waits = gaps(script.attempts)
            assert len(waits) == 3
            for base, wait in zip([1.0, 2.0, 4.0], waits, strict=True):
                assert base - 1e-9 <= wait <= base + 0.5 + 1e-9, waits
                extras.append(wait - base)
        assert len({round(e, 9) for e in extras}) > 1

    async def test_retry_jitter_with_zero_delay(self) -> None:
        scripts = [Script(*[Boom(i) for i in range(2)]) for _ in range(8)]
        async with AsyncExecutor(max_workers=8) as ex:
            futures = [
                ex.submit(s, retries=2, retry_delay=0, retry_jitter=2) for s in scripts
            ]
            assert [await f for f in futures] == ["ok"] * 8
        waits = [w for s in scripts for w in gaps(s.attempts)]
        assert len(waits) == 16
        assert all(0 <= w <= 2 + 1e-9 for w in waits), waits
        assert len({round(w, 9) for w in waits}) > 1

    async def test_default_jitter_is_zero(self) -> None:
        script = Script(Boom(1), Boom(2))
        async with AsyncExecutor(max_workers=1) as ex:
            assert await ex.submit(script, retries=2, retry_delay=0.5) == "ok"
        assert script.attempts == [0.0, 0.5, 1.5]

    # -- cancellation during back-off ---------------------------------------

    async def test_cancel_during_back_off_ends_the_task_at_once(self) -> None:
        script = Script(*[Boom(i) for i in range(5)])
        async with AsyncExecutor(max_workers=1) as ex:
            fut = ex.submit(script, retries=5, retry_delay=10, retry_on=lambda e: True)
            await anyio.sleep(1)
            assert fut.cancel()
            with pytest.raises(CancelledError):
                await fut
            assert script.now() == 1.0
            await anyio.sleep(100)
        assert script.attempts == [0.0]

    # -- task_timeout --------------------------------------------------------

    @pytest.mark.parametrize("call", CALLS)
    async def test_attempt_is_cancelled_exactly_at_its_deadline(
        self, call: str
    ) -> None:
        script = Script(duration=10)
        async with AsyncExecutor(max_workers=1) as ex:
            with pytest.raises(TimeoutError) as info:
                await run_call(ex, call, script, task_timeout=2)
            assert script.now() == 2.0
        assert type(info.value) is TimeoutError
        assert script.attempts == [0.0]
        assert script.cancelled == [2.0]

    async def test_attempt_finishing_before_its_deadline_is_unaffected(self) -> None:
        script = Script(duration=1.5, value="done")
        async with AsyncExecutor(max_workers=1) as ex:
            assert await ex.submit(script, task_timeout=2) == "done"
            assert script.now() == 1.5
        assert script.cancelled == []

    async def test_each_attempt_gets_its_own_deadline(self) -> None:
        """Attempts 0-2, back-off 1, 3-5, back-off 2, 7-9: TimeoutError at 9."""
        script = Script(duration=10)
        async with AsyncExecutor(max_workers=1) as ex:
            with pytest.raises(TimeoutError):
                await ex.submit(script, task_timeout=2, retries=2, retry_delay=1)
            assert script.now() == 9.0
            s = ex.statistics()
            assert (s.failed, s.retries) == (1, 2)
        assert script.attempts == [0.0, 3.0, 7.0]
        assert script.cancelled == [2.0, 5.0, 9.0]

    async def test_a_retry_that_beats_the_deadline_succeeds(self) -> None:
        attempts: list[float] = []
        t0 = anyio.current_time()

        async def slow_then_fast() -> str:
            attempts.append(anyio.current_time() - t0)
            await anyio.sleep(10 if len(attempts) == 1 else 1)
            return "second"

        async with AsyncExecutor(max_workers=1) as ex:
            fut = ex.submit(slow_then_fast, task_timeout=2, retries=1, retry_delay=0.5)
            assert await fut == "second"
            assert anyio.current_time() - t0 == 3.5
        assert attempts == [0.0, 2.5]

    async def test_deadline_starts_with_the_attempt_not_the_submission(self) -> None:
        """Time spent queued behind a busy worker, or waiting for a rate
        token, is not part of the attempt."""
        script = Script(duration=1.5, value="late but fine")

        async def hog() -> None:
            await anyio.sleep(5)

        async with AsyncExecutor(max_workers=1) as ex:
            ex.submit(hog)
            queued = ex.submit(script, task_timeout=2)
            assert await queued == "late but fine"
            assert script.now() == 6.5
            limiter = RateLimiter(1, per=10)
            assert limiter.try_acquire()  # the next token comes at 16.5
            assert (
                await ex.submit(script, task_timeout=2, rate_limit=limiter)
                == "late but fine"
            )
        assert script.attempts == [5.0, 16.5]
        assert script.cancelled == []

    async def test_task_timeout_on_map_fails_the_map(self) -> None:
        """Items take 1, 3, 1 s with a 2 s deadline each: item 1 times out at
        t=2; map raises it and cancels the rest."""
        t0 = anyio.current_time()

        async def work(duration: float) -> float:
            await anyio.sleep(duration)
            return duration

        async with AsyncExecutor(max_workers=3) as ex:
            with pytest.raises(TimeoutError):
                await ex.map(work, [1, 3, 1], task_timeout=2)
            assert anyio.current_time() - t0 == 2.0
            got: list[float] = []
            with pytest.raises(TimeoutError):
                async for r in ex.map_iter(work, [1, 3, 1], task_timeout=2):
                    got.append(r)
            assert got == [1]
            assert anyio.current_time() - t0 == 4.0

    async def test_task_timeout_with_retry_on_timeout_in_map(self) -> None:
        """Each item's first attempt is slow, the second quick."""
        attempts: dict[int, int] = {}
        t0 = anyio.current_time()

        async def work(x: int) -> int:
            attempts[x] = attempts.get(x, 0) + 1
            await anyio.sleep(10 if attempts[x] == 1 else 1)
            return x

        async with AsyncExecutor(max_workers=3) as ex:
            got = await ex.map(
                work,
                range(3),
                task_timeout=2,
                retries=1,
                retry_delay=1,
                retry_on=TimeoutError,
            )
            assert got == [0, 1, 2]
            assert anyio.current_time() - t0 == 4.0
        assert attempts == {0: 2, 1: 2, 2: 2}


# --------------------------------------------------------------------------
# back-off, to the virtual second
# --------------------------------------------------------------------------


@pytest.mark.virtual_time
class TestBackOffInVirtualTime:
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
            (0.5, [0.0, 0.5, 1.5, 3.5]),  # waits 0.5, 1, 2
            (0.1, [0.0, 0.1, 0.3, 0.7]),  # waits 0.1, 0.2, 0.4
            (2.0, [0.0, 2.0, 6.0, 14.0]),
            (0.0, [0.0, 0.0, 0.0, 0.0]),
        ],
    )
    async def test_backoff_is_exponential_with_retry_delay_multiplier(
        self, delay: float, expected: list[float]
    ) -> None:
        """The back-off is exponential: retry_delay, then twice that, then
        four times (0.5, 1, 2 for 0.5); the last failure is raised as it is
        (docs/guide.md, "Retries")."""
        fn, stamps, raised = self._timed_failures(times=10)
        start = anyio.current_time()
        async with AsyncExecutor(max_workers=1) as ex:
            fut = ex.submit(fn, retries=3, retry_delay=delay)
        assert [t - start for t in stamps] == pytest.approx(expected, abs=1e-9)
        assert anyio.current_time() - start == pytest.approx(expected[-1], abs=1e-9)
        assert fut.exception() is raised[-1]

    async def test_default_retry_delay_is_0_1(self) -> None:
        """retry_delay is 0.1 s unless you say otherwise (docs/guide.md,
        "Retries")."""
        fn, stamps, _ = self._timed_failures(times=2)
        start = anyio.current_time()
        async with AsyncExecutor(max_workers=1) as ex:
            fut = ex.submit(fn, retries=2)
        assert await fut == "ok"
        assert [t - start for t in stamps] == pytest.approx([0.0, 0.1, 0.3], abs=1e-9)

    async def test_semaphore_is_released_during_backoff(self) -> None:
        """During the back-off the task gives back its semaphore: another
        task takes it while the first one waits (docs/guide.md, "Retries";
        docs/semantics.md, "Tokens")."""
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
        """Cancellation is never retried, and the back-off obeys cancel(),
        which ends the task at once: no retry that was due starts
        (docs/guide.md, "Retries"; docs/semantics.md, "Cancellation")."""
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
        """Each new attempt queues for the semaphore again; it runs once the
        holder gives it back (docs/guide.md, "Retries")."""
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
