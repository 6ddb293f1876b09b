"""Retry policy: tenacity decides, the executor sleeps.

tenacity's strategies decide whether a failed attempt is tried again and how
long to wait first (``stop_after_attempt``, ``wait_exponential``,
``retry_if_exception_type``). We evaluate them ourselves instead of wrapping
the call in ``AsyncRetrying``, because between two attempts the job must give
its semaphore back and, if the semaphore is busy when the back-off ends, wait
for it *without* holding a worker slot (see ``_limits``). The wait itself is
an ``anyio.sleep`` inside the job's cancel scope, so it obeys cancellation and
trio's virtual clock.

tenacity is imported on first use only: most programs never retry, and
``import antflow`` should cost little more than ``import anyio``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tenacity

#: The guide's default back-off multiplier (AntFlow 0.10 used the same).
DEFAULT_RETRY_DELAY = 0.1


def check_retry_arguments(retries: object, retry_delay: object) -> None:
    """Validate ``retries`` and ``retry_delay`` at the call that passed them."""
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise TypeError(f"retries must be an int, got {type(retries).__name__}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if isinstance(retry_delay, bool) or not isinstance(retry_delay, int | float):
        raise TypeError(
            f"retry_delay must be a number, got {type(retry_delay).__name__}"
        )
    if math.isnan(retry_delay) or retry_delay < 0:
        raise ValueError(f"retry_delay must be >= 0, got {retry_delay}")


class RetryPolicy:
    """Up to ``retries`` more attempts after exceptions ``retry_on`` accepts,
    waiting ``delay * 2**(n-1)`` (capped at ``max_delay``, plus up to
    ``jitter`` at random) before the n-th retry. Shared by every job of one
    ``submit`` or ``map`` call."""

    __slots__ = ("_max_delay", "_retrying")

    def __init__(
        self,
        retries: int,
        delay: float,
        retry_on: tuple[type[BaseException], ...] | Callable[[BaseException], bool] = (
            Exception,
        ),
        max_delay: float | None = None,
        jitter: float = 0,
    ) -> None:
        import tenacity

        wait: Any = tenacity.wait_exponential(multiplier=delay)
        if jitter:
            wait = wait + tenacity.wait_random(0, jitter)
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
