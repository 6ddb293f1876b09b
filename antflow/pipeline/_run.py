"""PipelineRun: one run of a pipeline over one source, inside ``async with``.

Structure. ``__aenter__`` opens the journal (so a refused journal fails
there, before anything runs) and starts a task group in the caller's task,
as a nursery would; one task, ``_main``, enters every stage's executor and
starts the stages' collectors, the journal's writer and the feeder. The
caller reads results from ``async for``. Leaving the block early, an error
in it, cancellation from outside or a crash of any task cancels the whole
group; the executors cancel their calls, and ``_main``'s last step saves the
journal records of work that had finished (shielded, so cancellation cannot
lose them). When ``__aexit__`` returns, no task of the run is left.

Where an item is at any moment is a counter somewhere: in a stage (its
``held``), in the results, or gone. The run has finished when the feeder
has read the whole source and no item is left between it and the results.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast, final

import anyio

from antflow import AsyncExecutor
from antflow._lifecycle import leave_task_group

from ._flow import Destination, Packet, StageRunner
from ._journal import JournalSession
from ._output import Output, Result
from ._results import StageEvent
from ._routing import Routing
from ._source import Feeder, check_source
from ._statistics import PipelineStatistics, RateMeter, StageStatistics
from ._task_events import StageTaskHook, task_hooks_of

if TYPE_CHECKING:
    from ._pipeline import Pipeline

__all__ = ["PipelineRun", "Progress"]

#: ``progress=``: True for lines on stderr, or a callable given statistics.
Progress = bool | Callable[[PipelineStatistics], object] | None

_NEW, _RUNNING, _CLOSED = range(3)


@final
class PipelineRun(Routing):
    """One run of a `Pipeline`: an async iterator of results.

    Made by `Pipeline.stream`; use it as ``async with pipeline.stream(source)
    as results: async for result in results: ...``. Each result is a
    `Completed` or a `Failed`.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        source: Iterable[Any] | AsyncIterable[Any],
        *,
        ordered: bool,
        fail_fast: bool,
        retry_set_aside: bool,
        progress: Progress,
        on_event: Callable[[StageEvent], object] | None,
        on_task_event: StageTaskHook | Sequence[StageTaskHook] | None,
    ) -> None:
        check_source(source)
        for name, flag in (
            ("ordered", ordered),
            ("fail_fast", fail_fast),
            ("retry_set_aside", retry_set_aside),
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        if on_event is not None and not callable(on_event):
            raise TypeError(f"on_event must be callable, got {type(on_event).__name__}")
        task_hooks = task_hooks_of(on_task_event)
        if not (progress is None or isinstance(progress, bool) or callable(progress)):
            raise TypeError(
                f"progress must be a bool or a callable, got {type(progress).__name__}"
            )
        if retry_set_aside and pipeline.journal is None:
            raise ValueError(
                "retry_set_aside needs a journal: nothing is set aside without one"
            )
        self._pipeline = pipeline
        self._source = source
        self._ordered = ordered
        self._fail_fast = fail_fast
        self._retry_set_aside = retry_set_aside
        self._progress = progress
        self.on_event = on_event
        #: ``on_task_event``'s hooks, handed to each stage call (see `StageRunner`).
        self.task_hooks = task_hooks
        self.stages = pipeline.stages
        self._count = len(pipeline.stages)
        self._state = _NEW
        self._session: JournalSession | None = None
        self._runners: list[StageRunner] = []
        self.batch_runners: list[StageRunner] = []
        self._output: Output | None = None
        self._task_group: Any = None
        self._live: set[str] = set()  # keys of source items in flight (journal runs)
        self._feeding = True
        self._feeder_waiting = False
        self._finished: anyio.Event | None = None
        self._crash: BaseException | None = None  # raised in a done callback
        self.stopping = False  # see stop_now()
        self._tasks_scope: anyio.CancelScope | None = None
        # Counters.
        self._admitted = 0
        self._created = 0  # packets made: admitted, resumed and fan-out children
        self._dropped = 0  # fanned-out parents
        self._resumed = 0
        self._skipped = 0
        self._completed = 0
        self._failed = 0
        self._started = 0.0
        self._ended: float | None = None
        self._meters: list[RateMeter] = []

    # -- life cycle ------------------------------------------------------------

    async def __aenter__(self) -> PipelineRun:
        if self._state != _NEW:
            raise RuntimeError(
                "a pipeline run can be entered only once; call stream() again"
            )
        self._state = _RUNNING
        self._started = anyio.current_time()
        journal = self._pipeline.journal
        if journal is not None:
            self._session = await JournalSession.open(
                journal, self._pipeline.fingerprint(), self._saved
            )
        stages = self.stages
        self._runners = [
            StageRunner(self, index, stage, AsyncExecutor(stage.workers))
            for index, stage in enumerate(stages)
        ]
        self.batch_runners = [
            r for r in self._runners if r.stage.batch_size is not None
        ]
        self._meters = [RateMeter(self._started) for _ in stages]
        self._output = Output(
            self._ordered,
            capacity=stages[-1].capacity,
            window=sum(stage.capacity for stage in stages) + 1,
        )
        self._output.on_enter = self._delivered
        plain = self._session is None and self.on_event is None
        afters: list[Destination] = [*self._runners[1:], self._output]
        for runner, after in zip(self._runners, afters, strict=True):
            runner.after = after
            runner.plain = plain and not runner.fan_out
        self._finished = anyio.Event()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._main)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        task_group = self._task_group
        assert self._finished is not None
        if exc is not None or not self._finished.is_set():
            # An error, or the caller left early: stop before anything else
            # can start (see `stop_now`), then cancel every task of the run.
            self.stop_now()
            task_group.cancel_scope.cancel()
        try:
            return await leave_task_group(task_group, exc)
        finally:
            self._state = _CLOSED

    async def _main(self) -> None:
        assert self._finished is not None
        session = self._session
        display = self._make_display()
        try:
            async with AsyncExitStack() as executors:
                for runner in self._runners:
                    await executors.enter_async_context(runner.executor)
                async with anyio.create_task_group() as tasks:
                    self._tasks_scope = tasks.cancel_scope
                    for runner in self.batch_runners:
                        tasks.start_soon(runner.send_batches)
                    if session is not None:
                        tasks.start_soon(session.write_forever)
                    if display is not None:
                        tasks.start_soon(self._show_progress, display)
                    feeder = Feeder(
                        self,
                        self._source,
                        self._pipeline.key,
                        session,
                        self._retry_set_aside,
                    )
                    await feeder.feed()
                    self._feeding = False
                    self.poke_batches()
                    self._check_finished()
                    await self._finished.wait()
                    tasks.cancel_scope.cancel()  # batchers and writer are idle
                if self._crash is not None:
                    raise self._crash
        finally:
            self._ended = anyio.current_time()
            try:
                if session is not None:
                    await session.close()
            finally:
                if display is not None:
                    display(self.statistics(), True)

    # -- the consumer ------------------------------------------------------------

    def __aiter__(self) -> PipelineRun:
        return self

    async def __anext__(self) -> Result:
        output = self._output
        if output is None:
            raise RuntimeError(
                "use the run inside async with: "
                "async with pipeline.stream(source) as results: ..."
            )
        while True:
            result = output.pop()
            if result is not None:
                return result
            if self._state == _CLOSED or cast(anyio.Event, self._finished).is_set():
                raise StopAsyncIteration
            await output.wait()

    # -- admission (the feeder's side) ----------------------------------------------

    async def admit(self, packets: list[Packet], ref: str | None = None) -> None:
        """Admit one source item's packets (several, for a resumed fan-out)."""
        output = cast(Output, self._output)
        if ref is not None:
            if ref in self._live:
                raise ValueError(
                    f"two source items have the key {packets[0].key!r} while the first "
                    "is still in the pipeline; keys must be unique"
                )
            self._live.add(ref)
        if self._ordered:
            while not output.has_window():
                output.window_freed = event = anyio.Event()
                await self._feeder_wait(event)
            slot = output.open_slot(len(packets))
            for packet in packets:
                packet.slot = slot
        for packet in packets:
            if packet.stage == self._count:
                # Finished by an earlier run: its recorded result goes out.
                while output.room <= 0 or output.waiting:
                    output.room_freed = event = anyio.Event()
                    await self._feeder_wait(event)
                self._created += 1
                output.enter(packet)
                continue
            runner = self._runners[packet.stage]
            while runner.room <= 0 or runner.waiting:
                runner.room_freed = event = anyio.Event()
                await self._feeder_wait(event)
            self._created += 1
            runner.enter(packet)
        self._admitted += 1

    async def _feeder_wait(self, event: anyio.Event) -> None:
        self._feeder_waiting = True
        self.poke_batches()
        try:
            await event.wait()
        finally:
            self._feeder_waiting = False

    # -- stopping ---------------------------------------------------------------------

    def crash(self, error: BaseException) -> None:
        """Stop the run with ``error``, raised from ``_main`` (a done callback
        cannot raise it into the task group itself)."""
        if self._crash is None:
            self._crash = error
        self.stop_now()
        if self._tasks_scope is not None:
            self._tasks_scope.cancel()

    def stop_now(self) -> None:
        """Stop where everything is: cancel every call, queued or running,
        and move nothing on any more.

        Cancelling the run's task groups alone would leave a moment in which
        a worker could still start a queued call (a call that starts then
        only to be cut off is work a later run repeats). Finished work still
        gets its journal record saved on the way out.
        """
        if self.stopping:
            return
        self.stopping = True
        for runner in self._runners:
            for future in list(runner.calls):
                future.cancel()

    # -- batches -----------------------------------------------------------------

    def poke_batches(self) -> None:
        """Something changed that may leave a batch waiting for nothing."""
        for runner in self.batch_runners:
            if runner.batch:
                runner.poke()

    def batch_is_stuck(self, runner: StageRunner) -> bool:
        """True when no more items can join ``runner``'s open batch until it
        is sent: the stage runs nothing, nothing is on its way to it, and the
        source is exhausted or waiting for room."""
        if runner.calls or (self._feeding and not self._feeder_waiting):
            return False
        return all(before.held == 0 for before in self._runners[: runner.index])

    # -- observing -------------------------------------------------------------------

    def statistics(self) -> PipelineStatistics:
        """A snapshot of the run's counters."""
        now = self._ended if self._ended is not None else anyio.current_time()
        stages: list[StageStatistics] = []
        for runner, meter in zip(self._runners, self._meters, strict=True):
            finished = runner.done + runner.set_aside
            meter.sample(now, finished)
            running = runner.running()
            unfinished = runner.entered - finished
            stages.append(
                StageStatistics(
                    name=runner.name,
                    workers=runner.stage.workers,
                    queued=len(runner.waiting) + unfinished - running,
                    running=running,
                    done=runner.done,
                    set_aside=runner.set_aside,
                    retries=runner.executor.statistics().retries,
                    rate=meter.rate(now, finished),
                )
            )
        session = self._session
        output = self._output
        delivered = 0 if output is None else output.delivered
        return PipelineStatistics(
            stages=tuple(stages),
            admitted=self._admitted,
            completed=self._completed,
            set_aside=self._failed,
            in_flight=self._created - delivered - self._dropped,
            resumed=self._resumed,
            skipped=self._skipped,
            journal_saved=0 if session is None else session.saved,
            journal_flushes=0 if session is None else session.flushes,
            journal_seconds=0.0 if session is None else session.seconds,
            elapsed=max(now - self._started, 0.0),
        )

    def _make_display(self) -> Callable[[PipelineStatistics, bool], None] | None:
        progress = self._progress
        if progress is None or progress is False:
            return None
        if progress is True:
            from ._display import StageLines

            return StageLines(sys.stderr)
        callback = progress

        def call(statistics: PipelineStatistics, final: bool) -> None:
            try:
                callback(statistics)
            except Exception:
                logging.getLogger("antflow").exception(
                    "progress callback %r raised", callback
                )

        return call

    async def _show_progress(
        self, display: Callable[[PipelineStatistics, bool], None]
    ) -> None:
        interval = getattr(display, "interval", 0.5)
        while True:
            await anyio.sleep(interval)
            display(self.statistics(), False)

    def __repr__(self) -> str:
        state = ("new", "running", "closed")[self._state]
        return f"<PipelineRun {state} admitted={self._admitted}>"
