"""AsyncExecutor: the public API.

Each method checks its arguments and hands the work on: the life cycle
(opening, shutting down, the ``async with`` exit) is `Lifecycle`'s
(``_lifecycle``), the jobs are the `Pool`'s (``_pool``), map calls are
`MapIterator`'s (``_mapping``), and waiting on many futures is ``_wait``'s.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
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

from anyio.lowlevel import checkpoint

from ._checks import check_int, check_timeout, reject_function
from ._future import AsyncFuture
from ._lifecycle import Lifecycle
from ._options import (
    OPTION_NAMES,
    CallOptions,
    MapOptions,
    Plan,
    TaskOptions,
    make_plan,
    parse_options,
)
from ._per_item import ItemPlans, is_chooser
from ._rate import RateLimiter

if TYPE_CHECKING:
    from ._events import EventHub
    from ._mapping import MapIterator, Progress
    from ._pool import Pool
    from ._statistics import ExecutorStatistics
    from ._wait import AsCompleted, WaitStrategy
    from .events import EventHook

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
        max_pending: A bound on queued tasks (an int >= 1, default None: no
            bound): tasks submitted and not yet final that hold no worker,
            waiting for one, for a semaphore or for a rate-limit token.
            At the bound `submit` raises `ExecutorFullError`, `asubmit`
            waits for room, and ``map``/``map_iter`` read no further input
            until there is room. Running tasks do not count.
        on_event: A hook, or a list of hooks, called with each event of
            every job (see ``antflow.events``). Default: none, and then
            events cost nothing.

    Raises:
        TypeError: ``max_workers`` or ``max_pending`` is not an int,
            ``rate_limit`` not a `RateLimiter`, or ``on_event`` not a
            callable (or list of them).
        ValueError: ``max_workers`` or ``max_pending`` < 1.
    """

    def __init__(
        self,
        max_workers: int = 5,
        *,
        rate_limit: RateLimiter | None = None,
        max_pending: int | None = None,
        on_event: EventHook | Sequence[EventHook] | None = None,
    ) -> None:
        check_int("max_workers", max_workers, minimum=1)
        if max_pending is not None:
            check_int("max_pending", max_pending, minimum=1)
        if rate_limit is not None and not isinstance(rate_limit, RateLimiter):
            raise TypeError(
                "rate_limit must be an antflow.RateLimiter, got "
                f"{type(rate_limit).__name__}"
            )
        #: The most tasks that run at once.
        self.max_workers = max_workers
        #: The most tasks that may be queued (None: no bound).
        self.max_pending = max_pending
        self._rate_limit = rate_limit
        self._life = Lifecycle(max_workers, max_pending)
        #: The plan of a call with no option, once the backend is known.
        self._plain_plan: Plan | _Unset | None = _UNSET
        #: Events (``_events``): made when a hook is first set, else None.
        self._hub: EventHub | None = None
        if on_event is not None:
            from ._events import EventHub, hooks_of

            self._hub = EventHub(hooks_of(on_event))

    # -- life cycle ------------------------------------------------------------

    async def __aenter__(self) -> AsyncExecutor:
        await self._life.enter()
        self._plain_plan = make_plan(
            None, self._rate_limit, self._life.backend, self._hub
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return await self._life.exit(exc)

    async def shutdown(
        self,
        wait: bool = True,
        *,
        cancel_futures: bool = False,
        grace: float | None = None,
    ) -> None:
        """Stop accepting work and, optionally, wait for the rest.

        Idempotent. From the first call on, `submit`, `asubmit`, `map` and
        `map_iter` raise `ExecutorShutdownError` (``asubmit`` calls waiting
        for room too).

        Args:
            wait: Return only after every task has finished (their ``finally``
                blocks included). With False, return at once; the work goes
                on in the background and an ``async with`` exit still waits.
            cancel_futures: Cancel queued futures before they start, and
                (unless ``grace`` gives them time) running tasks through
                their cancel scopes.
            grace: Seconds (>= 0) the work left may take before it is
                cancelled as with ``cancel_futures``; None (the default): no
                limit. The period runs in the background from this call,
                whether or not the call waits, and cancelling a waiting call
                does not end it. A later call may shorten it, never extend
                it. (Like a web server's graceful-shutdown timeout.)

        Raises:
            RuntimeError: called from another event loop; or with ``wait``
                from one of this executor's own tasks, which would wait for
                itself (as ``concurrent.futures`` raises "cannot join current
                thread"). Nothing is shut down then.
            BaseException: in manual use, a ``KeyboardInterrupt`` or similar
                that a task raised and that stopped the executor.
        """
        check_timeout(grace, "grace")
        await self._life.shutdown(wait, cancel_futures, grace)

    def statistics(self) -> ExecutorStatistics:
        """A snapshot of the executor's counters (see `ExecutorStatistics`)."""
        from ._statistics import snapshot

        return snapshot(self.max_workers, self._life.pool)

    def _usable(self) -> Pool:
        """The open pool (manual use: the first call starts it)."""
        pool = self._life.usable()
        if self._plain_plan is _UNSET:
            self._plain_plan = make_plan(
                None, self._rate_limit, self._life.backend, self._hub
            )
        return pool

    def _plan(self, options: dict[str, Any]) -> Plan | None:
        if not options:
            return cast("Plan | None", self._plain_plan)
        call = parse_options(options)
        self._need_hub(call)
        return make_plan(call, self._rate_limit, self._life.backend, self._hub)

    def _need_hub(self, call: CallOptions | None) -> None:
        """A call with hooks of its own needs the executor's event hub."""
        if call is not None and call.on_event is not None and self._hub is None:
            from ._events import EventHub

            self._hub = EventHub(())

    def _map_plans(
        self, options: dict[str, Any]
    ) -> tuple[Plan | None, ItemPlans | None]:
        """A map call's plan, or its plans per item when ``semaphore=`` or
        ``rate_limit=`` is a function choosing the limiter for each item."""
        semaphore = options.get("semaphore")
        rate_limit = options.get("rate_limit")
        if not (is_chooser(semaphore) or is_chooser(rate_limit, "rate_limit")):
            return self._plan(options), None
        fixed = {
            name: value
            for name, value in options.items()
            if not (name in ("semaphore", "rate_limit") and is_chooser(value, name))
        }
        base = parse_options(fixed)  # checks the other options
        self._need_hub(base)
        return None, ItemPlans(
            semaphore, rate_limit, base, self._rate_limit, self._life.backend, self._hub
        )

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
        ``task_timeout``, ``on_event``) are options; the others go to ``fn``.

        Args:
            fn: An async function (or any callable returning an awaitable).
            *args: Positional arguments for ``fn``.
            **kwargs: Options (see `TaskOptions`), and keyword arguments for
                ``fn``.

        Returns:
            The task's future.

        Raises:
            ExecutorShutdownError: shutdown has begun.
            ExecutorFullError: ``max_pending`` tasks are queued already (or
                `asubmit` calls wait for room); nothing was submitted.
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
        if pool.room is not None and not pool.room.available():
            raise pool.room.full_error()
        plan = cast("Plan | None", self._plain_plan)
        if kwargs:
            names = kwargs.keys() & OPTION_NAMES
            if names:
                plan = self._plan({name: kwargs.pop(name) for name in names})
            job = pool.submit(fn, args, kwargs or None, copy_context(), plan)
        else:
            job = pool.submit(fn, args, None, copy_context(), plan)
        return AsyncFuture(job)

    @overload
    async def asubmit(
        self,
        fn: Callable[[*Ts], Awaitable[T]],
        /,
        *args: *Ts,
        **options: Unpack[TaskOptions],
    ) -> AsyncFuture[T]: ...
    @overload
    async def asubmit(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> AsyncFuture[T]: ...
    async def asubmit(  # type: ignore[misc]
        self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any
    ) -> AsyncFuture[Any]:
        """`submit`, waiting for room first when ``max_pending`` is reached.

        The awaitable form of `submit`, as anyio's ``send`` is of
        ``send_nowait``: it waits while ``max_pending`` tasks are queued
        (callers are served first come, first served), then submits at once
        and returns the task's future. It is a checkpoint even when there is
        room. Cancelled while it waits, it has submitted nothing. Without
        ``max_pending`` it never waits.

        Args:
            fn: As in `submit`.
            *args: As in `submit`.
            **kwargs: As in `submit`.

        Returns:
            The task's future.

        Raises:
            ExecutorShutdownError: shutdown has begun, before or while it
                waited.
            TypeError, ValueError: as in `submit`, before any waiting.
            RuntimeError: called outside the executor's event loop.
        """
        pool = self._usable()
        if not callable(fn):
            reject_function(fn)
        plan = cast("Plan | None", self._plain_plan)
        names = kwargs.keys() & OPTION_NAMES
        if names:
            plan = self._plan({name: kwargs.pop(name) for name in names})
        if pool.room is None:
            await checkpoint()
            pool = self._usable()  # shut down meanwhile?
        else:
            # Raises if shutdown has begun; once it returns, the room is ours
            # and nothing awaits before we use it.
            await pool.room.wait()
        job = pool.submit(fn, args, kwargs or None, copy_context(), plan)
        return AsyncFuture(job)

    # -- many tasks ----------------------------------------------------------------

    @overload
    async def map(
        self,
        fn: Callable[..., Awaitable[T]],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None = None,
        progress: Progress = None,
        return_exceptions: Literal[False] = False,
        **options: Unpack[MapOptions],
    ) -> list[T]: ...
    @overload
    async def map(
        self,
        fn: Callable[..., Awaitable[T]],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None = None,
        progress: Progress = None,
        return_exceptions: bool,
        **options: Unpack[MapOptions],
    ) -> list[T | Exception]: ...
    async def map(
        self,
        fn: Callable[..., Awaitable[T]],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None = None,
        progress: Progress = None,
        return_exceptions: bool = False,
        **options: Unpack[MapOptions],
    ) -> list[T] | list[T | Exception]:
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

    @overload
    def map_iter(
        self,
        fn: Callable[..., Awaitable[T]],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None = None,
        ordered: bool = True,
        progress: Progress = None,
        return_exceptions: Literal[False] = False,
        **options: Unpack[MapOptions],
    ) -> MapIterator[T]: ...
    @overload
    def map_iter(
        self,
        fn: Callable[..., Awaitable[T]],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None = None,
        ordered: bool = True,
        progress: Progress = None,
        return_exceptions: bool,
        **options: Unpack[MapOptions],
    ) -> MapIterator[T | Exception]: ...
    def map_iter(
        self,
        fn: Callable[..., Awaitable[T]],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None = None,
        ordered: bool = True,
        progress: Progress = None,
        return_exceptions: bool = False,
        **options: Unpack[MapOptions],
    ) -> MapIterator[T] | MapIterator[T | Exception]:
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
        plan, item_plans = self._map_plans(dict(options))
        return MapIterator(
            pool,
            fn,
            iterables,
            plan,
            item_plans,
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
