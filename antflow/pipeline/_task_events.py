"""Task events of a stage's calls, tagged with the stage: ``on_task_event``.

Each stage runs its calls on an `antflow.AsyncExecutor` of its own, whose
task events (``antflow.events``) say what happens to each call: queued,
waiting, started, timed out, retrying, and how it ended. With
``on_task_event`` hooks, each call of a stage is submitted with a per-call
``on_event=`` of its own, a `TaggingHook` per user hook that knows the
stage, the item's key and which of the stage's functions the call runs. So
the executor validates, orders, logs and awaits the hooks exactly as it does
its own (docs/observability.md), and nothing here delivers anything.

Without ``on_task_event`` none of this exists: a stage submits its calls as
it always did, with no hook and no extra option.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from antflow._events import hooks_of
from antflow.events import TaskEvent

__all__ = ["StageTaskEvent", "StageTaskHook", "TaggingHook", "task_hooks_of"]


@dataclass(frozen=True, slots=True)
class StageTaskEvent:
    """A task event of one call a stage made, for ``on_task_event`` hooks.

    A stage makes one call per item and function (a batch stage: per batch
    and function), each a job of the stage's own executor; each job's events
    come in the executor's order, with exactly one final event, whichever
    way the job or the run ends (see docs/observability.md, "Order").

    Attributes:
        stage: The stage's name.
        key: The item's key, as in `StageEvent` (``(parent_key, i)`` for the
            ``i``-th item of a fan-out). For a batch stage, the keys of the
            batch's items: a tuple, in the order of the list the function
            gets.
        function_index: Which of the stage's functions the call runs: 0
            for ``fn``, then 1, 2, ... for each of ``*more`` (always 0 for a
            stage of one function). ``event.function`` names it too.
        event: The executor's event, unchanged: its ``time`` is the event
            loop's clock in seconds, its durations are in seconds, and its
            ``executor`` number is the same for every call of one stage in
            one run.
    """

    stage: str
    key: Any
    function_index: int
    event: TaskEvent


#: An ``on_task_event`` hook: called with each `StageTaskEvent`; a hook that
#: returns an awaitable has it awaited by the stage's executor.
StageTaskHook = Callable[[StageTaskEvent], object]


def task_hooks_of(on_task_event: object) -> tuple[StageTaskHook, ...] | None:
    """``on_task_event``: None, a callable, or a non-empty list or tuple of
    callables.

    Raises:
        TypeError: anything else, naming ``on_task_event``.
    """
    if on_task_event is None:
        return None
    hooks = hooks_of(on_task_event, argument="on_task_event", takes="a StageTaskEvent")
    return cast("tuple[StageTaskHook, ...]", hooks)


class TaggingHook:
    """One user hook, for one call: the executor's ``on_event`` hook that
    hands the user's hook each event tagged with the call's stage, key and
    function, and returns what the user's hook returns (so the executor
    awaits an async hook's awaitable)."""

    __slots__ = ("function_index", "hook", "key", "stage")

    def __init__(
        self, hook: StageTaskHook, stage: str, key: Any, function_index: int
    ) -> None:
        self.hook = hook
        self.stage = stage
        self.key = key
        self.function_index = function_index

    def __call__(self, event: TaskEvent) -> object:
        return self.hook(
            StageTaskEvent(self.stage, self.key, self.function_index, event)
        )

    def __repr__(self) -> str:
        # What the executor's log names when the hook raises.
        return f"{self.hook!r} (on_task_event of stage {self.stage!r})"
