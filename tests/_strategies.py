"""Shared helpers for the tests in every folder (``from _strategies import ...``).

Nothing here is a test. It holds:

* exception types the tests raise (a falsy ``Exception``, a ``BaseException``
  that is neither cancellation nor ``KeyboardInterrupt``), and hypothesis
  strategies drawing them;
* limiter factories for "random mixes of shared limiters" on each backend;
* virtual clocks: ``virtual_options`` (what conftest.py's ``anyio_backend``
  fixture uses too) and ``run_virtual``, to run one coroutine function on a
  virtual-time loop, for tests that compare backends inside one sync test;
* ``examples``: scale a test's example count from the active profile;
* ``assert_only`` (a BaseException came out alone) and ``Gauge`` (how many
  tasks are inside a critical section at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
from hypothesis import settings
from hypothesis import strategies as st

# --------------------------------------------------------------------------
# Exceptions
# --------------------------------------------------------------------------


class Boom(Exception):
    """An ordinary task failure."""


class FalsyError(Exception):
    """An exception whose instances are falsy: ``if exc:`` must not be used
    to ask "did it fail?"."""

    def __bool__(self) -> bool:
        return False

    def __len__(self) -> int:
        return 0


class Crash(BaseException):
    """A BaseException from a task: never stored, always propagates.

    Not KeyboardInterrupt or SystemExit, which asyncio lets escape the
    event loop itself (see faults/test_faults.py for those)."""


class Oops(Exception):
    """Raised by the body of an ``async with`` block."""


#: Exception factories a task may raise; each call makes a fresh object so
#: tests can check identity.
EXCEPTION_FACTORIES: dict[str, Callable[[int], Exception]] = {
    "boom": lambda i: Boom(i),
    "falsy": lambda i: FalsyError(),
    "value": lambda i: ValueError(i),
    "key": lambda i: KeyError(i),
    "runtime": lambda i: RuntimeError(i),
}

exception_kinds = st.sampled_from(sorted(EXCEPTION_FACTORIES))

#: Values a task may return, falsy ones included.
values = st.one_of(
    st.integers(-3, 1000),
    st.sampled_from([None, 0, "", False, (), "x"]),
)

# --------------------------------------------------------------------------
# Limiters
# --------------------------------------------------------------------------

#: Kinds of limiter a task may be given. "native" is asyncio.Semaphore on
#: asyncio and trio.Semaphore on trio; "native_capacity" is
#: asyncio.BoundedSemaphore / trio.CapacityLimiter; "cm" is a plain async context manager
#: (entered inside the worker, not parked).
LIMITER_KINDS = ("capacity", "anyio_sem", "native", "native_capacity", "cm")


class CountingContextManager:
    """A user-defined async context manager limiter with ``tokens`` slots.

    It has no non-blocking acquire antflow knows about, so antflow enters it
    inside the worker around each attempt."""

    def __init__(self, tokens: int) -> None:
        self.semaphore = anyio.Semaphore(tokens)

    async def __aenter__(self) -> None:
        await self.semaphore.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.semaphore.release()


def make_limiter(kind: str, tokens: int) -> Any:
    """Build a limiter of ``kind`` on the running backend."""
    backend = anyio.lowlevel.current_token().backend_class.__module__
    on_trio = "trio" in backend
    if kind == "capacity":
        return anyio.CapacityLimiter(tokens)
    if kind == "anyio_sem":
        return anyio.Semaphore(tokens)
    if kind == "native":
        if on_trio:
            import trio

            return trio.Semaphore(tokens)
        return asyncio.Semaphore(tokens)
    if kind == "native_capacity":
        if on_trio:
            import trio

            return trio.CapacityLimiter(tokens)
        return asyncio.BoundedSemaphore(tokens)
    if kind == "cm":
        return CountingContextManager(tokens)
    raise AssertionError(kind)


# --------------------------------------------------------------------------
# Running things
# --------------------------------------------------------------------------


def task_count() -> int:
    return len(anyio.get_running_tasks())


async def ticks(n: int) -> None:
    """``n`` scheduling points: a portable, time-free "duration"."""
    for _ in range(n):
        await anyio.lowlevel.checkpoint()


async def swallow_cancellation(started: anyio.Event | None = None) -> str:
    """Wait for ever (setting ``started`` first); when cancelled, return
    ``"swallowed"`` instead of raising."""
    if started is not None:
        started.set()
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        return "swallowed"
    return "unreachable"


async def aiterate(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        await anyio.lowlevel.checkpoint()
        yield item


def virtual_options(backend: str) -> dict[str, Any]:
    """anyio ``backend_options`` for a fresh virtual clock on ``backend``.

    trio gets ``MockClock(autojump_threshold=0)``, asyncio async_solipsism's
    event loop: both jump forward whenever every task is blocked. The
    ``anyio_backend`` fixture of conftest.py builds its clocks here too."""
    if backend == "trio":
        from trio.testing import MockClock

        return {"clock": MockClock(autojump_threshold=0)}
    import async_solipsism

    return {"loop_factory": async_solipsism.EventLoop}


def run_virtual(backend: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run ``fn(*args)`` on ``backend`` in virtual time; return its result."""
    return anyio.run(
        fn, *args, backend=backend, backend_options=virtual_options(backend)
    )


