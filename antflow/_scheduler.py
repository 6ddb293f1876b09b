"""How submitted jobs get to workers: the queue, the workers, the gates.

* ``_enqueue`` sends the job (an `AsyncFuture`) into an unbounded anyio
  memory object stream. No task is created per submission.
* Up to ``max_workers`` worker tasks pull jobs and run them one at a time.
  Workers start lazily, one per job that finds no idle worker, and live
  until the stream is closed.
* Before each attempt a job passes its gates (semaphore, rate limits). A gate
  that cannot be passed at once parks the job in that gate's `WaitingLine`
  and frees the worker (see ``_limits``). When the line has a token for it,
  the job goes into ``_ready``, which workers serve before the stream.
* Jobs run inside their worker's cancel scope, which ``future.cancel()``
  cancels while that job holds it.

`AsyncExecutor` builds its life cycle and public API on top of this class.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Final

import anyio

from ._exceptions import ExecutorShutdownError
from ._future import CANCELLED, FAILED, FINISHED, RUNNING, AsyncFuture
from ._limits import WaitingLine
from ._options import Gate, JobOptions

if TYPE_CHECKING:
    # Type names only: importing these modules at run time would double the
    # cost of ``import antflow`` (the streams are made through ``anyio``).
    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

#: Sent into the stream to wake an idle worker for a job in ``_ready``.
_WAKE: Final = object()

#: Jobs a worker may take in a row without a checkpoint of its own.
_STREAK: Final = 32


class Scheduler:
    """The queue and worker pool under an `AsyncExecutor`."""

    def __init__(self, max_workers: int) -> None:
        #: The most tasks that run at once.
        self.max_workers: Final = max_workers
        self._send: MemoryObjectSendStream[Any] | None = None
        self._receive: MemoryObjectReceiveStream[Any] | None = None
        self._task_group: TaskGroup | None = None
        self._ready: deque[AsyncFuture[Any]] = deque()
        self._lines: dict[int, WaitingLine] = {}
        self._running: set[AsyncFuture[Any]] = set()
        self._cancelling = False
        self._workers = 0  # live worker tasks
        self._idle = 0  # workers blocked on the stream
        self._queued = 0  # items in the stream not yet taken by a worker
        self._tasks = 0  # live tasks of ours: workers and waiting lines
        self._outstanding = 0  # futures not yet final, plus running map() calls
        self._sequence = 0  # futures made, which is also "submitted"
        # How many futures ended in each final state, indexed by state.
        self._finals = [0] * (CANCELLED + 1)
        self._retries = 0
        self._on_own_loop: Callable[[], bool] = _never
        self._send_nowait: Callable[[Any], None] = _closed_stream

    def _open_queue(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[Any](math.inf)
        self._send_nowait = self._send.send_nowait

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
        future: AsyncFuture[Any] = AsyncFuture(
            self, self._sequence + 1, fn, args, kwargs, options
        )
        try:
            self._send_nowait(future)
        except anyio.ClosedResourceError:
            raise ExecutorShutdownError(
                "cannot submit: the executor is shut down"
            ) from None
        self._sequence += 1
        self._outstanding += 1
        self._queued += 1
        if self._queued > self._idle and self._workers < self.max_workers:
            self._start_worker()
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
        taken = 0  # jobs taken in a row without a checkpoint of our own
        try:
            while True:
                with anyio.CancelScope() as scope:
                    while not scope.cancel_called:
                        may_skip = taken < _STREAK
                        taken = taken + 1 if may_skip else 0
                        job = await self._next_job(may_skip_checkpoint=may_skip)
                        if job is None:
                            return
                        await self._run(job, scope)
        finally:
            self._workers -= 1
            self._task_exited()

    async def _next_job(self, may_skip_checkpoint: bool) -> AsyncFuture[Any] | None:
        """The next job to start (ready ones first); None once closed.

        A blocking ``receive()`` is a trip through the event loop even when a
        job is waiting, which doubles the cost of a short job. So a worker
        may take a waiting job without blocking, but only ``_STREAK`` times
        in a row: the jobs' own awaits normally yield to the loop, and the
        cap bounds how long jobs that never await keep it from other tasks.
        """
        ready, receive = self._ready, self._receive
        assert receive is not None
        item: Any
        while True:
            if ready:
                job = ready.popleft()
            else:
                item = _take_nowait(receive) if may_skip_checkpoint else None
                if item is None:
                    self._idle += 1
                    try:
                        item = await receive.receive()
                    except anyio.EndOfStream:
                        return None
                    finally:
                        self._idle -= 1
                self._queued -= 1
                if item is _WAKE:
                    continue
                job = item
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
        if options is not None and not self._pass_gates(job, options):
            return
        job._state = RUNNING
        job._scope = scope
        self._running.add(job)
        error: Exception | None = None
        value: Any = None
        parked = False
        try:
            while True:
                try:
                    if options is None:
                        value = await _call(job)
                    else:
                        value = await _attempt(job, options)
                except Exception as exc:
                    error = exc
                else:
                    error = None
                finally:
                    self._give_back(job)
                if error is None or options is None or options.retry is None:
                    break
                try:
                    if job._retry_state is None:
                        job._retry_state = options.retry.new_state(
                            job._fn, job._args, job._kwargs
                        )
                    delay = options.retry.next_delay(job._retry_state, error)
                except Exception as policy_error:  # a retry_on predicate raised
                    error = policy_error
                    break
                if delay is None:
                    break
                self._retries += 1
                # Back-off keeps the worker but not the semaphore.
                await anyio.sleep(delay)
                if not self._pass_gates(job, options):
                    parked = True
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
        elif parked:
            pass  # waiting for a gate again; still "running" to its caller
        elif error is not None:
            job._settle(FAILED, error)
            # The traceback holds this frame, and this frame the error: break
            # the cycle so the future and its arguments die by refcount.
            error = None
        else:
            job._settle(FINISHED, value)

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
        if self._idle:
            # Idle workers sleep on the stream; wake one.
            self._queued += 1
            self._send_nowait(_WAKE)
        elif self._workers < self.max_workers:
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

    def _job_settled(self, state: int) -> None:
        self._finals[state] += 1
        self._release()

    def _release(self) -> None:
        """One outstanding future (or running ``map`` call) fewer."""
        self._outstanding -= 1
        if self._outstanding == 0:
            self._became_idle()


def _take_nowait(receive: MemoryObjectReceiveStream[Any]) -> Any:
    try:
        return receive.receive_nowait()
    except (anyio.WouldBlock, anyio.EndOfStream):
        return None  # the blocking receive will wait, or see the end


def _closed_stream(item: object) -> None:
    raise anyio.ClosedResourceError


def _never() -> bool:
    return False


async def _attempt(job: AsyncFuture[Any], options: JobOptions) -> Any:
    """One attempt with the call's per-attempt options applied."""
    timeout = options.attempt_timeout
    if timeout is None:
        if options.context_limiter is None:
            return await _call(job)
        async with options.context_limiter:
            return await _call(job)
    with anyio.CancelScope(deadline=anyio.current_time() + timeout):
        if options.context_limiter is None:
            return await _call(job)
        async with options.context_limiter:
            return await _call(job)
    # Only reached when the deadline cancelled the attempt.
    raise TimeoutError(f"attempt took longer than task_timeout={timeout}")


async def _call(job: AsyncFuture[Any]) -> Any:
    fn = job._fn
    assert fn is not None
    assert job._args is not None
    kwargs = job._kwargs
    awaitable: Any = fn(*job._args, **kwargs) if kwargs else fn(*job._args)
    if type(awaitable) is CoroutineType or isinstance(awaitable, Awaitable):
        return await awaitable  # pyright: ignore[reportUnknownVariableType]
    name = getattr(fn, "__qualname__", None) or repr(fn)
    raise TypeError(
        f"{name} returned {type(awaitable).__name__}, not an awaitable; "
        "the executor runs async functions"
    )
