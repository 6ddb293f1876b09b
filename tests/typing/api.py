"""Type-checked, never run: the public API as a user's code sees it.

``nox -s typecheck`` runs mypy --strict and pyright (strict) over this file.
Lines marked ``type: ignore[...]`` must be errors: with
``warn_unused_ignores`` (part of --strict) a line that stops being an error
fails the check, so the ignores prove the checker rejects misuse.
"""

from __future__ import annotations

import functools
from typing import assert_type

import anyio

from antflow import (
    AsyncExecutor,
    AsyncFuture,
    ExecutorStatistics,
    RateLimiter,
    WaitStrategy,
)


async def fetch(url: str, *, attempts: int = 1) -> bytes:
    return url.encode() * attempts


async def add(x: int, y: int) -> int:
    return x + y


async def api() -> None:
    async with AsyncExecutor(max_workers=4, rate_limit=RateLimiter(10, per=1.0)) as ex:
        future = ex.submit(fetch, "https://example.org")
        assert_type(future, AsyncFuture[bytes])
        assert_type(await future, bytes)
        assert_type(await future.result(timeout=1.0), bytes)

        # Options alongside positional arguments.
        limiter = anyio.CapacityLimiter(2)
        retried = ex.submit(fetch, "u", semaphore=limiter, retries=3, retry_delay=0.5)
        assert_type(retried, AsyncFuture[bytes])
        ex.submit(add, 1, 2, task_timeout=2.0, retry_on=(ValueError, OSError))
        ex.submit(add, 1, 2, retry_on=lambda exc: isinstance(exc, OSError))

        # Keyword arguments for the function itself.
        assert_type(ex.submit(fetch, "u", attempts=2), AsyncFuture[bytes])
        # Both at once: bind with functools.partial.
        ex.submit(functools.partial(fetch, attempts=2), "u", retries=1)

        # Misuse is a type error.
        ex.submit(add, 1, "two")  # type: ignore[arg-type, call-arg]  # pyright: ignore[reportArgumentType, reportCallIssue]
        ex.submit(fetch, "u", attempts="2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        ex.submit(add, 1, 2, retries="3")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]

        results = await ex.map(add, [1, 2], [3, 4], timeout=5.0)
        assert_type(results, list[int])
        # return_exceptions: a failed item's exception in its place.
        mixed = await ex.map(add, [1], [2], return_exceptions=True)
        assert_type(mixed, list[int | Exception])
        async for each in ex.map_iter(add, [1], [2], return_exceptions=True):
            assert_type(each, int | Exception)
        # Limiters chosen per item.
        per_host = {"a": anyio.CapacityLimiter(2)}

        def host_limit(url: str) -> anyio.CapacityLimiter | None:
            return per_host.get(url)

        def host_rate(url: str) -> RateLimiter | None:
            return None

        await ex.map(fetch, ["a"], semaphore=host_limit, rate_limit=host_rate)
        # Backpressure: asubmit is submit, awaited.
        waited = await ex.asubmit(fetch, "u", retries=1)
        assert_type(waited, AsyncFuture[bytes])
        await ex.asubmit(add, 1, "two")  # type: ignore[arg-type, call-arg]  # pyright: ignore[reportArgumentType, reportCallIssue]
        async for item in ex.map_iter(add, [1], [2], ordered=False, progress=True):
            assert_type(item, int)

        futures = [ex.submit(add, i, i) for i in range(3)]
        async for done in ex.as_completed(futures, timeout=1.0):
            assert_type(done, AsyncFuture[int])
            assert_type(done.done(), bool)
            assert_type(done.exception(), BaseException | None)
        finished, _pending = await ex.wait(
            futures, return_when=WaitStrategy.FIRST_COMPLETED
        )
        assert_type(finished, set[AsyncFuture[int]])
        await ex.wait(futures, return_when="FIRST_EXCEPTION")

        stats = ex.statistics()
        assert_type(stats, ExecutorStatistics)
        assert_type(stats.queued, int)
        assert_type(future.cancel(), bool)
        future.add_done_callback(lambda f: print(f.sequence_id))

    await ex.shutdown(wait=True, cancel_futures=False)
    await ex.shutdown(grace=5.0)
    AsyncExecutor(max_workers=2, max_pending=100)
