"""Retry policy: tenacity decides, the executor sleeps.

tenacity's strategies decide whether a failed attempt is tried again and how
long to wait first (``stop_after_attempt``, ``wait_exponential``,
``retry_if_exception_type``). We evaluate them ourselves instead of wrapping
the call in ``AsyncRetrying``, because between two attempts the job must give
its tokens back and, if a limiter is busy when the back-off ends, wait for it
*without* holding a worker slot (see ``_pool``). The wait itself is an
``anyio.sleep`` inside the job's cancel scope, so it obeys cancellation and
virtual clocks.

tenacity is imported on first use only: most programs never retry, and
``import antflow`` should cost little more than ``import anyio``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import tenacity

#: The guide's default back-off multiplier (AntFlow 0.10 used the same).
DEFAULT_RETRY_DELAY = 0.1

Predicate = tuple[type[BaseException], ...] | Callable[[BaseException], bool]


def retry_predicate(retry_on: object) -> Predicate:
    """``retry_on``: an exception class, a tuple of them, or ``exc -> bool``.

    Raises:
        TypeError: anything else, naming ``retry_on``.
    """
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


class RetryPolicy:
    """Up to ``retries`` more attempts after exceptions ``retry_on`` accepts,
    waiting ``delay * 2**(n-1)`` (capped at ``max_delay``, plus up to
    ``jitter`` at random) before the n-th retry. Shared by every job of one
    ``submit`` or ``map`` call."""

    __slots__ = ("_max_delay", "_retrying", "retries")

    def __init__(
        self,
        retries: int,
        delay: float,
        retry_on: Predicate = (Exception,),
        max_delay: float | None = None,
        jitter: float = 0,
    ) -> None:
        import tenacity

        wait: Any = tenacity.wait_exponential(multiplier=delay)
        if jitter:
            wait = wait + tenacity.wait_random(0, jitter)
        #: Attempts beyond the first.
        self.retries = retries
        self._max_delay = max_delay
        self._retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(retries + 1),
            wait=wait,
            # Only Exceptions ever reach the policy: cancellation and other
            # BaseExceptions propagate before it is asked.
            retry=(
                tenacity.retry_if_exception_type(retry_on)  # pyright: ignore[reportUnknownArgumentType]
                if isinstance(retry_on, tuple)
                else tenacity.retry_if_exception(retry_on)
            ),
            reraise=True,
        )

    def new_state(self, fn: Any, args: Any, kwargs: Any) -> tenacity.RetryCallState:
        """Per-job attempt bookkeeping, created at the job's first failure."""
        import tenacity

        return tenacity.RetryCallState(self._retrying, fn, args, kwargs or {})

    def next_delay(
        self, state: tenacity.RetryCallState, error: Exception
    ) -> float | None:
        """Seconds to wait before retrying after ``error``, or None to give up.

        Raises whatever a user's ``retry_on`` predicate raises.
        """
        state.set_exception((type(error), error, error.__traceback__))
        retrying = self._retrying
        if retrying.stop(state) or not retrying.retry(state):
            return None
        delay = float(retrying.wait(state))
        if self._max_delay is not None:
            delay = min(delay, self._max_delay)
        state.prepare_for_next_attempt()
        return delay
