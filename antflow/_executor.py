"""AsyncExecutor: the public API, and the life cycle around its pool.

Life cycle (`Phase`), one way only::

    NEW ──> OPEN ──> SHUTTING_DOWN ──> CLOSED
     └───────────────────────────────────^

* ``async with`` enters the executor's task group in the caller's task, as a
  nursery would be. Without ``async with``, the first ``submit`` starts a
  detached runner task that hosts the group (see ``_compat``).
* ``shutdown()`` stops new submissions; the executor *closes* once nothing
  is outstanding: idle workers and waiting lines end, and the task group
  finishes.
* If the ``async with`` block raises or is cancelled, everything is cancelled
  at once (``_abort``), and the block's exception propagates as it is.
* Whatever happens, ``_teardown`` runs last and makes every future final.

The executor owns its phase and its task group; the `Pool` owns the jobs.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Iterable
from contextvars import copy_context
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
    NoReturn,
    ParamSpec,
    TypeVar,
    TypeVarTuple,
    Unpack,
    cast,
    final,
    overload,
)

import anyio

from . import _compat
from ._checks import check_int, check_timeout
from ._exceptions import ExecutorShutdownError
from ._future import AsyncFuture
from ._job import CANCELLED, FAILED, FINISHED
from ._options import OPTION_NAMES, Plan, TaskOptions, make_plan, parse_options
from ._pool import Pool
from ._rate import RateLimiter

if TYPE_CHECKING:
    from ._mapping import MapIterator, Progress
    from ._statistics import ExecutorStatistics
    from ._wait import AsCompleted, WaitStrategy

T = TypeVar("T")
P = ParamSpec("P")
Ts = TypeVarTuple("Ts")


class Phase(enum.IntEnum):
    """Where an executor is in its life (see the module docstring)."""

    NEW = 0
    OPEN = 1
    SHUTTING_DOWN = 2
    CLOSED = 3


NEW, OPEN, SHUTTING_DOWN, CLOSED = Phase


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
        self._phase = NEW
        self._pool: Pool | None = None
        self._backend = ""
        self._on_own_loop: Callable[[], bool] = _never
        self._plain_plan: Plan | None = None  # for calls with no options
        self._task_group: Any = None
        self._host_task = 0  # the task that entered ``async with``
        self._detached = False
        self._loop_ended = False
        self._token: Any = None
        self._stopped: anyio.Event | None = None  # our tasks have all exited
        self._done: anyio.Event | None = None  # torn down: every future final
        self._drained: anyio.Event | None = None  # nothing outstanding any more

    # -- life cycle ------------------------------------------------------------

    async def __aenter__(self) -> AsyncExecutor:
        if self._phase != NEW:
            raise RuntimeError(
                "an AsyncExecutor can be started only once; make a new one"
            )
        pool = self._open()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self._host_task = _compat.current_task_id()
        pool.attach(task_group)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        pool = self._pool
        task_group = self._task_group
        assert pool is not None and task_group is not None
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
        if _compat.current_task_id() != self._host_task:
            # Entered in one task and left in another (pytest-asyncio runs an
            # async fixture's set-up and tear-down in two tasks): the task
            # group cannot be exited here, but the work can still be waited
            # for, and nothing of ours outlives this call.
            return await self._exit_elsewhere(exc, raised_here)
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

    async def _exit_elsewhere(
        self, exc: BaseException | None, raised_here: BaseException | None
    ) -> bool:
        assert self._stopped is not None
        with anyio.CancelScope(shield=exc is not None):
            await self._stopped.wait()
        self._teardown()
        crash = self._take_crash()
        if crash is not None:
            raise crash
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
            RuntimeError: called from another event loop; or with ``wait``
                from one of this executor's own tasks, which would wait for
                itself (as ``concurrent.futures`` raises "cannot join current
                thread"). Nothing is shut down then.
            BaseException: in manual use, a ``KeyboardInterrupt`` or similar
                that a task raised and that stopped the executor.
        """
        pool = self._pool
        if pool is None:  # never started: nothing to stop
            self._phase = CLOSED
            return
        if self._phase != CLOSED and not self._on_own_loop():
            raise RuntimeError("this AsyncExecutor belongs to another event loop")
        if wait and pool.worker_ids and _compat.current_task_id() in pool.worker_ids:
            raise RuntimeError(
                "shutdown(wait=True) called from one of its own tasks would wait "
                "for itself; use shutdown(wait=False) there"
            )
        if self._phase == OPEN:
            self._phase = SHUTTING_DOWN
        if cancel_futures:
            pool.cancel_all()
        if pool.outstanding == 0:
            self._close()
        if wait:
            # A detached runner must itself have finished before we return.
            finished = self._done if self._detached else self._stopped
            assert finished is not None
            await finished.wait()
            crash = self._take_crash() if self._detached else None
            if crash is not None:
                raise crash

    def statistics(self) -> ExecutorStatistics:
        """A snapshot of the executor's counters (see `ExecutorStatistics`)."""
        from ._statistics import ExecutorStatistics

        pool = self._pool
        if pool is None:
            return ExecutorStatistics(self.max_workers, 0, 0, 0, 0, 0, 0, 0)
        submitted, running, finals, retries = pool.statistics()
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
            retries=retries,
        )

    async def _drain(self) -> None:
        pool = self._pool
        assert pool is not None
        while pool.outstanding:
            self._drained = anyio.Event()
            await self._drained.wait()

    def _open(self) -> Pool:
        """NEW -> OPEN, on the running event loop."""
        assert self._phase == NEW
        token = _compat.loop_token()
        self._backend = _compat.backend_name(token)
        self._on_own_loop = _compat.loop_checker(token)
        self._token = token
        pool = self._pool = Pool(self.max_workers, self._on_own_loop)
        pool.on_idle = self._became_idle
        pool.on_task_exit = self._maybe_stopped
        pool.on_crash = self._abort
        self._stopped = anyio.Event()
        self._done = anyio.Event()
        self._plain_plan = make_plan(None, self._rate_limit, self._backend)
        self._phase = OPEN
        return pool

    def _start_detached(self) -> None:
        """Manual use: the first submit starts a runner task to host the group."""
        self._open()
        self._detached = True
        _compat.spawn_detached(self._token, self._run_detached)

    async def _run_detached(self) -> None:
        pool = self._pool
        assert pool is not None and self._stopped is not None
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                pool.attach(task_group)
                await self._stopped.wait()
        except anyio.get_cancelled_exc_class():
            # The loop itself is ending (asyncio.run's clean-up, or trio's
            # main task returned): our work is cancelled and swept below.
            self._loop_ended = True
        except BaseException as error:
            # Nobody is above this task to receive it; shutdown() re-raises it.
            if pool.crash is None:
                pool.crash = _unwrap(error)
        finally:
            self._abort()
            self._teardown()

    def _take_crash(self) -> BaseException | None:
        pool = self._pool
        if pool is None or pool.crash is None:
            return None
        crash, pool.crash = pool.crash, None
        return crash

    def _abort(self) -> None:
        """Cancel everything at once (an exception or cancellation hit us)."""
        pool = self._pool
        assert pool is not None
        if self._phase < CLOSED:
            self._phase = SHUTTING_DOWN
            pool.cancel_all()
            self._close()
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()

    def _close(self) -> None:
        """No more work will come: let workers and waiting lines finish."""
        if self._phase == CLOSED:
            return
        self._phase = CLOSED
        assert self._pool is not None
        self._pool.close()
        self._maybe_stopped()

    def _teardown(self) -> None:
        """Last step: nothing runs any more; make every future final."""
        self._phase = CLOSED
        if self._pool is not None:
            self._pool.teardown()
            # The pool calls back into us; nothing will happen any more, so
            # drop the cycle and let a finished executor die by refcount.
            self._pool.on_idle = self._pool.on_task_exit = self._pool.on_crash = (
                _nothing
            )
        self._task_group = None
        for event in (self._stopped, self._done, self._drained):
            if event is not None:
                event.set()

    def _became_idle(self) -> None:
        if self._drained is not None:
            self._drained.set()
        if self._phase == SHUTTING_DOWN:
            self._close()

    def _maybe_stopped(self) -> None:
        pool = self._pool
        if (
            pool is not None
            and pool.tasks == 0
            and self._phase == CLOSED
            and self._stopped is not None
        ):
            self._stopped.set()

    def _check_usable(self) -> Pool:
        """Start a new executor (manual use), or say why this one can't be used."""
        phase = self._phase
        if phase == NEW:
            self._start_detached()
        elif phase >= SHUTTING_DOWN:
            if self._loop_ended:
                raise ExecutorShutdownError(
                    "this AsyncExecutor's event loop has ended; an executor "
                    "belongs to the event loop it started on: make a new one"
                )
            raise ExecutorShutdownError("cannot submit: the executor is shut down")
        elif not self._on_own_loop():
            if not _compat.in_any_loop():
                raise RuntimeError(_compat.NO_LOOP)
            raise RuntimeError("this AsyncExecutor belongs to another event loop")
        assert self._pool is not None
        return self._pool

    def _plan(self, options: dict[str, Any]) -> Plan | None:
        if not options:
            return self._plain_plan
        return make_plan(parse_options(options), self._rate_limit, self._backend)

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
        pool = self._pool
        if self._phase != OPEN or not self._on_own_loop() or pool is None:
            pool = self._check_usable()
        if not callable(fn):
            _reject_function(fn)
        if kwargs:
            names = kwargs.keys() & OPTION_NAMES
            if names:
                options = {name: kwargs.pop(name) for name in names}
                plan = self._plan(options)
            else:
                plan = self._plain_plan
            job = pool.submit(fn, args, kwargs or None, copy_context(), plan)
        else:
            job = pool.submit(fn, args, None, copy_context(), self._plain_plan)
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

        pool = self._check_usable()
        if not callable(fn):
            _reject_function(fn)
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
        return f"<AsyncExecutor max_workers={self.max_workers} {self._phase.name.lower().replace('_', ' ')}>"


def _never() -> bool:
    return False


def _nothing() -> None:
    pass


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
