"""map_iter: results in input order, input read lazily, bounded read-ahead.

The iterator keeps a window of at most ``2 * max_workers`` submitted futures
in input order. Each step tops the window up from the input, then waits for
the oldest future. The work itself runs in the executor's task group, so
nothing here holds a task group or cancel scope across a ``yield`` (PEP 789):
each ``__anext__`` opens its own deadline scope and closes it before
returning.

Leaving early cancels the window. ``aclose()`` and ``async with`` do it
explicitly; ``break`` out of ``async for`` drops the last reference, and
``__del__`` does it then (CPython finalises at once).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import anyio

from ._future import FAILED, FINISHED, AsyncFuture

if TYPE_CHECKING:
    from ._executor import AsyncExecutor, JobOptions

T = TypeVar("T")

#: Read-ahead, as a multiple of max_workers: enough to keep every worker busy
#: while the consumer handles one result, small enough to bound memory.
READ_AHEAD = 2


@final
class MapIterator(Generic[T]):
    """The async iterator `AsyncExecutor.map_iter` returns."""

    __slots__ = (
        "_closed",
        "_deadline",
        "_executor",
        "_fn",
        "_inputs",
        "_options",
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
    ) -> None:
        self._executor = executor
        self._fn = fn
        self._options = options
        self._inputs = _Inputs(iterables)
        self._window: deque[AsyncFuture[T]] = deque()
        self._window_size = READ_AHEAD * executor.max_workers
        # One deadline for the whole iteration, measured from this call.
        self._deadline = math.inf if timeout is None else anyio.current_time() + timeout
        self._closed = False

    def __aiter__(self) -> MapIterator[T]:
        return self

    async def __anext__(self) -> T:
        if self._closed:
            raise StopAsyncIteration
        window = self._window
        try:
            with anyio.CancelScope(deadline=self._deadline) as scope:
                await self._top_up()
                if not window:
                    self._closed = True
                    raise StopAsyncIteration
                if window[0]._state < FINISHED:
                    await window[0].wait_final()
            if scope.cancelled_caught:
                raise TimeoutError("map timed out")
            return window.popleft().outcome()
        except BaseException:
            await self.aclose()
            raise

    async def _top_up(self) -> None:
        window, inputs, enqueue = self._window, self._inputs, self._executor._enqueue
        fn, options = self._fn, self._options
        while len(window) < self._window_size:
            args = await inputs.next() if inputs.is_async else inputs.next_sync()
            if args is None:
                return
            window.append(enqueue(fn, args, None, options))

    def _stop(self) -> list[AsyncFuture[T]]:
        """Cancel what is still in flight and read no further; return the
        futures whose tasks have yet to exit."""
        self._closed = True
        self._inputs.exhausted = True
        stopping: list[AsyncFuture[T]] = []
        while self._window:
            future = self._window.popleft()
            if future.cancel():
                if not future.done():
                    stopping.append(future)
            elif future._state == FAILED:
                # Superseded by the exception the caller got; don't report
                # it again as "never retrieved".
                future._retrieved = True
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
                    await future.wait_final()

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
        if not self._closed and self._window and self._executor._state < 3:
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
