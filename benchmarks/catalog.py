"""What the runner runs: the implementations and the workloads.

An implementation names a module in ``impls/`` holding one async function per
workload it runs, the backends it runs on and the environment it starts in
(``envs.py``). A workload names its function, sizes (full and quick), the
number its table compares, the row its ratios divide by, and, for a sweep
(h, i, j), its points: settings of n, workers and an argument, each run as a
case of its own.

Adding a workload takes a ``Workload(...)`` here, an ``async def KEY(tasks,
n, workers[, arg])`` in each ``impls/`` module that runs it (listed in that
implementation's ``workloads``), and targets in ``targets.py`` if it has any.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from envs import THIS

BACKENDS = ("asyncio", "uvloop", "trio")
TIMES = "\N{MULTIPLICATION SIGN}"
ASYNCIO_FAMILY = ("asyncio", "uvloop")


@dataclass(frozen=True)
class Impl:
    name: str
    label: str
    module: str
    backends: tuple[str, ...]
    workloads: tuple[str, ...]
    env: str = THIS
    min_python: tuple[int, int] = (3, 11)
    elsewhere: Mapping[str, str] = field(default_factory=dict[str, str])
    """workload -> another module that runs it (a big workload of its own)."""
    beside: tuple[str, ...] = ()
    """Rows to run next to this one where it runs on a newer Python alone."""
    max_items: Mapping[str, tuple[int, str]] = field(
        default_factory=dict[str, tuple[int, str]]
    )
    """workload -> (most items it is run with, why): a peer whose cost grows
    faster than its input is left out above that, and the report says so."""

    def module_for(self, workload: str) -> str:
        return self.elsewhere.get(workload, self.module)


_ANTFLOW_WORKLOADS = ("map", "as_completed", "map_iter", "sleep", "hol", "submit")

IMPLS = (
    Impl(
        "antflow",
        "**antflow** (this repo)",
        "antflow_api",
        BACKENDS,
        (*_ANTFLOW_WORKLOADS, "map_iter_unordered", "scaling", "features", "rate"),
        elsewhere={"features": "antflow_features", "rate": "antflow_rate"},
    ),
    # The hand-written baselines: what a careful engineer writes without a library.
    Impl(
        "pool-asyncio",
        "hand-written pool, asyncio",
        "pool_asyncio",
        ASYNCIO_FAMILY,
        ("map", "as_completed", "map_iter_unordered", "sleep", "hol"),
    ),
    Impl(
        "pool-anyio",
        "hand-written pool, anyio",
        "pool_anyio",
        BACKENDS,
        ("map", "as_completed", "map_iter_unordered", "sleep", "hol"),
    ),
    Impl(
        "window-asyncio",
        "hand-written ordered window, asyncio",
        "window_asyncio",
        ASYNCIO_FAMILY,
        ("map_iter", "scaling"),
    ),
    Impl(
        "window-anyio",
        "hand-written ordered window, anyio",
        "window_anyio",
        BACKENDS,
        ("map_iter", "scaling"),
    ),
    Impl(
        "taskgroup-asyncio",
        "asyncio TaskGroup + Semaphore",
        "taskgroup_asyncio",
        ASYNCIO_FAMILY,
        ("map", "as_completed", "sleep", "hol", "submit"),
    ),
    Impl(
        "taskgroup-asyncio-eager",
        "asyncio TaskGroup + Semaphore, eager tasks",
        "taskgroup_asyncio_eager",
        ASYNCIO_FAMILY,
        ("map", "as_completed", "sleep", "hol", "submit"),
        min_python=(3, 12),  # asyncio.eager_task_factory
        beside=("taskgroup-asyncio",),
    ),
    Impl(
        "taskgroup-anyio",
        "anyio task group + CapacityLimiter",
        "taskgroup_anyio",
        BACKENDS,
        ("map", "as_completed", "sleep", "hol", "submit"),
    ),
    # Libraries a user would pick instead, each from PyPI.
    Impl(
        "aiometer",
        "aiometer 1.0",
        "aiometer_impl",
        BACKENDS,
        ("map", "as_completed", "map_iter_unordered", "sleep", "hol"),
    ),
    Impl(
        "antflow-0.10",
        "AntFlow 0.10",
        "antflow_api",
        ASYNCIO_FAMILY,  # AntFlow 0.10 is built on asyncio alone
        _ANTFLOW_WORKLOADS,
        env="antflow-0.10",
    ),
    Impl(
        "anyio-executor",
        "anyio-executor 0.1",
        "anyio_executor_impl",
        BACKENDS,
        ("map", "as_completed", "map_iter_unordered", "sleep", "hol"),
        env="anyio-executor",
    ),
    Impl(
        "asyncio-pool-ng",
        "asyncio-pool-ng",
        "asyncio_pool_ng_impl",
        ASYNCIO_FAMILY,
        ("map", "as_completed", "map_iter_unordered", "sleep", "hol", "submit"),
        env="asyncio-pool-ng",
        max_items={
            "map_iter_unordered": (
                100_000,
                "its itermap waits on every pending future again each second; "
                "at 1,000,000 items one run had not finished after 7 minutes",
            )
        },
    ),
    Impl(
        "aiolibs-executor",
        "aiolibs-executor",
        "aiolibs_executor_impl",
        ASYNCIO_FAMILY,
        ("map", "as_completed", "map_iter", "sleep", "hol", "submit"),
        env="aiolibs-executor",
        min_python=(3, 13),
    ),
)
IMPLS_BY_NAME = {impl.name: impl for impl in IMPLS}


@dataclass(frozen=True)
class Import:
    """A row of workload g: how long ``import module`` takes in a fresh process."""

    name: str
    label: str
    module: str
    env: str = THIS


IMPORTS = (
    Import("antflow", "**import antflow** (this repo)", "antflow"),
    Import("antflow-0.10", "import antflow (AntFlow 0.10)", "antflow", "antflow-0.10"),
    Import("anyio", "import anyio", "anyio"),
    Import("asyncio", "import asyncio", "asyncio"),
    Import("trio", "import trio", "trio"),
    Import("aiometer", "import aiometer", "aiometer"),
)


@dataclass(frozen=True)
class Point:
    """One setting of a workload: its own n, workers and argument, run as a case of its own.

    Plain workloads have one unnamed point. A sweep (h, i, j) has several.
    """

    name: str = ""
    label: str = ""
    n: int | None = None
    """Items; None: the workload's size for the mode."""
    workers: int | None = None
    """None: the workload's workers."""
    arg: str = ""
    """Passed to the workload function as its fourth argument when not empty."""
    versus: str | None = None
    """The point (of the same implementation) this one's ratio divides by.
    None: the workload's reference implementation at this same point."""
    short: str = ""
    """A few words for a plot's axis; the name when empty."""


