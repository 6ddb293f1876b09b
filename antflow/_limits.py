"""Per-task limiters, and how a job waits for one without holding a worker.

``submit(..., semaphore=x)`` accepts any async context manager, but the
limiters people pass have a non-blocking acquire, and for those antflow does
better than ``async with x:`` inside a worker, where a worker that pulled a
job whose limiter is full would sit idle while unrelated work queues behind
it. Each such limiter gets a `Gate`: how to take a token without blocking,
how to wait for one, how to give it back. A job passes all its gates at
once, when a worker slot is free, or none (see ``_pool``); a job that cannot
is *parked* in the `WaitingLine` of the gate that stopped it, and the worker
moves on.

A line is one task per limiter per executor. It waits for a token for its
oldest job (in the limiter's own queue, so every user of a shared limiter is
served first come, first served), but only while its executor has a free
worker slot: a token is taken only when the job can start at once. If the
slot is gone when the token comes, the token goes straight back.

Tokens of a ``CapacityLimiter`` are borrowed on behalf of the job, not of a
task (a line acquires, a worker releases), through its ``*_on_behalf_of``
methods.

Any other async context manager (a lock, a user-defined limiter) has no
non-blocking path antflow can trust to be released from another task, so it
is entered and exited inside the worker, around each attempt.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import anyio

from . import _compat
from ._job import FINISHED

if TYPE_CHECKING:
    from ._job import Job
    from ._pool import Pool


class Gate:
    """How to take and give back tokens of one kind of limiter."""

    #: False for a rate limit: a start slot, once taken, is spent.
    releasable = True

    def try_take(self, limiter: Any, job: Job) -> bool:
        """Take a token now if the limiter has one and nobody waits for it."""
        raise NotImplementedError

    def give_back(self, limiter: Any, job: Job) -> None:
        raise NotImplementedError

    def ready(self, limiter: Any) -> bool:
        """Could a token be taken now? Asked only of non-releasable gates,
        which are checked together before any of them is taken."""
        raise NotImplementedError

    def new_line(self, limiter: Any, pool: Pool) -> WaitingLine:
        return TokenLine(limiter, self, pool)

    async def acquire(self, limiter: Any, job: Job) -> None:
        """Wait for a token in the limiter's own queue, and take it."""
        raise NotImplementedError


class _AnyioOrTrio(Gate):
    """A semaphore or capacity limiter of anyio or trio.

    A capacity limiter lends each token to an owner, who alone may give it
    back: tokens go to the job (a line may take one and a worker give it
    back). A semaphore only counts, and anyone may release.
    """

    def __init__(self, would_block: type[Exception], borrowing: bool) -> None:
        self._would_block = would_block
        self._borrowing = borrowing

    def try_take(self, limiter: Any, job: Job) -> bool:
        try:
            if self._borrowing:
                limiter.acquire_on_behalf_of_nowait(job)
            else:
                limiter.acquire_nowait()
        except self._would_block:
            return False
        return True

    async def acquire(self, limiter: Any, job: Job) -> None:
        if self._borrowing:
            await limiter.acquire_on_behalf_of(job)
        else:
            await limiter.acquire()

    def give_back(self, limiter: Any, job: Job) -> None:
        if self._borrowing:
            limiter.release_on_behalf_of(job)
        else:
            limiter.release()


class _AsyncioSemaphore(Gate):
    """``asyncio.Semaphore`` and ``BoundedSemaphore``."""

    def try_take(self, limiter: Any, job: Job) -> bool:
        return _compat.asyncio_semaphore_try_acquire(limiter)

    async def acquire(self, limiter: Any, job: Job) -> None:
        await limiter.acquire()

    def give_back(self, limiter: Any, job: Job) -> None:
        limiter.release()


_gates: dict[tuple[type[object], str], Gate | None] = {}


def gate_for(limiter: object, backend: str) -> Gate | None:
    """How to use ``limiter`` on ``backend``.

    Returns None for an async context manager without a non-blocking path
    (entered in the worker instead).

    Raises:
        TypeError: not a limiter, or a native limiter of the other backend.
    """
    kind = type(limiter)
    key = (kind, backend)
    try:
        return _gates[key]
    except KeyError:
        pass
    gate = _classify(kind, backend)
    _gates[key] = gate
    return gate


