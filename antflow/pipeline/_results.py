"""What a pipeline hands back: one result per item, and events as it works.

An item leaves a pipeline in one of two ways, and each has its own type so
that ``match`` or ``isinstance`` tells them apart: `Completed` (it went
through every stage) or `Failed` (a stage failed it after its retries; it
was set aside and the other items went on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Completed", "EventKind", "Failed", "StageEvent"]


@dataclass(frozen=True, slots=True)
class Completed:
    """An item that went through every stage.

    Attributes:
        key: The item's key (see `Pipeline`'s ``key``); ``(parent_key, i)``
            for the ``i``-th item a fan-out stage made.
        item: The source item it came from.
        value: What the last stage returned for it.
    """

    key: Any
    item: Any
    value: Any

    @property
    def ok(self) -> Literal[True]:
        """Always True: the item went through."""
        return True


@dataclass(frozen=True, slots=True)
class Failed:
    """An item that a stage failed, after that stage's retries: set aside.

    Attributes:
        key: The item's key, as in `Completed`.
        item: The source item it came from.
        stage: The name of the stage that failed it.
        error: The exception of its last attempt.
        value: What the item was when it entered that stage.
    """

    key: Any
    item: Any
    stage: str
    error: BaseException
    value: Any

    @property
    def ok(self) -> Literal[False]:
        """Always False: the item was set aside."""
        return False


#: What happened to an item, as `StageEvent.kind` says it.
EventKind = Literal["entered", "done", "set_aside", "resumed", "skipped"]


@dataclass(frozen=True, slots=True)
class StageEvent:
    """One thing that happened to one item, for ``on_event`` hooks.

    Kinds:
        ``entered``: the item entered ``stage`` (its calls may still wait
        for a worker or a limiter). ``done``: ``stage`` finished it.
        ``set_aside``: ``stage`` failed it (``error`` says why).
        ``resumed``: the journal sent it straight to ``stage``, where an
        earlier run left it. ``skipped``: the journal says an earlier run
        finished it (``stage`` is None); it is not run again.

    Attributes:
        kind: One of the kinds above.
        stage: The stage's name, or None.
        key: The item's key.
        time: The event loop's clock (``anyio.current_time()``), in seconds.
        error: The exception, for ``set_aside``; else None.
    """

    kind: EventKind
    stage: str | None
    key: Any
    time: float
    error: BaseException | None = None
