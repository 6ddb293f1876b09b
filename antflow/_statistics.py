"""ExecutorStatistics: a snapshot of what an executor is doing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._pool import Pool


@dataclass(frozen=True, slots=True)
class ExecutorStatistics:
    """Counts at one moment; ``AsyncExecutor.statistics()`` makes one.

    At every moment ``submitted == queued + running + succeeded + failed +
    cancelled``.

    Attributes:
        max_workers: The executor's worker limit.
        submitted: Tasks ever submitted (``map`` items included).
        queued: Tasks not yet final and not in a worker: waiting for a
            worker, a semaphore or a rate-limit token (a retry waiting for
            its semaphore too).
        running: Tasks in a worker right now (retry back-off included).
        succeeded: Tasks that returned a value.
        failed: Tasks that ended with an exception.
        cancelled: Tasks that were cancelled, started or not.
        retries: Attempts beyond the first, over all tasks.
    """

    max_workers: int
    submitted: int
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    retries: int


ExecutorStatistics.__module__ = "antflow"  # where users import it from


def snapshot(max_workers: int, pool: Pool | None) -> ExecutorStatistics:
    """The counters of ``pool`` (None: never started) right now."""
    if pool is None:
        return ExecutorStatistics(max_workers, 0, 0, 0, 0, 0, 0, 0)
    from ._job import CANCELLED, FAILED, FINISHED

    submitted, running, finals, retries = pool.statistics()
    succeeded, failed, cancelled = finals[FINISHED], finals[FAILED], finals[CANCELLED]
    return ExecutorStatistics(
        max_workers=max_workers,
        submitted=submitted,
        queued=submitted - running - succeeded - failed - cancelled,
        running=running,
        succeeded=succeeded,
        failed=failed,
        cancelled=cancelled,
        retries=retries,
    )
