"""map_iter: results streamed from a bounded window of submitted items.

The iterator keeps a window of at most ``2 * max_workers`` submitted futures.
Each step tops the window up from the input, then waits for the result to
yield: the oldest one (``ordered=True``) or whichever finishes first
(``ordered=False``). The work runs in the executor's task group, so nothing
here holds a task group or cancel scope across a ``yield`` (PEP 789): each
``__anext__`` opens its own deadline scope and closes it before returning.

Leaving early cancels the window. ``aclose()`` and ``async with`` do it and
wait until the cancelled tasks have exited; ``break`` out of ``async for``
drops the last reference, and ``__del__`` cancels them then (CPython
finalises at once), without waiting.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import anyio

from ._future import CANCELLED, FAILED, FINISHED, AsyncFuture, weak_callback
from ._progress import Progress, known_length, make_reporter

if TYPE_CHECKING:
    from ._executor import AsyncExecutor
    from ._options import JobOptions

__all__ = ["MapIterator", "Progress"]

T = TypeVar("T")

#: Read-ahead, as a multiple of max_workers: enough to keep every worker busy
#: while the consumer handles one result, small enough to bound memory.
READ_AHEAD = 2


@final
class MapIterator(Generic[T]):
    """The async iterator `AsyncExecutor.map_iter` returns."""

    __slots__ = (
        "__weakref__",
        "_closed",
        "_deadline",
        "_done",
        "_executor",
        "_finished",
        "_fn",
        "_inputs",
        "_options",
        "_ordered",
        "_report",
        "_wakeup",
        "_watch",
        "_window",
        "_window_size",
    )

    def __init__(
        self,
        executor: AsyncExecutor,
        fn: Callable[..., Any],
        iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...],
        options: JobOptions | None,
        timeout: float | None,
        ordered: bool = True,
        progress: Progress = None,
    ) -> None:
        self._closed = True  # until fully built, so __del__ has nothing to do
        self._executor = executor
        self._fn = fn
        self._options = options
        self._inputs = _Inputs(iterables)
        self._ordered = bool(ordered)
        self._report = make_reporter(progress, known_length(iterables))
        self._done = 0  # items finished with a result or an exception
        # Done callbacks serve only progress reports and completion order.
        self._watch = (
            weak_callback(self._on_done)
            if self._report is not None or not self._ordered
            else None
        )
        # In flight, oldest first. Unordered mode removes from the middle,
        # so the window is a dict there (insertion-ordered, O(1) removal).
        self._window: deque[AsyncFuture[T]] | dict[AsyncFuture[T], None] = (
            deque() if ordered else {}
        )
        self._finished: deque[AsyncFuture[T]] = deque()  # unordered mode
        self._wakeup: anyio.Event | None = None  # unordered mode
        self._window_size = READ_AHEAD * executor.max_workers
        # One deadline for the whole iteration, measured from this call.
        self._deadline = math.inf if timeout is None else anyio.current_time() + timeout
        self._closed = False

    def __aiter__(self) -> MapIterator[T]:
        return self

    async def __anext__(self) -> T:
        if self._closed:
            raise StopAsyncIteration
        future: AsyncFuture[T] | None = None
        try:
            if self._deadline == math.inf:
                future = await self._step()
            else:
                with anyio.CancelScope(deadline=self._deadline) as scope:
                    future = await self._step()
                if scope.cancelled_caught:
                    raise TimeoutError("map timed out")
            if future is None:
                await self.aclose()
                raise StopAsyncIteration
            return future._outcome()
        except BaseException:
            await self.aclose()
            raise

    async def _collect(self) -> list[T]:
        """Every result, in input order: what `AsyncExecutor.map` returns.

        The steps of ``async for``, without an ``__anext__`` coroutine per
        item: the results that are ready are taken in one go.
        """
        assert self._ordered
        window = self._window
        assert isinstance(window, deque)
        results: list[T] = []
        try:
            with anyio.CancelScope(deadline=self._deadline) as scope:
                while True:
                    if self._inputs.is_async:
                        await self._top_up_async()
                    else:
                        self._top_up()
                    if not window:
                        break
                    if window[0]._state < FINISHED:
                        await window[0]._wait_final()
                    while window and window[0]._state >= FINISHED:
                        head = window.popleft()
                        # The value as it is, or _outcome() raises the error.
                        results.append(
                            head._value if head._state == FINISHED else head._outcome()
                        )
            if scope.cancelled_caught:
                raise TimeoutError("map timed out")
        finally:
            await self.aclose()
        return results

    async def _step(self) -> AsyncFuture[T] | None:
        """Top the window up, then wait for the next result to yield."""
        if self._inputs.is_async:
            await self._top_up_async()
        else:
            self._top_up()
        if not self._ordered:
            return await self._next_done()
        window = self._window
        assert isinstance(window, deque)
        if not window:
            return None
        if window[0]._state < FINISHED:
            await window[0]._wait_final()
        return window.popleft()

    async def _next_done(self) -> AsyncFuture[T] | None:
        while not self._finished:
            if not self._window:
                return None
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
        return self._finished.popleft()

    def _on_done(self, future: AsyncFuture[T]) -> None:
        if future._state != CANCELLED and self._report is not None:
            self._done += 1
            self._report(self._done)
        window = self._window
        if isinstance(window, dict) and window.pop(future, 0) is None:
            self._finished.append(future)
            if self._wakeup is not None:
                self._wakeup.set()

    def _top_up(self) -> None:
        """Fill the window from sync inputs: the common case, with no await."""
        window, finished, inputs = self._window, self._finished, self._inputs
        # Finished but not yet yielded (unordered) results count too, or a
        # slow consumer would let the read-ahead grow without bound.
        while len(window) + len(finished) < self._window_size:
            args = inputs.next_sync()
            if args is None:
                return
            self._submit(args)

    async def _top_up_async(self) -> None:
        window, finished, inputs = self._window, self._finished, self._inputs
        while len(window) + len(finished) < self._window_size:
            args = await inputs.next()
            if args is None:
                return
            self._submit(args)

    def _submit(self, args: tuple[Any, ...]) -> None:
        future: AsyncFuture[T] = self._executor._enqueue(
            self._fn, args, None, self._options
        )
        window = self._window
        if isinstance(window, deque):
            window.append(future)
        else:
            window[future] = None
        if self._watch is not None:
            future.add_done_callback(self._watch)

    def _stop(self) -> list[AsyncFuture[T]]:
        """Cancel what is in flight and read no further; return the futures
        whose tasks have yet to exit."""
        self._closed = True
        self._inputs.exhausted = True
        window = list(self._window)
        self._window.clear()
        stopping: list[AsyncFuture[T]] = []
        for future in [*window, *self._finished]:
            if future.cancel():
                if not future.done():
                    stopping.append(future)
            elif future._state == FAILED:
                # Superseded by the exception the caller got, or never asked
                # for: don't report it as "never retrieved".
                future._retrieved = True
        self._finished.clear()
        report, self._report = self._report, None
        close = getattr(report, "close", None)
        if close is not None:
            close()
        return stopping

    async def aclose(self) -> None:
        """Stop early: cancel the tasks still in flight, read no more input,
        and return once those tasks have exited."""
        stopping = self._stop()
        if stopping:
            # Shielded: even when our caller is being cancelled, "none keeps
            # running" must hold by the time the cancellation propagates.
            with anyio.CancelScope(shield=True):
                for future in stopping:
                    await future._wait_final()
        await self._inputs.aclose()

    async def __aenter__(self) -> MapIterator[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Only while the executor runs: once it has closed, every future is
        # final and its scopes belong to a finished task group.
        if not self._closed and not self._executor._is_closed():
            self._stop()


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
        if self.exhausted:
            return None
        assert self._zipped is not None
        args = next(self._zipped, None)
        if args is None:
            self.exhausted = True
        return args

    async def aclose(self) -> None:
        """Finalise the async iterators we stopped reading, so an async
        generator's ``finally`` runs now, in this task, rather than whenever
        the garbage collector gets to it (trio warns about that)."""
        iterators, self._iterators = self._iterators, []
        for iterator in iterators:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    async def next(self) -> tuple[Any, ...] | None:
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
