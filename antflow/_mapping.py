"""map_iter: results streamed from a bounded window of submitted items.

The iterator keeps a *window* of at most ``2 * max_workers`` items that were
submitted and not yet yielded. Each step takes the next result to yield if
one is ready (the oldest item with ``ordered=True``, any finished one with
``ordered=False``), and waits only when none is.

Input is read lazily, to keep the window full:

* a sync input is read at each step, before looking for a ready result
  (reading it never waits);
* an async input is read by a *feeder* task in the executor's task group,
  beside the consumer, so a ready result is yielded at once even while the
  next input item is slow to come (a producer that waits for the consumer
  would otherwise deadlock).

Nothing here holds a task group or cancel scope across a ``yield`` (PEP
789): each step opens its own deadline scope and closes it before returning.

Leaving early cancels the window and stops the feeder. ``aclose()`` and
``async with`` do it and wait until the cancelled tasks have exited;
``break`` out of ``async for`` drops the last reference, and ``__del__``
cancels them then (CPython finalises at once), without waiting. Input
generators it stopped reading are closed, so their ``finally`` blocks run.
"""

from __future__ import annotations

import math
import types
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from contextvars import Context
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast, final

import anyio

from ._context import drop_own_frames
from ._exceptions import ExecutorShutdownError
from ._job import (
    CANCELLED,
    FAILED,
    FINISHED,
    Job,
    Observer,
    cancelled_error,
    item_note,
    logger,
)
from ._progress import Progress, known_length, make_reporter

if TYPE_CHECKING:
    from ._options import Plan
    from ._per_item import ItemPlans
    from ._pool import Pool

__all__ = ["MapIterator", "Progress"]

T = TypeVar("T")

#: Read-ahead, as a multiple of max_workers: enough to keep every worker busy
#: while the consumer handles one result, small enough to bound memory.
READ_AHEAD: Final = 2


class _Window(Observer):
    """The items of one call that were submitted and not yet yielded."""

    __slots__ = ("done", "report", "size", "wakeup")

    def __init__(self, report: Callable[[int], object] | None) -> None:
        self.report = report
        self.done = 0  # items finished with a result or an exception
        #: Items submitted and not yet yielded, finished or not: what the
        #: read-ahead bounds. (A count, not a method: two calls fewer per
        #: item: 52.8k -> 52.2k instructions, callgrind, asyncio, a.)
        self.size = 0
        #: Set when the consumer may have something to do.
        self.wakeup: anyio.Event | None = None

    def wake(self) -> None:
        if self.wakeup is not None:
            self.wakeup.set()
            self.wakeup = None

    async def wait(self) -> None:
        self.wakeup = event = anyio.Event()
        await event.wait()

    def reported(self, job: Job) -> None:
        """Count a finished item and tell the progress callback; a callback
        that raises is logged and changes nothing else."""
        if job.state != CANCELLED and self.report is not None:
            self.done += 1
            try:
                self.report(self.done)
            except Exception:
                logger().exception("progress callback %r raised", self.report)

    def add(self, job: Job) -> None:
        raise NotImplementedError

    def pop_ready(self) -> Job | None:
        raise NotImplementedError

    def drain(self) -> list[Job]:
        """Everything not yet yielded, which the caller will cancel."""
        raise NotImplementedError


class _Ordered(_Window):
    """Input order: the oldest item is the next to yield."""

    __slots__ = ("jobs",)

    def __init__(self, report: Callable[[int], object] | None) -> None:
        super().__init__(report)
        self.jobs: deque[Job] = deque()

    def add(self, job: Job) -> None:
        self.jobs.append(job)
        self.size += 1

    def pop_ready(self) -> Job | None:
        jobs = self.jobs
        if jobs and jobs[0].state >= FINISHED:
            self.size -= 1
            return jobs.popleft()
        return None

    def job_final(self, job: Job) -> None:
        if self.report is not None:
            self.reported(job)
        if self.wakeup is not None and self.jobs and self.jobs[0] is job:
            self.wake()

    def drain(self) -> list[Job]:
        jobs = list(self.jobs)
        self.jobs.clear()
        self.size = 0
        return jobs


