"""Workload j: the start rate a ``RateLimiter(r)`` delivers, alone in the way, in real time.

``map`` runs ``n`` tasks with 100 workers and ``rate_limit=RateLimiter(r)``
(burst 1). Each task notes the moment it starts and returns. The rate
delivered is the number of starts after the first, divided by the time from
the first start to the last: r if the limiter spaces starts exactly
``1 / r`` apart, more if it lets bursts through, less if it loses time to
coarse timers (uvloop's are 1 ms) or to its own overhead. A limiter that
delivers far less than r would make the run last far longer than planned, so
``map``'s ``timeout=`` ends it after twice the planned time plus 0.5 s; the
rate is then taken from the starts that happened.
"""

from __future__ import annotations

import itertools
import time

from antflow import AsyncExecutor, RateLimiter

from ._measure import check
from ._tasks import Tasks


async def rate(t: Tasks, n: int, workers: int, per_second: str) -> dict[str, float]:
    r = float(per_second)
    starts: list[float] = []
    clock = time.perf_counter

    async def stamp(i: int) -> int:
        starts.append(clock())
        return i

    planned = (n - 1) / r
    cut_off = False
    async with AsyncExecutor(max_workers=workers) as ex:
        try:
            results = await ex.map(
                stamp, range(n), rate_limit=RateLimiter(r), timeout=2 * planned + 0.5
            )
        except TimeoutError:
            cut_off = True
        else:
            check(results == list(range(n)), "rate lost results")
    check(cut_off or len(starts) == n, "rate lost tasks")
    started = len(starts)
    check(started >= 2, "rate needs two starts at least")
    span = starts[-1] - starts[0]
    achieved = (started - 1) / span if span > 0 else float("inf")
    gaps = sorted(b - a for a, b in itertools.pairwise(starts))
    return {
        "starts_per_s": achieved,
        "rate_ratio": achieved / r,
        "span_s": span,
        # Half the starts came within this long of the one before.
        "median_gap_us": gaps[len(gaps) // 2] * 1e6,
        "max_gap_us": gaps[-1] * 1e6,
        "started_share": started / n,  # below 1: cut off
    }


async def map(t: Tasks, n: int, workers: int) -> dict[str, float]:
    """The warm-up every run does first (see child.py): plain ``map``."""
    async with AsyncExecutor(max_workers=workers) as ex:
        results = await ex.map(t.checkpoint, range(n))
        check(results == list(range(n)), "map results out of order")
    return {}
