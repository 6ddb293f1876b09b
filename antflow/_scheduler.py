"""How submitted jobs get to workers: the queue, the workers, the gates.

* ``_enqueue`` appends the job (an `AsyncFuture`) to ``_backlog``, a deque.
  No task is created per submission.
* Up to ``max_workers`` worker tasks take jobs and run them one at a time.
  A worker starts for a job that arrives while fewer than ``max_workers``
  run, and exits when it finds no job: an executor without work holds no
  task.
* Before each attempt a job passes its gates (semaphore, rate limits). A gate
  that cannot be passed at once parks the job in that gate's `WaitingLine`
  and frees the worker (see ``_limits``). When the line has a token for it,
  the job goes into ``_ready``, which workers serve before ``_backlog``.
* Jobs run inside their worker's cancel scope, which ``future.cancel()``
  cancels while that job holds it.

`AsyncExecutor` builds its life cycle and public API on top of this class.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Final

import anyio

from ._exceptions import ExecutorShutdownError
from ._future import CANCELLED, CANCELLING, FAILED, FINISHED, RUNNING, AsyncFuture
from ._limits import WaitingLine
from ._options import Gate, JobOptions

if TYPE_CHECKING:
    # A type name only: anyio.abc costs more to import than it is used.
    from anyio.abc import TaskGroup

#: Jobs a worker may take in a row without a checkpoint of its own.
_STREAK: Final = 32

#: What `Scheduler._attempts` returns when the job is waiting at a gate again.
_PARKED: Final = object()


class Scheduler:
    """The queue and worker pool under an `AsyncExecutor`."""

    def __init__(self, max_workers: int) -> None:
        #: The most tasks that run at once.
        self.max_workers: Final = max_workers
        self._accepting = True  # False once the queue is closed
        self._task_group: TaskGroup | None = None
        self._backlog: deque[AsyncFuture[Any]] = deque()  # submitted, not taken
        self._ready: deque[AsyncFuture[Any]] = deque()  # passed a gate: go first
        self._lines: dict[int, WaitingLine] = {}
        self._running: set[AsyncFuture[Any]] = set()
        self._cancelling = False
        self._workers = 0  # live worker tasks
        self._tasks = 0  # live tasks of ours: workers and waiting lines
        self._outstanding = 0  # futures not yet final, plus running map() calls
        self._sequence = 0  # futures made, which is also "submitted"
        # How many futures ended in each final state, indexed by state.
        self._finals = [0] * (CANCELLED + 1)
        self._retries = 0
        self._on_own_loop: Callable[[], bool] = _never

    def _close_queue(self) -> None:
        """Refuse new jobs."""
        self._accepting = False

    # -- hooks for the life cycle -----------------------------------------------

    def _became_idle(self) -> None:
        """No future is outstanding any more."""

    def _task_exited(self) -> None:
        """One of our tasks (a worker or a waiting line) has exited."""
        self._tasks -= 1

    # -- submitting ---------------------------------------------------------------

    def _enqueue(
        self,
        fn: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        options: JobOptions | None,
    ) -> AsyncFuture[Any]:
        if not self._accepting:
            raise ExecutorShutdownError("cannot submit: the executor is shut down")
        self._sequence += 1
        future: AsyncFuture[Any] = AsyncFuture(
            self, self._sequence, fn, args, kwargs, options
        )
        self._backlog.append(future)
        self._outstanding += 1
        if self._workers < self.max_workers:
            self._start_worker()
        # else: the first worker to finish its job takes the oldest one.
        return future

    def _start_worker(self) -> None:
        if self._task_group is None:
            return  # a detached runner starts the backlog's workers itself
        self._workers += 1
        self._tasks += 1
        self._task_group.start_soon(self._worker)

    # -- running --------------------------------------------------------------------

    async def _worker(self) -> None:
        # Making a cancel scope per job would cost more than the rest of the
        # job's bookkeeping together, so a worker makes a new one only after
        # a cancelled job has used its scope up.
        streak = 0  # jobs taken since this worker last yielded to the loop
        try:
            while True:
                with anyio.CancelScope() as scope:
                    spent = False
                    while not spent:
                        if streak == _STREAK:
                            streak = 0
                            await anyio.lowlevel.checkpoint()
                        job = self._take()
                        if job is None:
                            # Out of work: yield once, since the next job is
                            # often submitted by a task that runs meanwhile,
                            # then leave (the next job starts a new worker).
                            streak = 0
                            await anyio.lowlevel.checkpoint()
                            job = self._take()
                            if job is None:
                                return
                        streak += 1
                        spent = await self._run(job, scope)
        finally:
            self._workers -= 1
            self._task_exited()

    def _take(self) -> AsyncFuture[Any] | None:
        """The next job to start (ready ones first), or None if there is none.

        Taking a waiting job needs no trip through the event loop, which
        would double the cost of a short job. A worker does so at most
        ``_STREAK`` times before it yields: the jobs' own awaits normally
        yield to the loop, and the cap bounds how long jobs that never await
        keep it from other tasks.
        """
        ready, backlog = self._ready, self._backlog
        while ready or backlog:
            job = ready.popleft() if ready else backlog.popleft()
            if job._state >= FINISHED:
                self._give_back(job)  # cancelled while it waited
            elif self._cancelling:
                self._give_back(job)
                job._settle(CANCELLED, None)
            else:
                return job
        return None

    async def _run(self, job: AsyncFuture[Any], scope: anyio.CancelScope) -> bool:
        """Run ``job`` in the worker's ``scope``, all its attempts included.

        Returns True if the job was cancelled through ``scope``, which the
        worker must then replace. (``job.cancel()`` is the only caller of
        ``scope.cancel()``; asking the scope instead costs a clock read per
        job on trio.)
        """
        options = job._options
        if options is not None and not self._pass_gates(job, options):
            return False
        job._state = RUNNING
        job._scope = scope
        self._running.add(job)
        error: Exception | None = None
        value: Any
        try:
            if options is None:
                # _invoke(job), written out: this is every plain job's path.
                fn, args, kwargs = job._fn, job._args, job._kwargs
                assert fn is not None and args is not None
                call: Awaitable[Any] = fn(*args, **kwargs) if kwargs else fn(*args)
                if call.__class__ is not CoroutineType:
                    call = _awaitable(fn, call)
                value = await call
            else:
                value = await self._attempts(job, options)
        except Exception as exc:
            error, value = exc, None
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
        if job._state == CANCELLING:
            # Cancelled, but the task swallowed it or finished first: the
            # cancel() that returned True wins.
            job._settle(CANCELLED, None)
            return True
        if error is not None:
            job._settle(FAILED, error)
            # The traceback holds this frame, and this frame the error: break
            # the cycle so the future and its arguments die by refcount.
            error = None
        elif value is not _PARKED:
            job._settle(FINISHED, value)
        return False

    async def _attempts(self, job: AsyncFuture[Any], options: JobOptions) -> Any:
        """Attempt ``job`` until it succeeds or its retry policy gives up.

        Returns the value, or ``_PARKED`` when the job waits at a gate again
        after a back-off (it stays running to its caller); raises the error
        of the last attempt.
        """
        while True:
            try:
                return await _attempt(job, options)
            except Exception as error:
                delay = _retry_delay(job, options, error)
                if delay is None:
                    raise
            finally:
                self._give_back(job)
            self._retries += 1
            # Back-off keeps the worker but not the semaphore.
            await anyio.sleep(delay)
            if not self._pass_gates(job, options):
                return _PARKED

    # -- gates ------------------------------------------------------------------------

    def _pass_gates(self, job: AsyncFuture[Any], options: JobOptions) -> bool:
        """Take a token from each gate not yet passed; park at the first
        that has none (or has a line: no overtaking the jobs in it)."""
        gates = options.gates
        while job._passed < len(gates):
            gate = gates[job._passed]
            limiter, strategy = gate
            if id(limiter) in self._lines or not strategy.try_acquire(limiter, job):
                self._park(job, gate)
                return False
            job._passed += 1
        return True

    def _give_back(self, job: AsyncFuture[Any]) -> None:
        passed = job._passed
        if passed:
            job._passed = 0
            assert job._options is not None
            for limiter, strategy in job._options.gates[:passed]:
                strategy.release(limiter, job)

    def _park(self, job: AsyncFuture[Any], gate: Gate) -> None:
        limiter, strategy = gate
        line = self._lines.get(id(limiter))
        if line is None:
            assert self._task_group is not None
            line = WaitingLine(limiter, strategy, self._on_token, self._line_done)
            self._lines[id(limiter)] = line
            self._tasks += 1
            self._task_group.start_soon(line.serve)
        line.add(job)

    def _on_token(self, job: AsyncFuture[Any]) -> None:
        """A waiting line got a token for ``job``: run it before queued work."""
        job._passed += 1
        self._ready.append(job)
        if self._workers < self.max_workers:
            self._start_worker()

    def _line_done(self, line: WaitingLine) -> None:
        if self._lines.get(id(line.limiter)) is line:
            del self._lines[id(line.limiter)]
        # A line only stops with jobs in it when it was cancelled (the task
        # group is going down): nobody else will start them.
        while line.jobs:
            line.jobs.popleft()._settle(CANCELLED, None)
        self._task_exited()

    # -- cancelling and bookkeeping ------------------------------------------------

    def _cancel_all(self) -> None:
        self._cancelling = True
        for job in list(self._running):
            job.cancel()
        self._sweep()

    def _sweep(self) -> None:
        """Cancel every job that is not in a worker: queued, parked, ready."""
        while self._ready:
            job = self._ready.popleft()
            self._give_back(job)
            job._settle(CANCELLED, None)
        for line in list(self._lines.values()):
            while line.jobs:
                line.jobs.popleft()._settle(CANCELLED, None)
        backlog = self._backlog
        while backlog:
            backlog.popleft()._settle(CANCELLED, None)  # no-op if already final

    def _job_settled(self, state: int) -> None:
        self._finals[state] += 1
        self._outstanding -= 1  # as _release(), without a second call per job
        if self._outstanding == 0:
            self._became_idle()

    def _release(self) -> None:
        """One outstanding future (or running ``map`` call) fewer."""
        self._outstanding -= 1
        if self._outstanding == 0:
            self._became_idle()


def _never() -> bool:
    return False


def _retry_delay(
    job: AsyncFuture[Any], options: JobOptions, error: Exception
) -> float | None:
    """Seconds to wait before the next attempt after ``error``; None: give up.

    A ``retry_on`` predicate that raises fails the job with its own error.
    """
    retry = options.retry
    if retry is None:
        return None
    if job._retry_state is None:
        job._retry_state = retry.new_state(job._fn, job._args, job._kwargs)
    return retry.next_delay(job._retry_state, error)


async def _attempt(job: AsyncFuture[Any], options: JobOptions) -> Any:
    """One attempt with the call's per-attempt options applied."""
    timeout = options.attempt_timeout
    if timeout is None:
        if options.context_limiter is None:
            return await _invoke(job)
        async with options.context_limiter:
            return await _invoke(job)
    with anyio.CancelScope(deadline=anyio.current_time() + timeout):
        if options.context_limiter is None:
            return await _invoke(job)
        async with options.context_limiter:
            return await _invoke(job)
    # Only reached when the deadline cancelled the attempt.
    raise TimeoutError(f"attempt took longer than task_timeout={timeout}")


def _invoke(job: AsyncFuture[Any]) -> Awaitable[Any]:
    """Call the job's function; return the awaitable it made."""
    fn, args, kwargs = job._fn, job._args, job._kwargs
    assert fn is not None and args is not None
    awaitable = fn(*args, **kwargs) if kwargs else fn(*args)
    if type(awaitable) is CoroutineType:
        return awaitable  # pyright: ignore[reportUnknownVariableType]
    return _awaitable(fn, awaitable)


def _awaitable(fn: Callable[..., Any], result: object) -> Awaitable[Any]:
    """``result`` if it is awaitable (not a coroutine: those are taken
    without this call); else a TypeError naming ``fn``."""
    if isinstance(result, Awaitable):
        return result  # pyright: ignore[reportUnknownVariableType]
    name = getattr(fn, "__qualname__", None) or repr(fn)
    raise TypeError(
        f"{name} returned {type(result).__name__}, not an awaitable; "
        "the executor runs async functions"
    )