class _Unordered(_Window):
    """Completion order: finished items queue up to be yielded."""

    __slots__ = ("finished", "in_flight")

    def __init__(self, report: Callable[[int], object] | None) -> None:
        super().__init__(report)
        self.in_flight: dict[Job, None] = {}
        self.finished: deque[Job] = deque()

    def add(self, job: Job) -> None:
        # Finished-but-unyielded items count in ``size`` too, or a slow
        # consumer would let the read-ahead grow without bound.
        self.in_flight[job] = None
        self.size += 1

    def pop_ready(self) -> Job | None:
        if self.finished:
            self.size -= 1
            return self.finished.popleft()
        return None

    def job_final(self, job: Job) -> None:
        if self.report is not None:
            self.reported(job)
        if self.in_flight.pop(job, 0) is None:
            self.finished.append(job)
            if self.wakeup is not None:  # a call less when nobody waits
                self.wake()

    def drain(self) -> list[Job]:
        jobs = [*self.in_flight, *self.finished]
        self.in_flight.clear()
        self.finished.clear()
        self.size = 0
        return jobs


class _Source:
    """What feeds one call's window: its input, the call (function, plan,
    context) and the feeder task for async inputs.

    Kept apart from the `MapIterator`, so the feeder task and the jobs never
    hold the iterator itself: ``break`` out of ``async for`` must drop its
    last reference for ``__del__`` to stop the work.
    """

    __slots__ = (
        "context",
        "fed",
        "feeder_done",
        "feeder_scope",
        "fn",
        "input_error",
        "inputs",
        "item_plans",
        "limit",
        "plan",
        "pool",
        "position",
        "room",
        "window",
    )

    def __init__(
        self,
        pool: Pool,
        fn: Callable[..., Any],
        inputs: _Inputs,
        plan: Plan | None,
        item_plans: ItemPlans | None,
        window: _Window,
        context: Context,
    ) -> None:
        self.pool = pool
        self.fn = fn
        self.inputs = inputs
        self.plan = plan
        #: Set when the items choose their limiters (see _per_item).
        self.item_plans = item_plans
        self.window = window
        self.context = context
        self.limit = READ_AHEAD * pool.max_workers
        self.position = 0
        self.fed = False  # the input is exhausted (or failed)
        self.input_error: BaseException | None = None
        self.feeder_scope: anyio.CancelScope | None = None
        self.feeder_done: anyio.Event | None = None
        #: Set when the window has room again (the feeder waits for it).
        self.room: anyio.Event | None = None

    def ready_now(self) -> Job | None:
        """A result ready to yield, reading sync input first; never waits."""
        if not self.inputs.is_async:
            self.top_up()
        job = self.window.pop_ready()
        if job is not None and self.room is not None:
            self.room.set()
            self.room = None
        return job

    async def next(self) -> Job | None:
        """The next item to yield, waiting for one; None at the end."""
        window = self.window
        if self.inputs.is_async and self.feeder_scope is None:
            await self.start_feeder()
        while True:
            job = self.ready_now()
            if job is not None:
                return job
            if not window.size:
                if self.fed:
                    if self.input_error is not None:
                        error, self.input_error = self.input_error, None
                        raise error
                    return None
                room = self.pool.room
                if room is not None and not self.inputs.is_async:
                    # Nothing in flight, and no room under max_pending to
                    # read more: wait in line for it.
                    await room.wait(keep_open=True)
                    try:
                        self.top_up(granted=True)
                    finally:
                        # The input may have had nothing left for the room
                        # we were given, or raised: then it is the next
                        # waiter's.
                        room.changed()
                    continue
            await window.wait()

    def top_up(self, granted: bool = False) -> None:
        """Fill the window from sync inputs: the common case, with no await.

        Under ``max_pending``, only while there is room (``granted``: the
        first item has room already, which ``Room.wait`` gave it)."""
        if self.fed:
            return
        window, inputs, limit = self.window, self.inputs, self.limit
        room = self.pool.room
        if room is None:
            while window.size < limit:
                args = inputs.next_sync()
                if args is None:
                    self.fed = True
                    return
                self.submit(args)
            return
        while window.size < limit and (granted or room.available()):
            granted = False
            args = inputs.next_sync()
            if args is None:
                self.fed = True
                return
            self.submit(args)

    def submit(self, args: tuple[Any, ...]) -> None:
        position = self.position
        if self.item_plans is None:
            job = self.pool.submit(
                self.fn, args, None, self.context.copy(), self.plan, position
            )
        else:
            job = self._submit_chosen(args, position)
        job.position = position
        self.position += 1
        window = self.window
        job.observer = window
        window.add(job)
        if job.state >= FINISHED:  # failed at once (a limiter's own fault)
            if job.state == FAILED:
                # Settled before it had a position: the note is added here.
                job.value.add_note(item_note(position, self.fn, args))
            window.job_final(job)

    def _submit_chosen(self, args: tuple[Any, ...], position: int) -> Job:
        """Submit an item whose limiters its own arguments choose; an error
        while choosing fails the item alone (see _per_item)."""
        item_plans = self.item_plans
        assert item_plans is not None
        context = self.context.copy()
        try:
            plan = item_plans.plan_for(args, context)
        except Exception as error:
            drop_own_frames(error)
            unlimited = item_plans.without_limiters()  # for its events
            return self.pool.failed(self.fn, args, context, error, unlimited, position)
        return self.pool.submit(self.fn, args, None, context, plan, position)

    async def start_feeder(self) -> None:
        self.feeder_scope = anyio.CancelScope()
        self.feeder_done = anyio.Event()
        await self.pool.task_group_ready()
        # Started from the call's context, so the input is read in it too.
        self.context.run(self.pool.spawn, self.feed)

    async def feed(self) -> None:
        window, inputs, limit = self.window, self.inputs, self.limit
        assert self.feeder_scope is not None and self.feeder_done is not None
        try:
            with self.feeder_scope:
                while True:
                    while window.size >= limit:
                        self.room = room = anyio.Event()
                        await room.wait()
                    args = await inputs.next_async()
                    if args is None:
                        break
                    bound = self.pool.room
                    if bound is not None:
                        await bound.wait(keep_open=True)
                    self.submit(args)
                    window.wake()
        except Exception as error:
            # The input failed: the consumer raises it once everything read
            # before it has been yielded.
            self.input_error = error
        except BaseException:
            # Cancelled from outside (the executor is going down): the input
            # was not read to its end, which must not pass for the end.
            self.input_error = ExecutorShutdownError(
                "the executor stopped before map's input was read to its end"
            )
            raise
        finally:
            self.fed = True
            try:
                with anyio.CancelScope(shield=True):
                    await inputs.aclose()
            finally:
                window.wake()
                self.feeder_done.set()

    def stop(self) -> list[Job]:
        """Cancel what is in flight and read no further; return the jobs
        whose tasks have yet to exit."""
        self.fed = True
        stopping = [
            job
            for job in self.window.drain()
            if job.request_cancel() and job.state < FINISHED
        ]
        if self.feeder_scope is not None:
            self.feeder_scope.cancel()
        report, self.window.report = self.window.report, None
        close = getattr(report, "close", None)
        if close is not None:
            close()
        return stopping

    async def aclose(self) -> None:
        stopping = self.stop()
        # Shielded: even when our caller is being cancelled, "none keeps
        # running" must hold by the time the cancellation propagates.
        with anyio.CancelScope(shield=True):
            for job in stopping:
                await job.wait_final()
            if self.feeder_done is not None:
                await self.feeder_done.wait()
            else:
                await self.inputs.aclose()
        self.inputs.close()


