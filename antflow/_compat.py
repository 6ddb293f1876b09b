"""Everything in antflow that depends on which event loop runs it.

antflow goes through anyio everywhere it can. What is left is here, in one
place, each piece with the reason anyio could not do it:

* **Which loop is this?** A cheap same-loop test for hot paths, and clear
  answers when there is no loop or a finished one.
* **A task of its own.** ``submit`` is synchronous, yet in manual use (no
  ``async with``) the first call must start the executor's task group
  somewhere; anyio starts tasks only from inside a task group.
* **Clocks.** A rate limiter needs the loop's clock at sub-millisecond
  resolution: uvloop's ``loop.time()`` moves once a millisecond.
* **Native limiters.** ``asyncio.Semaphore`` has no public non-blocking
  acquire, and trio's limiters raise trio's own ``WouldBlock``.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from anyio.lowlevel import EventLoopToken


# -- which loop ----------------------------------------------------------------


def loop_token() -> EventLoopToken:
    """Identify the running event loop (equal tokens mean the same loop).

    Raises:
        RuntimeError: no asyncio or trio event loop runs in this thread.
    """
    # Imported here, once per executor: it is a tenth of `import antflow`.
    from anyio.lowlevel import current_token

    try:
        return current_token()
    except RuntimeError:  # anyio's NoEventLoopError is a RuntimeError
        raise RuntimeError(NO_LOOP) from None


NO_LOOP = (
    "no running event loop in this thread: call antflow from async code, on "
    "the event loop that runs the executor"
)


def backend_name(token: EventLoopToken) -> str:
    """``"asyncio"`` or ``"trio"``, for the loop the token names."""
    return "trio" if "trio" in token.backend_class.__module__ else "asyncio"


def loop_checker(token: EventLoopToken) -> Callable[[], bool]:
    """A cheap "are we on the loop ``token`` names?" test for hot paths.

    ``current_token()`` answers the same question portably but costs a
    microsecond, which is half of what a ``submit`` may cost.
    """
    native = token.native_token
    if backend_name(token) == "trio":
        import trio

        def on_trio_loop() -> bool:
            try:
                return trio.lowlevel.current_trio_token() is native
            except RuntimeError:
                return False

        return on_trio_loop

    from asyncio import events

    # The C accessor: None outside a running loop, never raises.
    get_running_loop = events._get_running_loop

    def on_asyncio_loop() -> bool:
        return get_running_loop() is native

    return on_asyncio_loop


def _asyncio_loop() -> Any:
    """The asyncio loop that runs this code, or None: none runs, or trio
    does (trio in guest mode runs on an asyncio loop, which is then running
    too, but its tasks are trio's)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    loop = asyncio.events._get_running_loop()
    if loop is not None and _in_trio():
        return None
    return loop


def _in_trio() -> bool:
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


def in_any_loop() -> bool:
    """Is some asyncio or trio event loop running in this thread?"""
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and asyncio.events._get_running_loop() is not None:
        return True
    return _in_trio()


def _on_real_clock(loop: Any) -> bool:
    """Is ``loop``'s clock the system's monotonic clock (asyncio's own
    loops; uvloop's, to the millisecond), not a virtual one?"""
    import asyncio

    kind: Any = loop.__class__
    return kind.time is asyncio.BaseEventLoop.time or kind.__module__.startswith(
        "uvloop"
    )


def current_task_id() -> int:
    """An id for the running task, equal to ``anyio.get_current_task().id``."""
    import anyio

    return anyio.get_current_task().id


# -- a task of its own ---------------------------------------------------------


def spawn_detached(
    token: EventLoopToken, func: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """Run ``func()`` as a task of its own on the loop ``token`` names.

    The task is not a child of the caller. On asyncio it is a plain loop task
    (``asyncio.run`` cancels it if it is still alive at the end); on trio it is
    a system task, which trio cancels when the main task returns. ``func`` must
    not raise: trio treats an exception from a system task as an internal
    error.
    """
    if backend_name(token) == "trio":
        import trio

        trio.lowlevel.spawn_system_task(func)
    else:
        import asyncio

        loop = cast(asyncio.AbstractEventLoop, token.native_token)
        task = loop.create_task(func())
        # The loop holds only a weak reference to its tasks; keep this one
        # alive until it is done.
        _detached.add(task)
        task.add_done_callback(_detached.discard)


_detached: set[Any] = set()


# -- clocks ------------------------------------------------------------------

_monotonic = time.monotonic


def clock() -> Callable[[], float]:
    """The running loop's clock, as fine as the system's monotonic clock.

    It is ``anyio.current_time`` except on uvloop, whose ``loop.time()``
    is libuv's millisecond timestamp taken once per loop iteration: a rate
    limiter reading it could start no more than one job a millisecond. The
    same monotonic clock read directly does not have that limit. (It is also
    what asyncio's own loops read, so a clock got on one real loop is right
    on the next; a virtual loop's is its own.)
    """
    loop = _asyncio_loop()
    if loop is not None:
        if _on_real_clock(loop):
            return _monotonic
        return cast(Callable[[], float], loop.time)
    import anyio

    return anyio.current_time


def timer_resolution() -> tuple[float, float]:
    """How the running loop keeps time: ``(late, tick)`` in seconds.

    ``late`` is how late a timer may fire: about a millisecond on real
    clocks (epoll waits in whole milliseconds, and uvloop rounds timers to
    them), zero on virtual ones, which jump exactly to the next deadline.
    ``tick`` is the smallest step of the clock itself: async_solipsism's
    virtual clock counts whole microseconds; the others are as fine as a
    float.
    """
    loop = _asyncio_loop()
    if loop is not None:
        if _on_real_clock(loop):
            return 1e-3, 0.0
        # A virtual loop (async_solipsism): asyncio's own attribute for the
        # clock's resolution.
        return 0.0, float(getattr(loop, "_clock_resolution", 0.0))
    import trio

    real = type(trio.lowlevel.current_clock()).__name__ == "SystemClock"
    return (1e-3 if real else 0.0), 0.0


# -- native limiters ---------------------------------------------------------


def native_limiter_kind(kind: type[object], backend: str) -> str | None:
    """Classify a limiter class that is not anyio's.

    Returns ``"asyncio_semaphore"``, ``"trio_capacity"``, ``"trio_semaphore"``
    or None (not a native limiter we know).

    Raises:
        TypeError: a native limiter of the other backend.
    """
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
    # asyncio is imported by whoever made an asyncio semaphore; don't import
    # it ourselves (it would double the cost of ``import antflow`` on trio).
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and issubclass(kind, asyncio.Semaphore):
        return "asyncio_semaphore"
    if module.startswith("trio"):
        import trio

        if issubclass(kind, trio.CapacityLimiter):
            return "trio_capacity"
        if issubclass(kind, trio.Semaphore):
            return "trio_semaphore"
    return None


def trio_would_block() -> type[Exception]:
    import trio

    return trio.WouldBlock


def asyncio_semaphore_try_acquire(semaphore: Any) -> bool:
    """Take a token of an ``asyncio.Semaphore`` without blocking.

    It has no public non-blocking acquire, but when it is not ``locked()``,
    ``acquire()`` completes without suspending, so driving its coroutine one
    step takes the token synchronously.
    """
    if semaphore.locked():
        return False
    step = semaphore.acquire()
    try:
        step.send(None)
    except StopIteration:
        return True
    # Unreachable with CPython's semaphore; stay correct if it changes.
    step.close()
    return False


# -- parking an idle task --------------------------------------------------------


class Wake:
    """A one-shot wake-up call for one parked task: `wait` parks the task
    until `set` (which may come first) or a cancellation; ``woken`` says
    whether `set` was called.

    ``anyio.Event`` does this for any number of waiters, at a higher cost on
    both sides. An idle worker parks once per job when jobs wait at a
    limiter, so the cost shows there (``semaphore=CapacityLimiter(50)``,
    100 workers: 113.5k -> 95.5k instructions per item on asyncio, 136.1k
    -> 125.9k on trio; callgrind, workload a).
    """

    __slots__ = ("woken",)

    def __init__(self) -> None:
        self.woken = False

    def set(self) -> None:
        raise NotImplementedError

    async def wait(self) -> None:
        raise NotImplementedError


class _AsyncioWake(Wake):
    __slots__ = ("_future",)

    def __init__(self, loop: Any) -> None:
        self.woken = False
        self._future = loop.create_future()

    def set(self) -> None:
        if not self.woken:
            self.woken = True
            if not self._future.done():
                self._future.set_result(None)

    async def wait(self) -> None:
        # A cancel scope cancels the task, and with it this future: the
        # task wakes with the cancellation.
        await self._future


@functools.cache
def _trio_wake() -> type[Wake]:
    """The `Wake` of trio, made on first use (trio is an optional extra)."""
    import trio

    protected = trio.lowlevel.enable_ki_protection

    class _TrioWake(Wake):
        # Both methods are protected from KeyboardInterrupt, as trio's own
        # primitives are: a Ctrl-C between the flag and the reschedule would
        # leave the worker parked for ever, and the run could not end.
        __slots__ = ("_task",)

        def __init__(self) -> None:
            self.woken = False
            self._task: Any = None

        @protected
        def set(self) -> None:
            if not self.woken:
                self.woken = True
                task, self._task = self._task, None
                if task is not None:
                    trio.lowlevel.reschedule(task)

        @protected
        async def wait(self) -> None:
            if self.woken:
                await trio.lowlevel.checkpoint()
                return
            self._task = trio.lowlevel.current_task()

            def abort(_: Any) -> Any:
                # Cancelled while parked: the task wakes with the cancellation.
                self._task = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)

    return _TrioWake


def wake_maker() -> Callable[[], Wake]:
    """What makes a `Wake` on the running loop."""
    loop = _asyncio_loop()
    if loop is not None:
        return lambda: _AsyncioWake(loop)
    return _trio_wake()
