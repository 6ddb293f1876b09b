"""Helpers for the pipeline tests: stage functions that record and can block."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
from hypothesis import strategies as st

from antflow.pipeline import Pipeline, Stage


class Recorder:
    """Stage functions that log each call's start and end, per stage.

    ``gate(stage)`` makes a stage's calls wait until ``open(stage)``;
    ``fail[stage]`` decides which values fail there (a predicate), and
    ``flaky[stage]`` how many attempts of a value fail before one succeeds.
    """

    def __init__(self) -> None:
        self.started: Counter[tuple[str, Any]] = Counter()
        self.ended: Counter[tuple[str, Any]] = Counter()  # returned or raised
        self.cancelled: Counter[tuple[str, Any]] = Counter()
        self.order: list[tuple[str, Any]] = []
        self.fail: dict[str, Callable[[Any], bool]] = {}
        self.flaky: dict[str, int] = {}
        self.errors: dict[tuple[str, Any], Exception] = {}
        self._gates: dict[str, anyio.Event] = {}
        self._changed: anyio.Event | None = None

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; it is checked after each call
        starts or ends. (With a journal, ``wait_all_tasks_blocked`` is no
        quiescence signal: a task waiting for the journal's thread counts as
        blocked.)"""
        while not predicate():
            self._changed = changed = anyio.Event()
            await changed.wait()

    def _notify(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    def gate(self, stage: str) -> None:
        self._gates[stage] = anyio.Event()

    def open(self, stage: str) -> None:
        self._gates.pop(stage).set()

    def running(self, stage: str) -> int:
        return sum(
            self.started[key] - self.ended[key] - self.cancelled[key]
            for key in self.started
            if key[0] == stage
        )

    def cancelled_in(self, stage: str) -> int:
        return sum(n for key, n in self.cancelled.items() if key[0] == stage)

    def finished(self, stage: str) -> int:
        return sum(n for key, n in self.ended.items() if key[0] == stage)

    def calls(self, stage: str) -> int:
        return sum(n for key, n in self.started.items() if key[0] == stage)

    def function(
        self, stage: str, transform: Callable[[Any], Any] = lambda x: x
    ) -> Callable[[Any], Any]:
        async def call(value: Any) -> Any:
            key = (stage, _hashable(value))
            self.started[key] += 1
            self.order.append(key)
            self._notify()
            try:
                gate = self._gates.get(stage)
                if gate is not None:
                    await gate.wait()
                await anyio.lowlevel.checkpoint()
                attempts_left = self.flaky.get(stage, 0)
                if attempts_left and self.started[key] <= attempts_left:
                    raise ConnectionError(f"{stage}: flaky {value!r}")
                predicate = self.fail.get(stage)
                if predicate is not None and predicate(value):
                    error = ValueError(f"{stage} failed {value!r}")
                    self.errors[key] = error
                    raise error
            except anyio.get_cancelled_exc_class():
                self.cancelled[key] += 1
                self._notify()
                raise
            except Exception:
                self.ended[key] += 1
                self._notify()
                raise
            self.ended[key] += 1
            self._notify()
            return transform(value)

        call.__name__ = stage
        return call


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


class CountingSource:
    """An endless (or bounded) source that counts the items read from it and
    notes when it was closed."""

    def __init__(self, limit: int | None = None) -> None:
        self.read = 0
        self.closed = False
        self.limit = limit

    def __iter__(self) -> Iterator[int]:
        try:
            while self.limit is None or self.read < self.limit:
                self.read += 1
                yield self.read - 1
        finally:
            self.closed = True

    async def aiter(self) -> AsyncIterator[int]:
        try:
            while self.limit is None or self.read < self.limit:
                await anyio.lowlevel.checkpoint()
                self.read += 1
                yield self.read - 1
        finally:
            self.closed = True


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
    results: list[tuple[Any, bool, Any]] = []

    def go(key: Any, value: Any, stage: int) -> None:
        specs = scenario["stages"]
        if stage == len(specs):
            results.append((key, True, value))
            return
        spec = specs[stage]
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
    return results
