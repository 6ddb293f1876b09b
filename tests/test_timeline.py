"""antflow.timeline: Recorder and plot_timeline (docs/observability.md,
"A picture of a run"). Skipped without matplotlib (``antflow[timeline]``).

Pinned: the recorder keeps every event in order; the picture has a bar per
attempt coloured by how it ended, a back-off per retry, rows per worker slot
(never more than max_workers) or per limiter, and a panel of waiting jobs.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from _strategies import Boom, event_problems

pytest.importorskip("matplotlib")

from antflow import AsyncExecutor
from antflow.timeline import COLORS, Recorder, _jobs, plot_timeline

pytestmark = pytest.mark.anyio


async def run_with_everything(recorder: Recorder) -> dict[str, Any]:
    limiter = anyio.CapacityLimiter(1)
    tries: dict[int, int] = {}

    async def job(x: int) -> int:
        tries[x] = tries.get(x, 0) + 1
        if x == 0 and tries[x] == 1:
            await anyio.sleep(10)  # times out
        await anyio.sleep(0.01)
        if x == 1 and tries[x] < 3:
            raise Boom(x)
        return x

    async with AsyncExecutor(3, on_event=recorder) as ex:
        await ex.map(job, range(6), retries=2, retry_delay=0.01, task_timeout=1)
        await ex.map(job, range(10, 14), semaphore=limiter)
    return {"limiter": limiter}


@pytest.mark.virtual_time
async def test_replayed_bars_match_the_events() -> None:
    recorder = Recorder()
    await run_with_everything(recorder)
    assert event_problems(recorder.events) == []
    jobs = list(_jobs(recorder.events).values())
    assert len(jobs) == 10
    kinds = sorted(bar.kind for job in jobs for bar in job.attempts)
    assert kinds.count("timed out") == 1
    assert kinds.count("retried") == 2
    assert kinds.count("succeeded") == 10
    assert sum(len(job.back_offs) for job in jobs) == 3
    assert all(end >= start for job in jobs for start, end in job.occupied)
    waits = [w for job in jobs for w in job.waits if w[2] == "limiter"]
    assert len(waits) == 3  # three of four jobs waited for the semaphore


@pytest.mark.virtual_time
@pytest.mark.parametrize("rows", ["worker", "limiter"])
async def test_the_picture_has_its_rows_and_panels(rows: Any, tmp_path: Any) -> None:
    recorder = Recorder()
    found = await run_with_everything(recorder)
    figure = plot_timeline(
        recorder.events, rows=rows, labels={found["limiter"]: "host"}, title="run"
    )
    upper, lower = figure.axes
    labels = [t.get_text() for t in upper.get_yticklabels()]
    if rows == "worker":
        assert labels and len(labels) <= 3
        assert all(label.startswith("slot ") for label in labels)
    else:
        assert "host #1" in labels and "no limiter #1" in labels
    legend = upper.get_legend()
    assert legend is not None
    names = {t.get_text() for t in legend.get_texts()}
    assert names == {"succeeded", "retried", "timed out", "back-off"}
    assert {line.get_label() for line in lower.get_lines()} == {
        "waiting for a worker",
        "waiting for a limiter",
    }
    figure.savefig(tmp_path / "run.png")
    assert (tmp_path / "run.png").stat().st_size > 1000
    assert set(COLORS) >= names


def test_bad_rows_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="rows"):
        plot_timeline([], rows="host")  # type: ignore[arg-type]


def test_no_events_draws_an_empty_picture() -> None:
    figure = plot_timeline([])
    assert len(figure.axes) == 2
