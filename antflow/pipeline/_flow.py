"""How items move: packets, the room each stage has, and a stage at work.

Every item travels as a `Packet`. A stage has a fixed amount of *room*
(`Stage.capacity`): an item takes one unit when it enters and gives it back
only once it is inside the next stage (or in the results). When the next
stage is full, a finished item parks in that stage's ``waiting`` line, still
taking room in its own stage; so a full stage fills the one before it, and
so on back to the source, which waits. That chain is the whole of the
backpressure, and it needs no task and no queue object per stage: moving an
item is a synchronous hand-over, and each freed unit of room pulls the next
parked item in at once.

A `StageRunner` submits each item's calls to its stage's own
`antflow.AsyncExecutor`, passing the stage's options through unchanged
(with ``on_task_event``, plus a per-call ``on_event``: see ``_task_events``), and
acts in the future's done callback: the next call, or the hand-over to the
next stage, happens the moment a call ends. So a stage's workers are fed
continuously rather than in waves, and no task per stage is needed, except
for a batch stage's timer. Anything that goes wrong in that callback (a bug,
or ``fail_fast``) is handed to the run, which stops with it, rather than
only logged as an exception in a callback would be.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ._task_events import TaggingHook

if TYPE_CHECKING:
    from antflow import AsyncExecutor, AsyncFuture

    from ._results import Completed, Failed
    from ._run import PipelineRun
    from ._stage import Stage
    from ._task_events import StageTaskHook

__all__ = ["Destination", "Hold", "Holder", "Packet", "StageRunner"]


class Holder(Protocol):
    """Whatever an item's unit of room belongs to until it moves on."""

    def release(self) -> None: ...


class Packet:
    """One item on its way through the pipeline."""

    __slots__ = (
        "holder",
        "item",
        "key",
        "path",
        "ref",
        "result",
        "slot",
        "stage",
        "value",
    )

    def __init__(
        self,
        item: Any,
        key: Any,
        ref: str | None,
        value: Any,
        stage: int,
        path: tuple[int, ...] = (),
    ) -> None:
        self.item = item  # the source item it came from
        self.key = key
        self.ref = ref  # the key's stable text, in journal runs
        self.value = value  # the input of `stage`
        self.stage = stage  # where it is or goes next; len(stages): the results
        self.path = path  # which child of which child (ordered output)
        self.slot: Any = None  # its root item's place in ordered output
        self.holder: Holder | None = None
        self.result: Completed | Failed | None = None  # set once it failed


class Destination(Protocol):
    """A stage, or the results: somewhere an item can enter when it has room."""

    room: int
    waiting: deque[Packet]
    room_freed: anyio.Event | None  # set when room frees while the source waits

    def enter(self, packet: Packet) -> None: ...


class Hold:
    """One unit of a stage's room, given back after ``count`` releases.

    Two uses. A journaled item moves on as soon as its stage finishes, but
    the stage keeps its unit until *both* the item is in the next stage and
    its record is saved: so a stage never holds more than its capacity in
    items whose work a crash would lose, yet items do not wait for the disk.
    A fan-out parent's unit is shared by its children (and its record):
    given back once the last of them has entered the next stage.
    """

    __slots__ = ("_left", "_stage")

    def __init__(self, stage: StageRunner, count: int) -> None:
        self._stage = stage
        self._left = count

    def release(self) -> None:
        self._left -= 1
        if self._left == 0:
            self._stage.release()


def settled_value(future: AsyncFuture[Any]) -> Any:
    """The value of a future that finished with one, without awaiting.

    `AsyncFuture.result` returns at once for a final future, so running its
    coroutine one step gives the value. (A synchronous accessor in the core
    would save the coroutine.)
    """
    step = future.result()
    try:
        step.send(None)
    except StopIteration as done:
        return done.value
    step.close()
    raise RuntimeError(f"{future!r} is not final")


def _stopped_around() -> bool:
    """Is the code around the running call cancelled?

    A done callback runs in the worker that ran the call, as the call ends;
    if the scopes around the run are cancelled, the executor gave up on its
    retries (``AsyncExecutor`` does not retry once it is going down). A
    call settled by an event-loop callback (a limiter's timer) is outside
    any of the run's scopes: the deadline is then infinite, not a stop.
    """
    return anyio.current_effective_deadline() == -math.inf