@dataclass(frozen=True)
class Workload:
    key: str
    """The name of the function each implementation's module defines for it."""
    letter: str
    title: str
    """Formatted with n (items) and ideal (seconds, workload d)."""
    size: int
    quick_size: int
    metric: str = "elapsed"
    """The number compared: "elapsed" (whole run, seconds) or a key the run reports."""
    references: Mapping[str, str | tuple[str, ...]] = field(
        default_factory=dict[str, str | tuple[str, ...]]
    )
    """backend -> the implementation its ratios divide by ("ideal": workload d),
    or several: then the fastest of them in the run (see ``references_on``)."""
    workers: int = 100
    how_to_read: str = ""
    cells: str = "time"
    """How a table cell shows a case: time, per_item, hol, submit, import or rate."""
    points: tuple[Point, ...] = (Point(),)
    quick_points: tuple[Point, ...] | None = None
    only_reference: bool = False
    """Compare antflow with the reference alone (sweeps with many points)."""
    every_python: bool = False
    """Run on every Python of the run by default; otherwise on the runner's own
    (plus, for a peer that needs a newer one, that one: see run.plan)."""

    def references_on(self, backend: str) -> tuple[str, ...]:
        """The rows a ratio on ``backend`` may divide by; with several, a ratio
        divides by the fastest of them in the same run, so no baseline is
        picked for being slow."""
        found = self.references.get(backend, ())
        return (found,) if isinstance(found, str) else found

    def points_for(self, quick: bool) -> tuple[Point, ...]:
        return self.quick_points if quick and self.quick_points else self.points


