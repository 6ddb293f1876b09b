"""Pipelines without a journal: stages, fan-out, batches, failures set
aside, structure, backpressure, statistics and bad input (antflow/pipeline/).

Every test runs on asyncio, uvloop and trio. Ordering comes from gates
(``anyio.Event``) and ``anyio.wait_all_tasks_blocked()``; exact times only
in ``TestVirtualTime``, on the virtual-clock backends. Each section below
names the section of docs/pipelines.md that states what it pins. The journal
is tested in ``test_journal.py``, random pipelines in
``properties/test_pipeline_model.py``, kills in ``faults/test_pipeline_kill.py``
and memory in ``stress/test_pipeline_memory.py``.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _pipeline_helpers import CountingSource, Recorder
from _strategies import hang_guard, task_count

from antflow import AsyncExecutor, AsyncFuture, RateLimiter
from antflow.pipeline import (
    Completed,
    Failed,
    Pipeline,
    PipelineStatistics,
    Stage,
    StageEvent,
    StageStatistics,
)

pytestmark = pytest.mark.anyio


def three_stages(rec: Recorder, **options: Any) -> Pipeline:
    return Pipeline(
        Stage("double", rec.function("double", lambda x: x * 2), workers=3),
        Stage("inc", rec.function("inc", lambda x: x + 1), workers=2),
        Stage("text", rec.function("text", str), workers=1),
        **options,
    )


# -- the basic flow (docs/pipelines.md, "A first pipeline", "Streaming results", "Stages")


async def test_results_come_in_source_order() -> None:
    rec = Recorder()
    results = await three_stages(rec).run(range(20))
    assert results == [Completed(x, x, str(x * 2 + 1)) for x in range(20)]
    assert all(result.ok for result in results)
    # Each stage ran each item once, with what the stage before returned.
    assert sorted(v for s, v in rec.started if s == "inc") == [x * 2 for x in range(20)]
    assert set(rec.started.values()) == {1}


async def test_unordered_results_are_every_result() -> None:
    rec = Recorder()
    async with three_stages(rec).stream(range(50), ordered=False) as results:
        got = [result async for result in results]
    assert sorted(got, key=lambda r: r.key) == [
        Completed(x, x, str(x * 2 + 1)) for x in range(50)
    ]


async def test_an_empty_source_gives_no_results() -> None:
    rec = Recorder()
    assert await three_stages(rec).run([]) == []
    assert await three_stages(rec).run(CountingSource(0).aiter()) == []


async def test_async_source() -> None:
    rec = Recorder()
    source = CountingSource(10)
    results = await three_stages(rec).run(source.aiter())
    assert [r.value for r in results] == [str(x * 2 + 1) for x in range(10)]
    assert source.closed


async def test_a_pipeline_runs_again_independently() -> None:
    rec = Recorder()
    pipeline = three_stages(rec)
    first = await pipeline.run(range(5))
    second = await pipeline.run(range(5))
    assert first == second
    assert set(rec.started.values()) == {2}


async def test_stage_functions_run_in_order_each_call_with_the_options() -> None:
    """AntFlow's tasks=[...]: each function gets the previous one's result,
    and retries apply to each call alone (the first is not run again)."""
    rec = Recorder()
    rec.flaky["second"] = 2  # two failed attempts, then success
    pipeline = Pipeline(
        Stage(
            "both",
            rec.function("first", lambda x: x + 100),
            rec.function("second", lambda x: x * 2),
            workers=2,
            retries=2,
            retry_delay=0,
        )
    )
    results = await pipeline.run(range(4))
    assert [r.value for r in results] == [(x + 100) * 2 for x in range(4)]
    assert all(rec.started["first", x] == 1 for x in range(4))
    assert all(rec.started["second", x + 100] == 3 for x in range(4))


async def test_key_function_names_results() -> None:
    rec = Recorder()
    pipeline = three_stages(rec, key=lambda x: f"item-{x}")
    results = await pipeline.run(range(3))
    assert [r.key for r in results] == ["item-0", "item-1", "item-2"]
    assert [r.item for r in results] == [0, 1, 2]


# -- fan-out (docs/pipelines.md, "Fan-out") --------------------------------------------


async def split(x: int) -> list[int]:
    await anyio.lowlevel.checkpoint()
    return list(range(x))


async def test_fan_out_makes_an_item_of_each_element() -> None:
    rec = Recorder()
    pipeline = Pipeline(
        Stage("split", split, fan_out=True, workers=2),
        Stage("square", rec.function("square", lambda x: x * x), workers=3),
    )
    results = await pipeline.run([3, 0, 2])
    # Item 0 made no child, so no result; children come in child order.
    assert results == [
        Completed((3, 0), 3, 0),
        Completed((3, 1), 3, 1),
        Completed((3, 2), 3, 4),
        Completed((2, 0), 2, 0),
        Completed((2, 1), 2, 1),
    ]


async def test_fan_out_twice_keeps_source_then_child_order() -> None:
    async def pairs(x: Any) -> list[Any]:
        await anyio.lowlevel.checkpoint()
        return [(x, "a"), (x, "b")]

    pipeline = Pipeline(
        Stage("one", pairs, fan_out=True, workers=3),
        Stage("two", pairs, fan_out=True, workers=3),
    )
    results = await pipeline.run([1, 2])
    assert [r.key for r in results] == [
        ((1, 0), 0),
        ((1, 0), 1),
        ((1, 1), 0),
        ((1, 1), 1),
        ((2, 0), 0),
        ((2, 0), 1),
        ((2, 1), 0),
        ((2, 1), 1),
    ]
    assert results[1].value == ((1, "a"), "b")


async def test_fan_out_of_something_not_iterable_sets_the_item_aside() -> None:
    async def not_a_list(x: int) -> int:
        return x

    results = await Pipeline(Stage("split", not_a_list, fan_out=True)).run([1])
    [failed] = results
    assert isinstance(failed, Failed)
    assert failed.stage == "split"
    assert isinstance(failed.error, TypeError)


async def test_fan_out_children_wait_for_room_in_the_next_stage() -> None:
    """A parent of many children keeps its own room until they all are in."""
    rec = Recorder()
    rec.gate("slow")
    pipeline = Pipeline(
        Stage("split", split, fan_out=True, workers=1, buffer=0),
        Stage("slow", rec.function("slow"), workers=1, buffer=1),
    )
    async with pipeline.stream([5, 5]) as results:
        await anyio.wait_all_tasks_blocked()
        stats = results.statistics()
        # slow holds 2 of the 5 children; split holds the parent until the
        # other 3 are in; the second source item waits for split's room.
        assert [s.done for s in stats.stages] == [1, 0]
        assert stats.admitted == 1
        assert stats.stages[1].running == 1
        assert stats.stages[1].queued == 1 + 3
        rec.open("slow")
        assert len([r async for r in results]) == 10


# -- batches (docs/pipelines.md, "Batches") --------------------------------------------


async def test_batches_by_count_and_the_rest_at_the_end() -> None:
    batches: list[list[int]] = []

    async def store(batch: list[int]) -> list[int]:
        batches.append(list(batch))
        await anyio.lowlevel.checkpoint()
        return [x * 10 for x in batch]

    pipeline = Pipeline(Stage("store", store, batch_size=3, workers=1))
    results = await pipeline.run(range(7))
    assert [r.value for r in results] == [x * 10 for x in range(7)]
    assert [r.key for r in results] == list(range(7))
    assert sorted(x for batch in batches for x in batch) == list(range(7))
    assert all(len(batch) <= 3 for batch in batches)
    assert [len(batch) for batch in batches].count(3) >= 2


async def test_a_batch_element_that_is_an_exception_sets_that_item_aside() -> None:
    async def check(batch: list[int]) -> list[Any]:
        return [ValueError(x) if x % 2 else x for x in batch]

    results = await Pipeline(Stage("check", check, batch_size=4)).run(range(4))
    assert [r.ok for r in results] == [True, False, True, False]
    failed = results[1]
    assert isinstance(failed, Failed)
    assert failed.error.args == (1,)
    assert failed.value == 1


async def test_a_batch_with_the_wrong_number_of_results_is_set_aside() -> None:
    async def short(batch: list[int]) -> list[int]:
        return batch[:-1]

    results = await Pipeline(Stage("short", short, batch_size=2)).run(range(2))
    assert all(isinstance(r, Failed) for r in results)
    assert "returned 1 results for a batch of 2" in str(results[0].error)  # type: ignore[union-attr]


async def test_a_failed_batch_sets_all_its_items_aside() -> None:
    async def boom(batch: list[int]) -> list[int]:
        raise OSError("batch API down")

    results = await Pipeline(Stage("boom", boom, batch_size=3)).run(range(3))
    assert [type(r) for r in results] == [Failed] * 3
    assert len({id(r.error) for r in results if isinstance(r, Failed)}) == 1


async def test_a_partial_batch_waits_while_the_source_may_still_deliver() -> None:
    """Without batch_wait, a batch short of batch_size goes only once
    nothing more can join it; a slow source may still deliver, so it waits."""
    more = anyio.Event()
    batches: list[list[int]] = []

    async def slow_source() -> Any:
        yield 1
        yield 2
        await more.wait()
        yield 3

    async def store(batch: list[int]) -> list[int]:
        batches.append(list(batch))
        return batch

    pipeline = Pipeline(Stage("store", store, batch_size=5))
    async with pipeline.stream(slow_source()) as results:
        await anyio.wait_all_tasks_blocked()
        assert batches == []
        more.set()
        assert [r.value async for r in results] == [1, 2, 3]
    assert batches == [[1, 2, 3]]


# -- failures set aside (docs/pipelines.md, "Failures set aside") ----------------------


async def test_a_failed_item_is_set_aside_and_the_others_go_on() -> None:
    rec = Recorder()
    rec.fail["inc"] = lambda x: x == 6  # item 3, after doubling
    pipeline = Pipeline(
        Stage("double", rec.function("double", lambda x: x * 2), workers=3),
        Stage("inc", rec.function("inc", lambda x: x + 1), retries=2, retry_delay=0),
        Stage("text", rec.function("text", str)),
    )
    results = await pipeline.run(range(6))
    failed = results[3]
    assert isinstance(failed, Failed)
    assert not failed.ok
    assert (failed.key, failed.item, failed.stage, failed.value) == (3, 3, "inc", 6)
    assert failed.error is rec.errors["inc", 6]
    assert rec.started["inc", 6] == 3  # retries=2: three attempts
    assert ("text", 7) not in rec.started  # it never reached the next stage
    assert [r.value for r in results if r.ok] == ["1", "3", "5", "9", "11"]


async def test_fail_fast_raises_the_first_failure_and_stops_everything() -> None:
    rec = Recorder()
    rec.fail["inc"] = lambda x: x == 6
    rec.gate("text")  # the rest never finishes on its own
    before = task_count()
    with pytest.raises(ValueError, match="inc failed 6") as caught:
        async with three_stages(rec).stream(range(100), fail_fast=True) as results:
            async for _ in results:
                pass
    assert caught.value is rec.errors["inc", 6]
    assert any("stage 'inc'" in note for note in caught.value.__notes__)
    # Whatever had started has ended or was cancelled.
    for stage in ("double", "inc", "text"):
        assert rec.running(stage) == 0
    assert task_count() == before


# -- structure: however a run ends, nothing keeps running (docs/pipelines.md, "Structure")


async def test_leaving_early_cancels_the_work_and_closes_the_source() -> None:
    rec = Recorder()
    rec.gate("text")
    source = CountingSource()
    before = task_count()
    async with three_stages(rec).stream(iter(source)) as results:
        await anyio.wait_all_tasks_blocked()
        assert rec.running("text") == 1
    assert rec.cancelled_in("text") == 1
    assert all(rec.running(s) == 0 for s in ("double", "inc", "text"))
    assert source.closed
    assert task_count() == before
    # A closed run yields nothing more.
    assert [r async for r in results] == []


async def test_break_after_some_results() -> None:
    rec = Recorder()
    source = CountingSource()
    async with three_stages(rec).stream(source.aiter()) as results:
        got = []
        async for result in results:
            got.append(result)
            if len(got) == 5:
                break
    assert [r.key for r in got] == [0, 1, 2, 3, 4]
    assert source.closed
    assert all(rec.running(s) == 0 for s in ("double", "inc", "text"))


async def test_an_error_in_the_block_propagates_unchanged() -> None:
    rec = Recorder()
    rec.gate("inc")
    before = task_count()
    error = KeyError("mine")
    with pytest.raises(KeyError) as caught:
        async with three_stages(rec).stream(range(10)):
            await anyio.wait_all_tasks_blocked()
            raise error
    assert caught.value is error
    assert rec.running("inc") == 0
    assert rec.cancelled_in("inc") == 2  # both of its workers were waiting
    assert task_count() == before


async def test_cancellation_from_outside_stops_every_stage() -> None:
    rec = Recorder()
    rec.gate("text")
    source = CountingSource()
    before = task_count()
    with anyio.CancelScope() as scope:
        async with three_stages(rec).stream(source.aiter()) as results:
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
            async for _ in results:
                pytest.fail("nothing can come out: the last stage is blocked")
    assert scope.cancelled_caught
    assert source.closed
    assert all(rec.running(s) == 0 for s in ("double", "inc", "text"))
    assert task_count() == before


async def test_a_stage_function_raising_base_exception_stops_the_run() -> None:
    class Stop(BaseException):
        pass

    async def stop(x: int) -> int:
        if x == 3:
            raise Stop
        return x

    with pytest.raises(Stop):
        await Pipeline(Stage("stop", stop, workers=2)).run(range(10))


async def test_a_crashing_key_function_stops_the_run() -> None:
    def key(x: int) -> int:
        if x == 2:
            raise LookupError("no key")
        return x

    rec = Recorder()
    with pytest.raises(LookupError, match="no key"):
        await three_stages(rec, key=key).run(range(5))


# -- backpressure (docs/pipelines.md, "Backpressure and memory") -----------------------


@pytest.mark.parametrize("ordered", [True, False])
async def test_a_blocked_last_stage_stops_the_source_after_the_stages_fill(
    ordered: bool,
) -> None:
    """Each stage holds at most its capacity; the source is read exactly
    that far ahead (plus the one item waiting for room), however long."""
    rec = Recorder()
    rec.gate("c")
    stages = [
        Stage("a", rec.function("a"), workers=2, buffer=1),
        Stage("b", rec.function("b"), workers=1, buffer=3),
        Stage("c", rec.function("c"), workers=2, buffer=2),
    ]
    source = CountingSource()
    async with Pipeline(*stages).stream(iter(source), ordered=ordered) as results:
        await anyio.wait_all_tasks_blocked()
        capacity = sum(stage.capacity for stage in stages)
        assert capacity == 3 + 4 + 4
        assert source.read == capacity + 1
        # Upstream stages ran everything they took in, then parked it.
        assert rec.calls("a") == capacity
        assert rec.calls("b") == 4 + 4
        assert rec.running("c") == 2
        stats = results.statistics()
        assert [s.done for s in stats.stages] == [capacity, 8, 0]
        assert stats.stages[2].queued == 2 + 4  # 2 in c's executor, 4 parked
        assert stats.in_flight == capacity
        rec.open("c")
        # Unordered, finished results wait in a line as long as the last
        # stage's capacity; ordered, the window is the stages' capacity.
        ahead = capacity + 1 + (0 if ordered else stages[-1].capacity)
        got = 0
        async for _ in results:
            got += 1
            # Read-ahead stays bounded while results stream out.
            assert source.read <= got + ahead
            if got == 100:
                break


async def test_statistics_while_running_and_at_the_end() -> None:
    rec = Recorder()
    rec.gate("b")
    pipeline = Pipeline(
        Stage("a", rec.function("a"), workers=2, buffer=1),
        Stage("b", rec.function("b"), workers=1, buffer=1),
    )
    async with pipeline.stream(range(10)) as results:
        await anyio.wait_all_tasks_blocked()
        a, b = results.statistics().stages
        assert (a.name, a.workers, a.done, a.running, a.queued) == ("a", 2, 5, 0, 0)
        # b: one running, one waiting for its worker, three parked before it.
        assert (b.done, b.running, b.queued) == (0, 1, 1 + 3)
        stats = results.statistics()
        assert (stats.admitted, stats.in_flight, stats.completed) == (5, 5, 0)
        rec.open("b")
        assert len([r async for r in results]) == 10
    final = results.statistics()
    assert isinstance(final, PipelineStatistics)
    assert [s.done for s in final.stages] == [10, 10]
    assert all(s.queued == s.running == 0 for s in final.stages)
    assert (final.admitted, final.completed, final.set_aside, final.in_flight) == (
        10,
        10,
        0,
        0,
    )
    assert final.journal_saved == final.journal_flushes == 0


# -- options reach the executor (docs/pipelines.md, "Stages") --------------------------


async def test_a_stage_semaphore_limits_its_calls() -> None:
    limiter = anyio.CapacityLimiter(1)
    running = peak = 0

    async def one_at_a_time(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.lowlevel.checkpoint()
        running -= 1
        return x

    pipeline = Pipeline(Stage("limited", one_at_a_time, workers=5, semaphore=limiter))
    assert [r.value for r in await pipeline.run(range(10))] == list(range(10))
    assert peak == 1


async def test_options_are_passed_through_unchanged() -> None:
    limiter = anyio.CapacityLimiter(3)
    rate = RateLimiter(1000, burst=100)
    stage = Stage(
        "s",
        split,
        semaphore=limiter,
        rate_limit=rate,
        retries=1,
        retry_delay=0.5,
        retry_on=OSError,
        retry_max_delay=2,
        retry_jitter=0.1,
        task_timeout=3,
    )
    assert stage.options == {
        "semaphore": limiter,
        "rate_limit": rate,
        "retries": 1,
        "retry_delay": 0.5,
        "retry_on": OSError,
        "retry_max_delay": 2,
        "retry_jitter": 0.1,
        "task_timeout": 3,
    }
    assert Stage("plain", split).options == {}  # submit's fast path


async def test_each_call_hands_submit_the_stage_options_as_they_were_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every call of every function of a stage is one ``submit(fn, value,
    **options)`` with the very objects given to `Stage`: a limiter chosen per
    item (a callable of the call's argument, which the executor does not
    take yet) reaches the executor as it is, with the value it is for."""
    chosen: dict[int, anyio.CapacityLimiter] = {}

    def per_item(value: Any) -> anyio.CapacityLimiter:
        return chosen.setdefault(value % 2, anyio.CapacityLimiter(1))

    seen: list[tuple[str, Any, dict[str, Any]]] = []
    submit = AsyncExecutor.submit

    def recording(
        self: AsyncExecutor, fn: Any, /, *args: Any, **options: Any
    ) -> AsyncFuture[Any]:
        seen.append((fn.__name__, args, dict(options)))
        if callable(options.get("semaphore")):
            # Until the executor resolves a per-item limiter itself.
            options["semaphore"] = options["semaphore"](*args)
        return submit(self, fn, *args, **options)

    monkeypatch.setattr(AsyncExecutor, "submit", recording)

    async def first(x: int) -> int:
        return x * 10

    async def second(x: int) -> int:
        return x + 1

    pipeline = Pipeline(
        Stage("s", first, second, semaphore=per_item, retries=2, task_timeout=5),
        Stage("plain", noop),
    )
    assert [r.value for r in await pipeline.run(range(3))] == [1, 11, 21]
    options = {"semaphore": per_item, "retries": 2, "task_timeout": 5}
    assert sorted(seen, key=repr) == sorted(
        [("first", (x,), options) for x in range(3)]
        + [("second", (x * 10,), options) for x in range(3)]
        + [("noop", (x * 10 + 1,), {}) for x in range(3)],
        key=repr,
    )


