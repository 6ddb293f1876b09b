"""Pipelines over generated inputs: random chains of map, fan-out and batch
stages, any workers and buffers, failures anywhere, checked against a model
of what they must produce; then stopped at any point, with and without a
journal (docs/pipelines.md, "Fan-out", "Batches", "Failures set aside",
"Structure" and "A journal: resume after a crash").
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _pipeline_helpers import CountingSource
from _strategies import examples, hang_guard, task_count
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

from antflow.events import Cancelled as TaskCancelled
from antflow.events import FinalEvent, Queued
from antflow.pipeline import (
    Completed,
    Journal,
    Pipeline,
    Stage,
    StageEvent,
    StageTaskEvent,
)

pytestmark = pytest.mark.anyio


# -- random pipelines ---------------------------------------------------------------


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 3))
    stages: list[dict[str, Any]] = []
    for index in range(count):
        kind = draw(st.sampled_from(["map", "map", "fan_out", "batch"]))
        stages.append(
            {
                "kind": kind,
                "workers": draw(st.integers(1, 3)),
                "buffer": draw(st.integers(0, 2)),
                "batch_size": draw(st.integers(1, 3)) if kind == "batch" else None,
                "fails": draw(st.sampled_from([None, 3, 5])),
                "name": f"s{index}",
            }
        )
    return {
        "stages": stages,
        "items": draw(st.integers(0, 25)),
        "stop_after": draw(st.integers(0, 60)),
        "stop_in": draw(st.sampled_from(["event", "consumer"])),
        "ordered": draw(st.booleans()),
        "keep": draw(st.booleans()),
    }


def build(scenario: dict[str, Any], journal: Any, calls: Counter[Any]) -> Pipeline:
    """The pipeline a scenario describes; ``calls`` counts each stage call."""
    stages = []
    for spec in scenario["stages"]:
        name, fails = spec["name"], spec["fails"]

        def check(value: Any, name: str = name, fails: int | None = fails) -> Any:
            calls[name, repr(value)] += 1
            if fails is not None and _digits(value) % fails == 0:
                raise ValueError(f"{name} fails {value!r}")
            return value

        if spec["kind"] == "fan_out":

            async def fn(value: Any, check: Any = check) -> Any:
                await anyio.lowlevel.checkpoint()
                check(value)
                return [(value, "x"), (value, "y")]

        elif spec["kind"] == "batch":

            async def fn(batch: list[Any], name: str = name, check: Any = check) -> Any:
                await anyio.lowlevel.checkpoint()
                calls[name, "batch"] += 1
                out: list[Any] = []
                for value in batch:
                    try:
                        out.append(check(value))
                    except ValueError as error:
                        out.append(error)
                return out

        else:

            async def fn(value: Any, check: Any = check) -> Any:
                await anyio.lowlevel.checkpoint()
                return check(value)

        stages.append(
            Stage(
                name,
                fn,
                workers=spec["workers"],
                buffer=spec["buffer"],
                fan_out=spec["kind"] == "fan_out",
                batch_size=spec["batch_size"],
            )
        )
    return Pipeline(*stages, journal=journal)


def _digits(value: Any) -> int:
    return sum(ord(c) for c in repr(value))


def model(scenario: dict[str, Any]) -> list[tuple[Any, bool, Any]]:
    """What a scenario's pipeline must produce, in source order: for each
    result ``(key, ok, value)``, where ``value`` is the last stage's value of
    a completed item and the failing stage's name of a failed one."""
    return _walk(scenario)[0]


def reached(scenario: dict[str, Any]) -> dict[str, set[Any]]:
    """The keys of the items that reach each stage in a run never stopped."""
    return _walk(scenario)[1]


def _walk(
    scenario: dict[str, Any],
) -> tuple[list[tuple[Any, bool, Any]], dict[str, set[Any]]]:
    """Each item through the scenario's stages, in source order: the results
    (as `model`) and the keys that reach each stage (as `reached`)."""
    specs = scenario["stages"]
    results: list[tuple[Any, bool, Any]] = []
    keys: dict[str, set[Any]] = {spec["name"]: set() for spec in specs}

    def go(key: Any, value: Any, stage: int) -> None:
        if stage == len(specs):
            results.append((key, True, value))
            return
        spec = specs[stage]
        keys[spec["name"]].add(key)
        fails = spec["fails"]
        if fails is not None and _digits(value) % fails == 0:
            results.append((key, False, spec["name"]))
            return
        if spec["kind"] == "fan_out":
            for index, child in enumerate([(value, "x"), (value, "y")]):
                go((key, index), child, stage + 1)
        else:
            go(key, value, stage + 1)

    for item in range(scenario["items"]):
        go(item, item, 0)
    return results, keys


