"""AsyncExecutor: the public API.

Each method checks its arguments and hands the work on: the life cycle
(opening, shutting down, the ``async with`` exit) is `Lifecycle`'s
(``_lifecycle``), the jobs are the `Pool`'s (``_pool``), map calls are
`MapIterator`'s (``_mapping``), and waiting on many futures is ``_wait``'s.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from contextvars import copy_context
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Literal,
    ParamSpec,
    TypeVar,
    TypeVarTuple,
    Unpack,
    cast,
    final,
    overload,
)

from ._checks import check_int, check_timeout, reject_function
from ._future import AsyncFuture
from ._lifecycle import Lifecycle
from ._options import OPTION_NAMES, Plan, TaskOptions, make_plan, parse_options
from ._rate import RateLimiter

if TYPE_CHECKING:
    from ._mapping import MapIterator, Progress
    from ._pool import Pool
    from ._statistics import ExecutorStatistics
    from ._wait import AsCompleted, WaitStrategy

T = TypeVar("T")
P = ParamSpec("P")
Ts = TypeVarTuple("Ts")


@final
class AsyncExecutor:
    """A pool of async workers with a ``concurrent.futures``-style API.

    Use it as ``async with AsyncExecutor(max_workers=10) as executor:``; the
    block's exit waits for all work, like a nursery. Without ``async with``,
    the first `submit` starts it and ``await executor.shutdown()`` stops it.

    Each task runs in a copy of the ``contextvars`` context that was current
    when it was submitted, as ``asyncio.create_task`` and trio's
    ``start_soon`` do.

    Args:
        max_workers: How many tasks may run at once (an int >= 1, default 5).
        rate_limit: A `RateLimiter` every task start of this executor must
            pass, retries included.

    Raises:
        TypeError: ``max_workers`` is not an int, or ``rate_limit`` not a
            `RateLimiter`.
        ValueError: ``max_workers`` < 1.
    """

    def __init__(
        self, max_workers: int = 5, *, rate_limit: RateLimiter | None = None
    ) -> None:
        check_int("max_workers", max_workers, minimum=1)
        if rate_limit is not None and not isinstance(rate_limit, RateLimiter):
            raise TypeError(
                "rate_limit must be an antflow.RateLimiter, got "
                f"{type(rate_limit).__name__}"
            )
        #: The most tasks that run at once.
        self.max_workers = max_workers
        self._rate_limit = rate_limit
        self._life = Lifecycle(max_workers)
        #: The plan of a call with no option, once the backend is known.
        self._plain_plan: Plan | _Unset | None = _UNSET

    # -- life cycle ------------------------------------------------------------

    async def __aenter__(self) -> AsyncExecutor:
        await self._life.enter()
        self._plain_plan = make_plan(None, self._rate_limit, self._life.backend)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return await self._life.exit(exc)

    async def shutdown(
        self, wait: bool = True, *, cancel_futures: bool = False
    ) -> None:
        """Stop accepting work and, optionally, wait for the rest.

        Idempotent. From the first call on, `submit`, `map` and `map_iter`
        raise `ExecutorShutdownError`.

        Args:
            wait: Return only after every task has finished (their ``finally``
                blocks included). With False, return at once; the work goes
                on in the background and an ``async with`` exit still waits.
            cancel_futures: Cancel queued futures before they start and
                running tasks through their cancel scopes.

        Raises:
            RuntimeError: called from another event loop; or with ``wait``
                from one of this executor's own tasks, which would wait for
                itself (as ``concurrent.futures`` raises "cannot join current
                thread"). Nothing is shut down then.
            BaseException: in manual use, a ``KeyboardInterrupt`` or similar
                that a task raised and that stopped the executor.
        """
        await self._life.shutdown(wait, cancel_futures)

    def statistics(self) -> ExecutorStatistics:
        """A snapshot of the executor's counters (see `ExecutorStatistics`)."""
        from ._statistics import snapshot

        return snapshot(self.max_workers, self._life.pool)

    def _usable(self) -> Pool:
        """The open pool (manual use: the first call starts it)."""
        pool = self._life.usable()
        if self._plain_plan is _UNSET:
            self._plain_plan = make_plan(None, self._rate_limit, self._life.backend)
        return pool

    def _plan(self, options: dict[str, Any]) -> Plan | None:
        if not options:
            return cast("Plan | None", self._plain_plan)
        return make_plan(parse_options(options), self._rate_limit, self._life.backend)

    # -- one task ----------------------------------------------------------------

    @overload
    def submit(
        self,
        fn: Callable[[*Ts], Awaitable[T]],
        /,
        *args: *Ts,
        **options: Unpack[TaskOptions],
    ) -> AsyncFuture[T]: ...
    @overload
    def submit(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> AsyncFuture[T]: ...
    # mypy cannot match a TypeVarTuple overload to any implementation (a known
    # limitation), hence the ignore; pyright checks the same overloads cleanly.
    def submit(  # type: ignore[misc]
        self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any
    ) -> AsyncFuture[Any]:
        """Schedule ``fn(*args, **kwargs)`` and return its future at once.

        Keyword arguments named like the options of `TaskOptions`
        (``semaphore``, ``rate_limit``, ``retries``, ``retry_delay``,
        ``retry_on``, ``retry_max_delay``, ``retry_jitter``,
        ``task_timeout``) are options; the others go to ``fn``.

        Args:
            fn: An async function (or any callable returning an awaitable).
            *args: Positional arguments for ``fn``.
            **kwargs: Options (see `TaskOptions`), and keyword arguments for
                ``fn``.

        Returns:
            The task's future.

        Raises:
            ExecutorShutdownError: shutdown has begun.
            TypeError: ``fn`` is not callable or is a coroutine object; an
                option of the wrong type.
            ValueError: an option out of range (negative, NaN).
            RuntimeError: called outside the executor's event loop.

        Typing: positional arguments are checked against ``fn``; so are
        keyword arguments for ``fn`` when no option is passed alongside them
        (for both at once, bind the arguments with ``functools.partial``).
        """
        life = self._life
        pool = life.open_pool
        if pool is None or not life.on_own_loop():
            pool = self._usable()
        if not callable(fn):
            reject_function(fn)
        plan = cast("Plan | None", self._plain_plan)
        if kwargs:
            names = kwargs.keys() & OPTION_NAMES
            if names:
                plan = self._plan({name: kwargs.pop(name) for name in names})
            job = pool.submit(fn, args, kwargs or None, copy_context(), plan)
        else:
            job = pool.submit(fn, args, None, copy_context(), plan)
        return AsyncFuture(job)

    # -- many tasks ----------------------------------------------------------------

    async def map(
        self,
        fn: Callable[..., Awaitable[T]],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None = None,
        progress: Progress = None,
        return_exceptions: bool = False,
        **options: Unpack[TaskOptions],
    ) -> list[T]:
        """Run ``fn`` over the items of ``iterables``; return the results.

        Results come in input order, like ``list(concurrent.futures.
        Executor.map(...))``; several iterables are zipped. Input is read
        lazily, at most ``2 * max_workers`` items ahead. A running ``map``
        keeps the executor open during a graceful shutdown. Every item runs
        in a copy of the context current at this call.

        Args:
            fn: An async function taking one item from each iterable.
            *iterables: Sync or async iterables.
            timeout: One deadline in seconds for the whole call.
            progress: True for a progress bar on stderr, or a callable
                ``progress(done, total)`` called after each finished item
                (``total`` is None when the input has no length).
            return_exceptions: As in ``asyncio.gather``: a failed item's
                exception object takes its place in the results (after its
                retries), and the other items go on.
            **options: Per-item options, as in `submit` (see `TaskOptions`).

        Returns:
            The results, in input order.

        Raises:
            TimeoutError: ``timeout`` expired; the map's tasks are cancelled.
            Exception: the first failed item's exception (in input order),
                unless ``return_exceptions``; the map's other tasks are
                cancelled and have exited.
        """
        results = self.map_iter(
            fn,
            *iterables,
            timeout=timeout,
            progress=progress,
            return_exceptions=return_exceptions,
            **options,
        )
        return await results.collect()

    def map_iter(
        self,
        fn: Callable[..., Awaitable[T]],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None = None,
        ordered: bool = True,
        progress: Progress = None,
        return_exceptions: bool = False,
        **options: Unpack[TaskOptions],
    ) -> MapIterator[T]:
        """Like `map`, but yield each result as soon as it is ready.

        With ``ordered=True`` (the default) a result is yielded once it and
        every result before it are ready; with ``ordered=False``, in
        completion order. A ready result is yielded at once, never held back
        while more input is read. Use with ``async for`` (or ``async with``
        around it); leaving the loop early (``break``, an exception,
        ``aclose()``) cancels the work still in flight and closes the input
        generators it stopped reading. Arguments are checked at this call,
        not at the first step.

        Args:
            fn: An async function taking one item from each iterable.
            *iterables: Sync or async iterables, read lazily.
            timeout: One deadline in seconds for the whole iteration,
                measured from this call.
            ordered: Yield in input order (True) or completion order (False).
            progress: As in `map`.
            return_exceptions: As in `map`.
            **options: Per-item options, as in `submit` (see `TaskOptions`).

        Returns:
            An async iterator of results (a `MapIterator`).

        Raises:
            ExecutorShutdownError: shutdown has begun.
            TypeError, ValueError: a bad argument, named in the message.
        """
        from ._mapping import MapIterator

        pool = self._usable()
        if not callable(fn):
            reject_function(fn)
        check_timeout(timeout)
        if not iterables:
            raise TypeError("map_iter() needs at least one iterable")
        plan = self._plan(dict(options))
        return MapIterator(
            pool,
            fn,
            iterables,
            plan,
            timeout=timeout,
            ordered=ordered,
            progress=progress,
            return_exceptions=return_exceptions,
            context=copy_context(),
        )

    def as_completed(
        self, futures: Iterable[AsyncFuture[T]], timeout: float | None = None
    ) -> AsCompleted[T]:
        """Yield the futures as they finish (already-finished ones first).

        Args:
            futures: The futures to watch; duplicates are yielded once.
            timeout: One deadline in seconds for the whole iteration.

        Raises:
            TimeoutError: from the iteration, once ``timeout`` has expired.
        """
        from ._wait import AsCompleted

        return AsCompleted(futures, timeout)

    async def wait(
        self,
        futures: Iterable[AsyncFuture[T]],
        timeout: float | None = None,
        return_when: WaitStrategy
        | Literal[
            "FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED"
        ] = "ALL_COMPLETED",
    ) -> tuple[set[AsyncFuture[T]], set[AsyncFuture[T]]]:
        """Wait for futures; return ``(done, pending)``.

        Args:
            futures: The futures to wait for.
            timeout: Seconds to wait at most.
            return_when: A `WaitStrategy`, or one of the ``concurrent.futures``
                constants ``FIRST_COMPLETED``, ``FIRST_EXCEPTION``,
                ``ALL_COMPLETED``.

        Raises:
            TimeoutError: ``ALL_COMPLETED`` and the timeout expired. The other
                strategies return the partition as it stands.
        """
        from ._wait import wait

        return await wait(futures, timeout, return_when)

    def __repr__(self) -> str:
        phase = self._life.phase.name.lower().replace("_", " ")
        return f"<AsyncExecutor max_workers={self.max_workers} {phase}>"


class _Unset:
    """Not computed yet."""


_UNSET: Final = _Unset()
