"""Helpers for the pipeline tests: stage functions that record and can block."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel


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
