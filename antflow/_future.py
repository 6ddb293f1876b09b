"""AsyncFuture: the caller's view of a submitted job.

A future is a thin handle on a `Job` (``_job``), which owns the state and
the outcome; the future adds the ``concurrent.futures`` API on top. Waiting
is event-driven: an ``anyio.Event`` is made only when someone awaits a job
that is not yet final, and internal waiters (``wait``, ``as_completed``)
register callbacks instead, so waiting on n futures costs O(n) and no task
per future.

A failed future whose exception nobody read is reported through the
``antflow`` logger when it is garbage-collected, as asyncio does. The
finalizer that does it is attached only to futures that fail, so a
successful future costs nothing at its end.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

from ._checks import check_timeout
from ._job import CANCELLED, CANCELLING, FAILED, FINISHED, RUNNING, call_back, logger

if TYPE_CHECKING:
    from ._job import Job

T = TypeVar("T")


@final
class AsyncFuture(Generic[T]):
    """The eventual outcome of a task submitted to an `AsyncExecutor`.

    Await it (or its `result` method) for the value. It is created by
    `AsyncExecutor.submit`; do not instantiate it.
    """

    __slots__ = ("__weakref__", "_job")

    def __init__(self, job: Job) -> None:
        self._job = job
        job.future = self

    @property
    def sequence_id(self) -> int:
        """Submission number within its executor, starting at 1."""
        return self._job.number

    # -- queries ---------------------------------------------------------

    def done(self) -> bool:
        """True once the future has a result, an exception or was cancelled."""
        return self._job.state >= FINISHED

    def cancelled(self) -> bool:
        """True if the future was cancelled."""
        return self._job.state == CANCELLED

    def running(self) -> bool:
        """True while the task is executing (retry back-off included)."""
        return RUNNING <= self._job.state <= CANCELLING

    def exception(self) -> BaseException | None:
        """The task's exception; None while pending or after success.

        Raises:
            antflow.CancelledError: if the future was cancelled.
        """
        job = self._job
        if job.state == CANCELLED:
            job.outcome()  # raises CancelledError
        if job.state == FAILED:
            job.retrieved = True
            return job.value  # type: ignore[no-any-return]
        return None

    async def result(self, timeout: float | None = None) -> T:
        """Wait for the task and return its value.

        Args:
            timeout: Seconds to wait at most, or None to wait as long as it
                takes. On expiry the task keeps running; only the wait ends.

        Returns:
            The task's return value.

        Raises:
            TimeoutError: ``timeout`` passed before the future was final.
            antflow.CancelledError: the future was cancelled.
            Exception: the task's own exception, re-raised.
            RuntimeError: the future belongs to another event loop.
        """
        job = self._job
        if timeout is not None:
            check_timeout(timeout)
        if job.state < FINISHED:
            if not job.pool.on_own_loop():
                raise RuntimeError(
                    f"{self!r} belongs to another event loop; await it on the loop "
                    "that runs its executor"
                )
            if timeout is None:
                await job.wait_final()
            else:
                import anyio

                with anyio.fail_after(timeout):
                    await job.wait_final()
        try:
            return job.outcome()  # type: ignore[no-any-return]
        finally:
            # A raised error's traceback keeps this frame: it must not keep
            # the future and its job alive in a cycle.
            del self, job

    def __await__(self) -> Generator[Any, None, T]:
        return self.result().__await__()

    def cancel(self) -> bool:
        """Cancel the task.

        A queued task never starts. A running one is cancelled through its
        cancel scope, and the future ends cancelled once the task has exited;
        if the task's cleanup raises an exception, the future ends failed
        with it instead, as an asyncio task does.

        Returns:
            False if the future already has a result or an exception; True
            otherwise (including when it was already cancelled, as in
            ``concurrent.futures``).
        """
        return self._job.request_cancel()

    def add_done_callback(self, fn: Callable[[AsyncFuture[T]], object]) -> None:
        """Call ``fn(future)`` once the future is final (now, if it is).

        Callbacks run in the order they were added. An exception raised by
        ``fn`` is logged to the ``antflow`` logger and otherwise ignored.
        """
        job = self._job
        if job.state >= FINISHED:
            call_back(fn, self)
        else:
            job.add_callback(fn)

    def remove_done_callback(self, fn: Callable[[AsyncFuture[T]], object]) -> int:
        """Forget every registration of ``fn``; return how many there were."""
        return self._job.remove_callback(fn)

    def __repr__(self) -> str:
        return f"<AsyncFuture #{self._job.number} {self._job.describe()}>"


def job_of(future: AsyncFuture[Any]) -> Job:
    """The job behind ``future``, for antflow's waiting helpers."""
    # The one reader of a future's internals from outside the class: the
    # waiting helpers need the job's loop and failure state without marking
    # an exception as retrieved, which the public API would do.
    return future._job  # pyright: ignore[reportPrivateUsage]


def watch_unretrieved(future: AsyncFuture[Any], job: Job) -> None:
    """Log ``job``'s exception when ``future`` dies if nobody has read it."""
    finalizer = weakref.finalize(future, _report_unretrieved, job)
    # At interpreter exit the logging machinery may be half torn down.
    finalizer.atexit = False


def _report_unretrieved(job: Job) -> None:
    if job.retrieved or job.state != FAILED:
        return
    error: BaseException = job.value
    logger().error(
        "exception of <AsyncFuture #%d failed %s> was never retrieved",
        job.number,
        type(error).__name__,
        exc_info=(type(error), error, error.__traceback__),
    )
