"""Waiting on many futures: ``as_completed`` and ``wait``.

Both register one done-callback per future and sleep on a single event, so
waiting on n futures costs O(n) in total: no task, no per-step scan. On exit
(normal, timeout, cancellation or ``break``) the callbacks are removed, so a
watcher never keeps references alive through futures it stopped watching.
"""

from __future__ import annotations

import enum
import math
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar, final

import anyio

from ._checks import check_timeout
from ._future import AsyncFuture, job_of
from ._job import FAILED

T = TypeVar("T")


def weak_callback(
    method: Callable[[AsyncFuture[Any]], None],
) -> Callable[[AsyncFuture[Any]], None]:
    """A done callback that calls ``method`` only while its object lives.

    ``as_completed`` watches many futures this way, so the futures don't keep
    it alive: ``break`` out of the loop drops the iterator at once and its
    ``__del__`` unregisters it.
    """
    ref = weakref.WeakMethod(method)

    def call(future: AsyncFuture[Any]) -> None:
        bound = ref()
        if bound is not None:
            bound(future)

    return call


class WaitStrategy(enum.Enum):
    """When `AsyncExecutor.wait` returns. The values are the names of the
    ``concurrent.futures`` constants, so those are accepted too."""

    FIRST_COMPLETED = "FIRST_COMPLETED"
    FIRST_EXCEPTION = "FIRST_EXCEPTION"
    ALL_COMPLETED = "ALL_COMPLETED"


def _strategy(return_when: object) -> WaitStrategy:
    try:
        return WaitStrategy(return_when)
    except ValueError:
        raise ValueError(
            "return_when must be a WaitStrategy or one of 'FIRST_COMPLETED', "
            f"'FIRST_EXCEPTION', 'ALL_COMPLETED'; got {return_when!r}"
        ) from None


def _distinct(futures: Iterable[AsyncFuture[T]]) -> dict[AsyncFuture[T], None]:
    if not isinstance(futures, Iterable):
        raise TypeError(
            f"futures must be an iterable of futures, got {type(futures).__name__}"
        )
    distinct = dict.fromkeys(futures)  # ordered, duplicates dropped
    for future in distinct:
        if not isinstance(future, AsyncFuture):
            raise TypeError(
                f"futures must hold AsyncFuture objects, got {type(future).__name__}"
            )
    return distinct


def _check_loops(pending: Iterable[AsyncFuture[T]]) -> None:
    """Waiting for a future of another event loop would never end."""
    for future in pending:
        if not job_of(future).pool.on_own_loop():
            raise RuntimeError(
                f"{future!r} belongs to another event loop; wait for it on the "
                "loop that runs its executor"
            )


@final
class AsCompleted(Generic[T]):
    """The async iterator `AsyncExecutor.as_completed` returns."""

    __slots__ = (
        "__weakref__",
        "_deadline",
        "_event",
        "_finished",
        "_pending",
        "_timeout",
        "_watch",
    )

    def __init__(
        self, futures: Iterable[AsyncFuture[T]], timeout: float | None
    ) -> None:
        self._pending: dict[AsyncFuture[T], None] = {}  # for __del__ if we raise
        check_timeout(timeout)
        distinct = _distinct(futures)
        self._finished: deque[AsyncFuture[T]] = deque(f for f in distinct if f.done())
        self._pending = dict.fromkeys(f for f in distinct if not f.done())
        self._event: anyio.Event | None = None
        self._timeout = timeout
        self._deadline: float | None = None
        self._watch = weak_callback(self._on_done)
        for future in self._pending:
            future.add_done_callback(self._watch)

    def _on_done(self, future: AsyncFuture[T]) -> None:
        if self._pending.pop(future, 0) is None:
            self._finished.append(future)
            if self._event is not None:
                self._event.set()

    def __aiter__(self) -> AsCompleted[T]:
        return self

    async def __anext__(self) -> AsyncFuture[T]:
        if self._deadline is None:
            # The deadline runs from the first step: the call itself may
            # happen outside any event loop.
            try:
                _check_loops(self._pending)
            except RuntimeError:
                self.close()
                raise
            timeout = self._timeout
            self._deadline = (
                math.inf if timeout is None else anyio.current_time() + timeout
            )
        while not self._finished:
            if not self._pending:
                raise StopAsyncIteration
            self._event = event = anyio.Event()
            try:
                with anyio.CancelScope(deadline=self._deadline) as scope:
                    await event.wait()
            except BaseException:
                self.close()
                raise
            if scope.cancelled_caught and not self._finished:
                self.close()
                raise TimeoutError("as_completed timed out")
        return self._finished.popleft()

    def close(self) -> None:
        """Stop watching: unregister from the futures still pending."""
        for future in self._pending:
            future.remove_done_callback(self._watch)
        self._pending.clear()
        self._finished = deque()

    async def aclose(self) -> None:
        """Stop watching (same as `close`)."""
        self.close()

    async def __aenter__(self) -> AsCompleted[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class _Waiter:
    """The state of one ``wait`` call: how many are left, whether one failed."""

    __slots__ = ("event", "failed", "left", "strategy", "total")

    def __init__(self, strategy: WaitStrategy, distinct: dict[AsyncFuture[T], None]):
        self.strategy = strategy
        self.total = len(distinct)
        self.left = sum(1 for f in distinct if not f.done())
        self.failed = any(job_of(f).state == FAILED for f in distinct)
        self.event = anyio.Event()

    def satisfied(self) -> bool:
        if not self.left:
            return True
        if self.strategy is WaitStrategy.FIRST_COMPLETED:
            return self.left < self.total
        if self.strategy is WaitStrategy.FIRST_EXCEPTION:
            return self.failed
        return False

    def on_done(self, future: AsyncFuture[T]) -> None:
        self.left -= 1
        self.failed = self.failed or job_of(future).state == FAILED
        if self.satisfied():
            self.event.set()


async def wait(
    futures: Iterable[AsyncFuture[T]],
    timeout: float | None = None,
    return_when: WaitStrategy | str = WaitStrategy.ALL_COMPLETED,
) -> tuple[set[AsyncFuture[T]], set[AsyncFuture[T]]]:
    """See `AsyncExecutor.wait`."""
    check_timeout(timeout)
    strategy = _strategy(return_when)
    distinct = _distinct(futures)
    pending = [f for f in distinct if not f.done()]
    _check_loops(pending)
    waiter = _Waiter(strategy, distinct)
    timed_out = False
    if not waiter.satisfied():
        for future in pending:
            future.add_done_callback(waiter.on_done)
        try:
            with anyio.move_on_after(timeout) as scope:
                await waiter.event.wait()
            timed_out = scope.cancelled_caught
        finally:
            for future in pending:
                future.remove_done_callback(waiter.on_done)
    done = {f for f in distinct if f.done()}
    if (
        timed_out
        and strategy is WaitStrategy.ALL_COMPLETED
        and len(done) < len(distinct)
    ):
        raise TimeoutError("wait timed out")
    return done, {f for f in distinct if not f.done()}
