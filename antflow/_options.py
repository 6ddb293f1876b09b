"""What one ``submit``/``map``/``map_iter`` call asked for, checked once.

The options are validated at the call that passed them (naming the argument
in the error) and frozen into a `JobOptions` that every job of the call
shares, so a ``map`` over a million items builds them once.

Admission "gates" are the limiters a job must pass before each attempt, in
order: the semaphore, then the executor's rate limit, then the call's. Each
has a non-blocking path, so a job that cannot pass waits in that gate's line
without holding a worker (see ``_limits``). The semaphore comes first: a rate
token taken early and used late would let starts bunch up beyond ``burst``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast, final

from ._future import check_timeout
from ._limits import PACING, Strategy, strategy_for
from ._rate import RateLimiter
from ._retry import DEFAULT_RETRY_DELAY, RetryPolicy, check_retry_arguments

Gate = tuple[Any, Strategy]


@final
class JobOptions:
    """Frozen per-call settings shared by the jobs of one call."""

    __slots__ = ("attempt_timeout", "context_limiter", "gates", "retry")

    def __init__(
        self,
        gates: tuple[Gate, ...],
        context_limiter: Any,
        retry: RetryPolicy | None,
        attempt_timeout: float | None,
    ) -> None:
        self.gates = gates
        #: A limiter with no non-blocking path, entered around each attempt.
        self.context_limiter = context_limiter
        self.retry = retry
        self.attempt_timeout = attempt_timeout


def make_options(
    backend: str,
    executor_rate: RateLimiter | None,
    *,
    semaphore: Any,
    retries: Any,
    retry_delay: Any,
    rate_limit: Any,
    task_timeout: Any,
    retry_on: Any,
    retry_max_delay: Any,
    retry_jitter: Any,
) -> JobOptions | None:
    """Validate a call's options; None when the call asked for nothing."""
    retrying = (
        retries.__class__ is not int
        or retries != 0
        or retry_delay != DEFAULT_RETRY_DELAY
        or retry_on is not Exception
        or retry_max_delay is not None
        or retry_jitter != 0
    )
    retry = None
    if retrying:
        check_retry_arguments(retries, retry_delay)
        check_timeout(retry_max_delay, "retry_max_delay")
        _check_jitter(retry_jitter)
        predicate = _retry_predicate(retry_on)
        if retries:
            retry = RetryPolicy(
                retries, retry_delay, predicate, retry_max_delay, retry_jitter
            )
    if task_timeout is not None:
        check_timeout(task_timeout, "task_timeout")
    if rate_limit is not None and not isinstance(rate_limit, RateLimiter):
        raise TypeError(
            f"rate_limit must be an antflow.RateLimiter, got {type(rate_limit).__name__}"
        )
    if (semaphore, retry, task_timeout, rate_limit, executor_rate) == (None,) * 5:
        return None
    gates: list[Gate] = []
    context_limiter = None
    if semaphore is not None:
        strategy = strategy_for(semaphore, backend)
        if strategy.parks:
            gates.append((semaphore, strategy))
        else:
            context_limiter = semaphore
    gates += [
        (limit, PACING) for limit in (executor_rate, rate_limit) if limit is not None
    ]
    return JobOptions(tuple(gates), context_limiter, retry, task_timeout)


def _check_jitter(jitter: object) -> None:
    if isinstance(jitter, bool) or not isinstance(jitter, int | float):
        raise TypeError(f"retry_jitter must be a number, got {type(jitter).__name__}")
    if not (jitter >= 0 and math.isfinite(jitter)):
        raise ValueError(f"retry_jitter must be a finite number >= 0, got {jitter}")


def _retry_predicate(
    retry_on: object,
) -> tuple[type[BaseException], ...] | Callable[[BaseException], bool]:
    """An exception class, a tuple of them, or a predicate ``exc -> bool``."""
    if isinstance(retry_on, type):
        # A class is never a predicate here, even though calling it works.
        if issubclass(retry_on, BaseException):
            return (retry_on,)
    elif isinstance(retry_on, tuple):
        classes = cast("tuple[object, ...]", retry_on)
        if all(isinstance(c, type) and issubclass(c, BaseException) for c in classes):
            return cast("tuple[type[BaseException], ...]", classes)
    elif callable(retry_on):
        return cast("Callable[[BaseException], bool]", retry_on)
    raise TypeError(
        "retry_on must be an exception class, a tuple of them, or a callable "
        f"exc -> bool; got {retry_on!r}"
    )
