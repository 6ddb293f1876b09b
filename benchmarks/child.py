"""Run one benchmark in this fresh process and print its numbers as one JSON line.

Usage (the runner calls this; by hand it is handy for profiling one case)::

    python benchmarks/child.py run MODULE WORKLOAD BACKEND N WORKERS [ARG]
    python benchmarks/child.py import MODULE

``run`` imports ``impls.MODULE``, builds the backend's task bodies and times
``await MODULE.WORKLOAD(tasks, N, WORKERS[, ARG])`` inside the event loop, so
loop start-up and imports are not counted, but the implementation's own
set-up and tear-down (entering and leaving an executor or a task group) are.
ARG names the point of a sweep (workloads h and j).

Before the clock starts, every implementation warms up with one small
``map`` (WORKERS tasks of one checkpoint each), or, for a point of a sweep
whose module defines ``warm_up(tasks, WORKERS, ARG)``, with that. Libraries
built on anyio import most of anyio on first use (anyio imports its
internals lazily), some 20 ms that would otherwise land in whichever
workload runs first; the raw asyncio baselines have nothing to import. That
warm-up is reported on its own as ``first_use_s``.

``import`` times ``import MODULE`` and nothing else, so this file keeps its
own imports to a few modules that every candidate would pull in anyway.
"""

from __future__ import annotations

import sys
import time


def time_import(module: str) -> dict[str, object]:
    loaded = len(sys.modules)
    start = time.perf_counter()
    __import__(module)
    seconds = time.perf_counter() - start
    return {"import_s": seconds, "modules_loaded": len(sys.modules) - loaded}


# Left untyped: importing typing for it would count in every import time.
def run_on(backend: str, main):  # type: ignore[no-untyped-def]
    """Run ``main()`` the way a plain application on ``backend`` would."""
    if backend == "trio":
        import trio

        return trio.run(main)
    import asyncio

    loop_factory = None
    if backend == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


def time_run(
    module: str, workload: str, backend: str, n: int, workers: int, arg: str
) -> dict[str, object]:
    import importlib

    from impls._measure import current_rss, peak_rss
    from impls._tasks import for_backend

    impl = importlib.import_module(f"impls.{module}")
    body = getattr(impl, workload)
    tasks = for_backend(backend)
    rss_start = current_rss()

    args = (arg,) if arg else ()
    warm_up = getattr(impl, "warm_up", None) if arg else None

    async def main() -> tuple[float, float, dict[str, float]]:
        start = time.perf_counter()
        if warm_up is not None:
            await warm_up(tasks, workers, arg)
        else:
            await impl.map(tasks, workers, workers)
        first_use = time.perf_counter() - start
        start = time.perf_counter()
        extra = await body(tasks, n, workers, *args)
        return first_use, time.perf_counter() - start, extra

    first_use, elapsed, extra = run_on(backend, main)
    return {
        "elapsed": elapsed,
        "first_use_s": first_use,
        "peak_rss": peak_rss(),
        "rss_start": rss_start,
        **extra,
    }


PACKAGES = (
    "anyio",
    "trio",
    "uvloop",
    "tenacity",
    "aiometer",
    "anyio-executor",
    "aiologic",
    "asyncio-pool-ng",
    "aiolibs-executor",
)


def versions() -> dict[str, str]:
    import contextlib
    from importlib import metadata

    found = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    antflow = sys.modules.get("antflow")
    if antflow is not None:
        found["antflow"] = getattr(antflow, "__version__", "?")
        found["antflow_file"] = getattr(antflow, "__file__", None) or "?"
    return found


def main(argv: list[str]) -> None:
    if argv[:1] == ["import"] and len(argv) == 2:
        numbers = time_import(argv[1])
    elif argv[:1] == ["run"] and len(argv) in (6, 7):
        _, module, workload, backend, n, workers, *arg = argv
        numbers = time_run(
            module, workload, backend, int(n), int(workers), *arg or [""]
        )
    else:
        sys.exit(__doc__)
    import json

    print(json.dumps({**numbers, "versions": versions()}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