async def test_a_call_settled_outside_any_task_is_not_taken_for_a_stop(
    anyio_backend_name: str,
) -> None:
    """Whether a failure came while the run was being stopped is read from
    the scopes around the worker; a callback the event loop runs outside the
    run's tasks (where a limiter's timer may settle a call) is not inside
    them, so it never reads as a stop."""
    from antflow.pipeline._flow import _stopped_around

    seen: list[bool] = []
    done = anyio.Event()

    def in_a_loop_callback() -> None:
        seen.append(_stopped_around())
        done.set()

    if anyio_backend_name == "trio":
        import trio

        trio.lowlevel.current_trio_token().run_sync_soon(in_a_loop_callback)
    else:
        import asyncio

        asyncio.get_running_loop().call_soon(in_a_loop_callback)
    with anyio.CancelScope() as scope:
        scope.cancel()
        assert _stopped_around()
    await done.wait()
    assert seen == [False]


# -- observing (docs/pipelines.md, "Watching a run") -----------------------------------


async def test_events_tell_what_happened_to_each_item() -> None:
    rec = Recorder()
    rec.fail["inc"] = lambda x: x == 2
    events: list[StageEvent] = []
    await three_stages(rec).run(range(3), on_event=events.append)
    seen = {(e.kind, e.stage, e.key) for e in events}
    assert ("entered", "double", 1) in seen
    assert ("done", "text", 0) in seen
    assert ("set_aside", "inc", 1) in seen
    assert ("done", "inc", 1) not in seen
    [aside] = [e for e in events if e.kind == "set_aside"]
    assert aside.error is rec.errors["inc", 2]
    times = [e.time for e in events]
    assert times == sorted(times)
    # entered: 3 + 3 + 2; done: 3 + 2 + 2; set aside: 1.
    assert len(events) == 8 + 7 + 1


