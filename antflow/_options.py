"""What one ``submit``/``map``/``map_iter`` call asked for, checked once.

The per-call keyword options are declared once, as the `TaskOptions`
``TypedDict`` (stamina declares its retry keywords the same way), and typed
into every public signature with ``**options: Unpack[TaskOptions]``. They are
validated in one place (`CallOptions.parse`, naming the argument in each
error) and compiled, for the executor that runs them, into a `Plan` that
every job of the call shares: a ``map`` over a million items builds it once.

A job's *gates* are the limiters it must pass before each attempt: its
semaphore, then the executor's rate limit, then the call's. Each gate has a
non-blocking path, so a job that cannot pass waits in that gate's line
without holding a worker (see ``_limits`` and ``_pool``). Releasable gates
come first and rate limits last: a start slot, once taken, is spent, so it
is taken only when everything else is in hand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, NamedTuple, TypedDict

from ._checks import check_int, check_non_negative, check_seconds, check_timeout
from ._limits import Gate, gate_for
from ._rate import RateLimiter, pacer_of, rate_gate
from ._retry import DEFAULT_RETRY_DELAY, RetryPolicy, retry_predicate

RetryOn = (
    type[BaseException]
    | tuple[type[BaseException], ...]
    | Callable[[BaseException], bool]
)


class _CommonOptions(TypedDict, total=False):
    """The options `TaskOptions` and `MapOptions` share (see TaskOptions)."""

    retries: int
    retry_delay: float
    retry_on: RetryOn
    retry_max_delay: float | None
    retry_jitter: float
    task_timeout: float | None
    on_event: Any


class TaskOptions(_CommonOptions, total=False):
    """The per-task options of `AsyncExecutor.submit`, ``map`` and ``map_iter``.

    Attributes:
        semaphore: A limiter for the task, such as an ``anyio.CapacityLimiter``
            shared by many tasks: held only while an attempt runs; waiting
            for it holds no worker.
        rate_limit: A `RateLimiter` each attempt must pass.
        retries: How many times to retry after an exception (default 0).
        retry_delay: Exponential back-off multiplier in seconds (default
            0.1): waits of ``retry_delay``, then twice that, and so on.
        retry_on: Which exceptions are retried: a class, a tuple of classes,
            or a predicate ``exc -> bool`` (default ``Exception``).
            Cancellation never is.
        retry_max_delay: A cap on one back-off wait, in seconds.
        retry_jitter: Up to this many seconds added at random to each wait.
        task_timeout: A deadline in seconds for each attempt; an attempt past
            it is cancelled and fails with ``TimeoutError``, which is retried
            like any other exception.
        on_event: A hook (or a list of hooks) called with each event of
            this call's jobs (see ``antflow.events``), after the executor's
            own.
    """

    semaphore: Any
    rate_limit: RateLimiter | None


class MapOptions(_CommonOptions, total=False):
    """The per-item options of `AsyncExecutor.map` and ``map_iter``: those of
    `TaskOptions`, where ``semaphore`` and ``rate_limit`` may also be
    functions that choose the limiter for each item.

    Attributes:
        semaphore: A limiter, as in `TaskOptions`; or a function called with
            each item's arguments (what ``fn`` gets) that returns the limiter
            for that item, or None for none. It is called once per item, when
            the item is read from its input, in the item's context.
        rate_limit: A `RateLimiter`, or a function of the item's arguments
            returning one (or None), as for ``semaphore``.
    """

    semaphore: Any
    rate_limit: RateLimiter | Callable[..., RateLimiter | None] | None


#: The names of the per-task options, to tell them from a function's own
#: keyword arguments in ``submit``.
OPTION_NAMES: Final = frozenset(TaskOptions.__optional_keys__)

#: What each option is when not given: a call that passes these asks for
#: nothing (see `parse_options`).
OPTION_DEFAULTS: Final[dict[str, Any]] = {
    "semaphore": None,
    "rate_limit": None,
    "retries": 0,
    "retry_delay": DEFAULT_RETRY_DELAY,
    "retry_on": Exception,
    "retry_max_delay": None,
    "retry_jitter": 0,
    "task_timeout": None,
    "on_event": None,
}


class CallOptions(NamedTuple):
    """The per-task options of one call, validated and frozen."""

    semaphore: Any
    rate_limit: RateLimiter | None
    retry: RetryPolicy | None
    task_timeout: float | None
    on_event: tuple[Any, ...] | None = None


def parse_options(options: dict[str, Any]) -> CallOptions | None:
    """Validate ``options`` (a `TaskOptions` dict); None when it asks for
    nothing.

    Raises:
        TypeError: an unknown option, or one of the wrong type.
        ValueError: an option out of range (negative, NaN).
    """
    unknown = options.keys() - OPTION_NAMES
    if unknown:
        raise TypeError(f"unexpected option {sorted(unknown)[0]!r}")
    given = OPTION_DEFAULTS | options
    retries = check_int("retries", given["retries"], minimum=0)
    retry_delay = check_seconds("retry_delay", given["retry_delay"])
    retry_max_delay = check_timeout(given["retry_max_delay"], "retry_max_delay")
    retry_jitter = check_non_negative("retry_jitter", given["retry_jitter"])
    predicate = retry_predicate(given["retry_on"])
    task_timeout = check_timeout(given["task_timeout"], "task_timeout")
    rate_limit = given["rate_limit"]
    if rate_limit is not None and not isinstance(rate_limit, RateLimiter):
        hint = (
            "; a function choosing one per item is taken by map and map_iter only"
            if callable(rate_limit)
            else ""
        )
        raise TypeError(
            "rate_limit must be an antflow.RateLimiter, got "
            f"{type(rate_limit).__name__}{hint}"
        )
    semaphore = given["semaphore"]
    on_event = given["on_event"]
    if on_event is not None:
        from ._events import hooks_of

        on_event = hooks_of(on_event)
    retry = (
        RetryPolicy(retries, retry_delay, predicate, retry_max_delay, retry_jitter)
        if retries
        else None
    )
    if (
        semaphore is None
        and rate_limit is None
        and retry is None
        and task_timeout is None
        and on_event is None
    ):
        return None  # nothing asked: the plain path
    return CallOptions(semaphore, rate_limit, retry, task_timeout, on_event)


class Plan(NamedTuple):
    """How the jobs of one call run on one executor: their gates, their
    retry policy, their per-attempt timeout."""

    #: ``(limiter, gate)`` pairs every job passes before each attempt.
    gates: tuple[tuple[Any, Gate], ...]
    #: A limiter with no non-blocking path, entered around each attempt.
    context_limiter: Any
    #: Rate limits taken inside the attempt, after ``context_limiter`` (so
    #: that waiting for it never bunches starts up).
    rates_in_attempt: tuple[Any, ...]
    retry: RetryPolicy | None
    timeout: float | None
    #: Makes the jobs' events (``_events.Emitter``), if anyone listens.
    events: Any
    #: Is there anything to do around the call (``_attempts``)? A plan of
    #: gates alone runs like the plain path once admitted: 118k -> 112k
    #: instructions per item for ``semaphore=CapacityLimiter(50)``
    #: (callgrind, asyncio, workload a). A field, not a property, as the
    #: worker asks it of every job.
    needs_attempts: bool


def _plan(
    gates: tuple[tuple[Any, Gate], ...],
    context_limiter: Any,
    rates_in_attempt: tuple[Any, ...],
    retry: RetryPolicy | None,
    timeout: float | None,
    events: Any,
) -> Plan:
    needs_attempts = not (
        context_limiter is None
        and retry is None
        and timeout is None
        and events is None  # Started, TimedOut, Retrying come from there
    )
    return Plan(
        gates, context_limiter, rates_in_attempt, retry, timeout, events, needs_attempts
    )


def make_plan(
    options: CallOptions | None,
    executor_rate: RateLimiter | None,
    backend: str,
    hub: Any = None,
) -> Plan | None:
    """Compile a call's options for an executor; None for the plain path.

    ``hub`` is the executor's ``_events.EventHub``, if it has one.

    Raises:
        TypeError: a semaphore antflow cannot use on this backend.
    """
    if options is None:
        events = None if hub is None else hub.emitter(None, (executor_rate,))
        if executor_rate is None:
            return None if events is None else _plan((), None, (), None, None, events)
        rate = (pacer_of(executor_rate), rate_gate())
        return _plan((rate,), None, (), None, None, events)
    gates: list[tuple[Any, Gate]] = []
    context_limiter = None
    semaphore = options.semaphore
    if semaphore is not None:
        gate = gate_for(semaphore, backend)
        if gate is None:
            context_limiter = semaphore
        else:
            gates.append((semaphore, gate))
    limits = [executor_rate]
    if options.rate_limit is not executor_rate:  # the same one limits once
        limits.append(options.rate_limit)
    # One gate per schedule: a copy of a RateLimiter shares its original's,
    # and two gates on one would take two of its starts for one attempt.
    rates = tuple(
        dict.fromkeys(pacer_of(limit) for limit in limits if limit is not None)
    )
    rates_in_attempt: tuple[Any, ...] = ()
    if context_limiter is None:
        gates += [(pacer, rate_gate()) for pacer in rates]
    else:
        rates_in_attempt = rates
    return _plan(
        tuple(gates),
        context_limiter,
        rates_in_attempt,
        options.retry,
        options.task_timeout,
        None if hub is None else hub.emitter(options.on_event, (semaphore, *limits)),
    )
