"""AsyncExecutor: the public API and the life cycle around the scheduler.

Life cycle: NEW -> OPEN -> SHUTTING_DOWN -> CLOSED.

* ``async with`` enters the executor's task group in the caller's task, as a
  nursery would be. Without ``async with``, the first ``submit`` starts a
  detached runner task that hosts the group (see ``_compat``).
* ``shutdown()`` stops new submissions; the executor *closes* once no future
  is outstanding: the queue closes, workers exit, and the task group
  finishes.
* If the ``async with`` block raises or is cancelled, everything is
  cancelled at once (``_abort``), and the block's exception propagates as it
  is.
* Whatever happens, ``_teardown`` runs last and makes every future final.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
    NoReturn,
    ParamSpec,
    TypeVar,
    TypeVarTuple,
    cast,
    final,
    overload,
)

import anyio

from ._compat import backend_name, loop_checker, loop_token, spawn_detached
from ._exceptions import ExecutorShutdownError
from ._future import CANCELLED, FAILED, FINISHED, AsyncFuture, check_timeout
from ._options import JobOptions, make_options
from ._rate import RateLimiter
from ._retry import DEFAULT_RETRY_DELAY
from ._scheduler import Scheduler

if TYPE_CHECKING:
    from ._mapping import MapIterator, Progress
    from ._statistics import ExecutorStatistics
    from ._wait import AsCompleted, WaitStrategy

T = TypeVar("T")
P = ParamSpec("P")
Ts = TypeVarTuple("Ts")
RetryOn = (
    type[BaseException]
    | tuple[type[BaseException], ...]
    | Callable[[BaseException], bool]
)

_NEW, _OPEN, _SHUTTING_DOWN, _CLOSED = range(4)


@final
class AsyncExecutor(Scheduler):
    """A pool of async workers with a ``concurrent.futures``-style API.

    Use it as ``async with AsyncExecutor(max_workers=10) as executor:``; the
    block's exit waits for all work, like a nursery. Without ``async with``,
    the first `submit` starts it and ``await executor.shutdown()`` stops it.

    Args:
        max_workers: How many tasks may run at once (an int >= 1).
        rate_limit: A `RateLimiter` every task start of this executor must
            pass, retries included.
    """

    def __init__(
        self, max_workers: int = 5, *, rate_limit: RateLimiter | None = None
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int):
            raise TypeError(
                f"max_workers must be an int, got {type(max_workers).__name__}"
            )
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if rate_limit is not None and not isinstance(rate_limit, RateLimiter):
            raise TypeError(
                f"rate_limit must be an antflow.RateLimiter, got {type(rate_limit).__name__}"
            )
        super().__init__(max_workers)
        self._rate_limit = rate_limit
        self._state = _NEW
        self._token: Any = None
        self._backend = ""
        self._detached = False
        self._plain_options: JobOptions | None = None  # for calls with no options
        self._stopped: anyio.Event | None = None  # our tasks have all exited
        self._done: anyio.Event | None = None  # torn down: every future final
        self._drained: anyio.Event | None = None  # nothing outstanding any more
        self._crash: BaseException | None = None  # what ended a detached runner

    # -- life cycle ------------------------------------------------------------

    async def __aenter__(self) -> AsyncExecutor:
        if self._state != _NEW:
            raise RuntimeError(
                "an AsyncExecutor can be started only once; make a new one"
            )
        self._open()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        task_group = self._task_group
        assert task_group is not None
        raised_here: BaseException | None = None
        if exc is None:
            try:
                # Like a nursery: running tasks may still submit more work,
                # and that is waited for too, before shutdown begins.
                await self._drain()
                await self.shutdown(wait=True)
            except BaseException as error:  # cancelled while draining
                exc = raised_here = error
        if exc is not None:
            self._abort()
        try:
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                # The task group must see the cancellation to know whether it
                # was its own (then it absorbs it) or came from outside.
                if await task_group.__aexit__(type(exc), exc, exc.__traceback__):
                    return True
            else:
                # Any other exception of the block is ours to re-raise as it
                # is; handing it to the task group would wrap it in a group.
                await task_group.__aexit__(None, None, None)
        except BaseExceptionGroup as group:
            raise _unwrap(group) from None
        finally:
            self._teardown()
        if raised_here is not None:
            raise raised_here
        return False

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
            RuntimeError: called from another event loop.
            BaseException: in manual use, a ``KeyboardInterrupt`` or similar
                that a task raised and that stopped the executor.
        """
        if self._state == _NEW:
            self._state = _CLOSED
            return
        if self._state != _CLOSED and not self._on_own_loop():
            raise RuntimeError("this AsyncExecutor belongs to another event loop")
        if self._state == _OPEN:
            self._state = _SHUTTING_DOWN
        if cancel_futures:
            self._cancel_all()
        if self._outstanding == 0:
            self._close()
        if wait:
            # A detached runner must itself have finished before we return.
            finished = self._done if self._detached else self._stopped
            assert finished is not None
            await finished.wait()
            if self._crash is not None:
                crash, self._crash = self._crash, None
                raise crash

    def statistics(self) -> ExecutorStatistics:
        """A snapshot of the executor's counters."""
        from ._statistics import ExecutorStatistics

        finals = self._finals
        running = len(self._running)
        submitted = self._sequence
        return ExecutorStatistics(
            max_workers=self.max_workers,
            submitted=submitted,
            queued=submitted
            - running
            - finals[FINISHED]
            - finals[FAILED]
            - finals[CANCELLED],
            running=running,
            succeeded=finals[FINISHED],
            failed=finals[FAILED],
            cancelled=finals[CANCELLED],
            retries=self._retries,
        )

    async def _drain(self) -> None:
        while self._outstanding:
            self._drained = anyio.Event()
            await self._drained.wait()

    def _open(self) -> None:
        self._token = loop_token()
        self._backend = backend_name(self._token)
        self._on_own_loop = loop_checker(self._token)
        self._stopped = anyio.Event()
        self._done = anyio.Event()
        self._state = _OPEN
        if self._rate_limit is not None:
            self._plain_options = make_options(
                self._backend,
                self._rate_limit,
                semaphore=None,
                retries=0,
                retry_delay=DEFAULT_RETRY_DELAY,
                rate_limit=None,
                task_timeout=None,
                retry_on=Exception,
                retry_max_delay=None,
                retry_jitter=0,
            )

    def _start_detached(self) -> None:
        """Manual use: the first submit starts a runner task to host the group."""
        self._open()
        self._detached = True
        spawn_detached(self._token, self._run_detached)

    async def _run_detached(self) -> None:
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                for _ in range(min(len(self._backlog), self.max_workers)):
                    self._start_worker()
                assert self._stopped is not None
                await self._stopped.wait()
        except anyio.get_cancelled_exc_class():
            # The loop itself is ending (asyncio.run's clean-up, or trio's
            # main task returned): our work is cancelled and swept below.
            pass
        except BaseException as error:
            # Nobody is above this task to receive it; shutdown() re-raises it.
            self._crash = _unwrap(error)
        finally:
            self._abort()
            self._teardown()

    def _abort(self) -> None:
        """Cancel everything at once (an exception or cancellation hit us)."""
        if self._state < _CLOSED:
            self._state = _SHUTTING_DOWN
            self._cancel_all()
            self._close()
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()

    def _close(self) -> None:
        """No more work will come: let workers and waiting lines finish."""
        if self._state == _CLOSED:
            return
        self._state = _CLOSED
        self._close_queue()
        for line in self._lines.values():
            line.scope.cancel()  # only cancelled jobs can be left in it
        self._maybe_stopped()

    def _teardown(self) -> None:
        """Last step: nothing runs any more; make every future final."""
        self._state = _CLOSED
        self._sweep()
        self._close_queue()
        self._task_group = None
        for event in (self._stopped, self._done):
            if event is not None:
                event.set()

    def _is_closed(self) -> bool:
        return self._state == _CLOSED

    def _became_idle(self) -> None:
        if self._drained is not None:
            self._drained.set()
        if self._state == _SHUTTING_DOWN:
            self._close()

    def _task_exited(self) -> None:
        super()._task_exited()
        self._maybe_stopped()

    def _maybe_stopped(self) -> None:
        if self._tasks == 0 and self._state == _CLOSED and self._stopped is not None:
            self._stopped.set()

    # -- one task ----------------------------------------------------------------

    @overload
    def submit(
        self,
        fn: Callable[[*Ts], Awaitable[T]],
        /,
        *args: *Ts,
        semaphore: Any = None,
        retries: int = 0,
        retry_delay: float = DEFAULT_RETRY_DELAY,
        retry_on: RetryOn = Exception,
        retry_max_delay: float | None = None,
        retry_jitter: float = 0,
        task_timeout: float | None = None,
        rate_limit: RateLimiter | None = None,
    ) -> AsyncFuture[T]: ...
    @overload
    def submit(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> AsyncFuture[T]: ...
    # mypy cannot match a TypeVarTuple overload to any implementation (a known
    # limitation), hence the ignore; pyright checks the same overloads cleanly.
    def submit(  # type: ignore[misc]
        self,
        fn: Callable[..., Awaitable[Any]],
        /,
        *args: Any,
        semaphore: Any = None,
        retries: Any = 0,
        retry_delay: Any = DEFAULT_RETRY_DELAY,
        retry_on: Any = Exception,
        retry_max_delay: Any = None,
        retry_jitter: Any = 0,
        task_timeout: Any = None,
        rate_limit: Any = None,
        **kwargs: Any,
    ) -> AsyncFuture[Any]:
        """Schedule ``fn(*args, **kwargs)`` and return its future at once.

        Args:
            fn: An async function (or any callable returning an awaitable).
            *args: Positional arguments for ``fn``.
            semaphore: A limiter for this task, such as an
                ``anyio.CapacityLimiter`` shared by many tasks. It is held
                only while an attempt runs; waiting for it holds no worker.
            retries: How many times to retry after an exception.
            retry_delay: Exponential back-off multiplier in seconds (default
                0.1): waits of ``retry_delay``, then twice that, and so on.
            retry_on: Which exceptions are retried: a class, a tuple of
                classes, or a predicate ``exc -> bool``. Cancellation never is.
            retry_max_delay: A cap on one back-off wait, in seconds.
            retry_jitter: Up to this many seconds added at random to each wait.
            task_timeout: A deadline for each attempt; an attempt past it is
                cancelled and fails with ``TimeoutError`` (which is retried
                like any other exception).
            rate_limit: A `RateLimiter` each attempt must pass.
            **kwargs: Keyword arguments for ``fn``.

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
        if self._state != _OPEN or not self._on_own_loop():
            self._check_usable()
        if not callable(fn):
            _reject_function(fn)
        if (
            # The common call passes no option: skip the checks (this is
            # half the cost of a submit).
            semaphore is None
            and retries.__class__ is int
            and not retries
            and retry_delay == DEFAULT_RETRY_DELAY
            and retry_on is Exception
            and not retry_jitter
            and retry_max_delay is task_timeout is rate_limit is None
        ):
            options = self._plain_options
        else:
            options = self._make_options(
                semaphore=semaphore,
                retries=retries,
                retry_delay=retry_delay,
                retry_on=retry_on,
                retry_max_delay=retry_max_delay,
                retry_jitter=retry_jitter,
                task_timeout=task_timeout,
                rate_limit=rate_limit,
            )
        return self._enqueue(fn, args, kwargs or None, options)

    def _check_usable(self) -> None:
        """Start a new executor (manual use), or say why this one can't be used."""
        if self._state >= _SHUTTING_DOWN:
            raise ExecutorShutdownError("cannot submit: the executor is shut down")
        if self._state == _NEW:
            self._start_detached()
        elif not self._on_own_loop():
            raise RuntimeError("this AsyncExecutor belongs to another event loop")

    def _make_options(self, **options: Any) -> JobOptions | None:
        return make_options(self._backend, self._rate_limit, **options)

    # -- many tasks ----------------------------------------------------------------

    async def map(
        self,
        fn: Callable[..., Awaitable[T]],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None = None,
        retries: int = 0,
        retry_delay: float = DEFAULT_RETRY_DELAY,
        retry_on: RetryOn = Exception,
        retry_max_delay: float | None = None,
        retry_jitter: float = 0,
        task_timeout: float | None = None,
        semaphore: Any = None,
        rate_limit: RateLimiter | None = None,
        progress: Progress = None,
    ) -> list[T]:
        """Run ``fn`` over the items of ``iterables``; return the results.

        Results come in input order, like ``list(concurrent.futures.
        Executor.map(...))``; several iterables are zipped. Input is read
        lazily, at most ``2 * max_workers`` items ahead. A running ``map``
        keeps the executor open during a graceful shutdown.

        Args:
            fn: An async function taking one item from each iterable.
            *iterables: Sync or async iterables.
            timeout: One deadline in seconds for the whole call.
            retries: Retries per item, as in `submit`.
            retry_delay: Back-off multiplier in seconds (default 0.1).
            retry_on: Which exceptions are retried, as in `submit`.
            retry_max_delay: Cap on one back-off wait, as in `submit`.
            retry_jitter: Random extra wait, as in `submit`.
            task_timeout: Deadline for each attempt, as in `submit`.
            semaphore: A limiter for every item, as in `submit`.
            rate_limit: A `RateLimiter` for every attempt, as in `submit`.
            progress: True for a progress bar on stderr, or a callable
                ``progress(done, total)`` called after each finished item
                (``total`` is None when the input has no length).

        Returns:
            The results, in input order.

        Raises:
            TimeoutError: ``timeout`` expired; the map's tasks are cancelled.
            Exception: the first failed item's exception (in input order);
                the map's other tasks are cancelled and have exited.
        """
        results = self.map_iter(
            fn,
            *iterables,
            timeout=timeout,
            retries=retries,
            retry_delay=retry_delay,
            retry_on=retry_on,
            retry_max_delay=retry_max_delay,
            retry_jitter=retry_jitter,
            task_timeout=task_timeout,
            semaphore=semaphore,
            rate_limit=rate_limit,
            progress=progress,
        )
        self._outstanding += 1  # a graceful shutdown waits for this call
        try:
            return await results._collect()
        finally:
            self._release()

    def map_iter(
        self,
        fn: Callable[..., Awaitable[T]],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None = None,
        retries: int = 0,
        retry_delay: float = DEFAULT_RETRY_DELAY,
        retry_on: RetryOn = Exception,
        retry_max_delay: float | None = None,
        retry_jitter: float = 0,
        task_timeout: float | None = None,
        semaphore: Any = None,
        rate_limit: RateLimiter | None = None,
        ordered: bool = True,
        progress: Progress = None,
    ) -> MapIterator[T]:
        """Like `map`, but yield each result as soon as it is ready.

        With ``ordered=True`` (the default) a result is yielded once it and
        every result before it are ready; with ``ordered=False``, in
        completion order. Use with ``async for`` (or ``async with`` around
        it); leaving the loop early (``break``, an exception, ``aclose()``)
        cancels the work still in flight and closes async inputs it stopped
        reading. Arguments are checked at this call, not at the first step.

        Args:
            fn: An async function taking one item from each iterable.
            *iterables: Sync or async iterables, read lazily.
            timeout: One deadline in seconds for the whole iteration,
                measured from this call.
            retries: Retries per item, as in `submit`.
            retry_delay: Back-off multiplier in seconds (default 0.1).
            retry_on: Which exceptions are retried, as in `submit`.
            retry_max_delay: Cap on one back-off wait, as in `submit`.
            retry_jitter: Random extra wait, as in `submit`.
            task_timeout: Deadline for each attempt, as in `submit`.
            semaphore: A limiter for every item, as in `submit`.
            rate_limit: A `RateLimiter` for every attempt, as in `submit`.
            ordered: Yield in input order (True) or completion order (False).
            progress: As in `map`.

        Returns:
            An async iterator of results.

        Raises:
            ExecutorShutdownError: shutdown has begun.
            TypeError, ValueError: a bad argument, named in the message.
        """
        from ._mapping import MapIterator

        self._check_usable()
        if not callable(fn):
            _reject_function(fn)
        check_timeout(timeout)
        if not iterables:
            raise TypeError("map_iter() needs at least one iterable")
        options = self._make_options(
            semaphore=semaphore,
            retries=retries,
            retry_delay=retry_delay,
            retry_on=retry_on,
            retry_max_delay=retry_max_delay,
            retry_jitter=retry_jitter,
            task_timeout=task_timeout,
            rate_limit=rate_limit,
        )
        return MapIterator(self, fn, iterables, options, timeout, ordered, progress)

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
        state = ("new", "open", "shutting down", "closed")[self._state]
        return f"<AsyncExecutor max_workers={self.max_workers} {state}>"


def _reject_function(fn: object) -> NoReturn:
    if isinstance(fn, Coroutine):
        fn.close()  # it will never run; close it so no "never awaited" warning follows
        raise TypeError(
            "fn must be an async function, not a coroutine object: pass fetch, not fetch()"
        )
    raise TypeError(f"fn must be callable, got {type(fn).__name__}")


def _unwrap(error: BaseException) -> BaseException:
    """A group of one exception is reported as that exception.

    The backend's cancellation does not count: on trio a crash can come out
    grouped with the ``Cancelled`` it caused in the block.
    """
    cancelled = anyio.get_cancelled_exc_class()
    current: BaseException = error
    while isinstance(current, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", current)
        causes = [e for e in group.exceptions if not isinstance(e, cancelled)]
        if len(causes) != 1:
            break
        current = causes[0]
    return current  # pyright: ignore[reportUnknownVariableType]
