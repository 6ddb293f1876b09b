"""Per-task limiters, and how a task waits for one without holding a worker.

``submit(..., semaphore=x)`` accepts any async context manager, but the
limiters people actually pass have a non-blocking acquire, and for those we
can do better than ``async with x:`` inside a worker: a worker that pulled a
job whose limiter is full would sit idle while unrelated work queues behind
it (head-of-line blocking). Instead the worker tries the limiter without
blocking; if it is full, the job is *parked* in a ``WaitingLine`` for that
limiter and the worker moves on. One task per limiter (not per job) waits for
tokens in arrival order and hands each job, token in hand, back to the
executor, which runs it before anything still queued.

Tokens are borrowed on behalf of the job, not of a task: the line's task
acquires, a worker releases. ``CapacityLimiter`` checks its borrower, so we
use its ``*_on_behalf_of`` methods with the job as the borrower.

Any other async context manager (a lock, a user-defined limiter) has no
non-blocking path we can trust to be released from another task, so it is
entered and exited inside the worker, around each attempt.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import anyio


class Strategy(Protocol):
    """How to take and give back one token of a particular kind of limiter."""

    #: False when the limiter can only be used as ``async with`` in a worker.
    parks: bool

    def try_acquire(self, limiter: Any, owner: object) -> bool: ...
    async def acquire(self, limiter: Any, owner: object) -> None: ...
    def release(self, limiter: Any, owner: object) -> None: ...


class _Borrowing:
    """``CapacityLimiter`` (anyio's or trio's): tokens are lent to an owner."""

    parks = True

    def __init__(self, *would_block: type[Exception]) -> None:
        self._would_block = would_block

    def try_acquire(self, limiter: Any, owner: object) -> bool:
        try:
            limiter.acquire_on_behalf_of_nowait(owner)
        except self._would_block:
            return False
        return True

    async def acquire(self, limiter: Any, owner: object) -> None:
        await limiter.acquire_on_behalf_of(owner)

    def release(self, limiter: Any, owner: object) -> None:
        limiter.release_on_behalf_of(owner)


class _Counting:
    """``anyio.Semaphore`` and ``trio.Semaphore``: anyone may release."""

    parks = True

    def __init__(self, *would_block: type[Exception]) -> None:
        self._would_block = would_block

    def try_acquire(self, limiter: Any, owner: object) -> bool:
        try:
            limiter.acquire_nowait()
        except self._would_block:
            return False
        return True

    async def acquire(self, limiter: Any, owner: object) -> None:
        await limiter.acquire()

    def release(self, limiter: Any, owner: object) -> None:
        limiter.release()


class _AsyncioSemaphore:
    """``asyncio.Semaphore`` (and ``BoundedSemaphore``), which has no public
    non-blocking acquire. When it is not ``locked()``, ``acquire()`` completes
    without suspending, so driving its coroutine one step takes the token
    synchronously."""

    parks = True

    def try_acquire(self, limiter: Any, owner: object) -> bool:
        if limiter.locked():
            return False
        step = limiter.acquire()
        try:
            step.send(None)
        except StopIteration:
            return True
        # Unreachable with CPython's semaphore; stay correct if it changes.
        step.close()
        return False

    async def acquire(self, limiter: Any, owner: object) -> None:
        await limiter.acquire()

    def release(self, limiter: Any, owner: object) -> None:
        limiter.release()


class _ContextManager:
    """Any other async context manager: used as ``async with`` in the worker."""

    parks = False

    def try_acquire(self, limiter: Any, owner: object) -> bool:  # pragma: no cover
        raise AssertionError("context-manager limiters are never parked")

    async def acquire(self, limiter: Any, owner: object) -> None:  # pragma: no cover
        raise AssertionError("context-manager limiters are never parked")

    def release(self, limiter: Any, owner: object) -> None:  # pragma: no cover
        raise AssertionError("context-manager limiters are never parked")


_CONTEXT_MANAGER = _ContextManager()
_ASYNCIO_SEMAPHORE = _AsyncioSemaphore()
_strategies: dict[tuple[type[object], str], Strategy] = {}


def strategy_for(limiter: object, backend: str) -> Strategy:
    """Pick how to use ``limiter`` on ``backend``; ``TypeError`` if we can't."""
    kind = type(limiter)
    found = _strategies.get((kind, backend))
    if found is None:
        found = _strategies[kind, backend] = _classify(kind, backend)
    module = kind.__module__
    if backend == "trio" and module.startswith("asyncio"):
        raise TypeError(
            f"semaphore: an asyncio {kind.__name__} cannot be used on trio; "
            "use anyio.CapacityLimiter or trio.Semaphore"
        )
    if backend == "asyncio" and module.startswith("trio"):
        raise TypeError(
            f"semaphore: a trio {kind.__name__} cannot be used on asyncio; "
            "use anyio.CapacityLimiter or asyncio.Semaphore"
        )
    return found


