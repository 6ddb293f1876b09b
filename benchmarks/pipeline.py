"""A 3-stage no-op pipeline over a million items: time and peak RSS.

Usage::

    python benchmarks/pipeline.py                  # 1,000,000 items, 1 round
    python benchmarks/pipeline.py --items 100000 --rounds 3
    python benchmarks/pipeline.py --backends asyncio,trio --skip antflow-0.10
    python benchmarks/pipeline.py --instructions   # callgrind: load-immune

Cases, each three stages of ``workers`` workers (100 by default) whose task
awaits one checkpoint (``impls/_tasks.py``, the same bodies as the other
benchmarks) and returns its input:

=================== ==========================================================
pipeline            ``antflow.pipeline.Pipeline``, results in source order
pipeline-unordered  the same, results as they finish
pipeline-journal    unordered, with a journal (SQLite, in a temporary folder)
map_iter-chain      three ``AsyncExecutor.map_iter`` calls chained, in order
map_iter-unordered  the same with ``ordered=False``
antflow-0.10        AntFlow 0.10's ``Pipeline.stream`` (completion order), in
                    its own venv, made and reused as the benchmark runner
                    makes it (``envs.py``, under ``benchmarks/.venvs``);
                    asyncio and uvloop (AntFlow 0.10 has no trio)
=================== ==========================================================

Every run is a fresh process (``child`` below), so no import, allocator state
or peak RSS carries over; the rounds alternate the cases' order. Wall time is
taken inside the event loop around the whole run, entering and leaving
included; peak RSS is the child's high-water mark at the end (``VmHWM`` on
Linux, the interpreter and its imports included). Ratios divide by
``map_iter-chain`` on the same backend, measured in the same invocation. The
load average is printed at the start and the end: other work on the machine
skews the times; ``--instructions`` counts instructions per item under
callgrind instead, which the load does not change (but which weighs a
system call or a thread hand-over like any instruction). Nothing is
asserted: this reports.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CASES = (
    "pipeline",
    "pipeline-unordered",
    "pipeline-journal",
    "map_iter-chain",
    "map_iter-unordered",
    "antflow-0.10",
)
REFERENCE = "map_iter-chain"


# -- one run, in a child process ---------------------------------------------------


def child(case: str, backend: str, items: int, workers: int) -> dict[str, float]:
    """Run one case; return its numbers (this process runs nothing else)."""
    from impls._tasks import for_backend

    noop = for_backend(backend).checkpoint

    if case == "antflow-0.10":
        from antflow import Pipeline as OldPipeline
        from antflow import Stage as OldStage

        async def body() -> int:
            stages = [
                OldStage(name=name, workers=workers, tasks=[noop], task_attempts=1)
                for name in ("a", "b", "c")
            ]
            count = 0
            async for _ in OldPipeline(stages=stages).stream(range(items)):
                count += 1
            return count

    elif case.startswith("map_iter"):
        from antflow import AsyncExecutor

        ordered = case == "map_iter-chain"

        async def body() -> int:
            count = 0
            async with (
                AsyncExecutor(workers) as a,
                AsyncExecutor(workers) as b,
                AsyncExecutor(workers) as c,
            ):
                first = a.map_iter(noop, range(items), ordered=ordered)
                second = b.map_iter(noop, first, ordered=ordered)
                async for _ in c.map_iter(noop, second, ordered=ordered):
                    count += 1
            return count

    else:
        from antflow.pipeline import Pipeline, Stage

        folder = tempfile.mkdtemp()
        journal = (
            os.path.join(folder, "bench.journal") if case.endswith("journal") else None
        )
        pipeline = Pipeline(
            *(Stage(name, noop, workers=workers) for name in ("a", "b", "c")),
            journal=journal,
        )

        async def body() -> int:
            count = 0
            async with pipeline.stream(
                range(items), ordered=case == "pipeline"
            ) as results:
                async for _ in results:
                    count += 1
            return count

    async def timed() -> tuple[float, int]:
        start = time.perf_counter()
        count = await body()
        return time.perf_counter() - start, count

    elapsed, count = _run(backend, timed)
    if count != items:
        raise SystemExit(f"{case}: {count} results for {items} items")
    return {"elapsed": elapsed, "peak_rss": _peak_rss()}


def _peak_rss() -> float:
    """Peak RSS in bytes. VmHWM on Linux: ``ru_maxrss`` there also counts the
    peak of the process that forked this one, across exec."""
    import resource

    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _run(backend: str, main):  # type: ignore[no-untyped-def]
    if backend == "trio":
        import trio

        return trio.run(main)
    import asyncio

    factory = None
    if backend == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


# -- the driver ----------------------------------------------------------------------


def _peer_python(name: str, root: Path | None) -> str | None:
    """The python of a peer's venv on this interpreter, made as the benchmark
    runner makes it; None (and why, printed) when it cannot be made."""
    import envs

    interpreter = envs.find_interpreters(None)[0]
    try:
        return envs.ensure(envs.ENVS[name], interpreter, root or envs.DEFAULT_ROOT)
    except RuntimeError as error:
        print(f"{name} left out: {error}", flush=True)
        return None


def spawn(
    python: str,
    case: str,
    backend: str,
    items: int,
    workers: int,
    *,
    prefix: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run one case in a child process (under ``prefix``, a tool such as
    valgrind, if given)."""
    import envs

    # A peer's child never sees this repository (its antflow is 0.10).
    env = envs.ENVS[case if case == "antflow-0.10" else envs.THIS]
    script = str(Path(__file__).resolve())
    done = subprocess.run(
        [*prefix, python, script, "child", case, backend, str(items), str(workers)],
        capture_output=True,
        text=True,
        cwd="/" if case == "antflow-0.10" else str(REPO),
        env=envs.child_environ(env),
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{case} on {backend} failed:\n{done.stderr}")
    return done


def measure(
    python: str, case: str, backend: str, items: int, workers: int
) -> dict[str, float]:
    """Wall time and peak RSS of one run."""
    done = spawn(python, case, backend, items, workers)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def instructions_per_item(
    python: str, case: str, backend: str, sizes: tuple[int, int], workers: int
) -> float:
    """Instructions per item as callgrind counts them, which the machine's
    load does not change: the difference between two sizes, divided by the
    difference in items, so that start-up and imports cancel out (as
    ``benchmarks/instructions/count.sh`` does)."""
    counts: list[int] = []
    for items in sizes:
        done = spawn(
            python,
            case,
            backend,
            items,
            workers,
            prefix=("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"),
        )
        found = re.search(r"Collected : (\d+)", done.stderr)
        if found is None:
            raise RuntimeError(f"no instruction count from callgrind:\n{done.stderr}")
        counts.append(int(found[1]))
    return (counts[1] - counts[0]) / (sizes[1] - sizes[0])


def main(argv: list[str]) -> None:
    sys.path.insert(0, str(HERE))  # envs, impls
    if argv[:1] == ["child"]:
        case, backend, items, workers = argv[1:]
        print(json.dumps(child(case, backend, int(items), int(workers))), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--backends", default="asyncio,uvloop,trio")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument(
        "--skip", default="", help="cases to leave out, comma-separated"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per item under callgrind (2,000 and 6,000 "
        "items) instead of timing --items; needs valgrind",
    )
    parser.add_argument(
        "--venvs",
        type=Path,
        default=None,
        help="where the peers' venvs live (default: benchmarks/.venvs)",
    )
    args = parser.parse_args(argv)
    backends = args.backends.split(",")
    skip = set(filter(None, args.skip.split(",")))
    cases = [c for c in args.cases.split(",") if c not in skip]
    pythons = dict.fromkeys(cases, sys.executable)
    if "antflow-0.10" in cases:
        python = _peer_python("antflow-0.10", args.venvs)
        if python is None:
            cases.remove("antflow-0.10")
        else:
            pythons["antflow-0.10"] = python
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "antflow")], check=True
    )

    if args.instructions:
        _count_instructions(pythons, cases, backends, args.workers)
        return
    load = os.getloadavg()[0]
    print(
        f"{args.items:,} items, 3 stages of {args.workers} workers, {args.rounds} round(s); "
        f"load average {load:.2f} at the start",
        flush=True,
    )
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    for round_ in range(args.rounds):
        for backend in backends:
            order = cases[round_ % len(cases) :] + cases[: round_ % len(cases)]
            for case in order:
                if case == "antflow-0.10" and backend == "trio":
                    continue
                numbers = measure(
                    pythons[case], case, backend, args.items, args.workers
                )
                runs.setdefault((backend, case), []).append(numbers)
                print(
                    f"  {backend:8} {case:20} {numbers['elapsed']:8.2f} s"
                    f" {numbers['peak_rss'] / 2**20:8.0f} MB",
                    flush=True,
                )
    print(f"\nMedians; load average {os.getloadavg()[0]:.2f} at the end\n")
    print("| backend | case | time | peak RSS | time vs map_iter-chain |")
    print("|---|---|---|---|---|")
    for backend in backends:
        reference = runs.get((backend, REFERENCE))
        base = statistics.median(r["elapsed"] for r in reference) if reference else None
        for case in cases:
            numbers = runs.get((backend, case))
            if not numbers:
                continue
            elapsed = statistics.median(r["elapsed"] for r in numbers)
            peak = statistics.median(r["peak_rss"] for r in numbers) / 2**20
            ratio = f"{elapsed / base:.2f}x" if base else "-"
            print(f"| {backend} | {case} | {elapsed:.2f} s | {peak:.0f} MB | {ratio} |")


def _count_instructions(
    pythons: dict[str, str], cases: list[str], backends: list[str], workers: int
) -> None:
    sizes = (2_000, 6_000)
    print(
        f"instructions per item (callgrind, {sizes[0]:,} and {sizes[1]:,} items), "
        f"3 stages of {workers} workers\n",
        flush=True,
    )
    print(f"| backend | case | instructions per item | vs {REFERENCE} |")
    print("|---|---|---|---|")
    for backend in backends:
        counted: dict[str, float] = {}
        for case in cases:
            if case == "antflow-0.10" and backend == "trio":
                continue
            counted[case] = instructions_per_item(
                pythons[case], case, backend, sizes, workers
            )
        base = counted.get(REFERENCE)
        for case, count in counted.items():
            ratio = f"{count / base:.2f}x" if base else "-"
            print(f"| {backend} | {case} | {count:,.0f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