def _classify(kind: type[object], backend: str) -> Gate | None:
    if issubclass(kind, anyio.CapacityLimiter):
        return _AnyioOrTrio(anyio.WouldBlock, borrowing=True)
    if issubclass(kind, anyio.Semaphore):
        return _AnyioOrTrio(anyio.WouldBlock, borrowing=False)
    native = _compat.native_limiter_kind(kind, backend)
    if native == "asyncio_semaphore":
        return _AsyncioSemaphore()
    if native == "trio_capacity":
        return _AnyioOrTrio(_compat.trio_would_block(), borrowing=True)
    if native == "trio_semaphore":
        return _AnyioOrTrio(_compat.trio_would_block(), borrowing=False)
    if hasattr(kind, "__aenter__") and hasattr(kind, "__aexit__"):
        return None
    raise TypeError(
        "semaphore must be an async context manager such as anyio.CapacityLimiter, "
        f"got {kind.__name__}"
    )


class WaitingLine:
    """The jobs parked at one limiter, oldest first, and the task that gets
    each of them a token.

    The line's task exists while jobs wait in it. ``serve`` is the same for
    every kind of limiter; how to wait for a token (``wait_for_token``), to
    use it (``claim``) and to pass it on (``decline``) is the kind's own.
    """

    def __init__(self, limiter: Any, gate: Gate, pool: Pool) -> None:
        self.limiter = limiter
        self.gate = gate
        self.pool = pool
        self.jobs: deque[Job] = deque()
        #: Cancelled when the pool closes: only cancelled jobs are left then.
        self.scope = anyio.CancelScope()

    def add(self, job: Job) -> None:
        """Queue ``job`` in submission order.

        Workers that took jobs in order may reach this point in another
        order (trio runs ready tasks in random order, and jobs park again
        after a back-off), so the line sorts by number; it is almost always
        appending.
        """
        jobs = self.jobs
        position = len(jobs)
        while position and jobs[position - 1].number > job.number:
            position -= 1
        jobs.insert(position, job)

    def waiting(self) -> bool:
        """Does a job that is not final wait here? Newcomers queue behind it."""
        jobs = self.jobs
        while jobs and jobs[0].state >= FINISHED:
            jobs.popleft()
        return bool(jobs)

    async def serve(self) -> None:
        """Get a token for the oldest job, whenever a worker slot is free."""
        pool, jobs = self.pool, self.jobs
        try:
            with self.scope:
                while jobs:
                    job = jobs[0]
                    if job.state >= FINISHED:
                        jobs.popleft()
                        continue
                    if not pool.has_free_slot():
                        # Hold no place in the limiter's own line meanwhile:
                        # the others in it would wait for our workers.
                        self.close()
                        await pool.free_slot(self)
                        continue
                    try:
                        # Jobs that can have a token at once go without a
                        # trip through the event loop each: when a wave of
                        # jobs gives tokens back, one wake of this task
                        # starts as many (semaphore=CapacityLimiter(50):
                        # 222k -> 118k instructions per item, callgrind,
                        # asyncio, workload a).
                        got = self.take_now(job) or await self.wait_for_token(job)
                    except Exception as error:  # the limiter itself failed
                        self.remove(job)
                        pool.limiter_failed(job, error)
                        continue
                    if got:
                        self.remove(job)
                        pool.admit_from_line(self, job)
        finally:
            self.close()
            pool.line_ended(self)

    def remove(self, job: Job) -> None:
        jobs = self.jobs
        if jobs and jobs[0] is job:
            jobs.popleft()
        elif job in jobs:
            jobs.remove(job)

    def take_now(self, job: Job) -> bool:
        """Take a token for ``job`` if one is free and nobody else waits
        for it; a worker slot is free."""
        return False

    async def wait_for_token(self, job: Job) -> bool:
        """Wait until ``job`` may have a token; True if it has (or may take)
        one now, False to look again (the job or the slot went meanwhile)."""
        raise NotImplementedError

    def claim(self, job: Job) -> None:
        """Make the token ``wait_for_token`` got ``job``'s."""

    def decline(self, job: Job) -> None:
        """Pass on the token ``wait_for_token`` got: the job cannot use it."""

    def close(self) -> None:
        """Give up any place held in the limiter's own line (the line's task
        is ending, or waits for a worker slot)."""


class TokenLine(WaitingLine):
    """A line for a limiter with a queue of its own (semaphores, capacity
    limiters): wait in that queue, then hold the token for the job."""

    def take_now(self, job: Job) -> bool:
        return self.gate.try_take(self.limiter, job)

    async def wait_for_token(self, job: Job) -> bool:
        await self.gate.acquire(self.limiter, job)
        if job.state >= FINISHED or not self.pool.has_free_slot():
            # Cancelled meanwhile, or its slot was taken by work that came
            # while we waited: a token is never kept for a job that can't
            # start, so it goes to the limiter's next user.
            self.gate.give_back(self.limiter, job)
            return False
        return True

    def decline(self, job: Job) -> None:
        self.gate.give_back(self.limiter, job)
