"""A job's attempts: the call, its per-attempt limits, and retries.

The plain job (no option) is called straight from the worker (``_pool``);
everything else comes here. All of it runs in the submitter's context (the
worker steps `run_attempts` through ``_context.run_in_context``). One
attempt is the call, inside the call's ``task_timeout`` scope, and inside the limiter
that has no non-blocking path if there is one. Between attempts the job
gives every token back, sleeps its back-off holding its worker slot, and
then passes its gates again without blocking; if it cannot, it parks and its
worker moves on (``PARKED``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

import anyio
from anyio.lowlevel import checkpoint_if_cancelled

from ._context import awaitable
from ._rate import acquire_all

if TYPE_CHECKING:
    from ._job import Call, Job
    from ._options import Plan
    from ._pool import Pool

#: What `run_attempts` returns when the job waits at a gate again.
PARKED: Final = object()


async def run_attempts(pool: Pool, job: Job) -> Any:
    """Attempt ``job`` until it succeeds or its retry policy gives up.

    The job holds its tokens when this is called; they are given back after
    every attempt, however it ended.

    Returns:
        The value, or `PARKED` when the job waits at a gate again after a
        back-off (it stays running to its caller).

    Raises:
        Exception: what the last attempt raised (or the ``TimeoutError`` of
            its ``task_timeout``).
    """
    plan = job.plan
    assert plan is not None
    retry = plan.retry
    events = plan.events
    try:
        while True:
            if job.cancelling:
                # cancel() came while the back-off's timer had already fired,
                # so its cancellation has not reached us yet: no new attempt
                # starts (the worker settles the job cancelled).
                return None
            job.attempts += 1
            if events is not None:
                events.started(job)
            try:
                return await attempt(job.call(), plan)
            except Exception as error:
                if plan.timeout is not None:
                    from ._events import attempt_failed

                    attempt_failed(job, plan, error)  # DEBUG log, TimedOut
                if retry is None or job.cancelling or _cancelled_from_outside():
                    raise
                if job.retry_state is None:
                    job.retry_state = retry.new_state(job.fn, job.args, job.kwargs)
                # A retry_on predicate that raises fails the job with its error.
                delay = retry.next_delay(job.retry_state, error)
                if delay is None:
                    raise
                from ._events import retrying

                retrying(job, plan, error, delay)  # DEBUG log, Retrying
            finally:
                pool.give_back(job)
            pool.retrying(job)
            await anyio.sleep(delay)
            if not pool.readmit(job):
                return PARKED
    finally:
        # A failure's traceback can keep this frame (on 3.12+, through the
        # user's frame's f_back): it must not keep the job, or the job and
        # its error would hold each other (see _pool.Pool._work).
        del job


async def attempt(call: Call, plan: Plan) -> Any:
    """One attempt of ``call`` with the call's per-attempt options applied.

    Takes the call, not the job: a failure's traceback can keep this frame
    alive, and it must not keep the job.
    """
    limiter = plan.context_limiter
    if limiter is None:
        return await _timed(call, plan.timeout)
    async with limiter:
        # Rate limits come after this limiter: waiting for it must not
        # bunch starts up.
        if plan.rates_in_attempt:
            await acquire_all(plan.rates_in_attempt)
        # A token handed over in the same step as a cancel() (or shutdown)
        # ends the wait normally: the cancellation only reaches this task at
        # its next checkpoint, which would be inside the user's function,
        # after it had started. Look for it here (no yield unless cancelled).
        await checkpoint_if_cancelled()
        return await _timed(call, plan.timeout)


async def _timed(call: Call, timeout: float | None) -> Any:
    _, fn, args, kwargs = call
    made = awaitable(fn(*args, **kwargs) if kwargs else fn(*args), fn)
    if timeout is None:
        return await made
    with anyio.CancelScope(deadline=anyio.current_time() + timeout):
        return await made
    # Only reached when the deadline cancelled the attempt.
    raise TimeoutError(f"attempt took longer than task_timeout={timeout}")


def _cancelled_from_outside() -> bool:
    """Is the code around the worker being cancelled (the executor is going
    down)? Then a failed attempt is not retried: its error stands."""
    return anyio.current_effective_deadline() == -math.inf
