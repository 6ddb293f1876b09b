"""Counts for a running pipeline: one snapshot per stage, and the whole."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["PipelineStatistics", "RateMeter", "StageStatistics"]


@dataclass(frozen=True, slots=True)
class StageStatistics:
    """One stage at one moment.

    Attributes:
        name: The stage's name.
        workers: Its worker limit.
        queued: Items waiting for the stage: parked before it (it was full),
            waiting for a worker or a limiter, or gathering into a batch.
        running: Items whose call is in a worker right now (a batch counts
            its items).
        done: Items the stage finished.
        set_aside: Items the stage failed, after its retries.
        retries: Attempts beyond the first, over all its calls.
        rate: Items finished (done or set aside) per second, over the last
            few seconds.
    """

    name: str
    workers: int
    queued: int
    running: int
    done: int
    set_aside: int
    retries: int
    rate: float


@dataclass(frozen=True, slots=True)
class PipelineStatistics:
    """A pipeline run at one moment.

    Attributes:
        stages: One `StageStatistics` per stage, in order.
        admitted: Source items that entered the pipeline in this run.
        completed: Results handed out as `Completed`.
        set_aside: Results handed out as `Failed`.
        in_flight: Items between the source and the results now (a fan-out
            child counts as an item).
        resumed: Items the journal sent to the stage where an earlier run
            left them (set-aside items retried included).
        skipped: Items the journal says are finished (or set aside, unless
            retried): not run again.
        journal_saved: Journal records saved so far.
        journal_flushes: Journal transactions so far.
        journal_seconds: Time spent saving them, in seconds (in a worker
            thread: the event loop goes on meanwhile).
        elapsed: Seconds since the run started.
    """

    stages: tuple[StageStatistics, ...]
    admitted: int
    completed: int
    set_aside: int
    in_flight: int
    resumed: int
    skipped: int
    journal_saved: int
    journal_flushes: int
    journal_seconds: float
    elapsed: float


class RateMeter:
    """Finished items per second over a sliding window of a few seconds.

    A sample is kept at most every ``step`` seconds, so the cost per item is
    one comparison.
    """

    __slots__ = ("_samples", "_step", "_window")

    def __init__(self, start: float, window: float = 5.0, step: float = 0.5) -> None:
        self._window = window
        self._step = step
        self._samples: deque[tuple[float, int]] = deque([(start, 0)])

    def sample(self, now: float, count: int) -> None:
        samples = self._samples
        if samples and now - samples[-1][0] < self._step:
            return
        samples.append((now, count))
        while len(samples) > 2 and now - samples[1][0] >= self._window:
            samples.popleft()

    def rate(self, now: float, count: int) -> float:
        then, before = self._samples[0]
        seconds = now - then
        return (count - before) / seconds if seconds > 0 else 0.0