# -- without a journal -------------------------------------------------------------


@given(scenario=scenarios())
@settings(deadline=None)
async def test_random_pipelines_give_what_the_model_says(
    scenario: dict[str, Any],
) -> None:
    """Any chain of map, fan-out and batch stages, any workers and buffers,
    failures anywhere: exactly the model's results (in source order when
    ordered), each stage called once per value, nothing left running."""
    note(repr(scenario))
    calls: Counter[Any] = Counter()
    expected = model(scenario)
    before = task_count()
    with anyio.fail_after(hang_guard()):
        results = await build(scenario, None, calls).run(
            range(scenario["items"]), ordered=scenario["ordered"]
        )
    got = [
        (r.key, True, r.value) if isinstance(r, Completed) else (r.key, False, r.stage)
        for r in results
    ]
    if scenario["ordered"]:
        assert got == expected
    else:
        assert sorted(got, key=repr) == sorted(expected, key=repr)
    assert all(n == 1 for key, n in calls.items() if key[1] != "batch")
    assert task_count() == before


@given(scenario=scenarios())
@settings(deadline=None)
async def test_stopping_anywhere_leaves_nothing_behind(
    scenario: dict[str, Any],
) -> None:
    """Stop a run from an event hook or from the consumer at any point: every
    task of the run has exited, the source is closed, and what came out is
    a part of what the model says."""
    note(repr(scenario))
    source = CountingSource(scenario["items"])
    expected = model(scenario)
    received: list[Any] = []
    before = task_count()
    with anyio.fail_after(hang_guard()), anyio.CancelScope() as stop:
        events = 0

        def on_event(event: StageEvent) -> None:
            nonlocal events
            events += 1
            if scenario["stop_in"] == "event" and events == scenario["stop_after"]:
                stop.cancel()

        pipeline = build(scenario, None, Counter())
        async with pipeline.stream(
            source.aiter(), ordered=scenario["ordered"], on_event=on_event
        ) as results:
            async for result in results:
                received.append((result.key, result.ok))
                if (
                    scenario["stop_in"] == "consumer"
                    and len(received) == scenario["stop_after"]
                ):
                    break
    assert task_count() == before
    assert source.closed
    assert set(received) <= {(key, ok) for key, ok, _ in expected}
    assert len(received) == len(set(received))
    if scenario["ordered"]:
        # In order, what came out is a prefix of the model's results.
        assert received == [(key, ok) for key, ok, _ in expected][: len(received)]


# -- task events: however a run stops, every call's events end once ----------------


@given(
    scenario=scenarios(),
    stop_by=st.sampled_from(["task_event", "stage_event", "consumer", "never"]),
    fail_fast=st.booleans(),
)
@settings(deadline=None)
async def test_task_events_end_once_wherever_the_run_stops(
    scenario: dict[str, Any], stop_by: str, fail_fast: bool
) -> None:
    """Stop a run anywhere (from a task event hook, a stage event hook, the
    consumer, or fail_fast's first failure), or not at all: every call's
    events start with one Queued and end with one final event, each tagged
    with one stage and the key (a batch's keys) of an item that reaches that
    stage; a run not stopped ends every call as it ended its item."""
    note(repr((scenario, stop_by, fail_fast)))
    stop_after = scenario["stop_after"]
    events: list[StageTaskEvent] = []
    counted = 0
    raised = False
    before = task_count()
    with anyio.fail_after(hang_guard()), anyio.CancelScope() as stop:

        def count(by: str) -> None:
            nonlocal counted
            if stop_by == by:
                counted += 1
                if counted == stop_after:
                    stop.cancel()

        def on_task_event(event: StageTaskEvent) -> None:
            events.append(event)
            count("task_event")

        pipeline = build(scenario, None, Counter())
        try:
            async with pipeline.stream(
                range(scenario["items"]),
                ordered=scenario["ordered"],
                fail_fast=fail_fast,
                on_event=lambda _: count("stage_event"),
                on_task_event=on_task_event,
            ) as results:
                async for _ in results:
                    count("consumer")
                    if stop.cancel_called:
                        break
        except ValueError as error:
            assert fail_fast
            assert "fail_fast=True stopped the pipeline" in error.__notes__[-1]
            raised = True
    assert task_count() == before

    jobs: dict[tuple[int, int], list[StageTaskEvent]] = {}
    for tagged in events:
        jobs.setdefault((tagged.event.executor, tagged.event.job), []).append(tagged)
    reach = reached(scenario)
    kinds = {spec["name"]: spec["kind"] for spec in scenario["stages"]}
    stage_of: dict[int, str] = {}
    for (executor, _), job in jobs.items():
        first = job[0]
        assert isinstance(first.event, Queued)
        assert isinstance(job[-1].event, FinalEvent)
        assert sum(isinstance(t.event, (Queued, FinalEvent)) for t in job) == 2
        assert {(t.stage, repr(t.key), t.function_index) for t in job} == {
            (first.stage, repr(first.key), 0)
        }
        assert stage_of.setdefault(executor, first.stage) == first.stage
        keys = first.key if kinds[first.stage] == "batch" else (first.key,)
        assert isinstance(keys, tuple) and keys
        assert set(keys) <= reach[first.stage]
    cut_off = any(isinstance(t.event, TaskCancelled) for t in events)
    event(f"stopped: {stop.cancel_called or raised}, calls cut off: {cut_off}")
    if not (stop.cancel_called or raised):
        # Nothing cut off: each call ended as its function did, and each
        # item ran once at every stage it reaches.
        assert not cut_off
        for name, keys in reach.items():
            ran = [
                key
                for t in events
                if t.stage == name and isinstance(t.event, Queued)
                for key in (t.key if kinds[name] == "batch" else (t.key,))
            ]
            assert sorted(ran, key=repr) == sorted(keys, key=repr)


