"""Pipeline: stages in a chain, and how a run over a source is started."""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Callable, Iterable, Sequence
from typing import Any, final

from ._journal import Journal
from ._results import Completed, Failed, StageEvent
from ._run import PipelineRun, Progress
from ._stage import Stage
from ._task_events import StageTaskHook

__all__ = ["Pipeline"]


@final
class Pipeline:
    """Stages in a chain: each item goes through them in order.

    Each stage has its own pool of workers and options (see `Stage`); items
    flow from one to the next through bounded room, so a slow stage makes
    the ones before it wait, back to the source, and memory stays bounded
    however long the source is. An item that a stage fails (after its
    retries) is set aside as a `Failed` result and the others go on.

    A `Pipeline` is a description: run it with `stream` or `run`, as often as
    you like.

    Args:
        *stages: The stages, in order (at least one; names unique).
        journal: A `Journal`, or the path of one, to record each item's
            progress: a run over the same source after a crash, a kill or
            Ctrl-C skips the items already finished and resumes the others
            at the stage where they stopped.
        key: A function giving each source item's key (default: the item
            itself). With a journal, keys must be unique and stable across
            runs: a str, int, float, bytes, bool, path, None or a tuple of
            these.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: no stage, or two stages with one name.
    """

    __slots__ = ("journal", "key", "stages")

    def __init__(
        self,
        *stages: Stage,
        journal: Journal | str | os.PathLike[str] | None = None,
        key: Callable[[Any], Any] | None = None,
    ) -> None:
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        names: set[str] = set()
        for position, stage in enumerate(stages):
            if not isinstance(stage, Stage):
                raise TypeError(
                    f"stages[{position}] must be a Stage, got {type(stage).__name__}"
                )
            if stage.name in names:
                raise ValueError(
                    f"two stages are named {stage.name!r}; names must be unique"
                )
            names.add(stage.name)
        if key is not None and not callable(key):
            raise TypeError(f"key must be callable, got {type(key).__name__}")
        if journal is not None and not isinstance(journal, Journal):
            journal = Journal(journal)
        self.stages: tuple[Stage, ...] = stages
        self.journal: Journal | None = journal
        self.key = key

    def fingerprint(self) -> list[tuple[str, str]]:
        """What identifies the pipeline to its journal: each stage's name and
        kind."""
        return [
            (
                stage.name,
                "fan_out" if stage.fan_out else "batch" if stage.batch_size else "map",
            )
            for stage in self.stages
        ]

    def stream(
        self,
        source: Iterable[Any] | AsyncIterable[Any],
        *,
        ordered: bool = True,
        fail_fast: bool = False,
        retry_set_aside: bool = False,
        progress: Progress = None,
        on_event: Callable[[StageEvent], object] | None = None,
        on_task_event: StageTaskHook | Sequence[StageTaskHook] | None = None,
    ) -> PipelineRun:
        """Run the pipeline over ``source``, streaming each item's result.

        Use it as ``async with pipeline.stream(source) as results:``, then
        ``async for result in results``; each result is a `Completed` or a
        `Failed`. Leaving the block, even early, stops every stage: no task
        of the run outlives it.

        Args:
            source: A sync or async iterable, read lazily (endless is fine).
            ordered: Results in source order (True) or as they finish.
                Ordered, a slow item holds back those after it, and the
                source waits once a window of items (the stages' total
                capacity) is open.
            fail_fast: The first item a stage fails stops the pipeline: the
                block raises that exception, with a note naming the stage
                and the key. With a journal, the item is not recorded as set
                aside, so the next run tries it again.
            retry_set_aside: With a journal, run the items set aside by
                earlier runs again, from the stage that failed them.
            progress: True for a line per stage on stderr, or a callable
                called with `PipelineStatistics` every half second and once
                at the end.
            on_event: Called with a `StageEvent` for each item entering,
                finishing or failing a stage, and for each item the journal
                resumes or skips. It runs on the event loop: keep it quick.
                An exception it raises is logged and otherwise ignored.
            on_task_event: A hook, or a list of hooks, called with a
                `StageTaskEvent` for each task event of each call a stage
                makes (queued, waiting, started, timed out, retrying, and one
                final event: see `antflow.events`), tagged with the stage,
                the item's key and the function. Each is passed to that
                call's ``submit`` as its ``on_event``, so it runs as the
                executor runs such hooks: a plain function at once, where
                the step happens (keep it quick); an async one awaited in
                order by the stage's executor, which waits for it before it
                closes. An exception it raises is logged and otherwise
                ignored. Default: none, and then a stage's calls carry no
                hook at all.

        Returns:
            The run, an async iterator of results (see `PipelineRun`).

        Raises:
            TypeError: ``source`` is not iterable; an argument of the wrong
                type (``on_task_event`` neither a callable nor a non-empty
                list of callables).
            ValueError: ``retry_set_aside`` without a journal.
        """
        return PipelineRun(
            self,
            source,
            ordered=ordered,
            fail_fast=fail_fast,
            retry_set_aside=retry_set_aside,
            progress=progress,
            on_event=on_event,
            on_task_event=on_task_event,
        )

    async def run(
        self,
        source: Iterable[Any] | AsyncIterable[Any],
        *,
        ordered: bool = True,
        fail_fast: bool = False,
        retry_set_aside: bool = False,
        progress: Progress = None,
        on_event: Callable[[StageEvent], object] | None = None,
        on_task_event: StageTaskHook | Sequence[StageTaskHook] | None = None,
    ) -> list[Completed | Failed]:
        """Run the pipeline over ``source`` and return every result.

        The same as collecting `stream`, for jobs small enough to hold every
        result in memory. Arguments as in `stream`.
        """
        collected: list[Completed | Failed] = []
        async with self.stream(
            source,
            ordered=ordered,
            fail_fast=fail_fast,
            retry_set_aside=retry_set_aside,
            progress=progress,
            on_event=on_event,
            on_task_event=on_task_event,
        ) as results:
            async for result in results:
                collected.append(result)
        return collected

    def __repr__(self) -> str:
        names = " -> ".join(stage.name for stage in self.stages)
        journal = "" if self.journal is None else f", journal={self.journal.path!r}"
        return f"<Pipeline {names}{journal}>"
