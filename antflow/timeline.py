"""A picture of a run: its task events drawn as a timeline (``antflow[timeline]``).

Record a run's events with a `Recorder` (an ``on_event`` hook), then draw
them with `plot_timeline`, which needs matplotlib::

    recorder = Recorder()
    async with AsyncExecutor(4, on_event=recorder) as executor:
        ...
    plot_timeline(recorder.events).savefig("run.png")

The upper panel has a bar per attempt, coloured by how it ended, and a
hatched bar for each retry's back-off (the job keeps its worker meanwhile).
Rows are worker slots (``rows="worker"``: antflow does not pin jobs to
worker tasks, so each job takes the lowest slot free when it starts and
keeps it until it ends or parks at a limiter), or limiters (``rows=
"limiter"``: a group of rows per limiter, one row per attempt running
through it at once). The lower panel counts the jobs waiting, for a worker
and for a limiter, over time: what head-of-line blocking and tight limits
look like. Time runs from the first event, on the loop's clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .events import (
    Cancelled,
    Failed,
    FinalEvent,
    Queued,
    Retrying,
    Started,
    TaskEvent,
    TimedOut,
    Waiting,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["COLORS", "Recorder", "plot_timeline"]

#: The colour of an attempt by how it ended, and of back-offs and waits.
COLORS: Mapping[str, str] = {
    "succeeded": "#2a9d8f",
    "retried": "#e9c46a",
    "timed out": "#f4a261",
    "failed": "#d62828",
    "cancelled": "#8d99ae",
    "back-off": "#cccccc",
    "waiting for a worker": "#457b9d",
    "waiting for a limiter": "#e76f51",
}


class Recorder:
    """An ``on_event`` hook that keeps every event, in order, in ``events``.

    Events that carry an error keep it (and its traceback) alive as long
    as the recorder.
    """

    def __init__(self) -> None:
        self.events: list[TaskEvent] = []

    def __call__(self, event: TaskEvent) -> None:
        self.events.append(event)


@dataclass
class _Bar:
    start: float
    end: float
    kind: str  # a key of COLORS


@dataclass
class _Job:
    queued: float
    limiters: tuple[object, ...]
    attempts: list[_Bar] = field(default_factory=list["_Bar"])
    back_offs: list[_Bar] = field(default_factory=list["_Bar"])
    #: When it held a worker slot: from a start until it parked or ended.
    occupied: list[tuple[float, float]] = field(
        default_factory=list[tuple[float, float]]
    )
    #: (start, end, "worker" | "limiter") for each wait.
    waits: list[tuple[float, float, str]] = field(
        default_factory=list[tuple[float, float, str]]
    )


def _jobs(events: Iterable[TaskEvent]) -> dict[tuple[int, int], _Job]:
    """Replay each job's events into bars and waits."""
    jobs: dict[tuple[int, int], _Job] = {}
    state: dict[tuple[int, int], dict[str, float | str | None]] = {}
    for event in events:
        key = (event.executor, event.job)
        if isinstance(event, Queued):
            jobs[key] = _Job(event.time, event.limiters)
            state[key] = {"wait": event.time, "kind": "worker", "held": None}
            continue
        job, st = jobs.get(key), state.get(key)
        if job is None or st is None:
            continue  # its Queued was not recorded
        now = event.time
        if isinstance(event, Waiting):
            held = st["held"]
            if isinstance(held, float):  # parks after a back-off: frees its slot
                job.occupied.append((held, now))
                st["held"] = None
            wait = st["wait"]
            if isinstance(wait, float) and st["kind"] == "worker" and now > wait:
                job.waits.append((wait, now, "worker"))
            if st["kind"] == "worker":
                st["wait"], st["kind"] = now, "limiter"
        elif isinstance(event, Started):
            wait, kind = st["wait"], st["kind"]
            if isinstance(wait, float) and isinstance(kind, str):
                job.waits.append((wait, now, kind))
            st["wait"] = None
            st["attempt"] = now
            if st["held"] is None:
                st["held"] = now
        elif isinstance(event, TimedOut):
            st["timed_out"] = 1.0
        elif isinstance(event, Retrying):
            kind = "timed out" if st.pop("timed_out", None) else "retried"
            job.attempts.append(_Bar(_float(st.get("attempt"), now), now, kind))
            job.back_offs.append(_Bar(now, now + event.delay, "back-off"))
            st["wait"], st["kind"] = now + event.delay, "worker"
        elif isinstance(event, FinalEvent):
            kind = (
                "cancelled"
                if isinstance(event, Cancelled)
                else "failed"
                if isinstance(event, Failed)
                else "succeeded"
            )
            if isinstance(event, Failed) and st.get("timed_out"):
                kind = "timed out"
            attempt = st.get("attempt")
            in_attempt = isinstance(attempt, float) and (
                not job.attempts or job.attempts[-1].start != attempt
            )
            if in_attempt:
                job.attempts.append(_Bar(_float(attempt, now), now, kind))
            elif job.back_offs and job.back_offs[-1].end > now:
                job.back_offs[-1].end = now  # cancelled while backing off
            wait = st["wait"]
            if isinstance(wait, float) and now > wait:
                job.waits.append((wait, now, str(st["kind"])))
            held = st["held"]
            if isinstance(held, float):
                job.occupied.append((held, now))
            del state[key]
    return jobs


def _float(value: object, default: float) -> float:
    return value if isinstance(value, float) else default