POOL: dict[str, str | tuple[str, ...]] = {
    "asyncio": "pool-asyncio",
    "uvloop": "pool-asyncio",
    "trio": "pool-anyio",
}
# Both windows run on asyncio; neither is faster everywhere, so the faster counts.
WINDOW: dict[str, str | tuple[str, ...]] = {
    "asyncio": ("window-asyncio", "window-anyio"),
    "uvloop": ("window-asyncio", "window-anyio"),
    "trio": "window-anyio",
}
TASKGROUP: dict[str, str | tuple[str, ...]] = {
    "asyncio": "taskgroup-asyncio",
    "uvloop": "taskgroup-asyncio",
    "trio": "taskgroup-anyio",
}

_FEATURES = (
    Point("plain", "plain `map`", arg="plain"),
    Point("semaphore-50", "`semaphore=CapacityLimiter(50)`", arg="semaphore-50", versus="plain", short="semaphore\n(50)"),
    Point("semaphore-100", "`semaphore=CapacityLimiter(100)` (= max_workers)", arg="semaphore-100", versus="plain", short="semaphore\n(100)"),
    Point("rate-limit", "`rate_limit=RateLimiter(10**9)` on the call", arg="rate-limit", versus="plain", short="rate_limit\n(call)"),
    Point("rate-limit-executor", "`AsyncExecutor(rate_limit=RateLimiter(10**9))`", arg="rate-limit-executor", versus="plain", short="rate_limit\n(executor)"),
    Point("retries", "`retries=3`, never needed", arg="retries", versus="plain", short="retries=3"),
    Point("task-timeout", "`task_timeout=10`", arg="task-timeout", versus="plain", short="task_timeout\n=10"),
    Point("workers-10000", "`max_workers=10_000`", workers=10_000, arg="plain", versus="plain", short="10,000\nworkers"),
    Point("map-iter", "ordered `map_iter`", arg="map-iter", versus="plain", short="ordered\nmap_iter"),
    Point("map-iter-unordered", "`map_iter(ordered=False)`", arg="map-iter-unordered", versus="map-iter", short="unordered\n÷ ordered"),
)  # fmt: skip


def _scaling(
    items: tuple[int, ...], workers: tuple[int, ...], at: int
) -> tuple[Point, ...]:
    """i's points: ``items`` at 100 workers, then ``workers`` at ``at`` items (shared point once)."""
    points = [
        Point(f"n={_short(n)}", f"{n:,} items, 100 workers", n=n, workers=100)
        for n in items
    ]
    points += [
        Point(f"w={_short(w)}", f"{at:,} items, {w:,} workers", n=at, workers=w)
        for w in workers
        if not (w == 100 and at in items)
    ]
    return tuple(points)


