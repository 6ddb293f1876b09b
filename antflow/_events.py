"""Making task events and handing them to hooks (what they say: ``events``).

Nothing here runs unless a hook is set: an executor without one has no
`EventHub`, its calls' plans have no `Emitter`, and each place in the core
that could emit checks one attribute. With a hook, each executor has one
hub (its hooks, its clock, what it remembers of each job until the job is
final, and the task that awaits async hooks), and each call's plan has an
emitter (the hub, the call's own hooks, the call's limiters).

Where the core calls in, and in which context a hook runs:

* ``Pool.submit``: `Emitter.queued`, in the submitting code's context.
* ``Pool._park``: `Emitter.waiting`.
* ``run_attempts``, which the worker runs inside the job's own context (the
  copy its attempts run in): `Emitter.started`, so a hook may set context
  variables the attempt sees (the OpenTelemetry hook makes its attempt span
  current so); `attempt_failed` and `retrying`, which also write the DEBUG
  logs.
* ``Job.settle``: `Emitter.final`, once per job whatever ended it.

A hook that returns an awaitable (an async function) has it queued and
awaited, one at a time in emission order, by one task in the executor's own
task group: the job never waits for it, the ``async with`` exit (and
``shutdown(wait=True)``) waits until every queued call is done, and nothing
outlives the executor. If the executor is cancelled meanwhile (an error in
the block, outer cancellation), every queued call still runs, but in the
cancelled scope: each is cut short at its first ``await``.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import anyio

from ._job import CANCELLED, FINISHED, logger
from .events import (
    Cancelled,
    Failed,
    FinalEvent,
    Queued,
    Retrying,
    Started,
    Succeeded,
    TaskEvent,
    TimedOut,
    Waiting,
)

if TYPE_CHECKING:
    from ._job import Job
    from ._options import Plan
    from ._pool import Pool

Hook = Callable[[TaskEvent], object]

_executor_numbers = itertools.count(1)


def hooks_of(
    on_event: object, *, argument: str = "on_event", takes: str = "an event"
) -> tuple[Hook, ...]:
    """``on_event``: a callable, or a non-empty list or tuple of callables
    (also for the pipeline's ``on_task_event``: ``argument`` names it in the
    error, ``takes`` says what its hooks are called with).

    Raises:
        TypeError: anything else, naming ``argument``.
    """
    if callable(on_event):
        return (on_event,)
    if isinstance(on_event, list | tuple):
        hooks = tuple(cast("Sequence[object]", on_event))
        if hooks and all(callable(hook) for hook in hooks):
            return cast("tuple[Hook, ...]", hooks)
    raise TypeError(
        f"{argument} must be a callable taking {takes}, or a non-empty list of "
        f"them; got {on_event!r}"
    )


class _Track:
    """What the hub remembers of a job until it is final."""

    __slots__ = (
        "attempt_start",
        "first_start",
        "function",
        "parked_at",
        "position",
        "queued_at",
        "ready_at",
    )

    def __init__(self, function: str, position: int | None, now: float) -> None:
        self.function = function
        self.position = position
        self.queued_at = now
        #: When it last became ready to run: queued, or its back-off ended.
        self.ready_at = now
        #: When it first parked at a limiter since it was last ready.
        self.parked_at: float | None = None
        self.first_start: float | None = None
        self.attempt_start = now


class EventHub:
    """One executor's events: hooks, clock, jobs in flight, async delivery."""

    def __init__(self, hooks: tuple[Hook, ...]) -> None:
        #: The executor's own hooks (``AsyncExecutor(on_event=...)``).
        self.hooks = hooks
        self.number = next(_executor_numbers)
        self.tracks: dict[Job, _Track] = {}
        self._clock: Callable[[], float] | None = None
        self._last = -math.inf
        #: Awaitables from async hooks, oldest first, and the task awaiting them.
        self._pending: deque[Any] = deque()
        self._delivering = False

    def emitter(
        self, call_hooks: tuple[Hook, ...] | None, limiters: Sequence[object]
    ) -> Emitter | None:
        """The emitter for one call's plan; None when nobody listens."""
        hooks = self.hooks + (call_hooks or ())
        if not hooks:
            return None
        return Emitter(
            self, hooks, tuple(dict.fromkeys(x for x in limiters if x is not None))
        )

    def now(self) -> float:
        """The loop's clock, never going back (the last reading when it cannot
        be read: a job settled while the loop is being torn down)."""
        clock = self._clock
        try:
            if clock is None:
                clock = self._clock = _loop_clock()
            now = clock()
        except RuntimeError:
            return self._last
        if now > self._last:
            self._last = now
        return self._last

    def emit(self, hooks: tuple[Hook, ...], event: TaskEvent, pool: Pool) -> None:
        for hook in hooks:
            try:
                result = hook(event)
            except Exception:
                logger().exception("on_event hook %r raised on %r", hook, event)
                continue
            if result is not None and hasattr(type(result), "__await__"):
                self._later(result, pool)

    # -- async hooks ------------------------------------------------------------

    def _later(self, awaitable: Any, pool: Pool) -> None:
        self._pending.append(awaitable)
        if self._delivering:
            return
        group = pool.task_group
        if group is None:
            return  # manual use, before the task group is up: the next event starts it
        try:
            group.start_soon(self._deliver, pool)
        except RuntimeError:
            # The task group has ended (the event loop itself is closing):
            # nothing can await these any more.
            self._drop()
            return
        self._delivering = True
        pool.tasks += 1  # counted like the pool's own tasks: the executor waits

    async def _deliver(self, pool: Pool) -> None:
        pending = self._pending
        cancelled_class = anyio.get_cancelled_exc_class()
        cancelled: BaseException | None = None
        try:
            while pending:
                awaitable = pending.popleft()
                try:
                    await awaitable
                except cancelled_class as error:
                    # The executor is going down: the remaining calls still
                    # run, each cut short at its first await.
                    cancelled = error
                except Exception:
                    logger().exception("async on_event hook raised")
                finally:
                    del awaitable
            if cancelled is not None:
                raise cancelled
        finally:
            del cancelled
            self._delivering = False
            pool.task_exited()

    def _drop(self) -> None:
        while self._pending:
            awaitable = self._pending.popleft()
            close = getattr(awaitable, "close", None)
            if close is not None:
                close()
        logger().warning(
            "async on_event hooks missed events: the executor's event loop ended first"
        )