def examples(fraction: float, minimum: int = 5) -> int:
    """A share of the active profile's max_examples, for expensive tests."""
    return max(minimum, int(settings().max_examples * fraction))


@contextlib.contextmanager
def no_leaked_tasks() -> Any:
    """Assert the number of running tasks is the same on exit as on entry."""
    before = task_count()
    yield
    assert task_count() == before


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Current resident set size, in MiB (Linux; else the peak)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def us(seconds: float) -> int:
    """Virtual time in whole microseconds.

    async_solipsism keeps time as integer ticks of 1e-6 s (``ticks * 1e-6``),
    trio's MockClock as an exact float sum; both agree exactly once rounded
    to the microsecond, as long as every duration is a whole number of
    microseconds (all durations in these tests are)."""
    return round(seconds * 1_000_000)


def is_virtual() -> bool:
    """Does the running loop's clock jump forward when every task is blocked?"""
    if "trio" in anyio.lowlevel.current_token().backend_class.__module__:
        import trio.lowlevel
        from trio.testing import MockClock

        return isinstance(trio.lowlevel.current_clock(), MockClock)
    import async_solipsism

    return isinstance(asyncio.get_running_loop(), async_solipsism.EventLoop)


def hang_guard() -> float:
    """A deadline so a hang is a failure, not a stall.

    In virtual time (trio's MockClock, async_solipsism) a deadlock jumps
    straight to it, so it lies far beyond any scenario's virtual duration;
    in real time (asyncio, uvloop) it is a generous few seconds."""
    return 100_000.0 if is_virtual() else 5.0


# --------------------------------------------------------------------------
# Checking what happened
# --------------------------------------------------------------------------


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from _leaves(sub)
    else:
        yield exc


def assert_only(raised: BaseException, expected: BaseException) -> None:
    """`raised` is `expected` itself, or a group whose sole leaf is `expected`.

    docs/semantics.md ("Exceptions") says a task's BaseException propagates
    out of the ``async with`` block, not whether it comes wrapped in an
    ExceptionGroup; either way nothing else may ride along with it.
    """
    leaves = list(_leaves(raised))
    assert len(leaves) == 1, repr(raised)
    assert leaves[0] is expected, repr(raised)


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
# Task events (antflow.events)
# --------------------------------------------------------------------------


def event_problems(events: list[Any]) -> list[str]:
    """What is wrong with a run's events, in the order a hook received them
    (docs/observability.md, "Order"): per job, one ``Queued`` first and one
    final event last; attempts numbered 1, 2, ...; ``Waiting`` only between
    attempts; ``TimedOut``/``Retrying`` about the attempt that just ran; the
    final event's count of attempts; one position; and times that never go
    back, per job and over the whole run."""
    from antflow.events import (
        FinalEvent,
        Queued,
        Retrying,
        Started,
        TimedOut,
        Waiting,
    )

    problems: list[str] = []
    by_job: dict[tuple[int, int], list[Any]] = {}
    last_time = -math.inf
    for event in events:
        if event.time < last_time:
            problems.append(f"time went back at {event}")
        last_time = max(last_time, event.time)
        by_job.setdefault((event.executor, event.job), []).append(event)
    for key, sequence in by_job.items():
        where = f"job {key}: {[type(e).__name__ for e in sequence]}"
        if not isinstance(sequence[0], Queued):
            problems.append(f"{where}: does not start with Queued")
        if sum(isinstance(e, Queued) for e in sequence) != 1:
            problems.append(f"{where}: not exactly one Queued")
        finals = [e for e in sequence if isinstance(e, FinalEvent)]
        if len(finals) != 1 or not isinstance(sequence[-1], FinalEvent):
            problems.append(f"{where}: not exactly one final event, last")
        if len({e.position for e in sequence}) != 1:
            problems.append(f"{where}: positions differ")
        attempt = 0  # the attempt running (or just ended), 0 before any
        in_attempt = False
        for event in sequence:
            if isinstance(event, Started):
                if event.attempt != attempt + 1:
                    problems.append(f"{where}: attempt {event.attempt} after {attempt}")
                if event.waited < 0 or event.limiter_wait < 0:
                    problems.append(f"{where}: negative wait in {event}")
                if event.limiter_wait > event.waited + 1e-9:
                    problems.append(f"{where}: limiter wait above wait in {event}")
                attempt, in_attempt = event.attempt, True
            elif isinstance(event, Waiting):
                if in_attempt:
                    problems.append(f"{where}: Waiting during attempt {attempt}")
            elif isinstance(event, TimedOut | Retrying):
                if event.attempt != attempt or not in_attempt:
                    problems.append(f"{where}: {event} is not about attempt {attempt}")
                if isinstance(event, Retrying):
                    in_attempt = False
                    if event.delay < 0:
                        problems.append(f"{where}: negative delay")
            elif isinstance(event, FinalEvent) and event.attempts != attempt:
                problems.append(f"{where}: final says {event.attempts} attempts")
        times = [e.time for e in sequence]
        if times != sorted(times):
            problems.append(f"{where}: times go back: {times}")
    return problems
