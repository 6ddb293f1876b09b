"""Where an item goes when a stage is done with it: the run's routing.

`Routing` is the half of `PipelineRun` that reacts to what stages report,
kept apart from the run's life cycle. Everything here is synchronous and
runs on the event loop, mostly inside a finished call's done callback:

* a stage finished an item: it goes on to the next stage, or to the results;
  a fan-out replaces it by its children;
* a stage failed an item: it goes to the results as a `Failed`;
* with a journal, each of these is recorded first. An item moves on at once
  (its stage keeps its room until the record is saved, see `Hold`), except
  into the results: a result goes out only once its record is saved, so
  that no later run produces it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import anyio

from ._flow import Hold, Packet, StageRunner, deliver
from ._journal import JournalError
from ._keys import child_ref
from ._output import Output
from ._results import EventKind, Failed, StageEvent

if TYPE_CHECKING:
    from ._journal import JournalSession
    from ._stage import Stage

__all__ = ["Routing"]


class Routing:
    """What `PipelineRun` does with the items its stages report."""

    # Set by PipelineRun.
    stages: tuple[Stage, ...]
    on_event: Callable[[StageEvent], object] | None
    stopping: bool
    _count: int
    _fail_fast: bool
    _session: JournalSession | None
    _runners: list[StageRunner]
    _output: Output | None
    _finished: anyio.Event | None
    _live: set[str]
    _feeding: bool
    _created: int
    _dropped: int
    _resumed: int
    _skipped: int
    _completed: int
    _failed: int

    def skip(self, key: Any) -> None:
        """The journal says this item needs nothing more."""
        self._skipped += 1
        if self.on_event is not None:
            self.emit("skipped", None, key)

    def resume(self, packet: Packet) -> None:
        """The journal sends this packet to the stage an earlier run left it at."""
        self._resumed += 1
        if self.on_event is not None:
            self.emit("resumed", self.stages[packet.stage].name, packet.key)

    def stage_done(self, runner: StageRunner, packet: Packet, value: Any) -> None:
        """``runner``'s stage finished ``packet`` with ``value``."""
        if runner.fan_out:
            self._fan_out(runner, packet, value)
            return
        following = runner.index + 1
        session = self._session
        blob: bytes | None = None
        if session is not None and (following < self._count or session.keep_results):
            try:
                blob = session.encode(value)
            except Exception as error:
                self.stage_failed(
                    runner, packet, _unstorable(runner.name, value, error)
                )
                return
        runner.done += 1
        if self.on_event is not None:
            self.emit("done", runner.name, packet.key)
        packet.value = value
        packet.stage = following
        if session is None:
            self._move_on(packet)
        elif following == self._count:
            # A result goes out only once saved: a later run never makes it
            # again.
            session.done(cast(str, packet.ref), following, blob, packet)
        else:
            hold = Hold(runner, 2)  # given back when saved and moved on
            packet.holder = hold
            session.advance(cast(str, packet.ref), following, cast(bytes, blob), hold)
            self._move_on(packet)

    def stage_failed(
        self, runner: StageRunner, packet: Packet, error: BaseException
    ) -> None:
        """``runner``'s stage failed ``packet``, after its retries: set it aside."""
        runner.set_aside += 1
        if self.on_event is not None:
            self.emit("set_aside", runner.name, packet.key, error)
        if self._fail_fast:
            error.add_note(
                f"antflow: stage {runner.name!r} failed the item with key "
                f"{packet.key!r}; fail_fast=True stopped the pipeline"
            )
            raise error
        packet.result = Failed(
            packet.key, packet.item, runner.name, error, packet.value
        )
        packet.stage = self._count
        session = self._session
        if session is None:
            self._move_on(packet)
        else:
            session.set_aside(cast(str, packet.ref), runner.index, error, packet)

    def _fan_out(self, runner: StageRunner, parent: Packet, value: Any) -> None:
        try:
            values = list(value)
        except Exception as error:
            self.stage_failed(runner, parent, error)
            return
        following = runner.index + 1
        session = self._session
        blobs: list[bytes] = []
        if session is not None and (following < self._count or session.keep_results):
            try:
                blobs = [session.encode(v) for v in values]
            except Exception as error:
                self.stage_failed(
                    runner, parent, _unstorable(runner.name, value, error)
                )
                return
        runner.done += 1
        if self.on_event is not None:
            self.emit("done", runner.name, parent.key)
        ref = parent.ref
        children = [
            Packet(
                parent.item,
                (parent.key, index),
                None if ref is None else child_ref(ref, index),
                child,
                following,
                (*parent.path, index),
            )
            for index, child in enumerate(values)
        ]
        self._created += len(children)
        if parent.slot is not None:
            parent.slot.pending += len(children)
            for child in children:
                child.slot = parent.slot
        # The parent's unit of room goes back once every child is in the
        # next stage (and, journaled, once the record of the fan-out is
        # saved); with no child and no journal, at once.
        count = len(children) + (session is not None)
        hold = Hold(runner, count) if count else None
        parent.holder = None if hold is not None else parent.holder
        for child in children:
            child.holder = hold
        if session is not None:
            final = following == self._count
            session.fanned(cast(str, ref), following, len(children), hold)
            stored: list[bytes | None] = [*blobs] if blobs else [None] * len(children)
            for child, blob in zip(children, stored, strict=True):
                if final:
                    session.done(cast(str, child.ref), following, blob, child)
                else:
                    session.advance(
                        cast(str, child.ref), following, cast(bytes, blob), None
                    )
            if final:
                self._drop(parent)
                return
        self._drop(parent)
        for child in children:
            self._move_on(child)

    def _saved(self, packets: list[Any]) -> None:
        """The journal saved the records of these packets: they go on."""
        if self.stopping:
            return
        for waiter in packets:
            if isinstance(waiter, Packet):
                self._move_on(waiter)
            elif waiter is not None:
                waiter.release()

    def _move_on(self, packet: Packet) -> None:
        stage = packet.stage
        output = cast(Output, self._output)
        deliver(packet, self._runners[stage] if stage < self._count else output)

    def _drop(self, parent: Packet) -> None:
        """A fanned-out parent leaves: its children carry on for it."""
        self._dropped += 1
        if parent.holder is not None:
            parent.holder.release()
        if parent.slot is not None:
            cast(Output, self._output).packet_gone(parent.slot)
        if parent.ref is not None and not parent.path:
            self._live.discard(parent.ref)
        self._check_finished()

    def _delivered(self, packet: Packet) -> None:
        """A packet entered the results."""
        if packet.result is None:
            self._completed += 1
        else:
            self._failed += 1
        if packet.ref is not None and not packet.path:
            self._live.discard(packet.ref)
        self._check_finished()

    def _check_finished(self) -> None:
        output = cast(Output, self._output)
        if not self._feeding and self._created == output.delivered + self._dropped:
            cast(anyio.Event, self._finished).set()
            output.wake()

    def emit(
        self,
        kind: EventKind,
        stage: str | None,
        key: Any,
        error: BaseException | None = None,
    ) -> None:
        hook = self.on_event
        assert hook is not None
        try:
            hook(StageEvent(kind, stage, key, anyio.current_time(), error))
        except Exception:
            logging.getLogger("antflow").exception("on_event hook %r raised", hook)


def _unstorable(stage: str, value: Any, error: Exception) -> JournalError:
    problem = JournalError(
        f"stage {stage!r} returned a {type(value).__name__} the journal cannot "
        f"store: {type(error).__name__}: {error}"
    )
    problem.__cause__ = error
    return problem
