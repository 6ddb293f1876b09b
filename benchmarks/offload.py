"""Offloading benchmarks: ProcessPool and DaskPool next to in-process runs.

Runnable alone (``python benchmarks/offload.py [--quick] [--rounds N]``): it
prints a markdown table of medians, each ratio taken against a baseline
measured in the same run. Like the other benchmarks it asserts nothing about
speed; it exits non-zero only if a case returns a wrong result. DaskPool
cases are skipped when Dask distributed is not installed.

Cases (each on asyncio and trio):

* ``cpu``: 200 CPU jobs of 20 ms each (a spin loop), in-process (on the event
  loop, so one at a time), through ``ProcessPool(2)`` and through a
  ``DaskPool`` on a ``LocalCluster`` of 2 single-thread worker processes.
* ``tiny``: 10,000 jobs that return at once, one remote call each
  (unbatched) and in 20 batches (``wrap_batch``).
* ``start``: entering ``ProcessPool(2)`` (two processes started) and
  ``DaskPool(n_workers=2)`` (a LocalCluster started and connected).
* ``cancel``: from ``cancel()`` on a running ProcessPool job until its worker
  is killed and its slot free, and until the next job's result (from a
  freshly started process).
* ``drivers``: 4,000 async jobs of 0.5 ms CPU + 5 ms sleep, in one process
  (one executor) and sharded over two processes with an executor each.

Pools are started once per case, outside the clock, except in ``start``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from antflow import AsyncExecutor
from antflow.process import ProcessPool

CPU_JOB_S = 0.020
DRIVER_CPU_S = 0.0005
DRIVER_IO_S = 0.005


def spin(seconds: float) -> float:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return seconds


def tiny(x: int) -> int:
    return x + 1


async def cpu_and_io(x: int) -> int:
    spin(DRIVER_CPU_S)
    await anyio.sleep(DRIVER_IO_S)
    return x


async def drive(items: list[int], max_workers: int) -> int:
    """One driver: its own executor over its share of the input."""
    async with AsyncExecutor(max_workers=max_workers) as ex:
        return len(await ex.map(cpu_and_io, items))


def has_dask() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


Measured = dict[str, float]


async def _timed(run: Callable[[], Awaitable[object]]) -> float:
    began = time.perf_counter()
    await run()
    return time.perf_counter() - began


async def case_cpu(n: int, use_dask: bool) -> Measured:
    out: Measured = {}

    async def in_process() -> None:
        async def step(seconds: float) -> float:
            return spin(seconds)

        async with AsyncExecutor(max_workers=4) as ex:
            assert sum(await ex.map(step, [CPU_JOB_S] * n)) > 0

    out["in-process"] = await _timed(in_process)
    async with ProcessPool(2) as procs, AsyncExecutor(max_workers=4) as ex:

        async def via_procs() -> None:
            jobs = procs.wrap(spin)
            assert len(await ex.map(jobs, [CPU_JOB_S] * n, semaphore=procs.slots)) == n

        out["ProcessPool(2)"] = await _timed(via_procs)
    if use_dask:
        from antflow.dask import DaskPool

        async with DaskPool(n_workers=2) as dask, AsyncExecutor(max_workers=4) as ex:

            async def via_dask() -> None:
                jobs = dask.wrap(spin)
                assert (
                    len(await ex.map(jobs, [CPU_JOB_S] * n, semaphore=dask.slots)) == n
                )

            out["DaskPool(2 workers)"] = await _timed(via_dask)
    return out


async def case_tiny(n: int, batches: int, use_dask: bool) -> Measured:
    out: Measured = {}
    items = list(range(n))
    chunk = -(-n // batches)
    chunks = [items[i : i + chunk] for i in range(0, n, chunk)]
    expected = [x + 1 for x in items]

    async def unbatched(pool: Any, ex: AsyncExecutor) -> None:
        assert await ex.map(pool.wrap(tiny), items) == expected

    async def batched(pool: Any, ex: AsyncExecutor) -> None:
        results = await ex.map(pool.wrap_batch(tiny), chunks)
        assert [x for batch in results for x in batch] == expected

    async with ProcessPool(2) as procs, AsyncExecutor(max_workers=8) as ex:
        out["ProcessPool unbatched"] = await _timed(lambda: unbatched(procs, ex))
        out["ProcessPool batched"] = await _timed(lambda: batched(procs, ex))
    if use_dask:
        from antflow.dask import DaskPool

        # Tiny remote jobs are latency-bound: many in flight.
        async with DaskPool(n_workers=2) as dask, AsyncExecutor(max_workers=200) as ex:
            out["DaskPool unbatched"] = await _timed(lambda: unbatched(dask, ex))
            out["DaskPool batched"] = await _timed(lambda: batched(dask, ex))
    return out


async def case_start(use_dask: bool) -> Measured:
    out: Measured = {}
    began = time.perf_counter()
    async with ProcessPool(2):
        out["ProcessPool(2)"] = time.perf_counter() - began
    if use_dask:
        from antflow.dask import DaskPool

        began = time.perf_counter()
        async with DaskPool(n_workers=2):
            out["DaskPool(n_workers=2)"] = time.perf_counter() - began
    return out


async def case_cancel() -> Measured:
    async with ProcessPool(1) as procs, AsyncExecutor(max_workers=2) as ex:
        running = ex.submit(procs.wrap(spin), 60.0, semaphore=procs.slots)
        # Wait until the job holds the process: the slot is taken.
        while procs.slots.borrowed_tokens == 0:
            await anyio.sleep(0.001)
        await anyio.sleep(0.05)  # the call has reached the worker
        began = time.perf_counter()
        running.cancel()
        while procs.slots.borrowed_tokens:
            await anyio.sleep(0)
        freed = time.perf_counter() - began
        await ex.submit(procs.wrap(tiny), 1, semaphore=procs.slots)
        return {
            "cancel -> worker killed, slot free": freed,
            "cancel -> next result (new process)": time.perf_counter() - began,
        }


async def case_drivers(n: int) -> Measured:
    items = list(range(n))
    out: Measured = {}
    out["1 process"] = await _timed(lambda: drive(items, 200))
    async with ProcessPool(2) as procs:
        shards = [items[0::2], items[1::2]]

        async def sharded() -> None:
            async with anyio.create_task_group() as tg:
                for shard in shards:
                    tg.start_soon(procs.run, drive, shard, 100)

        out["2 processes"] = await _timed(sharded)
    return out


CASES: dict[str, Callable[[argparse.Namespace, bool], Awaitable[Measured]]] = {
    "cpu": lambda a, d: case_cpu(a.cpu_jobs, d),
    "tiny": lambda a, d: case_tiny(a.tiny_jobs, 20, d),
    "start": lambda a, d: case_start(d),
    "cancel": lambda a, d: case_cancel(),
    "drivers": lambda a, d: case_drivers(a.driver_jobs),
}
BASELINES = {
    "cpu": "in-process",
    "tiny": None,  # each unbatched run is the baseline of its batched run
    "start": None,
    "cancel": None,
    "drivers": "1 process",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="asyncio,trio")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--no-dask", action="store_true")
    args = parser.parse_args()
    args.cpu_jobs, args.tiny_jobs, args.driver_jobs = (
        (40, 1000, 800) if args.quick else (200, 10_000, 4000)
    )
    rounds = 1 if args.quick else args.rounds
    use_dask = has_dask() and not args.no_dask
    results: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(rounds):
        for backend in args.backends.split(","):
            for case in args.cases.split(","):
                measured = anyio.run(CASES[case], args, use_dask, backend=backend)
                for label, seconds in measured.items():
                    results.setdefault((case, label, backend), []).append(seconds)

    print(
        f"# Offloading, {time.strftime('%Y-%m-%d')}: {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"medians of {rounds} round(s)"
        + ("" if use_dask else " (DaskPool skipped: distributed not installed)")
    )
    print()
    print("| case | how | backend | seconds | ratio |")
    print("|---|---|---|---|---|")
    medians = {key: statistics.median(values) for key, values in results.items()}
    for (case, label, backend), seconds in medians.items():
        base_label = BASELINES[case]
        if case == "tiny" and label.endswith("batched") and "unbatched" not in label:
            base_label = label.replace("batched", "unbatched")
        base = medians.get((case, base_label, backend)) if base_label else None
        if case == "tiny" and backend == "trio" and "unbatched" in label:
            base = medians.get((case, label, "asyncio"))
            ratio = f"{seconds / base:.2f}x of asyncio" if base else ""
        else:
            ratio = f"{seconds / base:.2f}x" if base and base_label != label else ""
        print(f"| {case} | {label} | {backend} | {seconds:.3f} | {ratio} |")


if __name__ == "__main__":
    main()