async def test_a_raising_event_hook_is_logged_and_changes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def hook(event: StageEvent) -> None:
        raise RuntimeError("hook bug")

    rec = Recorder()
    with caplog.at_level(logging.ERROR, logger="antflow"):
        results = await three_stages(rec).run(range(3), on_event=hook)
    assert len(results) == 3
    assert "hook bug" in caplog.text


async def test_progress_callable_gets_statistics_at_the_end() -> None:
    seen: list[PipelineStatistics] = []
    rec = Recorder()
    await three_stages(rec).run(range(4), progress=seen.append)
    assert seen[-1].completed == 4


async def test_progress_lines_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    rec = Recorder()
    await three_stages(rec).run(range(4), progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[0] for line in lines] == ["double", "inc", "text", "total"]
    assert "done       4" in lines[0]
    assert "completed 4" in lines[3]


# -- virtual time -------------------------------------------------------------------------


@pytest.mark.virtual_time
class TestVirtualTime:
    async def test_a_batch_goes_after_batch_wait(self) -> None:
        sent: list[tuple[float, list[int]]] = []
        start = anyio.current_time()

        async def source() -> Any:
            for x in range(5):
                yield x
                await anyio.sleep(0.25)  # items at 0, 0.25, 0.5, 0.75, 1.0
            await anyio.sleep(0.75)
            yield 5  # at 2.0, and then the source ends

        async def store(batch: list[int]) -> list[int]:
            sent.append((anyio.current_time() - start, list(batch)))
            return batch

        # Durations exact in binary, so the clock's float sums stay exact.
        pipeline = Pipeline(Stage("store", store, batch_size=10, batch_wait=0.625))
        results = await pipeline.run(source())
        assert [r.value for r in results] == list(range(6))
        # batch_wait after the first item of each batch; the last batch at
        # once, when the source ends.
        assert sent == [(0.625, [0, 1, 2]), (1.375, [3, 4]), (2.0, [5])]

    async def test_task_timeout_sets_a_slow_item_aside(self) -> None:
        async def sleepy(x: float) -> float:
            await anyio.sleep(x)
            return x

        pipeline = Pipeline(Stage("sleepy", sleepy, task_timeout=1.0, workers=2))
        results = await pipeline.run([0.5, 5.0, 0.2])
        assert [r.ok for r in results] == [True, False, True]
        assert isinstance(results[1], Failed)
        assert isinstance(results[1].error, TimeoutError)

    async def test_a_slow_stage_throttles_the_one_before_it(self) -> None:
        """The fast stage runs ahead only by what the slow one can hold."""
        started: list[tuple[str, float]] = []

        def timed(name: str, seconds: float) -> Any:
            async def work(x: int) -> int:
                started.append((name, anyio.current_time()))
                await anyio.sleep(seconds)
                return x

            return work

        pipeline = Pipeline(
            Stage("fast", timed("fast", 0.01), workers=4, buffer=0),
            Stage("slow", timed("slow", 1.0), workers=1, buffer=1),
        )
        with anyio.fail_after(hang_guard()):
            async with pipeline.stream(range(100), ordered=False) as results:
                async for result in results:
                    if result.key == 9:
                        break
                fast = [t for name, t in started if name == "fast"]
                # 10 results took ~10 s; fast ran only what fits before slow.
                assert len(fast) <= 10 + 2 + 4