class Emitter:
    """Makes the events of one call's jobs (one per plan)."""

    __slots__ = ("hooks", "hub", "limiters")

    def __init__(
        self, hub: EventHub, hooks: tuple[Hook, ...], limiters: tuple[object, ...]
    ) -> None:
        self.hub = hub
        self.hooks = hooks
        self.limiters = limiters

    # Events are built positionally, in their fields' order (the five base
    # fields first): about a third cheaper than by keyword.

    def queued(self, job: Job, position: int | None) -> None:
        hub = self.hub
        now = hub.now()
        function = _name_of(job.fn)
        hub.tracks[job] = _Track(function, position, now)
        event = Queued(now, hub.number, job.number, function, position, self.limiters)
        hub.emit(self.hooks, event, job.pool)

    def waiting(self, job: Job, limiter: object) -> None:
        hub = self.hub
        track = hub.tracks[job]
        now = hub.now()
        if track.parked_at is None:
            track.parked_at = now
        base = (now, hub.number, job.number, track.function, track.position)
        event = Waiting(*base, self._user_limiter(limiter))
        hub.emit(self.hooks, event, job.pool)

    def started(self, job: Job) -> None:
        hub = self.hub
        track = hub.tracks[job]
        now = hub.now()
        parked_at = track.parked_at
        # A back-off's timer may fire a hair before ``ready_at`` in floats.
        waited = max(0.0, now - track.ready_at)
        base = (now, hub.number, job.number, track.function, track.position)
        parked = 0.0 if parked_at is None else min(waited, now - parked_at)
        event = Started(*base, job.attempts, waited, parked)
        track.parked_at = None
        track.attempt_start = now
        if track.first_start is None:
            track.first_start = now
        # run_attempts runs in the job's own context: so does this hook.
        hub.emit(self.hooks, event, job.pool)

    def timed_out(self, job: Job, timeout: float) -> None:
        hub = self.hub
        track = hub.tracks[job]
        now = hub.now()
        base = (now, hub.number, job.number, track.function, track.position)
        event = TimedOut(*base, job.attempts, timeout, now - track.attempt_start)
        hub.emit(self.hooks, event, job.pool)

    def retrying(self, job: Job, error: BaseException, delay: float) -> None:
        hub = self.hub
        track = hub.tracks[job]
        now = hub.now()
        base = (now, hub.number, job.number, track.function, track.position)
        ran = now - track.attempt_start
        event = Retrying(*base, job.attempts, error, delay, ran)
        track.ready_at = now + delay
        hub.emit(self.hooks, event, job.pool)

    def final(self, job: Job) -> None:
        hub = self.hub
        now = hub.now()
        track = hub.tracks.pop(job, None)
        if track is None:  # pragma: no cover - every job is queued first
            track = _Track(_name_of(job.fn), job.position, now)
        first_start = track.first_start
        base = (now, hub.number, job.number, track.function, track.position)
        timing = (
            job.attempts,
            now - track.queued_at,
            0.0 if first_start is None else now - first_start,
        )
        state = job.state
        event: FinalEvent
        if state == FINISHED:
            event = Succeeded(*base, *timing)
        elif state == CANCELLED:
            event = Cancelled(*base, *timing)
        else:
            event = Failed(*base, *timing, job.value)
        hub.emit(self.hooks, event, job.pool)

    def _user_limiter(self, limiter: object) -> object:
        """The object the user passed for ``limiter`` (a rate limit's gate is
        its schedule, not the `RateLimiter`)."""
        from ._rate import RateLimiter, pacer_of

        for candidate in self.limiters:
            if isinstance(candidate, RateLimiter) and pacer_of(candidate) is limiter:
                return candidate
        return limiter