def _classify(kind: type[object], backend: str) -> Strategy:
    if issubclass(kind, anyio.CapacityLimiter):
        return _Borrowing(anyio.WouldBlock)
    if issubclass(kind, anyio.Semaphore):
        return _Counting(anyio.WouldBlock)
    # asyncio is imported by whoever made an asyncio semaphore; don't import
    # it ourselves (it would double the cost of ``import antflow`` on trio).
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and issubclass(kind, asyncio.Semaphore):
        return _ASYNCIO_SEMAPHORE
    if kind.__module__.startswith("trio"):
        import trio

        if issubclass(kind, trio.CapacityLimiter):
            return _Borrowing(trio.WouldBlock)
        if issubclass(kind, trio.Semaphore):
            return _Counting(trio.WouldBlock)
    if hasattr(kind, "__aenter__") and hasattr(kind, "__aexit__"):
        return _CONTEXT_MANAGER
    raise TypeError(
        f"semaphore must be an async context manager such as anyio.CapacityLimiter, "
        f"got {kind.__name__}"
    )


class WaitingLine:
    """The jobs waiting for one limiter, served in arrival order by one task."""

    __slots__ = ("_on_empty", "_on_token", "jobs", "limiter", "scope", "strategy")

    def __init__(
        self,
        limiter: Any,
        strategy: Strategy,
        on_token: Callable[[Any], None],
        on_empty: Callable[[WaitingLine], None],
    ) -> None:
        self.limiter = limiter
        self.strategy = strategy
        self.jobs: deque[Any] = deque()
        self.scope = anyio.CancelScope()
        self._on_token = on_token
        self._on_empty = on_empty

    def add(self, job: Any) -> None:
        """Queue ``job`` in submission order.

        Workers that took jobs in order may reach this point in another
        order (trio runs ready tasks in random order), so the line sorts by
        ``sequence_id``; it is almost always appending.
        """
        jobs = self.jobs
        position = len(jobs)
        while position and jobs[position - 1].sequence_id > job.sequence_id:
            position -= 1
        jobs.insert(position, job)

    async def serve(self) -> None:
        """Acquire a token for each waiting job in turn and hand it over."""
        jobs, limiter, strategy = self.jobs, self.limiter, self.strategy
        try:
            with self.scope:
                while jobs:
                    job = jobs[0]
                    if job.done():
                        # Cancelled while it waited: don't spend a token on it.
                        jobs.popleft()
                        continue
                    await strategy.acquire(limiter, job)
                    # Meanwhile add() may have put an older job in front, or a
                    # sweep (shutdown) may have emptied the line.
                    if jobs and jobs[0] is job:
                        jobs.popleft()
                    elif job in jobs:
                        jobs.remove(job)
                    if job.done():
                        # Cancelled while we waited for it: pass the token on.
                        strategy.release(limiter, job)
                    else:
                        self._on_token(job)
        finally:
            self._on_empty(self)


class _Pacing:
    """`antflow.RateLimiter`: a token is a start slot; nothing to give back."""

    parks = True

    def try_acquire(self, limiter: Any, owner: object) -> bool:
        return bool(limiter.try_acquire())

    async def acquire(self, limiter: Any, owner: Any) -> None:
        # Wait for the token to be there before taking it, so a job cancelled
        # meanwhile leaves it to the next one (a start slot cannot be given
        # back once taken).
        while True:
            await limiter.wait_available()
            if owner.done() or limiter.try_acquire():
                return

    def release(self, limiter: Any, owner: object) -> None:
        pass


PACING: Strategy = _Pacing()
