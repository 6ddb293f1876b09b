"""Stress: large volumes, nothing lost, memory bounded.

Marked ``slow`` (deselect with ``-m 'not slow'``). Each test prints its wall
time, the growth of the resident set while it ran and the process's peak RSS
(``resource.getrusage``); see them with ``pytest -m slow -rP``.

* 1,000,000 items through ``map_iter`` from a generator: every result, in
  order; the input is read at most ``2 * max_workers`` (+1) ahead; memory
  does not grow with the number of items.
* 100,000 queued futures cancelled by one ``shutdown(cancel_futures=True)``:
  every one ends cancelled, none ever starts, and the memory they held is
  given back once they are dropped.
* 1,000 concurrent ``wait(FIRST_COMPLETED)`` callers over the same 1,000
  futures: each returns exactly the finished one, and leaves no callback
  behind.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _strategies import current_rss_mb, peak_rss_mb, task_count

from antflow import AsyncExecutor, AsyncFuture, WaitStrategy

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(900)]


def report(
    name: str, backend: Any, started: float, rss_before: float, **extra: Any
) -> None:
    backend_name = backend if isinstance(backend, str) else backend[0]
    if isinstance(backend, tuple) and backend[1].get("use_uvloop"):
        backend_name = "uvloop"
    details = " ".join(f"{k}={v}" for k, v in extra.items())
    print(
        f"[stress] {name} on {backend_name}: {time.perf_counter() - started:.1f}s wall, "
        f"RSS {rss_before:.0f} -> {current_rss_mb():.0f} MiB, "
        f"peak RSS {peak_rss_mb():.0f} MiB {details}"
    )


def stale_wait_callbacks() -> int:
    """wait()'s per-call done callbacks still alive anywhere."""
    return sum(
        1
        for o in gc.get_objects()
        if getattr(o, "__qualname__", "") == "wait.<locals>.on_done"
    )


async def identity(x: int) -> int:
    return x


async def test_a_million_items_through_map_iter_from_a_generator(
    anyio_backend: Any,
) -> None:
    """1,000,000 items from a generator come back complete and in order, the
    input is read lazily (never more than 2 * max_workers + 1 items ahead of
    the consumer), and memory stays flat: the resident set grows by less than
    32 MiB between the first 100,000 items and the end (docs/semantics.md,
    "map and map_iter")."""
    n = 1_000_000
    max_workers = 16
    read = [0]

    def source() -> Any:
        for i in range(n):
            read[0] += 1
            yield i

    gc.collect()
    rss_before = current_rss_mb()
    started = time.perf_counter()
    before = task_count()
    count = 0
    total = 0
    ahead = 0
    rss_at_100k = 0.0
    async with AsyncExecutor(max_workers=max_workers) as ex:
        async for value in ex.map_iter(identity, source()):
            if value != count:
                raise AssertionError(f"item {count} came back as {value}")
            count += 1
            total += value
            ahead = max(ahead, read[0] - count)
            if count == 100_000:
                rss_at_100k = current_rss_mb()
        rss_at_end = current_rss_mb()
    assert count == n
    assert total == n * (n - 1) // 2
    assert read[0] == n
    assert ahead <= 2 * max_workers + 1
    growth = rss_at_end - rss_at_100k
    assert growth < 32, f"RSS grew {growth:.1f} MiB over 900,000 items"
    stats = ex.statistics()
    assert stats.succeeded == stats.submitted == n
    assert task_count() == before
    report(
        "1M map_iter",
        anyio_backend,
        started,
        rss_before,
        items_per_s=f"{n / (time.perf_counter() - started):,.0f}",
        growth_after_100k_mb=f"{growth:.1f}",
        max_read_ahead=ahead,
    )


async def test_one_shutdown_cancels_a_hundred_thousand_queued_futures(
    anyio_backend: Any,
) -> None:
    """shutdown(cancel_futures=True): 100,000 queued futures all end
    cancelled and none starts; the running ones are cancelled too; the call
    returns once they have (docs/semantics.md, "Shutdown"); dropping the
    futures gives the memory back."""
    n = 100_000
    started_bodies = [0]

    async def never_started(i: int) -> int:
        started_bodies[0] += 1
        return i

    gc.collect()
    rss_before = current_rss_mb()
    started = time.perf_counter()
    before = task_count()
    async with AsyncExecutor(max_workers=4) as ex:
        running = [ex.submit(anyio.sleep_forever) for _ in range(4)]
        await anyio.wait_all_tasks_blocked()
        queued = [ex.submit(never_started, i) for i in range(n)]
        submitted_at = time.perf_counter()
        rss_queued = current_rss_mb()
        await ex.shutdown(wait=True, cancel_futures=True)
        shutdown_took = time.perf_counter() - submitted_at
        assert all(f.cancelled() for f in running)
        assert all(f.cancelled() for f in queued)
    assert started_bodies[0] == 0
    stats = ex.statistics()
    assert stats.cancelled == n + 4
    assert stats.queued == stats.running == 0
    assert task_count() == before
    del queued, running
    gc.collect()
    rss_after = current_rss_mb()
    # The queue's memory is given back (allowing for allocator slack).
    assert rss_after - rss_before < 24
    report(
        "100k queued cancelled",
        anyio_backend,
        started,
        rss_before,
        shutdown_s=f"{shutdown_took:.2f}",
        rss_with_queue_mb=f"{rss_queued:.0f}",
        rss_after_drop_mb=f"{rss_after:.0f}",
    )


async def test_a_thousand_concurrent_waiters_over_the_same_futures(
    anyio_backend: Any,
) -> None:
    """1,000 callers of wait(FIRST_COMPLETED) over the same 1,000 futures all
    return, at the first completion, exactly that future as done and the 999
    others as pending (docs/guide.md, "Waiting for a set of futures"); none
    keeps a callback on the futures afterwards: the futures and the waiters
    die with the run."""
    n_futures = 1_000
    n_waiters = 1_000
    results: list[tuple[set[AsyncFuture[int]], set[AsyncFuture[int]]]] = []

    gc.collect()
    rss_before = current_rss_mb()
    started = time.perf_counter()
    before = task_count()
    release = [anyio.Event() for _ in range(n_futures)]

    async def held(i: int) -> int:
        await release[i].wait()
        return i

    async with AsyncExecutor(max_workers=n_futures) as ex:
        futures = [ex.submit(held, i) for i in range(n_futures)]

        async def waiter() -> None:
            results.append(
                await ex.wait(futures, return_when=WaitStrategy.FIRST_COMPLETED)
            )

        async with anyio.create_task_group() as tg:
            for _ in range(n_waiters):
                tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            waiting_at = time.perf_counter()
            release[123].set()
        woke_took = time.perf_counter() - waiting_at
        assert len(results) == n_waiters
        first = futures[123]
        for done, pending in results:
            assert done == {first}
            assert len(pending) == n_futures - 1 and first not in pending
        # No waiter left a callback behind on the 999 pending futures.
        assert stale_wait_callbacks() == 0
        for event in release:
            event.set()
    assert [await f for f in futures] == list(range(n_futures))
    assert task_count() == before
    report(
        "1000 waiters x 1000 futures",
        anyio_backend,
        started,
        rss_before,
        wake_all_s=f"{woke_took:.2f}",
    )
