"""RateLimiter: at most ``rate`` task starts per ``per`` seconds.

A token bucket written as GCRA (the "generic cell rate algorithm"): instead
of a token count refilled by a timer, it keeps one number, the theoretical
time at which the bucket is next empty. That needs no task and no timer, and
the answer to "when may the next start happen?" is one subtraction, which is
exactly what a waiting line needs to know how long to sleep.

Time is the event loop's clock (``anyio.current_time()``), so the limiter
follows trio's ``MockClock`` and other virtual clocks. Share one limiter
between executors and calls on one event loop.
"""

from __future__ import annotations

import math
from typing import final

import anyio


@final
class RateLimiter:
    """Allow at most ``rate`` task starts per ``per`` seconds.

    Every attempt takes a token, retries included. Waiting for a token holds
    no worker slot.

    Args:
        rate: Starts allowed per period (a number > 0).
        per: The period in seconds (> 0).
        burst: How many starts may happen at once after a quiet spell
            (an int >= 1). With the default 1, starts are spaced evenly,
            ``per / rate`` seconds apart.

    Example:
        ``AsyncExecutor(max_workers=50, rate_limit=RateLimiter(10))`` starts
        at most ten tasks a second.
    """

    __slots__ = ("_burst", "_empty_at", "_interval", "burst", "per", "rate")

    def __init__(self, rate: float, per: float = 1.0, *, burst: int = 1) -> None:
        _check_positive("rate", rate)
        _check_positive("per", per)
        if isinstance(burst, bool) or not isinstance(burst, int):
            raise TypeError(f"burst must be an int, got {type(burst).__name__}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = rate
        self.per = per
        self.burst = burst
        self._interval = per / rate
        # Slack the bucket allows ahead of the steady pace.
        self._burst = (burst - 1) * self._interval
        self._empty_at = -math.inf

    def _wait_time(self) -> float:
        """Seconds until a token is available (<= 0: available now)."""
        now = anyio.current_time()
        wait = max(self._empty_at, now) - self._burst - now
        # Float sums of the interval drift by ulps; don't let that cost a
        # token of the burst.
        return 0.0 if wait <= self._interval * 1e-9 else wait

    def try_acquire(self) -> bool:
        """Take a token if one is available now; never blocks."""
        if self._wait_time() > 0:
            return False
        self._empty_at = max(self._empty_at, anyio.current_time()) + self._interval
        return True

    async def acquire(self) -> None:
        """Wait until a token is available, then take it."""
        while not self.try_acquire():
            await self.wait_available()

    async def wait_available(self) -> None:
        """Wait until a token is available, without taking it.

        Another waiter may take it first: callers go round again.
        """
        wait = self._wait_time()
        if wait > 0:
            # No event to wait for: time itself refills the bucket.
            await anyio.sleep(wait)

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate}, per={self.per}, burst={self.burst})"


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