def _lanes(intervals: list[tuple[float, float, int]]) -> dict[int, int]:
    """Give each (start, end, owner) the lowest lane free at its start;
    an owner keeps the lane of its first interval if it is free again."""
    lane_end: list[float] = []
    owner_lane: dict[int, int] = {}
    for start, end, owner in sorted(intervals):
        lane = owner_lane.get(owner)
        if lane is None or lane_end[lane] > start:
            lane = next((i for i, e in enumerate(lane_end) if e <= start), None)
            if lane is None:
                lane_end.append(end)
                lane = len(lane_end) - 1
        lane_end[lane] = max(lane_end[lane], end)
        owner_lane.setdefault(owner, lane)
    return owner_lane


def plot_timeline(
    events: Iterable[TaskEvent],
    *,
    rows: Literal["worker", "limiter"] = "worker",
    labels: Mapping[object, str] | None = None,
    title: str | None = None,
    width: float = 9.0,
) -> Figure:
    """Draw a run's events as a timeline (see the module docstring).

    Args:
        events: The events, as a hook received them (a `Recorder`'s).
        rows: ``"worker"`` for a row per worker slot, ``"limiter"`` for a
            group of rows per limiter (a job's first limiter; jobs without
            one under "no limiter").
        labels: Names for limiters (``{limiter: "api.example.com"}``);
            others are named by their type and order of appearance.
        title: A title above the picture.
        width: The figure's width in inches.

    Returns:
        A matplotlib ``Figure`` (save it with ``savefig``).

    Raises:
        ImportError: matplotlib is not installed (``antflow[timeline]``).
        ValueError: ``rows`` is neither ``"worker"`` nor ``"limiter"``.
    """
    if rows not in ("worker", "limiter"):
        raise ValueError(f"rows must be 'worker' or 'limiter', got {rows!r}")
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    events = list(events)
    jobs = _jobs(events)
    origin = min((e.time for e in events), default=0.0)
    names = dict(labels or {})

    def name_of(limiter: object) -> str:
        if limiter not in names:
            kind = type(limiter).__name__
            same = sum(1 for other in names if type(other).__name__ == kind)
            names[limiter] = f"{kind} {same + 1}"
        return names[limiter]

    # Row of each job's bars: (group label, lane).
    groups: dict[str, list[tuple[float, float, int]]] = {}
    for number, job in enumerate(jobs.values()):
        if rows == "worker":
            group = "worker"
            spans = job.occupied
        else:
            group = name_of(job.limiters[0]) if job.limiters else "no limiter"
            spans = [(bar.start, bar.end) for bar in job.attempts]
        groups.setdefault(group, []).extend((s, e, number) for s, e in spans)
    row_of: dict[int, float] = {}
    ticks: list[tuple[float, str]] = []
    top = 0.0
    for group, intervals in groups.items():
        lanes = _lanes(intervals)
        count = max(lanes.values(), default=-1) + 1
        for owner, lane in lanes.items():
            row_of[owner] = top + lane
        for lane in range(count):
            label = f"slot {lane + 1}" if rows == "worker" else f"{group} #{lane + 1}"
            ticks.append((top + lane, label))
        top += count + (0.5 if rows == "limiter" else 0)

    figure = Figure(figsize=(width, 1.6 + 0.32 * max(top, 1) + 1.4))
    upper, lower = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [max(top, 1), 3]}
    )
    _draw_bars(upper, jobs, row_of, origin)
    upper.set_yticks([y for y, _ in ticks], [label for _, label in ticks])
    upper.set_ylim(top - 0.4, -0.6)
    upper.grid(axis="x", alpha=0.3)
    used = {bar.kind for job in jobs.values() for bar in job.attempts + job.back_offs}
    upper.legend(
        handles=[Patch(color=COLORS[k], label=k) for k in COLORS if k in used],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize="small",
        frameon=False,
    )
    _draw_waiting(lower, jobs, origin)
    lower.set_xlabel("seconds")
    if title:
        upper.set_title(title)
    figure.tight_layout()
    return figure


# Axes are Any below: matplotlib's drawing methods take untyped **kwargs,
# which strict type checkers report at every call.


def _draw_bars(
    ax: Any, jobs: dict[tuple[int, int], _Job], row_of: dict[int, float], origin: float
) -> None:
    for number, job in enumerate(jobs.values()):
        row = row_of.get(number)
        if row is None:
            continue  # never ran
        for bar in job.attempts:
            ax.broken_barh(
                [(bar.start - origin, max(bar.end - bar.start, 1e-9))],
                (row - 0.4, 0.8),
                facecolors=COLORS[bar.kind],
                edgecolor="white",
                linewidth=0.5,
            )
        for bar in job.back_offs:
            ax.broken_barh(
                [(bar.start - origin, max(bar.end - bar.start, 1e-9))],
                (row - 0.25, 0.5),
                facecolors="none",
                edgecolor=COLORS["back-off"],
                hatch="////",
                linewidth=0.5,
            )


def _draw_waiting(ax: Any, jobs: dict[tuple[int, int], _Job], origin: float) -> None:
    for kind in ("worker", "limiter"):
        changes: list[tuple[float, int]] = []
        for job in jobs.values():
            for start, end, wait_kind in job.waits:
                if wait_kind == kind and end > start:
                    changes += [(start - origin, 1), (end - origin, -1)]
        if not changes:
            continue
        changes.sort()
        xs, ys, count = [0.0], [0], 0
        for x, step in changes:
            count += step
            xs.append(x)
            ys.append(count)
        name = f"waiting for a {kind}"
        ax.step(xs, ys, where="post", color=COLORS[name], label=name)
    ax.set_ylabel("jobs")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(
            loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False
        )
