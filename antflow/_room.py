"""Backpressure: ``max_pending``, a bound on queued work, and who waits for room.

A job is *pending* while it is not final and holds no worker slot: it waits
for a worker, a semaphore or a rate-limit token (a retry that waits for its
limiter again included). Running jobs (back-off included) and jobs handed to
a worker that is about to start them are not pending. An executor with
``max_pending=n`` takes a new job only while fewer than ``n`` are pending:

* ``submit`` (which never waits, as in ``concurrent.futures``) raises
  `ExecutorFullError` when there is no room, as anyio's ``send_nowait``
  raises ``WouldBlock``;
* ``await asubmit(...)`` waits for room, first come, first served, then
  submits without a checkpoint in between: a waiter that is cancelled has
  queued nothing, and room it was woken for goes to the next in line;
* ``map`` and ``map_iter`` read their input only while there is room (their
  own read-ahead bound still applies), waiting in the same line when they
  have nothing in flight; they never raise for it.

Room appears when a pending job is admitted (takes a worker slot) or ends
without running; a `BoundedPool` (the pool of an executor with
``max_pending``; the others pay nothing for it) calls `Room.changed` then,
and the room wakes as many waiters as there is room for. Counting needs no
state per job: pending is ``submitted - final - admitted``, from the pool's
own counters.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from ._exceptions import ExecutorFullError, ExecutorShutdownError
from ._pool import Pool

if TYPE_CHECKING:
    from ._job import Job
    from ._limits import WaitingLine


class Room:
    """An executor's ``max_pending`` and the line of those waiting for room."""

    __slots__ = ("_promised", "_waiters", "max_pending", "pool", "shut")

    def __init__(self, pool: Pool, max_pending: int) -> None:
        self.pool = pool
        self.max_pending = max_pending
        #: Set once shutdown has begun: waiters raise ExecutorShutdownError.
        self.shut = False
        self._waiters: deque[anyio.Event] = deque()
        #: Waiters woken for room that have not used it yet.
        self._promised = 0

    def pending(self) -> int:
        """Jobs not final that hold no worker slot."""
        pool = self.pool
        return pool.submitted - sum(pool.finals) - pool.running_count()

    def _free(self) -> int:
        return self.max_pending - self.pending() - self._promised

    def available(self) -> bool:
        """May a job be submitted now without waiting (nobody waits first)?"""
        return not self._waiters and self._free() > 0

    def full_error(self) -> ExecutorFullError:
        return ExecutorFullError(
            f"cannot submit: max_pending={self.max_pending} tasks are already "
            "queued; await executor.asubmit(...) waits for room"
        )

    async def wait(self, *, keep_open: bool = False) -> None:
        """Wait until a job may be submitted; the caller submits it before
        its next checkpoint, or calls `changed` if it submits nothing (the
        room goes to the next in line; without that call it would wait for
        some other job to change the room, maybe for ever).

        Args:
            keep_open: A map's wait: a running map keeps the executor open
                through a graceful shutdown, so only the executor's close
                ends it.

        Raises:
            ExecutorShutdownError: shutdown has begun (with ``keep_open``:
                the executor has closed).
        """
        await anyio.lowlevel.checkpoint()
        self._check_open(keep_open)
        if self.available():
            return
        event = anyio.Event()
        self._waiters.append(event)
        while True:
            try:
                await event.wait()
            except BaseException:
                if event.is_set():
                    # Woken, then cancelled before using the room: pass it on.
                    self._promised -= 1
                    self.changed()
                else:
                    self._waiters.remove(event)
                raise
            self._promised -= 1
            try:
                self._check_open(keep_open)
            except ExecutorShutdownError:
                self.changed()  # the room we were woken for is not ours
                raise
            if self._free() > 0:
                return
            # A plain submit took the room meanwhile (or shutdown woke us):
            # wait again, first in line.
            event = anyio.Event()
            self._waiters.appendleft(event)

    def _check_open(self, keep_open: bool) -> None:
        if self.shut and not (keep_open and self.pool.accepting):
            raise ExecutorShutdownError("cannot submit: the executor is shut down")

    def changed(self) -> None:
        """A pending job was admitted or ended: wake whom there is room for."""
        waiters = self._waiters
        while waiters and self._free() > 0:
            self._promised += 1
            waiters.popleft().set()

    def shut_down(self) -> None:
        """Shutdown has begun (or the executor has closed): wake every waiter
        to find out (see `wait`)."""
        self.shut = True
        waiters = self._waiters
        while waiters:
            self._promised += 1
            waiters.popleft().set()


class BoundedPool(Pool):
    """A pool that tells its `Room` when a pending job is admitted or ends."""

    #: The same as ``room``, never None here.
    bound: Room

    def _admit(self, job: Job, line: WaitingLine | None = None) -> bool:
        if super()._admit(job, line):
            self.bound.changed()
            return True
        return False

    def job_settled(self, job: Job) -> None:
        super().job_settled(job)
        self.bound.changed()


def bounded_pool(
    max_workers: int, on_own_loop: Callable[[], bool], max_pending: int
) -> BoundedPool:
    """The pool of an executor with ``max_pending``."""
    pool = BoundedPool(max_workers, on_own_loop)
    pool.room = pool.bound = Room(pool, max_pending)
    return pool
