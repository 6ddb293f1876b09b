"""One case of the instruction-count benchmark: ``python case.py CASE BACKEND N``.

Runs N one-checkpoint jobs (workload a's shape, 100 workers) through the
named case; ``count.sh`` runs it under callgrind at two sizes and reports
the instructions per item. Cases: ``pool`` (the hand-written pool: 100 tasks
pulling from one iterator), ``a`` (plain ``map``), ``sem50``, ``sem200``
(``semaphore=CapacityLimiter(n)``), ``rate`` (``RateLimiter(10**9)``),
``retries`` (``retries=3``, never used), ``timeout`` (``task_timeout=10``),
``c`` / ``cu`` (``map_iter`` ordered / unordered over a generator).
"""

from __future__ import annotations

import sys

import anyio
import anyio.lowlevel

from antflow import AsyncExecutor, RateLimiter

WORKERS = 100


async def checkpoint(i: int) -> int:
    await anyio.lowlevel.checkpoint()
    return i


async def pool(n: int) -> None:
    items = iter(range(n))
    out: list[int] = []

    async def worker() -> None:
        for i in items:
            out.append(await checkpoint(i))

    async with anyio.create_task_group() as tg:
        for _ in range(WORKERS):
            tg.start_soon(worker)
    assert len(out) == n


async def main(case: str, n: int) -> None:
    if case == "pool":
        return await pool(n)
    options = {
        "a": {},
        "c": {},
        "cu": {},
        "sem50": {"semaphore": anyio.CapacityLimiter(50)},
        "sem200": {"semaphore": anyio.CapacityLimiter(200)},
        "rate": {"rate_limit": RateLimiter(10**9)},
        "retries": {"retries": 3},
        "timeout": {"task_timeout": 10},
    }[case]
    async with AsyncExecutor(max_workers=WORKERS) as ex:
        if case in ("c", "cu"):
            count = 0
            async for _ in ex.map_iter(
                checkpoint, (i for i in range(n)), ordered=case == "c"
            ):
                count += 1
            assert count == n
        else:
            assert len(await ex.map(checkpoint, range(n), **options)) == n
    return None


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[3]), backend=sys.argv[2])
