"""AsyncExecutor: owns the task group, the queue and the workers.

Shape of the machine:

* ``submit`` makes an `AsyncFuture` (which is also the job) and sends it into
  an unbounded anyio memory object stream. No task is created per submission.
* Up to ``max_workers`` worker tasks pull jobs from the stream and run them one
  at a time. Workers are started lazily, one per job that finds no idle
  worker, and live until the executor closes.
* A job whose semaphore is full is parked in that semaphore's `WaitingLine`
  and its worker moves on (see ``_limits``). When the line gets a token for
  it, the job goes into ``_ready``, which workers drain before the stream.
* Every job runs inside its own cancel scope, so ``future.cancel()`` and
  ``shutdown(cancel_futures=True)`` cancel exactly that job.
* The executor closes once shutdown has begun *and* no future is outstanding:
  the stream is closed, workers see the end of it and exit, and the task
  group finishes.

The task group is entered by ``__aenter__`` in the caller's task, as a
nursery would be, or, for manual use without ``async with``, by a detached
runner task that the first ``submit`` starts (see ``_compat``).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from inspect import isawaitable, iscoroutine
from types import CoroutineType, TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    ParamSpec,
    TypeVar,
    TypeVarTuple,
    cast,
    final,
    overload,
)

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._compat import backend_name, loop_checker, loop_token, spawn_detached
from ._exceptions import ExecutorShutdownError
from ._future import CANCELLED, FAILED, FINISHED, RUNNING, AsyncFuture, check_timeout
from ._limits import Strategy, WaitingLine, strategy_for
from ._retry import DEFAULT_RETRY_DELAY, RetryPolicy, check_retry_arguments

if TYPE_CHECKING:
    from ._mapping import MapIterator
    from ._wait import AsCompleted, WaitStrategy

T = TypeVar("T")
P = ParamSpec("P")
Ts = TypeVarTuple("Ts")
logger = logging.getLogger("antflow")

# Executor life cycle.
_NEW, _OPEN, _SHUTTING_DOWN, _CLOSED = range(4)

#: Sent into the stream to wake an idle worker for a job in ``_ready``.
_WAKE: Final = object()


@final
class JobOptions:
    """What one ``submit``/``map`` call asked for beyond the function itself;
    shared by all the jobs of a ``map``."""

    __slots__ = ("limiter", "retry", "strategy")

    def __init__(
        self, limiter: Any, strategy: Strategy | None, retry: RetryPolicy | None
    ):
        self.limiter = limiter
        self.strategy = strategy
        self.retry = retry


@final
class AsyncExecutor:
    """A pool of async workers with a ``concurrent.futures``-style API.

    Use it as ``async with AsyncExecutor(max_workers=10) as executor:``; the
    block's exit waits for all work, like a nursery. Without ``async with``,
    the first ``submit`` starts it and ``await executor.shutdown()`` stops it.

    Args:
        max_workers: How many tasks may run at once (an int >= 1).
    """

    def __init__(self, max_workers: int = 5) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int):
            raise TypeError(
                f"max_workers must be an int, got {type(max_workers).__name__}"
            )
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        #: The most tasks that run at once.
        self.max_workers: Final = max_workers
        self._state = _NEW
        self._token: Any = None
        self._backend = ""
        self._send: MemoryObjectSendStream[Any] | None = None
        self._receive: MemoryObjectReceiveStream[Any] | None = None
        self._task_group: TaskGroup | None = None
        self._detached = False
        self._ready: deque[AsyncFuture[Any]] = deque()
        self._lines: dict[int, WaitingLine] = {}
        self._running: set[AsyncFuture[Any]] = set()
        self._cancelling = False
        self._workers = 0  # live worker tasks
        self._idle = 0  # workers blocked on the stream
        self._queued = 0  # items in the stream not yet taken by a worker
        self._tasks = 0  # live tasks of ours: workers and waiting lines
        self._outstanding = 0  # futures not yet final, plus running map() calls
        self._sequence = 0
        self._stopped: anyio.Event | None = None  # all our tasks have exited
        self._done: anyio.Event | None = None  # torn down: every future final
        self._drained: anyio.Event | None = None  # nothing outstanding any more
        self._crash: BaseException | None = None  # what ended a detached runner
        self._on_own_loop: Callable[[], bool] = _not_started

    # -- life cycle --------------------------------------------------------

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
                    return True  # its own cancellation, absorbed
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

    async def _drain(self) -> None:
        while self._outstanding:
            self._drained = anyio.Event()
            await self._drained.wait()

    def _open(self) -> None:
        self._token = loop_token()
        self._backend = backend_name(self._token)
        self._on_own_loop = loop_checker(self._token)
        self._send, self._receive = anyio.create_memory_object_stream[Any](math.inf)
        self._stopped = anyio.Event()
        self._done = anyio.Event()
        self._state = _OPEN

    def _start_detached(self) -> None:
        """Manual use: the first submit starts a runner task to host the group."""
        self._open()
        self._detached = True
        spawn_detached(self._token, self._run_detached)

    async def _run_detached(self) -> None:
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                for _ in range(min(self._queued, self.max_workers)):
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
            logger.debug("antflow executor crashed", exc_info=True)
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
        assert self._send is not None
        self._send.close()
        for line in self._lines.values():
            line.scope.cancel()  # only cancelled jobs can be left in it
        self._maybe_stopped()

    def _teardown(self) -> None:
        """Last step: nothing runs any more; make every future final."""
        self._state = _CLOSED
        self._sweep()
        if self._send is not None:
            self._send.close()
        if self._receive is not None:
            self._receive.close()
        self._task_group = None
        if self._stopped is not None:
            self._stopped.set()
        if self._done is not None:
            self._done.set()

    def _cancel_all(self) -> None:
        self._cancelling = True
        for job in list(self._running):
            job.cancel()
        self._sweep()

    def _sweep(self) -> None:
        """Cancel every job that has not started: queued, parked or ready."""
        while self._ready:
            job = self._ready.popleft()
            self._give_back(job)
            job._settle(CANCELLED, None)
        for line in list(self._lines.values()):
            while line.jobs:
                line.jobs.popleft()._settle(CANCELLED, None)
        receive = self._receive
        if receive is None:
            return
        while True:
            try:
                item = receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            self._queued -= 1
            if item is not _WAKE:
                item._settle(CANCELLED, None)

    # -- submitting --------------------------------------------------------

    @overload
    def submit(
        self,
        fn: Callable[[*Ts], Awaitable[T]],
        /,
        *args: *Ts,
        semaphore: Any = None,
        retries: int = 0,
        retry_delay: float = DEFAULT_RETRY_DELAY,
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
        **kwargs: Any,
    ) -> AsyncFuture[Any]:
        """Schedule ``fn(*args, **kwargs)`` and return its future at once.

        Args:
            fn: An async function (or any callable returning an awaitable).
            *args: Positional arguments for ``fn``.
            semaphore: A limiter for this task, such as an
                ``anyio.CapacityLimiter`` shared by many tasks. It is held
                only while an attempt runs; waiting for it holds no worker.
            retries: How many times to retry after an ``Exception``.
            retry_delay: Exponential back-off multiplier in seconds: waits of
                ``retry_delay``, then twice that, and so on.
            **kwargs: Keyword arguments for ``fn``.

        Returns:
            The task's future.

        Raises:
            ExecutorShutdownError: shutdown has begun.
            TypeError: ``fn`` is not callable or is a coroutine object; a
                ``semaphore`` that is not a limiter for this backend; a
                non-int ``retries``.
            ValueError: a negative or NaN ``retries`` or ``retry_delay``.

        Typing: positional arguments are checked against ``fn``; so are
        keyword arguments for ``fn`` when no option is passed alongside them
        (for both at once, bind the arguments with ``functools.partial``).
        """
        if self._state >= _SHUTTING_DOWN:
            raise ExecutorShutdownError("cannot submit: the executor is shut down")
        _check_function(fn)
        options = self._make_options(semaphore, retries, retry_delay)
        return self._enqueue(fn, args, kwargs or None, options)

    def _make_options(
        self, semaphore: object, retries: object, retry_delay: object
    ) -> JobOptions | None:
        if (
            retries.__class__ is not int
            or retries
            or retry_delay != DEFAULT_RETRY_DELAY
        ):
            check_retry_arguments(retries, retry_delay)
        if self._state == _NEW:
            self._start_detached()
        elif not self._on_own_loop():
            raise RuntimeError("this AsyncExecutor belongs to another event loop")
        if semaphore is None and retries == 0:
            return None
        strategy = None if semaphore is None else strategy_for(semaphore, self._backend)
        retry = RetryPolicy(retries, retry_delay) if retries else None  # type: ignore[arg-type]
        return JobOptions(semaphore, strategy, retry)

    def _enqueue(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        options: JobOptions | None,
    ) -> AsyncFuture[Any]:
        if self._state == _CLOSED:
            raise ExecutorShutdownError("cannot submit: the executor is shut down")
        self._sequence += 1
        future: AsyncFuture[Any] = AsyncFuture(
            self, self._sequence, fn, args, kwargs, options
        )
        self._outstanding += 1
        self._queued += 1
        self._send.send_nowait(future)  # type: ignore[union-attr]
        if self._queued > self._idle and self._workers < self.max_workers:
            self._start_worker()
        return future

    def _start_worker(self) -> None:
        if self._task_group is None:
            return  # a detached runner starts the backlog's workers itself
        self._workers += 1
        self._tasks += 1
        self._task_group.start_soon(self._worker)

    # -- running -----------------------------------------------------------

    async def _worker(self) -> None:
        # Jobs run inside the worker's cancel scope, which job.cancel()
        # cancels while that job holds it. Making a scope per job would cost
        # more than the rest of the job's bookkeeping together, so a worker
        # makes a new one only after a job used its scope up.
        try:
            while True:
                with anyio.CancelScope() as scope:
                    while not scope.cancel_called:
                        job = await self._next_job()
                        if job is None:
                            return
                        await self._run(job, scope)
        finally:
            self._workers -= 1
            self._task_exited()

    async def _next_job(self) -> AsyncFuture[Any] | None:
        """The next job to start (ready ones first); None when closed."""
        ready, receive = self._ready, self._receive
        assert receive is not None
        while True:
            if ready:
                job = ready.popleft()
            else:
                self._idle += 1
                try:
                    job = await receive.receive()
                except anyio.EndOfStream:
                    return None
                finally:
                    self._idle -= 1
                self._queued -= 1
                if job is _WAKE:
                    continue
            if job._state >= FINISHED:
                self._give_back(job)  # cancelled while it waited
            elif self._cancelling:
                self._give_back(job)
                job._settle(CANCELLED, None)
            else:
                return job

    async def _run(self, job: AsyncFuture[Any], scope: anyio.CancelScope) -> None:
        """Run ``job`` in the worker's ``scope``, all its attempts included."""
        options = job._options
        strategy = options.strategy if options is not None else None
        parks = strategy is not None and strategy.parks
        if parks and not job._holding and not self._try_acquire(job, options):  # type: ignore[arg-type]
            return self._park(job, options)  # type: ignore[arg-type]
        job._state = RUNNING
        job._scope = scope
        self._running.add(job)
        park_again = False
        error: Exception | None = None
        value: Any = None
        try:
            while True:
                try:
                    if strategy is not None and not parks:
                        async with options.limiter:  # type: ignore[union-attr]
                            value = await _call(job)
                    else:
                        value = await _call(job)
                except Exception as exc:
                    error = exc
                else:
                    error = None
                finally:
                    self._give_back(job)
                if error is None or options is None or options.retry is None:
                    break
                if job._retry_state is None:
                    job._retry_state = options.retry.new_state(
                        job._fn, job._args, job._kwargs
                    )
                delay = options.retry.next_delay(job._retry_state, error)
                if delay is None:
                    break
                # Back-off keeps the worker but not the semaphore.
                await anyio.sleep(delay)
                if parks and not self._try_acquire(job, options):
                    park_again = True
                    break
        except BaseException:
            # Cancellation (ours or from outside), or a BaseException from the
            # task itself: never stored as a result, but the future still
            # ends final. The worker's scope absorbs its own cancellation.
            self._running.discard(job)
            self._give_back(job)
            job._settle(CANCELLED, None)
            raise
        self._running.discard(job)
        job._scope = None
        if scope.cancel_called:
            # Cancelled, but the task swallowed it or finished first: the
            # cancel() that returned True wins.
            job._settle(CANCELLED, None)
        elif park_again:
            self._park(job, options)  # type: ignore[arg-type]
        elif error is not None:
            job._settle(FAILED, error)
        else:
            job._settle(FINISHED, value)
        return None

    # -- semaphores --------------------------------------------------------

    def _try_acquire(self, job: AsyncFuture[Any], options: JobOptions) -> bool:
        limiter = options.limiter
        # Jobs already waiting in line go first: no overtaking by try-acquire.
        if id(limiter) in self._lines:
            return False
        assert options.strategy is not None
        if options.strategy.try_acquire(limiter, job):
            job._holding = True
            return True
        return False

    def _give_back(self, job: AsyncFuture[Any]) -> None:
        if job._holding:
            job._holding = False
            options = job._options
            assert options is not None and options.strategy is not None
            options.strategy.release(options.limiter, job)

    def _park(self, job: AsyncFuture[Any], options: JobOptions) -> None:
        key = id(options.limiter)
        line = self._lines.get(key)
        if line is None:
            assert options.strategy is not None and self._task_group is not None
            line = WaitingLine(
                options.limiter, options.strategy, self._on_token, self._line_done
            )
            self._lines[key] = line
            self._tasks += 1
            self._task_group.start_soon(line.serve)
        line.jobs.append(job)

    def _on_token(self, job: AsyncFuture[Any]) -> None:
        """A waiting line got a token for ``job``: run it before queued work."""
        job._holding = True
        self._ready.append(job)
        if self._idle:
            # Idle workers sleep on the stream; wake one.
            self._queued += 1
            self._send.send_nowait(_WAKE)  # type: ignore[union-attr]
        elif self._workers < self.max_workers:
            self._start_worker()

    def _line_done(self, line: WaitingLine) -> None:
        if self._lines.get(id(line.limiter)) is line:
            del self._lines[id(line.limiter)]
        self._task_exited()

    # -- bookkeeping -------------------------------------------------------

    def _job_settled(self) -> None:
        self._outstanding -= 1
        if self._outstanding == 0:
            if self._drained is not None:
                self._drained.set()
            if self._state == _SHUTTING_DOWN:
                self._close()

    def _hold_open(self) -> None:
        """A ``map()`` call is in progress: a graceful shutdown waits for it."""
        self._outstanding += 1

    def _task_exited(self) -> None:
        self._tasks -= 1
        self._maybe_stopped()

    def _maybe_stopped(self) -> None:
        if self._tasks == 0 and self._state == _CLOSED and self._stopped is not None:
            self._stopped.set()

    # -- many futures --------------------------------------------------------

    def _check_accepting(self) -> None:
        if self._state >= _SHUTTING_DOWN:
            raise ExecutorShutdownError("cannot map: the executor is shut down")

    async def map(
        self,
        fn: Callable[..., Awaitable[T]],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None = None,
        retries: int = 0,
        retry_delay: float = DEFAULT_RETRY_DELAY,
        semaphore: Any = None,
    ) -> list[T]:
        """Run ``fn`` over the items of ``iterables`` and return the results.

        Results come in input order, like ``list(concurrent.futures.
        Executor.map(...))``; several iterables are zipped. Input is read
        lazily, at most ``2 * max_workers`` items ahead.

        Args:
            fn: An async function taking one item from each iterable.
            *iterables: Sync or async iterables.
            timeout: One deadline in seconds for the whole call.
            retries: Retries per item, as in `submit`.
            retry_delay: Back-off multiplier, as in `submit`.
            semaphore: A limiter for every item, as in `submit`.

        Raises:
            TimeoutError: ``timeout`` expired; the map's tasks are cancelled.
            Exception: the first failed item's exception (in input order);
                the map's other tasks are cancelled.
        """
        results = self.map_iter(
            fn,
            *iterables,
            timeout=timeout,
            retries=retries,
            retry_delay=retry_delay,
            semaphore=semaphore,
        )
        self._hold_open()
        try:
            return [result async for result in results]
        finally:
            await results.aclose()
            self._job_settled()

    def map_iter(
        self,
        fn: Callable[..., Awaitable[T]],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None = None,
        retries: int = 0,
        retry_delay: float = DEFAULT_RETRY_DELAY,
        semaphore: Any = None,
    ) -> MapIterator[T]:
        """Like `map`, but yield each result as soon as it and all before it
        are ready. Use with ``async for``; leaving the loop early (``break``,
        an exception, ``aclose()``) cancels the work still in flight.

        Arguments are checked at this call, not at the first iteration.
        """
        from ._mapping import MapIterator

        self._check_accepting()
        _check_function(fn)
        check_timeout(timeout)
        if not iterables:
            raise TypeError("map_iter() needs at least one iterable")
        options = self._make_options(semaphore, retries, retry_delay)
        return MapIterator(self, fn, iterables, options, timeout)

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
        return_when: WaitStrategy | str = "ALL_COMPLETED",
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


def _not_started() -> bool:
    return False


def _check_function(fn: object) -> None:
    if iscoroutine(fn):
        fn.close()  # it will never run; close it so no "never awaited" warning follows
        raise TypeError(
            "fn must be an async function, not a coroutine object: "
            "pass fetch, not fetch()"
        )
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")


async def _call(job: AsyncFuture[Any]) -> Any:
    fn = job._fn
    assert fn is not None and job._args is not None
    kwargs = job._kwargs
    awaitable: Any = fn(*job._args, **kwargs) if kwargs else fn(*job._args)
    if type(awaitable) is CoroutineType or isawaitable(awaitable):
        return await awaitable  # pyright: ignore[reportUnknownVariableType]
    name = getattr(fn, "__qualname__", None) or repr(fn)
    raise TypeError(
        f"{name} returned {type(awaitable).__name__}, not an awaitable; "
        "the executor runs async functions"
    )


def _unwrap(error: BaseException) -> BaseException:
    """A group of one exception is reported as that exception."""
    current: Any = error
    while isinstance(current, BaseExceptionGroup) and len(current.exceptions) == 1:  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
        current = current.exceptions[0]  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    return cast(BaseException, current)