# -- bad input: an error at the call that made it, naming the argument -----------------


async def noop(x: Any) -> Any:
    return x


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"workers": 0}, ValueError, "workers must be at least 1"),
        ({"workers": True}, TypeError, "workers must be an int"),
        ({"workers": 2.0}, TypeError, "workers must be an int"),
        ({"buffer": -1}, ValueError, "buffer must be at least 0"),
        ({"batch_size": 0}, ValueError, "batch_size must be at least 1"),
        ({"batch_wait": 1.0}, ValueError, "batch_wait needs batch_size"),
        ({"batch_size": 2, "batch_wait": -1}, ValueError, "batch_wait must be >= 0"),
        (
            {"batch_size": 2, "fan_out": True},
            ValueError,
            "cannot both fan out and batch",
        ),
        ({"fan_out": 1}, TypeError, "fan_out must be a bool"),
        ({"retries": -1}, ValueError, "retries must be at least 0"),
        ({"retries": "3"}, TypeError, "retries must be an int"),
        ({"retry_delay": float("nan")}, ValueError, "retry_delay must be >= 0"),
        ({"task_timeout": -1}, ValueError, "task_timeout must be >= 0"),
        ({"task_timeout": "1"}, TypeError, "task_timeout must be a number"),
        ({"retry_max_delay": -1}, ValueError, "retry_max_delay must be >= 0"),
        # Checked as submit checks it: a finite number.
        ({"retry_jitter": float("inf")}, ValueError, "retry_jitter must be a finite"),
    ],
)
def test_stage_rejects_bad_options(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Stage("s", noop, **kwargs)


def test_stage_rejects_bad_functions_and_names() -> None:
    with pytest.raises(TypeError, match="name must be a non-empty str"):
        Stage("", noop)
    with pytest.raises(TypeError, match="more\\[0\\] must be callable"):
        Stage("s", noop, 42)  # type: ignore[arg-type]
    coroutine = noop(1)
    with pytest.raises(TypeError, match="not a coroutine object"):
        Stage("s", coroutine)  # type: ignore[arg-type]
    # It was closed: no "never awaited" warning follows (warnings are errors).
    assert coroutine.cr_frame is None


def test_stage_capacity_and_repr() -> None:
    assert Stage("s", noop, workers=3).capacity == 6
    assert Stage("s", noop, workers=3, buffer=0).capacity == 3
    assert Stage("s", noop, workers=2, batch_size=10).capacity == 40
    assert repr(Stage("s", noop, split, workers=2, fan_out=True)) == (
        "Stage('s', noop, split, workers=2, fan_out=True)"
    )


def test_pipeline_rejects_bad_stages() -> None:
    with pytest.raises(ValueError, match="at least one stage"):
        Pipeline()
    with pytest.raises(ValueError, match="two stages are named 'a'"):
        Pipeline(Stage("a", noop), Stage("a", noop))
    with pytest.raises(TypeError, match="stages\\[1\\] must be a Stage"):
        Pipeline(Stage("a", noop), noop)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key must be callable"):
        Pipeline(Stage("a", noop), key="id")  # type: ignore[arg-type]
    assert repr(Pipeline(Stage("a", noop), Stage("b", noop))) == "<Pipeline a -> b>"


def test_stream_rejects_bad_arguments() -> None:
    pipeline = Pipeline(Stage("a", noop))
    with pytest.raises(TypeError, match="source must be an iterable"):
        pipeline.stream(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ordered must be a bool"):
        pipeline.stream([], ordered="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_event must be callable"):
        pipeline.stream([], on_event=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="progress must be a bool or a callable"):
        pipeline.stream([], progress="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry_set_aside needs a journal"):
        pipeline.stream([], retry_set_aside=True)


async def test_a_run_is_used_inside_async_with_once() -> None:
    pipeline = Pipeline(Stage("a", noop))
    run = pipeline.stream([1])
    with pytest.raises(RuntimeError, match="inside async with"):
        await run.__anext__()
    async with run:
        assert [r.value async for r in run] == [1]
    with pytest.raises(RuntimeError, match="entered only once"):
        async with run:
            pass
    assert repr(run) == "<PipelineRun closed admitted=1>"


# -- the public surface (docs/api.md, "Pipelines") -------------------------------------


def test_the_pipeline_package_is_not_loaded_by_import_antflow() -> None:
    import subprocess
    import sys

    code = "import sys, antflow; print('antflow.pipeline' in sys.modules, 'sqlite3' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]


def test_public_names_say_they_live_in_antflow_pipeline() -> None:
    import antflow.pipeline as package

    assert package.__all__ == sorted(package.__all__)
    public = {name for name in dir(package) if not name.startswith("_")}
    assert public == set(package.__all__)
    for name in package.__all__:
        assert getattr(package, name).__module__ == "antflow.pipeline", name


def test_progress_lines_redraw_in_place_on_a_terminal() -> None:
    import io

    from antflow.pipeline._display import StageLines

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    lines = StageLines(screen)
    assert lines.interval < 1
    stage = StageStatistics(
        "fetch", 4, queued=3, running=2, done=7, set_aside=1, retries=2, rate=3.5
    )
    stats = PipelineStatistics(
        stages=(stage,),
        admitted=13,
        completed=6,
        set_aside=1,
        in_flight=6,
        resumed=2,
        skipped=5,
        journal_saved=0,
        journal_flushes=0,
        journal_seconds=0.0,
        elapsed=1.5,
    )
    lines(stats, False)
    lines(stats, True)
    text = screen.getvalue()
    # The second block starts by moving the cursor back up over the first.
    first, second = text.split("\x1b[2F")
    assert first.count("\n") == 2
    assert "fetch  done       7  running    2  queued     3  set aside     1" in first
    assert "resumed 2  skipped 5" in second
