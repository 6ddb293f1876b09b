"""Task events: what happens to each job, step by step, for ``on_event`` hooks.

Pass a hook to the executor (``AsyncExecutor(on_event=hook)``, every job) or
to one call (``submit(..., on_event=hook)``, ``map``, ``map_iter``: that
call's jobs). A hook is a callable taking one `TaskEvent`; it may be a plain
function or an async one (see docs/observability.md for how each runs).

A job's events, in the order they happen:

* `Queued`: once, first, when ``submit`` (or ``map`` reading an item) made it.
* `Waiting`: each time it parks at a limiter that has no token (or no start
  slot) for it, before an attempt.
* `Started`: each attempt, numbered from 1.
* `TimedOut`: an attempt ran past ``task_timeout``; `Retrying` or `Failed`
  follows.
* `Retrying`: an attempt failed and another will start after ``delay``.
* exactly one final event, last: `Succeeded`, `Failed` or `Cancelled`.

Times are the event loop's clock (``anyio.current_time()``: seconds, from an
arbitrary origin, virtual under a mock clock), never wall-clock time. Each
event is a small frozen object; they compare by value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "Cancelled",
    "EventHook",
    "Failed",
    "FinalEvent",
    "Queued",
    "Retrying",
    "Started",
    "Succeeded",
    "TaskEvent",
    "TimedOut",
    "Waiting",
]


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """What every event says.

    Attributes:
        time: The event loop's clock when it happened, in seconds.
        executor: Which executor, numbered from 1 in this process (in the
            order their first hook was set up).
        job: The job's number in its executor, from 1 in submission order.
        function: The function's qualified name (``repr`` for a callable
            without one).
        position: The index of a ``map``/``map_iter`` item in its input;
            None for ``submit``.
    """

    time: float
    executor: int
    job: int
    function: str
    position: int | None


@dataclass(frozen=True, slots=True)
class Queued(TaskEvent):
    """The job was made. Always its first event.

    Attributes:
        limiters: The limiters its attempts pass: its ``semaphore``, the
            executor's and the call's ``rate_limit`` (the objects passed in).
    """

    limiters: tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Waiting(TaskEvent):
    """The job parked at a limiter with no token for it; it holds no worker
    while it waits.

    Attributes:
        limiter: The ``semaphore`` or `RateLimiter` it waits for.
    """

    limiter: object


@dataclass(frozen=True, slots=True)
class Started(TaskEvent):
    """An attempt starts in a worker, holding every token it needs.

    Attributes:
        attempt: 1 for the first attempt, 2 for the first retry, ...
        waited: Seconds since the job was queued (first attempt) or since
            its back-off ended (a retry): time spent waiting for a worker
            and for limiters.
        limiter_wait: The part of ``waited`` spent parked at limiters.
    """

    attempt: int
    waited: float
    limiter_wait: float


@dataclass(frozen=True, slots=True)
class TimedOut(TaskEvent):
    """An attempt ran past ``task_timeout`` and was cancelled.

    Attributes:
        attempt: The attempt's number.
        timeout: The ``task_timeout``, in seconds.
        duration: Seconds the attempt ran.
    """

    attempt: int
    timeout: float
    duration: float


@dataclass(frozen=True, slots=True)
class Retrying(TaskEvent):
    """An attempt failed; the next starts after ``delay``.

    Attributes:
        attempt: The number of the attempt that failed.
        error: What it raised (a ``TimeoutError`` after `TimedOut`).
        delay: The back-off in seconds before the next attempt.
        duration: Seconds the failed attempt ran.
    """

    attempt: int
    error: BaseException
    delay: float
    duration: float


@dataclass(frozen=True, slots=True)
class FinalEvent(TaskEvent):
    """The job is final. Exactly one of these ends every job's events.

    Attributes:
        attempts: How many attempts started (0 if it never ran).
        duration: Seconds from `Queued` to now.
        run_time: Seconds from its first attempt's start to now (0 if it
            never ran).
    """

    attempts: int
    duration: float
    run_time: float


@dataclass(frozen=True, slots=True)
class Succeeded(FinalEvent):
    """The job returned a value."""


@dataclass(frozen=True, slots=True)
class Failed(FinalEvent):
    """The job ended with an exception (after its retries, if any).

    Attributes:
        error: The exception its future holds.
    """

    error: BaseException


@dataclass(frozen=True, slots=True)
class Cancelled(FinalEvent):
    """The job was cancelled, whether it had started or not."""


#: A hook: called with each event. A hook returning an awaitable (an async
#: function) has it awaited in a task of the executor (see the docs).
EventHook = Callable[[TaskEvent], object]
