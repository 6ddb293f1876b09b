"""Job: one unit of work, and the one owner of its state.

A job is what ``submit`` queues and what each ``map`` item becomes. It
carries the call (function, arguments, the submitter's context, the call's
plan) while it waits, the tokens it holds while an attempt runs, and its
outcome once final. Everything that changes a job's state is a method of
this class; the pool decides *when*, the job keeps the record straight.

States move one way only::

    PENDING ──> RUNNING ──> FINISHED | FAILED | CANCELLED
       │           └──> CANCELLING ─────────────────^
       └────────────────────────────────────────────^

* PENDING: queued, parked at a limiter, or admitted and on its way to a
  worker; never started.
* RUNNING: taken by a worker (with a worker slot and every token) and not
  final: in an attempt, backing off before a retry, or parked at a limiter
  again after one.
* CANCELLING: RUNNING, and ``cancel()`` has cancelled its attempt; it ends
  CANCELLED (or FAILED, if its cleanup raised) once the attempt has exited.

A job that is final has dropped its call, so its arguments die with the
work, not with the future. The public `AsyncFuture` is a view of a job.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable
from contextvars import Context
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import anyio

    from ._future import AsyncFuture
    from ._options import Plan
    from ._pool import Pool


#: What a job calls: ``(context, fn, args, kwargs)``.
Call = tuple[Context, Callable[..., Any], tuple[Any, ...], dict[str, Any] | None]


class State(enum.IntEnum):
    """Where a job is in its life (see the module docstring)."""

    PENDING = 0
    RUNNING = 1
    CANCELLING = 2
    FINISHED = 3
    FAILED = 4
    CANCELLED = 5


PENDING: Final = State.PENDING
RUNNING: Final = State.RUNNING
CANCELLING: Final = State.CANCELLING
FINISHED: Final = State.FINISHED
FAILED: Final = State.FAILED
CANCELLED: Final = State.CANCELLED


class Observer:
    """Told when a job is final. Map iterators watch their items this way:
    one method call per item, cheaper than a done callback."""

    __slots__ = ()

    def job_final(self, job: Job) -> None:
        raise NotImplementedError


class Job:
    """One submission: its call, its state and, once final, its outcome."""

    __slots__ = (
        "args",
        "attempts",
        "callbacks",
        "context",
        "event",
        "fn",
        "future",
        "gates",
        "held",
        "kwargs",
        "number",
        "observer",
        "pending_error",
        "plan",
        "pool",
        "position",
        "retrieved",
        "retry_state",
        "scope",
        "state",
        "value",
    )

    def __init__(
        self,
        pool: Pool,
        number: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        context: Context,
        plan: Plan | None,
        gates: tuple[Any, ...],
    ) -> None:
        self.pool = pool
        #: Submission number within its executor, starting at 1.
        self.number = number
        #: Index of a map item in its call's input, or None.
        self.position: int | None = None
        self.fn: Callable[..., Any] | None = fn
        self.args: tuple[Any, ...] | None = args
        self.kwargs = kwargs
        self.context: Context | None = context
        self.plan = plan
        #: The limiters to pass before each attempt: ``(limiter, gate)``
        #: pairs, releasable ones first, rate limits last.
        self.gates = gates
        #: How many of ``gates`` (from the front) this job holds a token of:
        #: releasable ones only, as a rate limit's start is spent once
        #: taken. Nonzero only while it is admitted and not yet done with an
        #: attempt.
        self.held = 0
        self.state = PENDING
        self.value: Any = None
        #: The worker's cancel scope, while an attempt (or back-off) runs.
        self.scope: anyio.CancelScope | None = None
        self.attempts = 0
        self.retry_state: Any = None
        #: What an attempt cut short by its ``task_timeout`` ended with,
        #: until the job goes on in its worker's new scope (_attempts).
        self.pending_error: Exception | None = None
        self.observer: Observer | None = None
        #: Done callbacks by registration key, in the order they were added.
        self.callbacks: dict[int, Callable[[Any], object]] | None = None
        self.event: anyio.Event | None = None
        #: The caller's view, kept alive until the job is final (its done
        #: callbacks receive it), then dropped to break the cycle.
        self.future: AsyncFuture[Any] | None = None
        self.retrieved = False

    @property
    def cancelling(self) -> bool:
        """Running, and ``cancel()`` has been called: it must not go on."""
        return self.state == CANCELLING

    def call(self) -> Call:
        """The call to make, while the job is not final."""
        assert self.context is not None and self.fn is not None
        assert self.args is not None
        return self.context, self.fn, self.args, self.kwargs

    # -- transitions --------------------------------------------------------

    def started(self, scope: anyio.CancelScope) -> None:
        """A worker runs it now, in ``scope``: PENDING -> RUNNING (a job that
        parked again after a back-off is RUNNING already)."""
        if self.state == PENDING:
            self.state = RUNNING
        self.scope = scope

    def request_cancel(self) -> bool:
        """``cancel()``: see `AsyncFuture.cancel`."""
        state = self.state
        if state >= FINISHED:
            return state == CANCELLED
        if state == CANCELLING:
            return True
        scope = self.scope
        if scope is not None:
            # In an attempt or a back-off: the worker settles it once the
            # attempt has exited (its finally blocks included).
            self.state = CANCELLING
            scope.cancel()
        else:
            # Queued, parked or about to start: nothing of it runs. Tokens
            # it may hold go back when the pool next touches it.
            self.settle(CANCELLED, None)
        return True

    def settle(self, state: State, value: object) -> None:
        """Make the job final (no-op if it already is) and tell everyone."""
        if self.state >= FINISHED:
            return
        self.state = state
        self.value = value
        if state == FAILED:
            self._failed(value)
        # Drop the call, so its arguments die with the work.
        self.fn = self.args = self.kwargs = self.context = None
        self.retry_state = self.scope = None
        # Counted first, so statistics() agrees inside done callbacks (and
        # inside event hooks, told next).
        self.pool.job_settled(self)
        plan = self.plan
        if plan is not None and plan.events is not None:
            plan.events.final(self)
        if self.event is not None:
            self.event.set()
        if self.observer is not None:
            self.observer.job_final(self)
        callbacks, self.callbacks = self.callbacks, None
        future, self.future = self.future, None
        if callbacks is not None:
            for fn in callbacks.values():
                call_back(fn, future)

    def _failed(self, error: Any) -> None:
        if self.position is not None:
            # Which of a map's many inputs this was, while its arguments are
            # still at hand.
            error.add_note(item_note(self.position, self.fn, self.args))
        if self.future is not None:
            from ._future import watch_unretrieved

            watch_unretrieved(self.future, self)

    # -- callbacks and waiting ---------------------------------------------------

    def add_callback(self, fn: Callable[[Any], object]) -> int:
        """Register ``fn``; return a key that `discard_callback` takes.

        Keys make removal O(1): a thousand ``wait()`` calls over the same
        thousand futures remove a million callbacks (tests/stress), which a
        scan per removal turned into a billion comparisons.
        """
        key = next(_callback_keys)
        if self.callbacks is None:
            self.callbacks = {key: fn}
        else:
            self.callbacks[key] = fn
        return key

    def discard_callback(self, key: int) -> None:
        if self.callbacks is not None:
            self.callbacks.pop(key, None)

    def remove_callback(self, fn: Callable[[Any], object]) -> int:
        callbacks = self.callbacks
        if not callbacks:
            return 0
        keys = [key for key, registered in callbacks.items() if registered == fn]
        for key in keys:
            del callbacks[key]
        return len(keys)

    async def wait_final(self) -> None:
        """Block until final (one event, made only when someone waits)."""
        if self.state < FINISHED:
            import anyio

            if self.event is None:
                self.event = anyio.Event()
            await self.event.wait()

    def outcome(self) -> Any:
        """The value, or raise what the job raised; the job must be final."""
        state = self.state
        if state == FINISHED:
            return self.value
        if state == FAILED:
            self.retrieved = True
            error = self.value
            try:
                raise error
            finally:
                # The traceback keeps this frame: it must not keep the job
                # (and through it the error) alive in a cycle.
                del self, error
        raise cancelled_error(self)

    def describe(self) -> str:
        name = self.state.name.lower()
        if self.state == FAILED:
            name += f" {type(self.value).__name__}"
        return name


_callback_keys = itertools.count()


def item_note(
    position: int, fn: Callable[..., Any] | None, args: tuple[Any, ...] | None
) -> str:
    """The PEP 678 note on a map item's failure: which input it was."""
    return f"antflow: map item {position}: {describe_call(fn, args)}"


def describe_call(fn: Callable[..., Any] | None, args: tuple[Any, ...] | None) -> str:
    """``name(arg, ...)`` with long reprs cut short, for error notes."""
    import reprlib

    short = reprlib.Repr()
    short.maxstring = short.maxother = 40
    short.maxlevel, short.maxlist = 2, 4
    name = getattr(fn, "__qualname__", None) or short.repr(fn)
    listed = ", ".join(short.repr(arg) for arg in args or ())
    if len(listed) > 160:  # many zipped inputs: the note stays one short line
        listed = listed[:157] + "..."
    return f"{name}({listed})"


def call_back(fn: Callable[[Any], object], future: Any) -> None:
    """Run one done callback; an exception is logged, never raised."""
    try:
        fn(future)
    except Exception:
        logger().exception("done callback %r of %r raised", fn, future)


def cancelled_error(job: Job) -> Exception:
    from ._cancelled import CancelledError

    return CancelledError(f"<AsyncFuture #{job.number} cancelled> was cancelled")


def logger() -> Any:
    # Imported on first use: logging costs more to import than it is used.
    import logging

    return logging.getLogger("antflow")