# -- with a journal: however a run stops, the next one finishes the rest exactly once


# The journal writes from a thread: on trio's MockClock every wait for it
# lets the clock jump to the journal's next flush deadline, again and again,
# and that spin starves the thread of the GIL (13 s per example, measured).
@pytest.mark.real_clock
@given(scenario=scenarios())
# Two journaled runs per example: a share of the profile's examples.
@settings(deadline=None, max_examples=examples(0.3, minimum=10))
async def test_stop_anywhere_then_finish_exactly_once(
    scenario: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """However a run stops (from an event hook or from the consumer, at any
    point), the next run finishes the rest: no item is lost, no result is
    handed out twice, and only the calls cut off by the stop run again."""
    note(repr(scenario))
    folder = tmp_path_factory.mktemp("journal")
    journal = Journal(folder / "run.journal", keep_results=scenario["keep"])
    source = list(range(scenario["items"]))
    ordered = scenario["ordered"]
    calls: Counter[Any] = Counter()
    before = task_count()

    # What a run that is never stopped gives, in source order.
    expected = [(key, ok) for key, ok, _ in model(scenario)]

    received: list[Any] = []
    with anyio.fail_after(hang_guard()), anyio.CancelScope() as stop:
        events = 0

        def on_event(event: StageEvent) -> None:
            nonlocal events
            events += 1
            if scenario["stop_in"] == "event" and events == scenario["stop_after"]:
                stop.cancel()

        pipeline = build(scenario, journal, calls)
        async with pipeline.stream(source, ordered=ordered, on_event=on_event) as run:
            async for result in run:
                received.append((result.key, result.ok))
                if (
                    scenario["stop_in"] == "consumer"
                    and len(received) == scenario["stop_after"]
                ):
                    stop.cancel()
                    await anyio.lowlevel.checkpoint()
    first_calls = Counter(calls)
    assert task_count() == before

    rest = await build(scenario, journal, calls).run(source, ordered=ordered)
    again = [(r.key, r.ok) for r in rest]
    if scenario["keep"]:
        # Kept results: the next run hands out every item's, as if the first
        # had never stopped.
        assert sorted(again, key=repr) == sorted(expected, key=repr)
        if ordered:
            assert again == expected
    else:
        # A result goes to the run that finished its item, never twice; what
        # the first run finished but its caller never took is not redone.
        both = received + again
        assert len(both) == len(set(both))
        assert set(both) <= set(expected)
    summary = journal.summary()
    assert summary.waiting == {}
    assert summary.done + summary.set_aside == len(expected)
    # Only calls cut off by the stop ran again: at most a stage's running
    # calls (workers, times the batch size for a batch stage).
    for spec in scenario["stages"]:
        name = spec["name"]
        repeated = sum(
            1
            for (stage, value), n in calls.items()
            if stage == name and value != "batch" and n > first_calls[stage, value] > 0
        )
        assert repeated <= spec["workers"] * (spec["batch_size"] or 1), name
