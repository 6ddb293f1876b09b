"""Memory readings and the checks that keep a broken implementation from looking fast."""

from __future__ import annotations

import gc
import os
import resource
import sys


def current_rss() -> int:
    """Resident set size now, in bytes (Linux; 0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
    except OSError:
        return 0
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    return peak if sys.platform == "darwin" else peak * 1024


def settled_rss() -> int:
    """RSS after a full collection, so garbage does not count as live memory."""
    gc.collect()
    return current_rss()


def check(condition: bool, what: str) -> None:
    """Fail the run when a result is wrong; an ``assert`` would vanish under ``-O``."""
    if not condition:
        raise RuntimeError(f"wrong result: {what}")


def queue_metrics(
    n: int, seconds: float, rss_before: int, rss_after: int
) -> dict[str, float]:
    """Workload f's numbers: microseconds per submit and RSS bytes per queued item."""
    return {
        "us_per_submit": seconds / n * 1e6,
        "bytes_per_future": (rss_after - rss_before) / n,
    }
