"""An executor's life: its phase, its task group, and the ways it ends.

Phases move one way only (`Phase`)::

    NEW ──> OPEN ──> SHUTTING_DOWN ──> CLOSED
     └───────────────────────────────────^

* ``async with`` enters the executor's task group in the caller's task, as a
  nursery would be. Without ``async with``, the first ``submit`` starts a
  detached runner task that hosts the group (see ``_compat``).
* ``shutdown()`` stops new submissions; the executor *closes* once nothing
  is outstanding: idle workers and waiting lines end, and the task group
  finishes.
* If the ``async with`` block raises or is cancelled, or a task raises a
  ``BaseException`` that is not cancellation, everything is cancelled at once
  (``abort``); the block's own exception propagates as it is.
* Whatever happens, ``teardown`` runs last and makes every job final.

`Lifecycle` owns the phase and the task group; the `Pool` it makes owns the
jobs. The executor's public methods are thin: they check arguments and call
these.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, cast

import anyio

from . import _compat
from ._exceptions import ExecutorShutdownError
from ._pool import Pool

if TYPE_CHECKING:
    from anyio.abc import TaskGroup


class Phase(enum.IntEnum):
    """Where an executor is in its life (see the module docstring)."""

    NEW = 0
    OPEN = 1
    SHUTTING_DOWN = 2
    CLOSED = 3


NEW: Final = Phase.NEW
OPEN: Final = Phase.OPEN
SHUTTING_DOWN: Final = Phase.SHUTTING_DOWN
CLOSED: Final = Phase.CLOSED


class Lifecycle:
    """The phase, task group and events of one executor."""

    def __init__(self, max_workers: int, max_pending: int | None = None) -> None:
        self.max_workers = max_workers
        self.max_pending = max_pending
        self.phase = NEW
        #: The pool, once opened.
        self.pool: Pool | None = None
        #: The pool while the phase is OPEN, else None: the hot path's check.
        self.open_pool: Pool | None = None
        #: "asyncio" or "trio", once opened.
        self.backend = ""
        #: Is the caller on our event loop? (cheap; see _compat)
        self.on_own_loop: Callable[[], bool] = _never
        self._token: Any = None
        self._task_group: TaskGroup | None = None
        self._host_task = 0  # the task that entered ``async with``
        self._detached = False  # manual use: a runner task hosts the group
        self._loop_ended = False
        self._stopped: anyio.Event | None = None  # our tasks have all exited
        self._done: anyio.Event | None = None  # torn down: every job final
        self._drained: anyio.Event | None = None  # nothing outstanding any more
        #: The deadline of a shutdown's grace period, once one was given.
        self._grace_scope: anyio.CancelScope | None = None

    # -- opening ------------------------------------------------------------------

    def _open(self) -> Pool:
        """NEW -> OPEN, on the running event loop."""
        assert self.phase == NEW
        token = self._token = _compat.loop_token()
        self.backend = _compat.backend_name(token)
        self.on_own_loop = _compat.loop_checker(token)
        if self.max_pending is None:
            pool = Pool(self.max_workers, self.on_own_loop)
        else:
            from ._room import bounded_pool

            pool = bounded_pool(self.max_workers, self.on_own_loop, self.max_pending)
        self.pool = self.open_pool = pool
        pool.on_idle = self._became_idle
        pool.on_task_exit = self._maybe_stopped
        pool.on_crash = self.abort
        self._stopped = anyio.Event()
        self._done = anyio.Event()
        self.phase = OPEN
        return pool

    async def enter(self) -> None:
        """``async with``: open and enter the task group in this task."""
        if self.phase != NEW:
            raise RuntimeError(
                "an AsyncExecutor can be started only once; make a new one"
            )
        pool = self._open()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self._host_task = _compat.current_task_id()
        pool.attach(task_group)

    def usable(self) -> Pool:
        """The open pool; in manual use the first call starts it.

        Raises:
            ExecutorShutdownError: shutdown has begun, or the executor's
                event loop has ended.
            RuntimeError: called outside the executor's event loop.
        """
        phase = self.phase
        if phase == NEW:
            self._open()
            self._detached = True
            _compat.spawn_detached(self._token, self._run_detached)
        elif phase >= SHUTTING_DOWN:
            if self._loop_ended:
                raise ExecutorShutdownError(
                    "this AsyncExecutor's event loop has ended; an executor "
                    "belongs to the event loop it started on: make a new one"
                )
            raise ExecutorShutdownError("cannot submit: the executor is shut down")
        elif not self.on_own_loop():
            if not _compat.in_any_loop():
                raise RuntimeError(_compat.NO_LOOP)
            raise RuntimeError("this AsyncExecutor belongs to another event loop")
        assert self.pool is not None
        return self.pool

    async def _run_detached(self) -> None:
        pool = self.pool
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
                pool.crash = unwrap(error)
        finally:
            self.abort()
            self._teardown()

    # -- ending ----------------------------------------------------------------

    async def exit(self, exc: BaseException | None) -> bool:
        """The end of the ``async with`` block that entered."""
        task_group = self._task_group
        assert self.pool is not None and task_group is not None
        raised_here: BaseException | None = None
        if exc is None:
            try:
                # Like a nursery: running tasks may still submit more work,
                # and that is waited for too, before shutdown begins.
                await self._drain()
                await self.shutdown(wait=True, cancel_futures=False)
            except BaseException as error:  # cancelled while draining
                exc = raised_here = error
        if exc is not None:
            self.abort()
        if _compat.current_task_id() != self._host_task:
            # Entered in one task and left in another (pytest-asyncio runs an
            # async fixture's set-up and tear-down in two tasks): the task
            # group cannot be exited here, but the work can still be waited
            # for, and nothing of ours outlives this call.
            return await self._exit_elsewhere(exc, raised_here)
        try:
            if await leave_task_group(task_group, exc):
                return True
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
        self, wait: bool, cancel_futures: bool, grace: float | None = None
    ) -> None:
        """See `AsyncExecutor.shutdown`."""
        pool = self.pool
        if pool is None:  # never started: nothing to stop
            self.phase = CLOSED
            return
        if self.phase != CLOSED and not self.on_own_loop():
            raise RuntimeError("this AsyncExecutor belongs to another event loop")
        if wait and pool.worker_ids and _compat.current_task_id() in pool.worker_ids:
            raise RuntimeError(
                "shutdown(wait=True) called from one of its own tasks would wait "
                "for itself; use shutdown(wait=False) there"
            )
        if self.phase == OPEN:
            self._stop_taking_work()
        if grace == 0 or (cancel_futures and grace is None):
            pool.cancel_all()
        elif cancel_futures:
            pool.sweep()  # queued work now; what runs has its grace period
        if pool.outstanding == 0:
            self._close()
        elif grace is not None and grace > 0 and self.phase != CLOSED:
            await self._cancel_after(grace)
        if wait:
            # A detached runner must itself have finished before we return.
            finished = self._done if self._detached else self._stopped
            assert finished is not None
            await finished.wait()
            crash = self._take_crash() if self._detached else None
            if crash is not None:
                raise crash

    def _stop_taking_work(self) -> None:
        """OPEN -> SHUTTING_DOWN: no new work; waiting submitters are told."""
        self.phase = SHUTTING_DOWN
        self.open_pool = None
        assert self.pool is not None
        if self.pool.room is not None:
            self.pool.room.shut_down()

    async def _cancel_after(self, grace: float) -> None:
        """Cancel whatever is left ``grace`` seconds from now (a shorter
        grace given by a later call wins)."""
        deadline = anyio.current_time() + grace
        scope = self._grace_scope
        if scope is not None:
            scope.deadline = min(scope.deadline, deadline)
            return
        pool = self.pool
        assert pool is not None
        self._grace_scope = anyio.CancelScope(deadline=deadline)
        if pool.task_group is None:
            # Manual use, right after the first submit: the runner is about
            # to attach. Shielded, so the grace holds even if we are
            # cancelled now.
            with anyio.CancelScope(shield=True):
                try:
                    await pool.task_group_ready()
                except ExecutorShutdownError:
                    return  # closed meanwhile: nothing left to cancel
        if self.phase != CLOSED:
            pool.spawn(self._watch_grace)

    async def _watch_grace(self) -> None:
        scope = self._grace_scope
        assert scope is not None
        with scope:
            await anyio.sleep_forever()
        pool = self.pool
        if pool is not None and self.phase != CLOSED:
            pool.cancel_all()  # the grace period is over, and work is left

    async def _drain(self) -> None:
        pool = self.pool
        assert pool is not None
        while pool.outstanding:
            self._drained = anyio.Event()
            await self._drained.wait()

    def _take_crash(self) -> BaseException | None:
        pool = self.pool
        if pool is None or pool.crash is None:
            return None
        crash, pool.crash = pool.crash, None
        return crash

    def abort(self) -> None:
        """Cancel everything at once (an exception or cancellation hit us)."""
        pool = self.pool
        assert pool is not None
        if self.phase < CLOSED:
            self._stop_taking_work()
            pool.cancel_all()
            self._close()
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()

    def _close(self) -> None:
        """No more work will come: let workers and waiting lines finish."""
        if self.phase == CLOSED:
            return
        self.phase = CLOSED
        self.open_pool = None
        if self._grace_scope is not None:
            self._grace_scope.cancel()  # nothing left to cancel
        assert self.pool is not None
        self.pool.close()
        self._maybe_stopped()

    def _teardown(self) -> None:
        """Last step: nothing runs any more; make every job final."""
        self.phase = CLOSED
        self.open_pool = None
        pool = self.pool
        if pool is not None:
            pool.teardown()
            # The pool calls back into us; nothing will happen any more, so
            # drop the cycle and let a finished executor die by refcount.
            pool.on_idle = pool.on_task_exit = pool.on_crash = _nothing
        self._task_group = None
        for event in (self._stopped, self._done, self._drained):
            if event is not None:
                event.set()

    def _became_idle(self) -> None:
        if self._drained is not None:
            self._drained.set()
        if self.phase == SHUTTING_DOWN:
            self._close()

    def _maybe_stopped(self) -> None:
        pool = self.pool
        if (
            pool is not None
            and pool.tasks == 0
            and self.phase == CLOSED
            and self._stopped is not None
        ):
            self._stopped.set()


def _never() -> bool:
    return False


def _nothing() -> None:
    pass


async def leave_task_group(task_group: TaskGroup, exc: BaseException | None) -> bool:
    """Exit ``task_group``, entered by hand, at the end of a block that
    raised ``exc`` (or None), as ``async with`` would: True if the group
    absorbed ``exc``, a cancellation of its own.

    Raises:
        BaseException: what the group's tasks raised, a group of one
            unwrapped (`unwrap`). ``exc`` itself is the caller's to re-raise.
    """
    try:
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            # The group must see the cancellation to know whether it was its
            # own (then it absorbs it) or came from outside.
            return bool(await task_group.__aexit__(type(exc), exc, exc.__traceback__))
        # Any other exception of the block is the caller's, raised as it is;
        # handing it to the group would wrap it in a group.
        await task_group.__aexit__(None, None, None)
    except BaseExceptionGroup as group:
        raise unwrap(group) from None
    return False


def unwrap(error: BaseException) -> BaseException:
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