# -- called by the core when an attempt fails ---------------------------------------


def attempt_timed_out(job: Job, plan: Plan) -> None:
    """An attempt's ``task_timeout`` cut it short: log it (DEBUG), emit
    `TimedOut`."""
    timeout = plan.timeout
    assert timeout is not None
    _debug(job, plan, "timed out (task_timeout=%g s)", timeout)
    if plan.events is not None:
        plan.events.timed_out(job, timeout)


def retrying(job: Job, plan: Plan, error: BaseException, delay: float) -> None:
    """An attempt failed and will be retried: log it (DEBUG), emit `Retrying`."""
    _debug(job, plan, "failed with %r; retrying in %g s", error, delay)
    if plan.events is not None:
        plan.events.retrying(job, error, delay)


def _debug(job: Job, plan: Plan, what: str, *args: object) -> None:
    """Log at DEBUG what became of ``job``'s attempt (``what`` % ``args``)."""
    log = logger()
    if log.isEnabledFor(10):  # logging.DEBUG
        allowed = 1 if plan.retry is None else plan.retry.retries + 1
        log.debug(
            "%s: attempt %d of %d " + what,
            _name_of(job.fn),
            job.attempts,
            allowed,
            *args,
        )


def _name_of(fn: object) -> str:
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else repr(fn)


def _loop_clock() -> Callable[[], float]:
    """The running loop's clock, read without anyio's dispatch each time."""
    import asyncio

    try:
        return asyncio.get_running_loop().time
    except RuntimeError:
        pass
    import trio

    trio.current_time()  # raises RuntimeError outside trio.run
    return trio.current_time
