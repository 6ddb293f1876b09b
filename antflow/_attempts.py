"""A job's attempts: the call, its per-attempt limits, and retries.

The plain job (no option) is called straight from the worker (``_pool``);
everything else comes here. All of it runs in the submitter's context (the
worker steps `run_attempts` through ``_context.run_in_context``). One
attempt is the call, under its ``task_timeout`` deadline, inside the limiter
that has no non-blocking path if there is one. Between attempts the job
gives every token back, sleeps its back-off holding its worker slot, and
then passes its gates again without blocking; if it cannot, it parks and its
worker moves on (``PARKED``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final, cast

import anyio
from anyio.lowlevel import checkpoint_if_cancelled

from ._context import awaitable
from ._job import CANCELLING
from ._rate import acquire_all

if TYPE_CHECKING:
    from ._job import Call, Job
    from ._options import Plan
    from ._pool import Pool

#: What `run_attempts` returns when the job waits at a gate again.
PARKED: Final = object()

#: What `limited` returns when the call's own cancel scope timed out (with a
#: context-manager limiter; see there).
TIMED_OUT: Final = object()

#: What `run_attempts` returns when an attempt's ``task_timeout`` used up the
#: worker's cancel scope: the job goes on (retry or fail) in a new one.
NEW_SCOPE: Final = object()


async def run_attempts(pool: Pool, job: Job) -> Any:
    """Attempt ``job`` until it succeeds or its retry policy gives up.

    The job holds its tokens when this is called; they are given back after
    every attempt, however it ended.

    A ``task_timeout`` is the deadline of the worker's own cancel scope
    (``job.scope``) while the attempt's call runs, not a scope of the
    attempt's own, which cost more than the rest of the job (workload a
    with ``task_timeout=10``: 123.9k -> 97.6k instructions per item on
    asyncio, 164.3k -> 117.8k on trio, against 53.4k and about 69k without;
    callgrind). The call sees it as its effective deadline, as under a scope
    of its own. When the deadline passes, that scope is spent: the
    attempt's error waits in ``job.pending_error``, this returns
    `NEW_SCOPE`, and the worker calls it again in a new scope, where the
    retry is decided and the back-off slept.

    Returns:
        The value; `PARKED` when the job waits at a gate again after a
        back-off (it stays running to its caller); `NEW_SCOPE` (above).

    Raises:
        Exception: what the last attempt raised (or the ``TimeoutError`` of
            its ``task_timeout``).
    """
    plan = job.plan
    scope = job.scope
    assert plan is not None and scope is not None
    error, job.pending_error = job.pending_error, None
    try:
        while True:
            if error is None:
                if job.cancelling:
                    # cancel() came while the back-off's timer had already
                    # fired, so its cancellation has not reached us yet: no
                    # new attempt starts (the worker settles it cancelled).
                    return None
                job.attempts += 1
                if plan.events is not None:
                    plan.events.started(job)
                try:
                    if plan.context_limiter is None:
                        # The call under its deadline, a coroutine less on
                        # every step: 63.3k -> 61.2k instructions per item
                        # with retries=3 (callgrind, asyncio, a).
                        value = await _timed(job.call(), plan.timeout, scope)
                    else:
                        value = await limited(job.call(), plan, scope)
                    if value is not TIMED_OUT:
                        return value
                    error = timed_out(job, plan)
                    if job.state == CANCELLING:
                        # cancel() came while the limiter's exit ran after
                        # the timeout. The timeout is ours, not an error of
                        # the call's clean-up: the cancel() that returned
                        # True wins (the worker settles it cancelled).
                        # (The state, not ``job.cancelling``: mypy would
                        # carry the loop top's check across the await.)
                        return None
                except Exception as failure:
                    if scope.cancel_called and not job.cancelling:
                        # The deadline cancelled the worker's scope and the
                        # call's clean-up raised: that error stands for the
                        # attempt, decided on in a new scope.
                        job.pending_error = failure
                        return NEW_SCOPE
                    error = failure
                except BaseException as failure:
                    if not scope.cancel_called or job.cancelling:
                        raise  # cancel(), cancellation from outside, a crash
                    # The deadline cancelled the worker's scope: the attempt
                    # failed with what the call raised besides that
                    # cancellation (a task group's errors), or timed out.
                    rest = besides_cancellation(failure)
                    if rest is not None and not isinstance(rest, Exception):
                        raise
                    job.pending_error = timed_out(job, plan) if rest is None else rest
                    return NEW_SCOPE
                finally:
                    pool.give_back(job)
            delay = _retry_delay(job, plan, error)
            error = None
            pool.retrying(job)
            await anyio.sleep(delay)
            if not pool.readmit(job):
                return PARKED
    finally:
        # A failure's traceback can keep this frame (on 3.12+, through the
        # user's frame's f_back): it must not keep the job, or the job and
        # its error would hold each other (see _pool.Pool._work).
        del job, error


def _retry_delay(job: Job, plan: Plan, error: Exception) -> float:
    """The back-off before the next attempt after ``error``.

    Raises:
        Exception: ``error``, when it is not retried (no retry policy, the
            job is cancelled, the code around the worker is being cancelled,
            or the policy gives up); or what a ``retry_on`` predicate raised.
    """
    retry = plan.retry
    if retry is None or job.cancelling or _cancelled_from_outside():
        raise error
    if job.retry_state is None:
        job.retry_state = retry.new_state(job.fn, job.args, job.kwargs)
    delay = retry.next_delay(job.retry_state, error)
    if delay is None:
        raise error
    from ._events import retrying

    retrying(job, plan, error, delay)  # DEBUG log, Retrying
    return delay


def timed_out(job: Job, plan: Plan) -> TimeoutError:
    """The attempt's ``task_timeout`` cut it short: log it (DEBUG), emit
    ``TimedOut``, and return the error that stands for the attempt."""
    from ._events import attempt_timed_out

    attempt_timed_out(job, plan)
    return TimeoutError(f"attempt took longer than task_timeout={plan.timeout}")


async def limited(call: Call, plan: Plan, scope: anyio.CancelScope) -> Any:
    """One attempt of ``call`` inside the plan's context-manager limiter,
    in the worker's ``scope``.

    Takes the call, not the job: a failure's traceback can keep this frame
    alive, and it must not keep the job.
    """
    limiter = plan.context_limiter
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
        if plan.timeout is None:
            return await _timed(call, None, scope)
        # The limiter's exit must not run cancelled by the deadline: it may
        # await to give its token back (a lock on a server). So here the
        # deadline is on a scope of the call's own, not the worker's.
        with anyio.CancelScope() as own:
            return await _timed(call, plan.timeout, own)
        return TIMED_OUT


async def _timed(call: Call, timeout: float | None, scope: anyio.CancelScope) -> Any:
    """``call`` with ``scope``'s deadline ``timeout`` seconds away while it
    runs, if there is a timeout. (The call, not the job: see `limited`.)"""
    _, fn, args, kwargs = call
    made = awaitable(fn(*args, **kwargs) if kwargs else fn(*args), fn)
    if timeout is None:
        return await made
    scope.deadline = anyio.current_time() + timeout
    try:
        return await made
    finally:
        scope.deadline = math.inf


def besides_cancellation(error: BaseException) -> BaseException | None:
    """``error`` without the cancellations in it: None if it is nothing but
    cancellation (one, or an exception group of them), else ``error``
    itself, or for a group the group of what is left (an `ExceptionGroup`
    if only Exceptions are), as `BaseExceptionGroup.split` makes it.

    A task group in a job cancelled by its worker's scope can raise the
    cancellation of its tasks together with errors their clean-up raised
    (trio does; anyio's task groups on asyncio drop the cancellations):
    what is left is the job's failure.
    """
    cancelled = anyio.get_cancelled_exc_class()
    if isinstance(error, cancelled):
        return None
    if isinstance(error, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", error)
        return group.split(cancelled)[1]
    return error


def _cancelled_from_outside() -> bool:
    """Is the code around the worker being cancelled (the executor is going
    down)? Then a failed attempt is not retried: its error stands."""
    return anyio.current_effective_deadline() == -math.inf
