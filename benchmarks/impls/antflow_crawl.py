"""Workload o with antflow: ``map_iter(ordered=False)`` with a limiter per
host chosen by a function of the URL (made when the host first comes up)
and ``return_exceptions=True``, so one failing URL does not end the crawl.

Unordered, because an ordered map reads at most ``2 * max_workers`` items
ahead of the oldest unfinished one: a slow host's URL at the head of the
window holds up the reading of every host behind it (the fast hosts were
done at 1.3 s instead of 0.3 s in a trial run; docs/guide.md, "Limits per
item")."""

from __future__ import annotations

from collections import defaultdict

import anyio

from antflow import AsyncExecutor

from ._crawl import PER_HOST, Crawl, host_of, url
from ._tasks import Tasks


async def crawl(t: Tasks, n: int, workers: int) -> dict[str, float]:
    per_host: defaultdict[str, anyio.CapacityLimiter] = defaultdict(
        lambda: anyio.CapacityLimiter(PER_HOST)
    )
    job = Crawl(t.nap)
    async with AsyncExecutor(max_workers=workers) as ex:
        results = [
            result
            async for result in ex.map_iter(
                job.fetch,
                (url(i) for i in range(n)),
                semaphore=lambda link: per_host[host_of(link)],
                return_exceptions=True,
                ordered=False,
            )
        ]
    return job.metrics(results, n)


async def map(t: Tasks, n: int, workers: int) -> dict[str, float]:
    """The warm-up (child.py runs a small ``map`` before the clock starts)."""
    async with AsyncExecutor(max_workers=workers) as ex:
        await ex.map(t.checkpoint, range(n))
    return {}
