"""Task events of a pipeline's stages: ``on_task_event`` hears each stage
call's executor events, tagged with the stage, the item's key and which of
the stage's functions the call runs (docs/pipelines.md, "Watching a run").

What the executor promises of a job's events (docs/observability.md,
"Order") must hold unchanged through a pipeline, however the run ends; the
random stop points are in ``properties/test_pipeline_model.py``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _pipeline_helpers import Recorder
from _strategies import task_count

from antflow.events import (
    Cancelled,
    FinalEvent,
    Queued,
    Retrying,
    Started,
    Succeeded,
    TimedOut,
)
from antflow.events import (
    Failed as TaskFailed,
)
from antflow.pipeline import (
    Failed,
    Pipeline,
    Stage,
    StageEvent,
    StageTaskEvent,
)

pytestmark = pytest.mark.anyio

Job = tuple[int, int]  # (executor, job): one call of one stage


def jobs_of(events: list[StageTaskEvent]) -> dict[Job, list[StageTaskEvent]]:
    jobs: dict[Job, list[StageTaskEvent]] = defaultdict(list)
    for tagged in events:
        jobs[tagged.event.executor, tagged.event.job].append(tagged)
    return dict(jobs)


def check_each_job(events: list[StageTaskEvent]) -> dict[Job, list[StageTaskEvent]]:
    """The executor's order, per job: one Queued first, one final event
    last, nothing after it; and one tag (stage, key, function) per job,
    one stage per executor."""
    jobs = jobs_of(events)
    stage_of_executor: dict[int, str] = {}
    for (executor, _), job in jobs.items():
        kinds = [type(tagged.event) for tagged in job]
        assert kinds[0] is Queued, kinds
        assert isinstance(job[-1].event, FinalEvent), kinds
        assert sum(isinstance(t.event, FinalEvent) for t in job) == 1, kinds
        assert sum(kind is Queued for kind in kinds) == 1, kinds
        assert {(t.stage, repr(t.key), t.function_index) for t in job} == {
            (job[0].stage, repr(job[0].key), job[0].function_index)
        }
        assert stage_of_executor.setdefault(executor, job[0].stage) == job[0].stage
    return jobs


def tags(events: list[StageTaskEvent], kind: type[Any]) -> list[tuple[str, Any, int]]:
    return [
        (t.stage, t.key, t.function_index) for t in events if isinstance(t.event, kind)
    ]


async def double(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return x * 2


async def inc(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return x + 1


async def text(x: int) -> str:
    return str(x)


# -- what each call reports --------------------------------------------------------


async def test_each_call_reports_its_events_tagged_with_stage_key_and_function() -> (
    None
):
    events: list[StageTaskEvent] = []
    pipeline = Pipeline(
        Stage("math", double, inc, workers=3),  # two functions per item
        Stage("text", text, workers=2),
        key=lambda x: f"item-{x}",
    )
    results = await pipeline.run(range(5), on_task_event=events.append)
    assert [r.value for r in results] == [str(x * 2 + 1) for x in range(5)]
    jobs = check_each_job(events)
    # One job per item, stage and function; each succeeded, on its first try.
    expected = sorted(
        [("math", f"item-{x}", 0) for x in range(5)]
        + [("math", f"item-{x}", 1) for x in range(5)]
        + [("text", f"item-{x}", 0) for x in range(5)]
    )
    assert sorted(tags(events, Succeeded)) == expected
    assert sorted(tags(events, Queued)) == expected
    assert len(jobs) == 15
    for job in jobs.values():
        assert [type(t.event) for t in job] == [Queued, Started, Succeeded]
        # The event is the executor's, unchanged: it names the function run.
        function = (
            (double, inc)[job[0].function_index] if job[0].stage == "math" else text
        )
        assert job[0].event.function == function.__qualname__
    # A stage's second function starts on an item after its first one ended.
    for x in range(5):
        [first] = [
            t
            for t in events
            if t.key == f"item-{x}"
            and t.function_index == 0
            and t.stage == "math"
            and isinstance(t.event, Succeeded)
        ]
        [second] = [
            t
            for t in events
            if t.key == f"item-{x}"
            and t.function_index == 1
            and isinstance(t.event, Queued)
        ]
        assert events.index(first) < events.index(second)


async def test_a_batch_call_is_tagged_with_the_keys_of_its_batch() -> None:
    async def insert(rows: list[int]) -> list[int]:
        await anyio.lowlevel.checkpoint()
        return [row * 10 for row in rows]

    events: list[StageTaskEvent] = []
    pipeline = Pipeline(
        Stage("pre", inc, workers=1),
        Stage("insert", insert, batch_size=3, workers=1),
    )
    results = await pipeline.run(range(7), on_task_event=events.append)
    assert [r.value for r in results] == [(x + 1) * 10 for x in range(7)]
    check_each_job(events)
    batches = [
        t.key for t in events if t.stage == "insert" and isinstance(t.event, Queued)
    ]
    # Each batch's keys, as a tuple in the batch's order; each key once.
    assert all(isinstance(keys, tuple) for keys in batches)
    assert sorted(key for keys in batches for key in keys) == list(range(7))
    assert all(1 <= len(keys) <= 3 for keys in batches)
    assert all(list(keys) == sorted(keys) for keys in batches)
    # A map stage's key is the key itself.
    assert sorted(
        t.key for t in events if t.stage == "pre" and isinstance(t.event, Queued)
    ) == list(range(7))


async def test_fan_out_children_are_tagged_with_their_own_keys() -> None:
    async def split(document: str) -> list[str]:
        await anyio.lowlevel.checkpoint()
        return document.split()

    async def shout(word: str) -> str:
        return word.upper()

    events: list[StageTaskEvent] = []
    pipeline = Pipeline(Stage("split", split, fan_out=True), Stage("shout", shout))
    await pipeline.run(["a b", "", "c"], on_task_event=events.append)
    check_each_job(events)
    assert sorted(tags(events, Succeeded), key=repr) == sorted(
        [
            ("split", "a b", 0),
            ("split", "", 0),
            ("split", "c", 0),
            ("shout", ("a b", 0), 0),
            ("shout", ("a b", 1), 0),
            ("shout", ("c", 0), 0),
        ],
        key=repr,
    )


@pytest.mark.virtual_time
async def test_retries_and_timeouts_are_reported_tagged_with_the_stage() -> None:
    attempts: dict[int, int] = defaultdict(int)

    async def flaky(x: int) -> int:
        attempts[x] += 1
        if x == 1 and attempts[x] == 1:
            await anyio.sleep(5)  # past task_timeout
        if x == 1 and attempts[x] == 2:
            raise ConnectionError("reset")
        return x

    events: list[StageTaskEvent] = []
    pipeline = Pipeline(
        Stage("first", inc),
        Stage(
            "flaky",
            flaky,
            workers=2,
            retries=2,
            retry_delay=0.5,
            retry_on=(ConnectionError, TimeoutError),
            task_timeout=1.0,
        ),
    )
    async with pipeline.stream([-1, 0], on_task_event=events.append) as run:
        results = [result async for result in run]
    assert [r.value for r in results] == [0, 1]
    check_each_job(events)
    job = [t for t in events if t.stage == "flaky" and t.key == 0]
    assert [type(t.event) for t in job] == [
        Queued,
        Started,
        TimedOut,
        Retrying,
        Started,
        Retrying,
        Started,
        Succeeded,
    ]
    timed_out = job[2].event
    assert isinstance(timed_out, TimedOut)
    assert (timed_out.attempt, timed_out.timeout, timed_out.duration) == (1, 1.0, 1.0)
    retried = [t.event for t in job if isinstance(t.event, Retrying)]
    assert [type(e.error) for e in retried] == [TimeoutError, ConnectionError]
    assert [e.delay for e in retried] == [0.5, 1.0]  # exponential back-off
    # Only item 0's flaky call retried; statistics count those retries as before.
    assert [t.key for t in events if isinstance(t.event, Retrying)] == [0, 0]
    assert run.statistics().stages[1].retries == 2
    assert run.statistics().stages[0].retries == 0


async def test_a_set_aside_items_failed_event_carries_its_error_first() -> None:
    rec = Recorder()
    rec.fail["inc"] = lambda x: x == 4
    both: list[StageEvent | StageTaskEvent] = []
    pipeline = Pipeline(
        Stage("double", rec.function("double", lambda x: x * 2)),
        Stage("inc", rec.function("inc", lambda x: x + 1)),
    )
    results = await pipeline.run(
        range(4), on_event=both.append, on_task_event=both.append
    )
    failed = results[2]
    assert isinstance(failed, Failed)
    events = [e for e in both if isinstance(e, StageTaskEvent)]
    check_each_job(events)
    [final] = [t for t in events if isinstance(t.event, TaskFailed)]
    assert (final.stage, final.key, final.function_index) == ("inc", 2, 0)
    assert isinstance(final.event, TaskFailed)
    assert final.event.error is failed.error is rec.errors["inc", 4]
    # The call's final event comes before what the stage makes of it.
    [aside] = [e for e in both if isinstance(e, StageEvent) and e.kind == "set_aside"]
    assert both.index(final) < both.index(aside)
    for done in (e for e in both if isinstance(e, StageEvent) and e.kind == "done"):
        [succeeded] = [
            t
            for t in events
            if isinstance(t.event, Succeeded)
            and (t.stage, t.key) == (done.stage, done.key)
        ]
        assert both.index(succeeded) < both.index(done)


# -- however the run stops, every Queued gets one final event -----------------------


def assert_every_queued_ended(events: list[StageTaskEvent]) -> None:
    jobs = check_each_job(events)
    assert len(jobs) == len(tags(events, Queued))


async def test_leaving_early_cancels_the_calls_and_reports_it() -> None:
    rec = Recorder()
    rec.gate("inc")
    events: list[StageTaskEvent] = []
    pipeline = Pipeline(
        Stage("double", rec.function("double"), workers=3),
        Stage("inc", rec.function("inc"), workers=2),
    )
    before = task_count()
    async with pipeline.stream(range(30), on_task_event=events.append):
        await rec.until(lambda: rec.running("inc") == 2)
    assert task_count() == before
    assert_every_queued_ended(events)
    cancelled = tags(events, Cancelled)
    # The two running inc calls, and whatever double had queued or running.
    assert sum(stage == "inc" for stage, _, _ in cancelled) >= 2
    started_inc = {key for stage, key, _ in tags(events, Started) if stage == "inc"}
    assert started_inc <= {key for stage, key, _ in cancelled if stage == "inc"}
    assert rec.cancelled_in("inc") == 2


async def test_fail_fast_reports_the_failure_and_cancels_the_rest() -> None:
    rec = Recorder()
    rec.fail["double"] = lambda x: x == 3
    rec.gate("inc")
    events: list[StageTaskEvent] = []
    pipeline = Pipeline(
        Stage("double", rec.function("double"), workers=4),
        Stage("inc", rec.function("inc"), workers=2),
    )
    with pytest.raises(ValueError, match="double failed 3"):
        await pipeline.run(range(10), fail_fast=True, on_task_event=events.append)
    assert_every_queued_ended(events)
    assert tags(events, TaskFailed) == [("double", 3, 0)]
    assert all(
        stage != "double" or key != 3 for stage, key, _ in tags(events, Cancelled)
    )


@pytest.mark.parametrize("way", ["cancel", "error"])
async def test_outer_cancellation_and_an_error_in_the_block_end_every_job(
    way: str,
) -> None:
    rec = Recorder()
    rec.gate("inc")
    events: list[StageTaskEvent] = []
    pipeline = Pipeline(
        Stage("double", rec.function("double"), workers=2),
        Stage("inc", rec.function("inc"), workers=2),
    )
    with anyio.CancelScope() as scope:
        try:
            async with pipeline.stream(range(10), on_task_event=events.append):
                await rec.until(lambda: rec.running("inc") == 2)
                if way == "cancel":
                    scope.cancel()
                    await anyio.lowlevel.checkpoint()
                raise KeyError("the block's own error")
        except KeyError:
            assert way == "error"
    assert scope.cancelled_caught == (way == "cancel")
    assert_every_queued_ended(events)
    assert {stage for stage, _, _ in tags(events, Cancelled)} >= {"inc"}


# -- hooks ---------------------------------------------------------------------------


async def test_async_hooks_and_lists_of_hooks() -> None:
    sync_seen: list[StageTaskEvent] = []
    async_seen: list[StageTaskEvent] = []

    async def slow_hook(event: StageTaskEvent) -> None:
        await anyio.lowlevel.checkpoint()
        async_seen.append(event)

    pipeline = Pipeline(Stage("double", double, workers=2), Stage("text", text))
    results = await pipeline.run(range(6), on_task_event=[sync_seen.append, slow_hook])
    assert len(results) == 6
    # Every async call was awaited before run returned, each stage's in the
    # order its events happened (each stage's executor awaits its own, so
    # two stages' calls may interleave otherwise).
    assert len(async_seen) == len(sync_seen)
    for stage in ("double", "text"):
        assert [t for t in async_seen if t.stage == stage] == [
            t for t in sync_seen if t.stage == stage
        ]
    check_each_job(async_seen)
    assert len(tags(async_seen, Succeeded)) == 12

    only_async: list[StageTaskEvent] = []

    async def hook(event: StageTaskEvent) -> None:
        only_async.append(event)

    await pipeline.run(range(3), on_task_event=hook)
    check_each_job(only_async)
    assert len(tags(only_async, Succeeded)) == 6


async def test_a_raising_hook_is_logged_and_changes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[StageTaskEvent] = []

    def broken(event: StageTaskEvent) -> None:
        raise RuntimeError("task hook bug")

    pipeline = Pipeline(Stage("double", double), Stage("text", text))
    with caplog.at_level(logging.ERROR, logger="antflow"):
        results = await pipeline.run(range(3), on_task_event=(broken, seen.append))
    assert [r.value for r in results] == ["0", "2", "4"]
    assert "task hook bug" in caplog.text
    check_each_job(seen)  # the next hook still heard everything
    assert len(tags(seen, Succeeded)) == 6


async def test_without_on_task_event_stage_events_and_statistics_are_the_same() -> None:
    rec = Recorder()
    rec.fail["inc"] = lambda x: x % 3 == 0
    pipeline = Pipeline(
        Stage("double", rec.function("double"), workers=2, retries=1, retry_delay=0),
        Stage("inc", rec.function("inc"), workers=2),
    )
    kinds: list[list[tuple[str, Any, Any]]] = []
    stats = []
    for hook in (None, [].append):
        events: list[StageEvent] = []
        async with pipeline.stream(
            range(9), on_event=events.append, on_task_event=hook
        ) as run:
            async for _ in run:
                pass
        kinds.append(sorted((e.kind, e.stage, e.key) for e in events))
        snapshot = run.statistics()
        stats.append(
            [
                (s.name, s.done, s.set_aside, s.retries, s.queued, s.running)
                for s in snapshot.stages
            ]
            + [(snapshot.completed, snapshot.set_aside, snapshot.in_flight)]
        )
    assert kinds[0] == kinds[1]
    assert stats[0] == stats[1]


def test_a_bad_on_task_event_is_refused_at_the_call() -> None:
    pipeline = Pipeline(Stage("double", double))
    for bad in (3, [], [print, 3], "hook"):
        with pytest.raises(TypeError, match="on_task_event"):
            pipeline.stream([], on_task_event=bad)  # type: ignore[arg-type]


async def test_run_refuses_a_bad_on_task_event_before_running_anything() -> None:
    rec = Recorder()
    pipeline = Pipeline(Stage("double", rec.function("double")))
    with pytest.raises(TypeError, match="on_task_event"):
        await pipeline.run(range(3), on_task_event=object())  # type: ignore[arg-type]
    assert rec.calls("double") == 0


# -- with a journal: stages an item skips report nothing ----------------------------


@pytest.mark.real_clock  # the journal's thread (tests/README.md, "Hangs")
async def test_resumed_and_skipped_items_report_only_the_stages_they_run(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run.journal"
    rec = Recorder()
    rec.gate("text")

    def pipeline() -> Pipeline:
        return Pipeline(
            Stage("double", rec.function("double", lambda x: x * 2), workers=3),
            Stage("inc", rec.function("inc", lambda x: x + 1), workers=2),
            Stage("text", rec.function("text", str), workers=2),
            journal=path,
        )

    async with pipeline().stream(range(12)):
        await rec.until(lambda: rec.running("text") == 2)
    rec.open("text")

    stage_events: list[StageEvent] = []
    events: list[StageTaskEvent] = []
    results = await pipeline().run(
        range(14), on_event=stage_events.append, on_task_event=events.append
    )
    assert [r.key for r in results] == list(range(14))
    assert_every_queued_ended(events)
    order = ["double", "inc", "text"]
    resumed = {e.key: e.stage for e in stage_events if e.kind == "resumed"}
    assert resumed  # the stop left items past the first stage
    for key, stage in resumed.items():
        assert stage is not None
        ran = {t.stage for t in events if t.key == key}
        assert ran == set(order[order.index(stage) :]), key
    entered_first = {
        e.key for e in stage_events if e.kind == "entered" and e.stage == "double"
    }
    for key in range(14):
        if key not in resumed:
            assert key in entered_first
            assert {t.stage for t in events if t.key == key} == set(order)

    # A third run finds every item finished: each is skipped, no call is made.
    stage_events.clear()
    events.clear()
    assert (
        await pipeline().run(
            range(14), on_event=stage_events.append, on_task_event=events.append
        )
        == []
    )
    assert [e.kind for e in stage_events] == ["skipped"] * 14
    assert events == []
