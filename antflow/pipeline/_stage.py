"""Stage: one step of a pipeline, described; the pipeline runs it.

A stage is a pool of ``workers`` applying a short sequence of async functions
to each item. It is only a description, checked when it is made: the same
`Stage` may appear in several pipelines and runs, and each run gives it an
`antflow.AsyncExecutor` of its own.

The executor options (``semaphore``, ``rate_limit``, ``retries`` and the
rest) are handed to every ``submit`` of the stage as they were given, so
whatever the executor accepts works here too, now and as it learns more (a
limiter chosen per item, for instance). The few rules that cannot change,
such as "retries is an int >= 0", are checked here so that a mistake points
at the ``Stage(...)`` call that made it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, final

from antflow._checks import (
    check_int,
    check_non_negative,
    check_seconds,
    check_timeout,
    reject_function,
)
from antflow._options import OPTION_DEFAULTS
from antflow._retry import DEFAULT_RETRY_DELAY

__all__ = ["Stage"]

StageFunction = Callable[..., Awaitable[Any]]


@final
class Stage:
    """One step of a `Pipeline`: a pool of workers and what they do to an item.

    Each item that reaches the stage is passed to ``fn``; with more functions
    (AntFlow's ``tasks=[...]``), each gets the previous one's result, and the
    last result goes on to the next stage. Every call is one
    `antflow.AsyncExecutor.submit` with the stage's options, so retries,
    ``task_timeout`` and limits apply to each function call on its own.

    Args:
        name: The stage's name, unique in its pipeline: it tags failures,
            statistics, events and the journal.
        fn: An async function of one argument, the item's value.
        *more: Further async functions, run in order on each item.
        workers: How many calls of this stage may run at once (an int >= 1).
        buffer: How many items may wait for the stage beyond those it runs
            (an int >= 0). Default: as many as it runs
            (``workers * batch_size``). A full stage makes the stages before
            it wait: that is the pipeline's backpressure.
        fan_out: The last function returns an iterable, and each of its
            elements goes on as an item of its own (the key of element ``i``
            of item ``k`` is ``(k, i)``). An empty iterable ends the item
            with no result.
        batch_size: Group items into lists of up to this many (an int >= 1):
            the functions take the list and the last returns a sequence of
            the same length, one result per item, in order. An element that
            is an exception instance sets just that item aside.
        batch_wait: With ``batch_size``, send a batch that is not full this
            many seconds after its first item arrived. Without it, a batch
            that is not full goes when nothing more can reach it (the source
            is exhausted or the pipeline is waiting for this stage).
        semaphore: A limiter for every call, as in `antflow.AsyncExecutor.submit`.
        rate_limit: A `antflow.RateLimiter` for every call.
        retries: Retries per call, as in `antflow.AsyncExecutor.submit`.
        retry_delay: Back-off multiplier in seconds (default 0.1).
        retry_on: Which exceptions are retried.
        retry_max_delay: Cap on one back-off wait, in seconds.
        retry_jitter: Random extra wait, in seconds.
        task_timeout: Deadline in seconds for each attempt of each call.

    Raises:
        TypeError: an argument of the wrong type (named in the message).
        ValueError: an argument out of range, or ``fan_out`` together with
            ``batch_size``.
    """

    __slots__ = (
        "batch_size",
        "batch_wait",
        "buffer",
        "fan_out",
        "functions",
        "name",
        "options",
        "workers",
    )

    def __init__(
        self,
        name: str,
        fn: StageFunction,
        /,
        *more: StageFunction,
        workers: int = 5,
        buffer: int | None = None,
        fan_out: bool = False,
        batch_size: int | None = None,
        batch_wait: float | None = None,
        semaphore: Any = None,
        rate_limit: Any = None,
        retries: int = 0,
        retry_delay: float = DEFAULT_RETRY_DELAY,
        retry_on: Any = Exception,
        retry_max_delay: float | None = None,
        retry_jitter: float = 0,
        task_timeout: float | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        functions = (fn, *more)
        for position, function in enumerate(functions):
            if not callable(function):
                reject_function(function, f"more[{position - 1}]" if position else "fn")
        check_int("workers", workers, minimum=1)
        if buffer is not None:
            check_int("buffer", buffer, minimum=0)
        if not isinstance(fan_out, bool):
            raise TypeError(f"fan_out must be a bool, got {type(fan_out).__name__}")
        if batch_size is not None:
            check_int("batch_size", batch_size, minimum=1)
            if fan_out:
                raise ValueError(
                    "a stage cannot both fan out and batch: split it in two stages"
                )
        if batch_wait is not None:
            if batch_size is None:
                raise ValueError("batch_wait needs batch_size")
            check_seconds("batch_wait", batch_wait)
        # The executor's own checks, for the rules of its options that cannot
        # change (its check of the rest runs at each submit).
        check_int("retries", retries, minimum=0)
        check_seconds("retry_delay", retry_delay)
        check_non_negative("retry_jitter", retry_jitter)
        check_timeout(retry_max_delay, "retry_max_delay")
        check_timeout(task_timeout, "task_timeout")

        self.name = name
        self.functions: tuple[StageFunction, ...] = functions
        self.workers = workers
        self.fan_out = fan_out
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        per_call = batch_size or 1
        self.buffer = workers * per_call if buffer is None else buffer
        given = {
            "semaphore": semaphore,
            "rate_limit": rate_limit,
            "retries": retries,
            "retry_delay": retry_delay,
            "retry_on": retry_on,
            "retry_max_delay": retry_max_delay,
            "retry_jitter": retry_jitter,
            "task_timeout": task_timeout,
        }
        # Only what differs from the executor's defaults, so a stage with no
        # options takes submit's fast path.
        self.options: dict[str, Any] = {
            option: value
            for option, value in given.items()
            if value != OPTION_DEFAULTS[option]
        }

    @property
    def capacity(self) -> int:
        """How many items the stage holds at most: running, waiting for a
        worker, or finished and waiting to move on."""
        return self.workers * (self.batch_size or 1) + self.buffer

    def __repr__(self) -> str:
        names = ", ".join(getattr(f, "__name__", repr(f)) for f in self.functions)
        extra = ""
        if self.fan_out:
            extra = ", fan_out=True"
        elif self.batch_size is not None:
            extra = f", batch_size={self.batch_size}"
        return f"Stage({self.name!r}, {names}, workers={self.workers}{extra})"
