"""The targets antflow's numbers are held against: reported as met or missed, never asserted.

Each target names the workload (and point) of antflow's number, the metric,
and what it divides by: nothing (an absolute limit), the workload's reference
implementation, another implementation, another point of antflow or antflow
on another workload, always measured in the same run, on the same Python and
backend. The ids are stable, so a note can cite one ("h.semaphore-50").
"""

from __future__ import annotations

from dataclasses import dataclass

from catalog import ASYNCIO_FAMILY, BACKENDS, TIMES

ISSUE = "issue 12"
EARLIER = "earlier"


@dataclass(frozen=True)
class Target:
    id: str
    text: str
    workload: str
    metric: str
    """"elapsed", "us_per_item", "peak_rss_mb" or a key the run reports."""
    limit: float
    """The value (or ratio) must stay <= limit ..."""
    low: float | None = None
    """... and >= low, when given (a rate that must be met, not only capped)."""
    point: str = ""
    over: str | None = None
    """None: absolute. "reference": the workload's reference at the same point.
    "impl:NAME", "point:NAME", "workload:KEY": that case instead of antflow's own."""
    backends: tuple[str, ...] = BACKENDS
    source: str = ISSUE


_NO_CLIFF = (
    ("semaphore-50", "`semaphore=CapacityLimiter(50)`"),
    ("semaphore-100", "`semaphore=` as large as max_workers"),
    ("rate-limit", "`rate_limit=` at an unreachable rate, on the call"),
    ("rate-limit-executor", "`rate_limit=` at an unreachable rate, on the executor"),
    ("retries", "`retries=3` that never fire"),
    ("task-timeout", "`task_timeout=10`"),
    ("workers-10000", "10,000 workers"),
)

TARGETS = (
    Target("a.pool", f"`map` ≤ 1.8{TIMES} the hand-written pool", "map", "elapsed", 1.8, over="reference"),
    Target("a.moonshot", f"`map` ≤ 1.5{TIMES} the hand-written pool (moonshot)", "map", "elapsed", 1.5, over="reference"),
    Target("c.window", f"ordered `map_iter` ≤ 1.6{TIMES} the hand-written ordered window", "map_iter", "elapsed", 1.6, over="reference"),
    Target("c.moonshot", f"ordered `map_iter` ≤ 1.5{TIMES} the window (moonshot)", "map_iter", "elapsed", 1.5, over="reference"),
    Target("c.rss", "ordered `map_iter` peak RSS ≤ 40 MB", "map_iter", "peak_rss_mb", 40),
    Target("cu.vs-ordered", f"unordered `map_iter` ≤ 1.0{TIMES} ordered", "map_iter_unordered", "elapsed", 1.0, over="workload:map_iter"),
    *(
        Target(f"h.{point}", f"{text} ≤ 1.3{TIMES} plain `map`", "features", "us_per_item", 1.3, point=point, over="point:plain")
        for point, text in _NO_CLIFF
    ),
    Target("h.unordered", f"`map_iter(ordered=False)` ≤ 1.0{TIMES} ordered", "features", "us_per_item", 1.0, point="map-iter-unordered", over="point:map-iter"),
    Target("f.bytes", "≤ 600 B per queued future", "submit", "bytes_per_future", 600),
    Target("i.rss-items", f"peak RSS at 3M items ≤ 1.1{TIMES} at 10k (grows with workers only)", "scaling", "peak_rss_mb", 1.1, point="n=3M", over="point:n=10k"),
    *(
        Target(f"j.{point}", f"`RateLimiter({rate})` delivers r within 5 %", "rate", "rate_ratio", 1.05, low=0.95, point=point)
        for point, rate in (("r=10", 10), ("r=100", 100), ("r=1k", 1_000), ("r=10k", 10_000), ("r=100k", 100_000))
    ),
    # Targets of the earlier issues, kept so a regression shows.
    Target("a.taskgroup", f"`map` ≤ 1.0{TIMES} asyncio TaskGroup + Semaphore", "map", "elapsed", 1.0, over="impl:taskgroup-asyncio", backends=("asyncio",), source=EARLIER),
    Target("b.as-completed", f"≤ 1.5{TIMES} tasks + `asyncio.as_completed`", "as_completed", "elapsed", 1.5, over="reference", backends=ASYNCIO_FAMILY, source=EARLIER),
    Target("d.ideal", f"≤ 1.15{TIMES} the ideal", "sleep", "elapsed", 1.15, over="reference", source=EARLIER),
    Target("e.quick", "quick tasks done ≤ 0.1 s", "hol", "t_quick", 0.1, source=EARLIER),
    Target("f.submit", "≤ 2 µs per submit", "submit", "us_per_submit", 2, source=EARLIER),
    Target("g.import", f"≤ 1.3{TIMES} `import anyio`", "import", "import_s", 1.3, over="reference", backends=("-",), source=EARLIER),
)  # fmt: skip