def deliver(packet: Packet, destination: Destination) -> None:
    """Move a packet into ``destination`` now, or park it there until room
    frees; until it is in, it keeps the room it holds."""
    if destination.room > 0 and not destination.waiting:
        holder = packet.holder
        destination.enter(packet)
        if holder is not None:
            holder.release()
    else:
        destination.waiting.append(packet)


def room_back(destination: Destination) -> None:
    """A unit of ``destination``'s room came back: let parked packets in
    while there is room, then tell the source if some is left.

    One function for the stages and the results: 161.3k -> 164.1k
    instructions per item for two stages (callgrind, asyncio), the price of
    the frame it adds to a stage's `StageRunner.release`.
    """
    destination.room += 1
    waiting = destination.waiting
    while destination.room > 0 and waiting:
        packet = waiting.popleft()
        holder = packet.holder
        destination.enter(packet)
        if holder is not None:
            holder.release()
    if destination.room > 0 and destination.room_freed is not None:
        destination.room_freed.set()
        destination.room_freed = None


class StageRunner:
    """One stage of one run: its room, its calls and its collector task."""

    def __init__(
        self, run: PipelineRun, index: int, stage: Stage, executor: AsyncExecutor
    ) -> None:
        self.run = run
        self.index = index
        self.stage = stage
        self.name = stage.name
        self.executor = executor
        self.capacity = stage.capacity
        #: Free units of room: ``capacity`` less the items the stage holds.
        self.room = self.capacity
        self.waiting: deque[Packet] = deque()
        self.room_freed: anyio.Event | None = None  # the source waits on it
        self.fan_out = stage.fan_out
        #: Where finished items go (the next stage, or the results), and
        #: whether they go there directly: set by the run once all exist.
        self.after: Destination = self  # placeholder until the run sets it
        self.plain = False
        self._functions = stage.functions
        self._last = len(stage.functions) - 1
        self._options = stage.options
        self._submit = executor.submit
        #: The run's ``on_task_event`` hooks; None keeps the plain submit.
        self._task_hooks: tuple[StageTaskHook, ...] | None = run.task_hooks
        self._on_done_callback = self._on_done  # one bound method, not one per call
        # In flight: each future and what it works for (a packet, or a
        # batch's packets) and which function it runs.
        self.calls: dict[AsyncFuture[Any], tuple[Packet | list[Packet], int]] = {}
        self._wake: anyio.Event | None = None
        self._batch_size = stage.batch_size
        self.batch: list[Packet] = []
        self._batch_deadline = math.inf
        self.entered = 0  # items that entered, for statistics
        self.done = 0
        self.set_aside = 0

    # -- room ------------------------------------------------------------------

    @property
    def held(self) -> int:
        """Items in the stage: running, waiting for a worker, or finished
        and waiting to move on."""
        return self.capacity - self.room

    def enter(self, packet: Packet) -> None:
        self.room -= 1
        self.entered += 1
        packet.holder = self
        packet.stage = self.index
        run = self.run
        if run.on_event is not None:
            run.emit("entered", self.name, packet.key)
        if self._batch_size is None:
            self._call(packet, 0, packet.value)
            return
        batch = self.batch
        batch.append(packet)
        if len(batch) >= self._batch_size:
            self.send_batch()
        elif len(batch) == 1:
            wait = self.stage.batch_wait
            if wait is not None:
                self._batch_deadline = anyio.current_time() + wait
            self._poke()

    def release(self) -> None:
        """An item left: take in the next parked one, or tell the source."""
        room_back(self)
        if self.room == self.capacity and self.run.batch_runners:
            self.run.poke_batches()

    # -- calls -----------------------------------------------------------------

    def send_batch(self) -> None:
        batch, self.batch = self.batch, []
        self._batch_deadline = math.inf
        if batch:
            self._call(batch, 0, [packet.value for packet in batch])

    def _call(self, target: Packet | list[Packet], position: int, value: Any) -> None:
        if self.run.stopping:
            return  # the item stays where its last saved record says
        function = self._functions[position]
        options = self._options
        task_hooks = self._task_hooks
        if task_hooks is not None:
            future = self._submit_tagged(task_hooks, function, value, target, position)
        elif options:
            future = self._submit(function, value, **options)
        else:
            future = self._submit(function, value)
        self.calls[future] = (target, position)
        future.add_done_callback(self._on_done_callback)

    def _submit_tagged(
        self,
        task_hooks: tuple[StageTaskHook, ...],
        function: Any,
        value: Any,
        target: Packet | list[Packet],
        position: int,
    ) -> AsyncFuture[Any]:
        """Submit with a per-call ``on_event``: the run's ``on_task_event``
        hooks, each told this call's stage, key (a batch's keys) and
        function."""
        key = (
            tuple(packet.key for packet in target)
            if isinstance(target, list)
            else target.key
        )
        hooks = [TaggingHook(hook, self.name, key, position) for hook in task_hooks]
        return self._submit(function, value, **self._options, on_event=hooks)

    def _on_done(self, future: AsyncFuture[Any]) -> None:
        # Runs inside the executor, as the call ends: the item moves on at
        # once, so the next stage's workers see it without a trip through
        # the event loop. Whatever goes wrong here stops the run (a done
        # callback's own exceptions would only be logged).
        try:
            self._finish(future)
        except BaseException as error:
            self.run.crash(error)

    def _finish(self, future: AsyncFuture[Any]) -> None:
        target, position = self.calls.pop(future)
        if future.cancelled():
            return  # the run is stopping
        error = future.exception()
        if error is not None:
            if _stopped_around():
                # The run is being cancelled, so the executor did not retry
                # this failure: the item did not fail after its retries. It
                # stays where its last saved record says; a later run
                # repeats the call (one of those the stop cut off).
                return
            self._failed(target, error)
        elif position < self._last:
            self._call(target, position + 1, settled_value(future))
        elif isinstance(target, list):
            self._batch_done(target, settled_value(future))
        elif self.plain:
            # The common case, inlined (it is most of a pipeline's own cost):
            # no journal, no event hook, not a fan-out.
            target.value = settled_value(future)
            target.stage = self.index + 1
            self.done += 1
            after = self.after
            if after.room > 0 and not after.waiting:
                after.enter(target)
                self.release()
            else:
                after.waiting.append(target)
        else:
            self.run.stage_done(self, target, settled_value(future))
        if self._batch_size is not None and not self.calls:
            self.run.poke_batches()

    def _poke(self) -> None:
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set()

    def poke(self) -> None:
        """Make the batcher look at its batch again (see `PipelineRun.poke_batches`)."""
        self._poke()

    async def send_batches(self) -> None:
        """A batch stage's task: send batches that waited long enough, or
        that nothing more can join."""
        while True:
            await self._idle()

    async def _idle(self) -> None:
        if self.batch and (
            anyio.current_time() >= self._batch_deadline
            or self.run.batch_is_stuck(self)
        ):
            self.send_batch()
            return
        self._wake = wake = anyio.Event()
        if self._batch_deadline == math.inf:
            await wake.wait()
            return
        with anyio.CancelScope(deadline=self._batch_deadline) as timer:
            await wake.wait()
        if timer.cancelled_caught:
            # Due: sent now, even if the clock reads a hair before the
            # deadline (float sums), rather than waiting that hair again.
            self.send_batch()

    def _failed(self, target: Packet | list[Packet], error: BaseException) -> None:
        for packet in target if isinstance(target, list) else (target,):
            self.run.stage_failed(self, packet, error)

    def _batch_done(self, packets: list[Packet], results: Any) -> None:
        try:
            values = list(results)
        except TypeError:
            values = None
        if values is None or len(values) != len(packets):
            got = "no sequence" if values is None else f"{len(values)} results"
            self._failed(
                packets,
                ValueError(
                    f"stage {self.name!r} returned {got} for a batch of "
                    f"{len(packets)} items; a batch stage returns one result per item"
                ),
            )
            return
        for packet, value in zip(packets, values, strict=True):
            if isinstance(value, Exception):
                self.run.stage_failed(self, packet, value)
            else:
                self.run.stage_done(self, packet, value)

    # -- statistics --------------------------------------------------------------

    def running(self) -> int:
        """Items whose call is in a worker now."""
        count = 0
        for future, (target, _) in self.calls.items():
            if future.running():
                count += len(target) if isinstance(target, list) else 1
        return count
