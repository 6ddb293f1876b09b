"""AsyncFuture: the thin bridge from a job in the executor back to callers.

One object is both the caller's future and the executor's unit of work: it
carries the function and arguments while queued and drops them when final,
so a queued submission costs one small object and nothing else.

States move one way only::

    PENDING ──> RUNNING ──> FINISHED | FAILED | CANCELLED
       │           └──> CANCELLING ─────────────────^
       └────────────────────────────────────────────^

CANCELLING is a running task whose ``cancel()`` has been called: it still
runs (``running()`` is true) until the task has exited.

Waiting is event-driven: an ``anyio.Event`` is made only when someone awaits
a future that is not yet final, and internal waiters (``wait``,
``as_completed``, ``map``) register callbacks instead, so waiting on n futures
costs O(n) and no task per future.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import anyio

if TYPE_CHECKING:
    import logging

    from ._options import JobOptions
    from ._scheduler import Scheduler

T = TypeVar("T")

PENDING, RUNNING, CANCELLING, FINISHED, FAILED, CANCELLED = range(6)
_STATE_NAMES = ("pending", "running", "cancelling", "finished", "failed", "cancelled")


def check_timeout(timeout: float | None, name: str = "timeout") -> None:
    """``None`` or a non-negative number; NaN is refused, inf allowed."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(
            f"{name} must be a number or None, got {type(timeout).__name__}"
        )
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"{name} must be >= 0 or None, got {timeout}")