def _short(number: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if number >= size and number % size == 0:
            return f"{number // size}{unit}"
    return str(number)


RATES = (10, 100, 1_000, 10_000, 100_000)


def _rates(seconds: float) -> tuple[Point, ...]:
    """j's points: enough starts at each rate to last about ``seconds``."""
    return tuple(
        Point(
            f"r={_short(r)}",
            f"`RateLimiter({r:_})`",
            n=int(r * seconds) + 1,
            arg=str(r),
        )
        for r in RATES
    )


WORKLOADS = (
    Workload(
        "map",
        "a",
        "`map` of {n:,} tasks that each await one checkpoint",
        20_000,
        20_000,  # the fixed cost of starting a pool would dominate a smaller run
        references=POOL,
        how_to_read="Cells: median wall time · ratio to *ref* (same backend) · peak RSS of the "
        "process. anyio-executor returns its list in completion order.",
    ),
    Workload(
        "as_completed",
        "b",
        "`submit` + `as_completed` of {n:,} checkpoint tasks",
        20_000,
        20_000,
        references=TASKGROUP,
        how_to_read="Cells: median wall time · ratio to *ref* (same backend) · peak RSS. The "
        "task groups and futures are read with `asyncio.as_completed`, the anyio task group "
        "through a memory object stream, the pools through a queue or stream; aiometer "
        "(`amap`) and anyio-executor (`map`) stream results in completion order instead.",
    ),
    Workload(
        "map_iter",
        "c",
        "ordered `map_iter` over {n:,} items from a generator",
        1_000_000,
        20_000,
        references=WINDOW,
        how_to_read="Cells: median wall time · ratio to *ref* (same backend) · peak RSS. Every "
        f"row yields results in input order. The windows keep 2 {TIMES} workers items read ahead; "
        "on asyncio and uvloop both run, and the faster of them in this run is *ref*.",
    ),
    Workload(
        "map_iter_unordered",
        "cu",
        "unordered `map_iter` over {n:,} items from a generator",
        1_000_000,
        20_000,
        references=POOL,
        how_to_read="Cells: median wall time · ratio to *ref* (same backend) · peak RSS. Results "
        "in completion order: antflow's `map_iter(ordered=False)`; the hand-written pools "
        "hand each result straight to the consumer's code, the cheapest shape there is.",
    ),
    Workload(
        "sleep",
        "d",
        "{n:,} tasks sleeping 10 ms (ideal {ideal:.2f} s)",
        2_000,
        2_000,
        references=dict.fromkeys(BACKENDS, "ideal"),
        how_to_read=f"Cells: median wall time · ratio to the ideal (n / workers {TIMES} 10 ms) · peak RSS.",
    ),
    Workload(
        "hol",
        "e",
        "head-of-line: 200 tasks behind one Semaphore(5) for 20 ms each, then"
        " {n:,} quick tasks; time until the quick ones are done",
        1_000,
        1_000,
        metric="t_quick",
        cells="hol",
        how_to_read="Cells: time until the last quick task is done (until the last slow one) · "
        "peak RSS. Baselines and peers use the plain pattern: a slow task waits for the "
        "semaphore inside its pool slot.",
    ),
    Workload(
        "submit",
        "f",
        "{n:,} `submit()` calls queued behind a gate: µs per submit, RSS per queued item",
        100_000,
        20_000,
        metric="us_per_submit",
        cells="submit",
        how_to_read="Cells: µs per `submit()` (task groups: per task created) · RSS growth per "
        "queued item, after a full GC.",
    ),
    Workload(
        "import",
        "g",
        "import time in a fresh process",
        1,
        1,
        metric="import_s",
        references={"-": "anyio"},
        cells="import",
        how_to_read="Cells: median `import` time in a fresh process · ratio to `import anyio` · "
        "modules that the import loaded.",
    ),
    Workload(
        "features",
        "h",
        "each feature on, against plain `map` of {n:,} one-checkpoint tasks",
        20_000,
        2_000,  # a feature that falls off a cliff costs up to 1 ms per item
        cells="per_item",
        points=_FEATURES,
        every_python=True,
        how_to_read="Cells: median µs per item · ratio to the row it is compared with (plain "
        "`map`; unordered `map_iter` against ordered), same run and backend · peak RSS.",
    ),
    Workload(
        "scaling",
        "i",
        "cost per item as items and workers grow (ordered `map_iter`)",
        100_000,
        10_000,
        references=WINDOW,
        cells="per_item",
        points=_scaling((10_000, 100_000, 1_000_000, 3_000_000), (10, 100, 1_000, 10_000), 100_000),
        quick_points=_scaling((10_000, 100_000), (10, 10_000), 10_000),
        only_reference=True,
        every_python=True,
        how_to_read="Cells: median µs per item · ratio to the hand-written ordered window at the "
        "same point and backend (the faster of the two where both run) · peak RSS.",
    ),
    Workload(
        "rate",
        "j",
        "rate delivered by `RateLimiter(r)`, alone in the way, in real time",
        0,
        0,
        metric="rate_ratio",
        cells="rate",
        points=_rates(2.0),
        quick_points=_rates(0.5),
        how_to_read="Cells: starts per second achieved between the first start and the last · "
        "that divided by r · peak RSS. Each run asks for 2 s of starts (quick: 0.5 s) "
        "through `map` with 100 workers and `rate_limit=RateLimiter(r)` (burst 1), and is "
        "cut off after twice that plus 0.5 s, so a limiter far below r still ends soon.",
    ),
)  # fmt: skip
WORKLOADS_BY_KEY = {w.key: w for w in WORKLOADS}
for _w in WORKLOADS:
    WORKLOADS_BY_KEY[_w.letter] = _w


def ideal_sleep_seconds(n: int, workers: int) -> float:
    """Workload d's lower bound: ``n / workers`` back-to-back 10 ms sleeps."""
    from impls._tasks import SLEEP_S

    return -(-n // workers) * SLEEP_S
