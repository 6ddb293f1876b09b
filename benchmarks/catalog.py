"""What the runner runs: the implementations, the workloads, and the issue's targets.

An implementation names a module in ``impls/`` holding one async function per
workload it can run, plus the backends it runs on. A workload names its sizes
(full and quick), the metric its table shows, and the row its ratios divide by.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKENDS = ("asyncio", "uvloop", "trio")
ASYNCIO_FAMILY = ("asyncio", "uvloop")
TIMES = "\N{MULTIPLICATION SIGN}"

THIS = "this"
"""Runs with the runner's own interpreter, importing this repository's antflow."""
ANTFLOW_010 = "antflow-0.10"
"""Runs with the interpreter of the venv holding AntFlow 0.10 from PyPI."""


@dataclass(frozen=True)
class Impl:
    name: str
    label: str
    module: str
    backends: tuple[str, ...]
    workloads: tuple[str, ...]
    python: str = THIS


IMPLS = (
    Impl(
        "antflow",
        "**antflow** (this repo)",
        "antflow_api",
        BACKENDS,
        ("map", "as_completed", "map_iter", "sleep", "hol", "submit"),
    ),
    Impl(
        "antflow-0.10",
        "AntFlow 0.10 (PyPI)",
        "antflow_api",
        ASYNCIO_FAMILY,  # AntFlow 0.10 is built on asyncio alone
        ("map", "as_completed", "map_iter", "sleep", "hol", "submit"),
        python=ANTFLOW_010,
    ),
    Impl(
        "asyncio-taskgroup",
        "asyncio TaskGroup + Semaphore",
        "asyncio_taskgroup",
        ASYNCIO_FAMILY,
        ("map", "as_completed", "sleep", "hol", "submit"),
    ),
    Impl(
        "asyncio-pool",
        "asyncio worker pool",
        "asyncio_pool",
        ASYNCIO_FAMILY,
        ("map", "as_completed", "map_iter", "sleep", "hol"),
    ),
    Impl(
        "anyio-taskgroup",
        "anyio task group + CapacityLimiter",
        "anyio_taskgroup",
        BACKENDS,
        ("map", "as_completed", "sleep", "hol", "submit"),
    ),
    Impl(
        "anyio-pool",
        "anyio worker pool",
        "anyio_pool",
        BACKENDS,
        ("map", "as_completed", "map_iter", "sleep", "hol"),
    ),
    Impl(
        "aiometer",
        "aiometer 1.0",
        "aiometer_impl",
        BACKENDS,
        ("map", "as_completed", "map_iter", "sleep", "hol"),
    ),
)
IMPLS_BY_NAME = {impl.name: impl for impl in IMPLS}


@dataclass(frozen=True)
class Import:
    """A row of workload g: how long ``import module`` takes in a fresh process."""

    name: str
    label: str
    module: str
    python: str = THIS


IMPORTS = (
    Import("antflow", "**import antflow** (this repo)", "antflow"),
    Import("antflow-0.10", "import antflow (AntFlow 0.10)", "antflow", ANTFLOW_010),
    Import("anyio", "import anyio", "anyio"),
    Import("asyncio", "import asyncio", "asyncio"),
    Import("trio", "import trio", "trio"),
    Import("aiometer", "import aiometer", "aiometer"),
)


@dataclass(frozen=True)
class Workload:
    key: str
    letter: str
    title: str
    size: int
    quick_size: int
    metric: str
    """The number compared: "elapsed" (whole run, seconds) or a key the run reports."""
    references: dict[str, str]
    """backend -> the implementation its ratios divide by ("ideal": workload d)."""
    workers: int = 100


WORKLOADS = (
    Workload(
        "map",
        "a",
        "`map` of {n:,} tasks that each await one checkpoint",
        20_000,
        20_000,  # the fixed cost of starting a pool would dominate a smaller run
        "elapsed",
        {
            "asyncio": "asyncio-taskgroup",
            "uvloop": "asyncio-taskgroup",
            "trio": "anyio-taskgroup",
        },
    ),
    Workload(
        "as_completed",
        "b",
        "`submit` + `as_completed` of {n:,} checkpoint tasks",
        20_000,
        20_000,
        "elapsed",
        {
            "asyncio": "asyncio-taskgroup",
            "uvloop": "asyncio-taskgroup",
            "trio": "anyio-taskgroup",
        },
    ),
    Workload(
        "map_iter",
        "c",
        "`map_iter` over {n:,} items from a generator",
        1_000_000,
        100_000,
        "elapsed",
        dict.fromkeys(BACKENDS, "anyio-pool"),
    ),
    Workload(
        "sleep",
        "d",
        "{n:,} tasks sleeping 10 ms (ideal {ideal:.2f} s)",
        2_000,
        2_000,
        "elapsed",
        dict.fromkeys(BACKENDS, "ideal"),
    ),
    Workload(
        "hol",
        "e",
        "head-of-line: 200 tasks behind one Semaphore(5) for 20 ms each, then"
        " {n:,} quick tasks; time until the quick ones are done",
        1_000,
        1_000,
        "t_quick",
        {},
    ),
    Workload(
        "submit",
        "f",
        "{n:,} `submit()` calls queued behind a gate: µs per submit, RSS per queued item",
        100_000,
        20_000,
        "us_per_submit",
        {},
    ),
    Workload(
        "import",
        "g",
        "import time in a fresh process",
        1,
        1,
        "import_s",
        {"-": "anyio"},
    ),
)
WORKLOADS_BY_KEY = {w.key: w for w in WORKLOADS}
for _w in WORKLOADS:
    WORKLOADS_BY_KEY[_w.letter] = _w


def ideal_sleep_seconds(n: int, workers: int) -> float:
    """Workload d's lower bound: ``n / workers`` back-to-back 10 ms sleeps."""
    from impls._tasks import SLEEP_S

    return -(-n // workers) * SLEEP_S


@dataclass(frozen=True)
class Target:
    """One of the issue's targets for antflow; reported as met or missed, never asserted."""

    workload: str
    backends: tuple[str, ...]
    metric: str
    """"elapsed", "peak_rss_mb" or a key the run reports."""
    limit: float
    relative: bool
    """True: antflow's median divided by the workload's reference must stay <= limit."""
    text: str


TARGETS = (
    Target(
        "map",
        ("asyncio",),
        "elapsed",
        1.0,
        True,
        f"≤ 1.0{TIMES} asyncio TaskGroup + Semaphore",
    ),
    Target(
        "as_completed",
        ASYNCIO_FAMILY,
        "elapsed",
        1.5,
        True,
        f"≤ 1.5{TIMES} asyncio tasks + as_completed",
    ),
    Target(
        "map_iter", BACKENDS, "elapsed", 1.5, True, f"≤ 1.5{TIMES} anyio worker pool"
    ),
    Target("map_iter", BACKENDS, "peak_rss_mb", 40, False, "peak RSS ≤ 40 MB"),
    Target("sleep", BACKENDS, "elapsed", 1.15, True, f"≤ 1.15{TIMES} ideal"),
    Target("hol", BACKENDS, "t_quick", 0.1, False, "quick tasks done ≤ 0.1 s"),
    Target("submit", BACKENDS, "us_per_submit", 2, False, "≤ 2 µs per submit"),
    Target(
        "submit", BACKENDS, "bytes_per_future", 600, False, "≤ 600 B per queued future"
    ),
    Target("import", ("-",), "import_s", 1.3, True, f"≤ 1.3{TIMES} import anyio"),
)