@final
class AsyncFuture(Generic[T]):
    """The eventual outcome of a task submitted to an `AsyncExecutor`.

    Await it (or its `result` method) for the value. It is created by
    `AsyncExecutor.submit` and `AsyncExecutor.map`; do not instantiate it.
    """

    __slots__ = (
        "__weakref__",
        "_args",
        "_callbacks",
        "_event",
        "_executor",
        "_fn",
        "_kwargs",
        "_options",
        "_passed",
        "_retrieved",
        "_retry_state",
        "_scope",
        "_state",
        "_value",
        "sequence_id",
    )

    def __init__(
        self,
        executor: Scheduler,
        sequence_id: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        options: JobOptions | None,
    ) -> None:
        #: Submission number within its executor, starting at 1.
        self.sequence_id = sequence_id
        self._executor = executor
        self._fn: Callable[..., Any] | None = fn
        self._args: tuple[Any, ...] | None = args
        self._kwargs = kwargs
        self._options = options
        self._state = PENDING
        self._value: Any = None
        self._callbacks: dict[Callable[[AsyncFuture[T]], object], int] | None = None
        self._event: anyio.Event | None = None
        self._scope: anyio.CancelScope | None = None
        self._passed = 0  # gates (semaphore, rate limits) passed this attempt
        self._retry_state: Any = None
        self._retrieved = False

    # -- queries ---------------------------------------------------------

    def done(self) -> bool:
        """True once the future has a result, an exception or was cancelled."""
        return self._state >= FINISHED

    def cancelled(self) -> bool:
        """True if the future was cancelled."""
        return self._state == CANCELLED

    def running(self) -> bool:
        """True while the task is executing (retry back-off included)."""
        return RUNNING <= self._state <= CANCELLING

    def exception(self) -> BaseException | None:
        """The task's exception; None while pending or after success.

        Raises:
            antflow.CancelledError: if the future was cancelled.
        """
        if self._state == CANCELLED:
            raise _cancelled(self)
        if self._state == FAILED:
            self._retrieved = True
            return self._value  # type: ignore[no-any-return]
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
        if timeout is not None:
            check_timeout(timeout)
        if self._state < FINISHED:
            if not self._executor._on_own_loop():
                raise RuntimeError(
                    f"{self!r} belongs to another event loop; await it on the loop "
                    "that runs its executor"
                )
            await self._wait_final(timeout)
        return self._outcome()

    def __await__(self) -> Generator[Any, None, T]:
        return self.result().__await__()

    def cancel(self) -> bool:
        """Cancel the task.

        A queued task never starts. A running one is cancelled through its
        cancel scope and the future ends cancelled once the task has exited.

        Returns:
            False if the future already has a result or an exception; True
            otherwise (including when it was already cancelled, as in
            ``concurrent.futures``).
        """
        state = self._state
        if state in (CANCELLED, CANCELLING):
            return True
        if state >= FINISHED:
            return False
        if self._scope is not None:
            # Running: the worker settles the future after the task exits.
            self._state = CANCELLING
            self._scope.cancel()
        else:
            self._settle(CANCELLED, None)
        return True

    def add_done_callback(self, fn: Callable[[AsyncFuture[T]], object]) -> None:
        """Call ``fn(future)`` once the future is final (now, if it is).

        An exception raised by ``fn`` is logged to the ``antflow`` logger and
        otherwise ignored.
        """
        if self._state >= FINISHED:
            _call_back(fn, self)
            return
        callbacks = self._callbacks
        if callbacks is None:
            self._callbacks = {fn: 1}
        else:
            callbacks[fn] = callbacks.get(fn, 0) + 1

    def remove_done_callback(self, fn: Callable[[AsyncFuture[T]], object]) -> int:
        """Forget every registration of ``fn``; return how many there were."""
        if self._callbacks is None:
            return 0
        return self._callbacks.pop(fn, 0)

    # -- executor side ---------------------------------------------------

    async def _wait_final(self, timeout: float | None = None) -> None:
        """Block until final, without the loop check (internal callers)."""
        if self._state >= FINISHED:
            return
        if self._event is None:
            self._event = anyio.Event()
        if timeout is None:
            await self._event.wait()
        else:
            with anyio.fail_after(timeout):
                await self._event.wait()

    def _outcome(self) -> T:
        """The value, or raise what the task raised; the future must be final."""
        state = self._state
        if state == FINISHED:
            return self._value  # type: ignore[no-any-return]
        if state == FAILED:
            self._retrieved = True
            raise self._value
        raise _cancelled(self)

    def _settle(self, state: int, value: object) -> None:
        if self._state >= FINISHED:
            return
        self._state = state
        self._value = value
        # Drop what the job held, so arguments die with the work, not the future.
        self._fn = self._args = self._kwargs = self._retry_state = None
        self._scope = None
        # Count it first, so statistics() agrees with the future inside its
        # own done callbacks.
        self._executor._job_settled(state)
        if self._event is not None:
            self._event.set()
        callbacks = self._callbacks
        if callbacks is not None:
            self._callbacks = None
            for fn, count in callbacks.items():
                for _ in range(count):
                    _call_back(fn, self)

    def __repr__(self) -> str:
        state = _STATE_NAMES[self._state]
        if self._state == FAILED:
            state += f" {type(self._value).__name__}"
        return f"<AsyncFuture #{self.sequence_id} {state}>"

    def __del__(self) -> None:
        if self._state == FAILED and not self._retrieved:
            error: BaseException = self._value
            try:
                logger = _logger()
            except ImportError:  # the interpreter is shutting down
                return
            logger.error(
                "exception of %r was never retrieved",
                self,
                exc_info=(type(error), error, error.__traceback__),
            )


def weak_callback(
    method: Callable[[AsyncFuture[Any]], None],
) -> Callable[[AsyncFuture[Any]], None]:
    """A done callback that calls ``method`` only while its object lives.

    Iterators that watch many futures (``as_completed``, ``map_iter``) use it,
    so the futures don't keep them alive: ``break`` out of the loop drops the
    iterator at once and its ``__del__`` cleans up.
    """
    ref = weakref.WeakMethod(method)

    def call(future: AsyncFuture[Any]) -> None:
        bound = ref()
        if bound is not None:
            bound(future)

    return call


def _call_back(fn: Callable[[Any], object], future: AsyncFuture[Any]) -> None:
    try:
        fn(future)
    except Exception:
        _logger().exception("done callback %r of %r raised", fn, future)


def _cancelled(future: AsyncFuture[Any]) -> Exception:
    from ._cancelled import CancelledError

    return CancelledError(f"{future!r} was cancelled")


def _logger() -> logging.Logger:
    # Imported on first use: logging costs more to import than it is used.
    import logging

    return logging.getLogger("antflow")
