"""The pool: worker slots, the queue, and the waiting lines of limiters.

How a job gets to run:

1. **Queued.** ``submit`` makes a `Job`. If a worker slot is free the job is
   *admitted* at once (below); otherwise it waits in ``backlog``, a deque:
   no task is created per submission.
2. **Admitted.** A job is admitted only when a worker slot is free, and then
   in one synchronous step: it takes every token it needs (semaphore, rate
   limits) without blocking, all or nothing, and the slot. A job that
   cannot pass a gate takes nothing and is *parked* in that gate's
   `WaitingLine` (``_limits``); the slot stays free for other work. So a job
   holds tokens only while it is about to run, is running, or has just run
   an attempt, never while it waits for a limiter or a worker.
3. **Run.** An admitted job goes straight to a worker: an idle one is woken
   with the job in hand, or a new one is started. A worker runs the job's
   attempts (``_attempts``) inside its cancel scope, which ``cancel()``
   cancels, and each attempt in the submitter's context (``_context``).
4. **Settled.** The job becomes final (``Job.settle``); its tokens are given
   back; the worker takes the next job: first the oldest parked job that
   can now pass its gates, then the backlog. With nothing to take it waits
   idle while the pool has outstanding work, and ends when there is none,
   so an executor without work holds no task.

A waiting line waits for a token for its oldest job in the limiter's own
queue (fair to every user of a shared limiter), but only while a worker slot
is free; a worker that frees a slot first looks at the lines that were
waiting for one.

Counts kept here, each with one writer:

* ``busy``: admitted jobs not yet done with their attempt (<= max_workers).
* ``workers``: live worker tasks (<= max_workers); ``idle`` those waiting.
* ``outstanding``: jobs not final, plus ``hold()``s (a running ``map``).
* ``finals``: how many jobs ended in each final state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine
from contextvars import Context
from typing import TYPE_CHECKING, Any, Final

import anyio

from ._attempts import NEW_SCOPE, PARKED, besides_cancellation, run_attempts
from ._compat import Wake, current_task_id, wake_maker
from ._context import drop_own_frames, run_in_context
from ._exceptions import ExecutorShutdownError
from ._job import CANCELLED, CANCELLING, FAILED, FINISHED, Job, State, logger

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ._limits import Gate, WaitingLine
    from ._options import Plan
    from ._room import Room

#: Jobs a worker may take in a row without a checkpoint of its own.
STREAK: Final = 32


class Pool:
    """The queue and worker pool under an `AsyncExecutor`."""

    def __init__(
        self,
        max_workers: int,
        on_own_loop: Callable[[], bool],
    ) -> None:
        self.max_workers: Final = max_workers
        #: Is the caller on the pool's event loop? (cheap; see _compat)
        self.on_own_loop = on_own_loop
        #: Called when nothing is outstanding any more.
        self.on_idle: Callable[[], None] = _nothing
        #: Called when a task raised a BaseException that is not
        #: cancellation (the executor stops everything).
        self.on_crash: Callable[[], None] = _nothing
        self.task_group: TaskGroup | None = None
        #: Set once ``task_group`` is up (in manual use, a moment after the
        #: first submit), or the pool is torn down.
        self._attached = anyio.Event()
        self.accepting = True
        self.workers = 0
        #: Live tasks of ours: workers, waiting lines, feeders.
        self.tasks = 0
        self.outstanding = 0
        self.submitted = 0
        self.retries = 0
        self.finals = [0] * (CANCELLED + 1)
        self._backlog: deque[Job] = deque()
        #: Idle workers wait on these; setting one wakes its worker.
        self._idle: list[Wake] = []
        self._new_wake: Callable[[], Wake] = _no_loop_yet
        #: Admitted jobs (each holds a worker slot): in a worker, backing off,
        #: or on their way to a worker. Never more than max_workers.
        self._running: dict[Job, None] = {}
        #: Admitted jobs no worker has taken yet, oldest first: workers take
        #: them in this order, so jobs start in the order they were admitted
        #: even where the loop runs woken tasks in random order (trio).
        self._ready: deque[Job] = deque()
        #: What a task raised that was not an Exception, if anything.
        self.crash: BaseException | None = None
        self._lines: dict[int, WaitingLine] = {}
        #: Lines that wait for a free worker slot, oldest first.
        self._want_slot: dict[WaitingLine, None] = {}
        self._slot_freed: anyio.Event | None = None
        self._cancelling = False
        #: Task ids of our workers, so shutdown() can refuse to wait for itself.
        self.worker_ids: set[int] = set()
        self.on_task_exit: Callable[[], None] = _nothing
        #: The bound on pending jobs and its waiters (max_pending), if any:
        #: set by ``_room.BoundedPool``, which also tells it of each change.
        self.room: Room | None = None

    # -- submitting ------------------------------------------------------------

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        context: Context,
        plan: Plan | None,
        position: int | None = None,
    ) -> Job:
        """Queue one job; start it now if a worker slot is free.

        ``position``: a map item's index, for its events.
        """
        if not self.accepting:
            raise ExecutorShutdownError("cannot submit: the executor is shut down")
        self.submitted += 1
        job = Job(
            self,
            self.submitted,
            fn,
            args,
            kwargs,
            context,
            plan,
            () if plan is None else plan.gates,
        )
        if plan is not None and plan.events is not None:
            plan.events.queued(job, position)  # first, before any other event
        self.outstanding += 1
        if len(self._running) < self.max_workers and self.task_group is not None:
            if self._admit(job):
                self._start(job)
        else:
            # Invariant: the backlog holds jobs only while every slot is busy
            # (or, in manual use, until the pool's task group is up).
            self._backlog.append(job)
        return job

    def failed(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        context: Context,
        error: Exception,
        plan: Plan | None,
        position: int | None,
    ) -> Job:
        """A job that failed before it could be queued (a map item whose
        limiter could not be chosen): final at once, counted like any job,
        its events (``plan``'s) those of a job that failed at once."""
        if not self.accepting:
            raise ExecutorShutdownError("cannot submit: the executor is shut down")
        self.submitted += 1
        job = Job(self, self.submitted, fn, args, None, context, plan, ())
        if plan is not None and plan.events is not None:
            plan.events.queued(job, position)
        self.outstanding += 1
        job.settle(FAILED, error)
        return job

    def has_free_slot(self) -> bool:
        return len(self._running) < self.max_workers

    def attach(self, task_group: TaskGroup) -> None:
        """The task group is up; start what was submitted meanwhile."""
        self.task_group = task_group
        self._new_wake = wake_maker()
        self._attached.set()
        while len(self._running) < self.max_workers and self._backlog:
            job = self._backlog.popleft()
            if job.state < FINISHED and self._admit(job):
                self._start(job)

    # -- admission ---------------------------------------------------------------

    def _admit(self, job: Job, line: WaitingLine | None = None) -> bool:
        """Give ``job`` a worker slot and every token it needs, or nothing.

        A slot must be free. Gates are tried in order without blocking; a
        rate limit is taken only once every other gate has passed and every
        rate limit is ready. If a gate does not pass, whatever was taken goes
        back and the job parks at that gate (``line`` is the line the job
        waits in now, if any). A limiter that raises fails the job.
        """
        gates = job.gates
        if gates:
            lines = self._lines
            taken = 0
            try:
                for limiter, gate in gates:
                    if not gate.releasable:
                        break
                    other = lines.get(id(limiter))
                    if (
                        other is not None and other is not line and other.waiting()
                    ) or not gate.try_take(limiter, job):
                        # No overtaking the jobs that already wait for it.
                        self._give_back_first(job, taken)
                        self._park(job, limiter, gate, line)
                        return False
                    taken += 1
                rates = gates[taken:]
                if len(rates) > 1:
                    # A start once taken cannot be given back: take none
                    # unless every one is ready. (A single one is just
                    # taken, which asks the same: 63.4k -> 60.0k
                    # instructions per item with RateLimiter(10**9),
                    # callgrind, asyncio, a.)
                    for limiter, gate in rates:
                        if not gate.ready(limiter):
                            self._give_back_first(job, taken)
                            self._park(job, limiter, gate, line)
                            return False
                for limiter, gate in rates:
                    if not gate.try_take(limiter, job):  # a single one only
                        self._give_back_first(job, taken)
                        self._park(job, limiter, gate, line)
                        return False
            except Exception as error:  # a limiter's own fault
                self._give_back_first(job, taken)
                if line is not None:
                    line.remove(job)
                self.limiter_failed(job, error)
                return False
            job.held = taken
            if line is not None:
                line.remove(job)
        self._running[job] = None
        return True

    def admit_from_line(self, line: WaitingLine, job: Job) -> None:
        """``line`` has a token (or a ready turn) for ``job``, which it has
        taken out of the line, and a slot is free: take the job's other
        tokens without blocking, then start it; or park it at the gate that
        stops it."""
        taken: list[tuple[Any, Gate]] = []
        rates: list[tuple[Any, Gate]] = []
        lines = self._lines
        try:
            for limiter, gate in job.gates:
                if limiter is line.limiter:
                    continue
                if not gate.releasable:
                    rates.append((limiter, gate))
                    continue
                other = lines.get(id(limiter))
                if (other is not None and other.waiting()) or not gate.try_take(
                    limiter, job
                ):
                    return self._stopped_at(line, job, taken, limiter, gate)
                taken.append((limiter, gate))
            for limiter, gate in rates:
                if not gate.ready(limiter):
                    return self._stopped_at(line, job, taken, limiter, gate)
            line.claim(job)
            for limiter, gate in rates:
                gate.try_take(limiter, job)
        except Exception as error:  # a limiter's own fault
            for limiter, gate in taken:
                gate.give_back(limiter, job)
            line.decline(job)
            self.limiter_failed(job, error)
            return None
        job.held = len(taken) + line.gate.releasable
        self._running[job] = None
        self._start(job)
        return None

    def _stopped_at(
        self,
        line: WaitingLine,
        job: Job,
        taken: list[tuple[Any, Gate]],
        limiter: Any,
        gate: Gate,
    ) -> None:
        for held_limiter, held_gate in taken:
            held_gate.give_back(held_limiter, job)
        line.decline(job)
        self._park(job, limiter, gate, None)

    def readmit(self, job: Job) -> bool:
        """After a back-off: the job has its slot; take its tokens again
        without blocking, or park it (and free the slot)."""
        gates = job.gates
        if not gates:
            return True
        scope = job.scope
        del self._running[job]
        job.scope = None
        if self._admit(job):
            job.scope = scope
            return True
        return False

    def _park(
        self, job: Job, limiter: Any, gate: Gate, current: WaitingLine | None
    ) -> None:
        line = self._lines.get(id(limiter))
        if line is not None and line is current:
            return  # it stays where it is
        if current is not None:
            current.remove(job)
        if line is None:
            assert self.task_group is not None
            line = gate.new_line(limiter, self)
            self._lines[id(limiter)] = line
            self.start_own(line.serve)
        line.add(job)
        plan = job.plan
        if plan is not None and plan.events is not None:
            plan.events.waiting(job, limiter)

    def _give_back_first(self, job: Job, count: int) -> None:
        for limiter, gate in job.gates[:count]:
            gate.give_back(limiter, job)

    def give_back(self, job: Job) -> None:
        """Return every token ``job`` holds (after an attempt, however it
        ended).

        Raises:
            Exception: a limiter that fails on release; the job's attempt is
                then counted as failed with that error.
        """
        held = job.held
        if held:
            job.held = 0
            for limiter, gate in job.gates[:held]:
                gate.give_back(limiter, job)

    def limiter_failed(self, job: Job, error: Exception) -> None:
        """A limiter raised while ``job`` waited for it: only that job fails."""
        if job.state >= FINISHED:
            return
        self._running.pop(job, None)
        job.settle(FAILED, error)

    # -- workers --------------------------------------------------------------------

    def _start(self, job: Job) -> None:
        """Queue an admitted job for a worker, and call one: an idle one, or
        a new one. (If every worker is busy, or on its way out because the
        pool ran dry a moment ago, the next to look takes it.)"""
        self._ready.append(job)
        idle = self._idle
        if idle:
            idle.pop().set()
        elif self.workers < self.max_workers:
            assert self.task_group is not None
            self.workers += 1
            self.start_own(self._work)

    async def _work(self) -> None:
        # Making a cancel scope per job would cost more than the rest of the
        # job's bookkeeping together, so a worker makes a new one only after
        # a cancelled job has used its scope up.
        task_id = current_task_id()
        self.worker_ids.add(task_id)
        streak = 0  # jobs run since this worker last yielded to the loop
        # What the worker holds for one job, dropped once it ends (below).
        context: Any
        fn: Any
        args: Any
        kwargs: Any
        value: Any
        try:
            while True:
                with anyio.CancelScope() as scope:
                    while True:
                        job = self._next_job()
                        if job is None:
                            if not await self._wait_for_work():
                                return
                            streak = 0
                            continue
                        if streak >= STREAK:
                            # A worker takes queued jobs without a trip
                            # through the loop, which would double the cost
                            # of a short job; this bounds how long jobs that
                            # never await keep it.
                            streak = 0
                            await anyio.lowlevel.checkpoint()
                        streak += 1
                        if job.state >= FINISHED:
                            self._abandon(job)  # cancelled on its way to us
                            continue
                        job.started(scope)
                        # Awaited right here, not in a coroutine per job:
                        # a frame less on every step (54.1k -> 52.6k
                        # instructions per item, callgrind, asyncio, a).
                        context, fn, args, kwargs = job.call()
                        plan = job.plan
                        timed = False
                        if plan is not None and plan.needs_attempts:
                            fn, args, kwargs = run_attempts, (self, job), None
                            timed = plan.timeout is not None
                        try:
                            value = await run_in_context(context, fn, args, kwargs)
                        except Exception as error:
                            spent = self._failed(job, error)
                        except BaseException as error:
                            rest = besides_cancellation(error)
                            if scope.cancel_called and isinstance(rest, Exception):
                                # Our scope cancelled a task group in the
                                # job, whose tasks' clean-up raised: the job
                                # failed with those errors, and the
                                # cancellation was ours to absorb.
                                self._failed(job, rest)
                                spent = True
                            else:
                                self._interrupted(job, rest)
                                raise
                        else:
                            spent = self._returned(job, value)
                        finally:
                            # A failure's traceback keeps the user's frame
                            # and, through its f_back (3.12+), this one: it
                            # must not keep the job or its call, or they and
                            # the error would hold each other.
                            job = plan = context = fn = args = kwargs = value = None
                        # The job's state tells whether cancel() used the
                        # scope up, which costs less than asking the scope
                        # (53.9k -> 53.4k instructions per item, callgrind,
                        # asyncio, a); only a task_timeout's deadline
                        # cancels it otherwise (see _attempts).
                        if spent or (timed and scope.cancel_called):
                            # Take a new scope. (A timed-out job goes on in
                            # it first, with no checkpoint between: see
                            # _returned.)
                            streak = 0
                            break
        finally:
            self.worker_ids.discard(task_id)
            self.workers -= 1
            self.task_exited()

    def _next_job(self) -> Job | None:
        """The next job for a worker: one admitted for it, else admit one
        (the oldest parked job that can pass its gates now, then queued
        ones), if a slot is free."""
        if self._ready:
            return self._ready.popleft()
        if len(self._running) >= self.max_workers:
            return None
        if self._want_slot:
            for line in list(self._want_slot):
                if line.waiting():
                    head = line.jobs[0]
                    if self._admit(head, line):
                        return head
        backlog = self._backlog
        while backlog:
            job = backlog.popleft()
            if job.state < FINISHED and self._admit(job):
                return job
        return None

    async def _wait_for_work(self) -> bool:
        """Idle until there may be work; False: the worker should end."""
        if self._want_slot:
            # The slot we leave free is for the lines waiting for one, even
            # when we end: a line left waiting for a slot nobody frees
            # would keep the jobs parked in it later waiting for ever.
            self._free_slot_for_lines()
        if not self.outstanding or not self.accepting:
            return False
        event = self._new_wake()
        self._idle.append(event)
        try:
            await event.wait()
        finally:
            if not event.woken:  # cancelled: it is still in the list
                self._idle.remove(event)
        return bool((self.outstanding and self.accepting) or self._ready)

    def _release_idle(self) -> None:
        """Nothing left to do: let every idle worker end."""
        idle, self._idle = self._idle, []
        for event in idle:
            event.set()

    # -- lines and free slots ------------------------------------------------------

    async def free_slot(self, line: WaitingLine) -> None:
        """Block ``line`` until a worker slot may be free."""
        self._want_slot[line] = None
        if self._slot_freed is None:
            self._slot_freed = anyio.Event()
        try:
            await self._slot_freed.wait()
        finally:
            self._want_slot.pop(line, None)

    def _free_slot_for_lines(self) -> None:
        event, self._slot_freed = self._slot_freed, None
        if event is not None:
            event.set()

    def line_ended(self, line: WaitingLine) -> None:
        if self._lines.get(id(line.limiter)) is line:
            del self._lines[id(line.limiter)]
        self._want_slot.pop(line, None)
        # A line only stops with jobs in it when it was cancelled (the pool
        # is going down): nobody else will start them.
        while line.jobs:
            line.jobs.popleft().settle(CANCELLED, None)
        self.task_exited()

    # -- running a job ------------------------------------------------------------

    # Each of these ends a worker's run of a job, and says whether cancel()
    # cancelled the worker's scope for it, so the worker needs a new scope.

    def _returned(self, job: Job, value: Any) -> bool:
        spent = job.state == CANCELLING
        if value is PARKED:
            return spent  # it waits at a gate again, still running
        if value is NEW_SCOPE:
            # Its task_timeout used the scope up. It goes on in the worker's
            # next scope: first in line, and nothing awaits before the
            # worker takes it again.
            self._ready.appendleft(job)
            return True
        if job.held:
            # A job whose plan is gates alone ran without run_attempts and
            # gives its tokens back here; a limiter that fails on release
            # fails the job, as it would an attempt.
            try:
                self.give_back(job)
            except Exception as error:
                return self._failed(job, error)
        self._done(job)
        if spent:
            # Cancelled, but the task swallowed it or finished first: the
            # cancel() that returned True wins.
            job.settle(CANCELLED, None)
        else:
            job.settle(FINISHED, value)
        return spent

    def _failed(self, job: Job, error: Exception) -> bool:
        spent = job.state == CANCELLING
        if job.held:
            try:
                self.give_back(job)
            except Exception as release_error:
                release_error.__context__ = error
                error = release_error
        self._done(job)
        drop_own_frames(error)
        # A cancelled job whose cleanup raised ends failed with that error,
        # as an asyncio task does.
        job.settle(FAILED, error)
        return spent

    def _interrupted(self, job: Job, error: BaseException | None) -> None:
        """Cancellation (ours or from outside: ``error`` is None), or a
        BaseException from the task itself (``error``, without any
        cancellation raised with it): never stored as a result, but the job
        still ends final. The worker's scope absorbs its own cancellation."""
        self._done(job)
        job.settle(CANCELLED, None)
        if self.crash is None and error is not None:
            self.crash = error
            self.on_crash()

    def _done(self, job: Job) -> None:
        """The job's worker is done with it: its slot is free."""
        if self._running.pop(job, _MISSING) is _MISSING:
            return
        job.scope = None
        if job.held:
            # Only a job that never ran or was interrupted gets here
            # holding tokens (one that ran gave them back, reporting a
            # fault as its failure).
            try:
                self.give_back(job)
            except Exception:
                logger().exception("a limiter of %r failed on release", job)

    def _abandon(self, job: Job) -> None:
        """An admitted job that will not run: free its slot and tokens."""
        self._done(job)
        job.settle(CANCELLED, None)

    def retrying(self, job: Job) -> None:
        self.retries += 1

    # -- bookkeeping ------------------------------------------------------------

    def job_settled(self, job: Job) -> None:
        self.finals[job.state] += 1
        self.unhold()

    def hold(self) -> None:
        """Count something outstanding besides jobs (a running ``map``)."""
        self.outstanding += 1

    def unhold(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:
            self._release_idle()
            self.on_idle()

    async def task_group_ready(self) -> None:
        """Wait until the task group is up.

        Raises:
            ExecutorShutdownError: the pool closed meanwhile.
        """
        if self.task_group is None:
            await self._attached.wait()
        if self.task_group is None or not self.accepting:
            raise ExecutorShutdownError("cannot start: the executor is shut down")

    def start_own(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start ``func()``, a task of the pool's own machinery (a worker or
        a waiting line), in the task group, which must be up. It counts in
        ``tasks`` until it calls `task_exited`.

        It starts in an empty context: it is started from whichever job or
        caller needed it first, and a copy of that context would keep what
        they set alive for as long as the task lives. (Jobs run in their
        own context anyway; see _context.)
        """
        assert self.task_group is not None
        self.tasks += 1
        Context().run(self.task_group.start_soon, func)

    def spawn(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``func()`` as a task of ours in the task group, which must be
        up, in the current context."""
        assert self.task_group is not None
        self.tasks += 1
        self.task_group.start_soon(self._run_task, func)

    async def _run_task(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None:
        try:
            await func()
        finally:
            self.task_exited()

    def task_exited(self) -> None:
        self.tasks -= 1
        self.on_task_exit()

    def running_count(self) -> int:
        return len(self._running)

    def statistics(self) -> tuple[int, int, list[int], int]:
        """Submitted, running (in a worker: admitted jobs still on their way
        to one count as queued), finals by state, retries."""
        running = len(self._running) - len(self._ready)
        return self.submitted, running, self.finals, self.retries

    # -- cancelling and closing ----------------------------------------------------

    def cancel_all(self) -> None:
        """Cancel every job: running ones through their scopes, the rest now."""
        self._cancelling = True
        for job in list(self._running):
            job.request_cancel()
        self.sweep()

    def sweep(self) -> None:
        """Cancel every job that is not in a worker: queued and parked."""
        backlog = self._backlog
        while backlog:
            backlog.popleft().settle(CANCELLED, None)  # no-op if already final
        for line in list(self._lines.values()):
            while line.jobs:
                line.jobs.popleft().settle(CANCELLED, None)

    def close(self) -> None:
        """No more jobs will come: idle workers and waiting lines end."""
        self.accepting = False
        if self.room is not None:
            self.room.shut_down()
        for line in list(self._lines.values()):
            line.scope.cancel()  # only cancelled jobs can be left in it
        self._release_idle()

    def teardown(self) -> None:
        """Last step, once nothing runs: make every job final and give
        back what jobs that never reached a worker still hold."""
        self.accepting = False
        self._attached.set()
        self.sweep()
        self._ready.clear()
        for job in list(self._running):
            self._abandon(job)


def _nothing() -> None:
    pass


def _no_loop_yet() -> Wake:
    raise AssertionError("a worker runs only once the task group is up")


_MISSING: Final = object()


__all__ = ["STREAK", "Pool", "State"]