@final
class MapIterator(Generic[T]):
    """The async iterator `AsyncExecutor.map_iter` returns.

    Iterate it with ``async for``; ``aclose()`` (or ``async with``) stops it
    early, cancelling the items in flight and waiting until they have
    exited.
    """

    __slots__ = ("__weakref__", "_closed", "_deadline", "_return_exceptions", "_source")

    def __init__(
        self,
        pool: Pool,
        fn: Callable[..., Any],
        iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...],
        plan: Plan | None,
        item_plans: ItemPlans | None,
        *,
        timeout: float | None,
        ordered: bool,
        progress: Progress,
        return_exceptions: bool,
        context: Context,
    ) -> None:
        self._closed = True  # until fully built, so __del__ has nothing to do
        inputs = _Inputs(iterables)
        report = make_reporter(progress, known_length(iterables))
        window: _Window = _Ordered(report) if ordered else _Unordered(report)
        self._source = _Source(pool, fn, inputs, plan, item_plans, window, context)
        self._return_exceptions = bool(return_exceptions)
        # One deadline for the whole iteration, measured from this call.
        self._deadline = math.inf if timeout is None else anyio.current_time() + timeout
        self._closed = False

    def __aiter__(self) -> MapIterator[T]:
        return self

    async def __anext__(self) -> T:
        if self._closed:
            raise StopAsyncIteration
        try:
            if self._deadline == math.inf:
                job = await self._source.next()
            else:
                job = None
                with anyio.CancelScope(deadline=self._deadline) as scope:
                    job = await self._source.next()
                if scope.cancelled_caught:
                    raise TimeoutError("map timed out")
            if job is None:
                await self.aclose()
                raise StopAsyncIteration
            return cast("T", self._value(job))
        except BaseException:
            # The error's traceback keeps this frame: it must not keep the
            # failed item's job, which holds the error, in a cycle.
            job = None
            await self.aclose()
            raise

    async def collect(self) -> list[T]:
        """Every result, in input order: what `AsyncExecutor.map` returns.

        A running ``map`` keeps a graceful shutdown waiting for it.
        """
        source = self._source
        source.pool.hold()
        results: list[T] = []
        append = results.append
        try:
            with anyio.CancelScope(deadline=self._deadline) as scope:
                while True:
                    # Ready results are taken without a coroutine per item.
                    job = source.ready_now()
                    if job is None:
                        job = await source.next()
                        if job is None:
                            break
                    append(job.value if job.state == FINISHED else self._value(job))
            if scope.cancelled_caught:
                raise TimeoutError("map timed out")
        finally:
            job = None  # no cycle through the traceback (see __anext__)
            try:
                await self.aclose()
            finally:
                source.pool.unhold()
        return results

    def _value(self, job: Job) -> Any:
        """An item's result, or raise (or, with return_exceptions, return)
        its exception."""
        state = job.state
        if state == FINISHED:
            return job.value
        if state == FAILED:
            error = job.value
            job.retrieved = True
            if self._return_exceptions:
                return error
            try:
                if isinstance(error, StopIteration | StopAsyncIteration):
                    # Raised as it is, it would end the caller's loop
                    # silently (an async generator turns it into a
                    # RuntimeError the same way).
                    replacement = RuntimeError(
                        f"map item {job.position} raised {type(error).__name__}"
                    )
                    for note in getattr(error, "__notes__", ()):
                        replacement.add_note(note)  # which input it was
                    raise replacement from error
                raise error
            finally:
                # The traceback keeps this frame: no cycle through the job.
                del job, error
        raise cancelled_error(job)

    async def aclose(self) -> None:
        """Stop early: cancel the tasks still in flight, read no more input,
        close the input generators, and return once those tasks have
        exited."""
        self._closed = True
        await self._source.aclose()

    async def __aenter__(self) -> MapIterator[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Only while the executor runs: once it has closed, every job is
        # final and its scopes belong to a finished task group.
        if not self._closed and self._source.pool.accepting:
            self._source.stop()
            self._source.inputs.close()


class _Inputs:
    """``zip`` over sync and async iterables, one argument tuple at a time."""

    __slots__ = ("_iterators", "_zipped", "exhausted", "is_async")

    def __init__(
        self, iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...]
    ) -> None:
        iterators: list[Iterator[Any] | AsyncIterator[Any]] = []
        for position, iterable in enumerate(iterables):
            if isinstance(iterable, AsyncIterable):
                iterators.append(aiter(iterable))
            elif isinstance(iterable, Iterable):
                iterators.append(iter(iterable))
            else:
                raise TypeError(
                    f"iterables[{position}] must be an iterable or async iterable, "
                    f"got {type(iterable).__name__}"
                )
        self.is_async = any(isinstance(it, AsyncIterator) for it in iterators)
        self._iterators = iterators
        self._zipped: Iterator[tuple[Any, ...]] | None = (
            None if self.is_async else zip(*iterators, strict=False)
        )
        self.exhausted = False

    def next_sync(self) -> tuple[Any, ...] | None:
        if self.exhausted or self._zipped is None:
            return None
        args = next(self._zipped, None)
        if args is None:
            self.exhausted = True
        return args

    async def next_async(self) -> tuple[Any, ...] | None:
        if self.exhausted:
            return None
        args: list[Any] = []
        for iterator in self._iterators:
            try:
                if isinstance(iterator, AsyncIterator):
                    args.append(await anext(iterator))
                else:
                    args.append(next(iterator))
            except (StopIteration, StopAsyncIteration):
                self.exhausted = True
                return None
        return tuple(args)

    def close(self) -> None:
        """Close the sync generators we read, so their ``finally`` runs now
        (a no-op for those that ran to the end)."""
        for iterator in self._iterators:
            if isinstance(iterator, types.GeneratorType):
                iterator.close()

    async def aclose(self) -> None:
        """Close the async generators we read, in this task, rather than
        whenever the garbage collector gets to them (trio warns about that)."""
        for iterator in self._iterators:
            if isinstance(iterator, types.AsyncGeneratorType):
                await iterator.aclose()


MapIterator.__module__ = "antflow"  # where users import it from
