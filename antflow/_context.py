"""Running a job in its submitter's ``contextvars`` context.

asyncio's ``create_task`` and trio's ``start_soon`` run each new task in a
copy of the context of the code that started it, so a request id or a trace
span set by the caller is seen inside the task, and what the task sets is
seen by nobody else. antflow's workers are long-lived tasks that run many
jobs one after another, so a job cannot simply inherit the worker's context.
Instead the worker drives the job itself, one step at a time, each step
inside ``context.run``: what asyncio's Task does for every task, done here
for the job only. "The job" is the user's coroutine for a job without
options, or ``_attempts.run_attempts`` (limiters, timeouts, retries and the
user's call), whose own steps are harmless in the submitter's context. Suspensions (futures on asyncio,
trio's traps) pass through untouched, and so do cancellations thrown in.

The frames of this driver and of the pool are removed from the front of a
job's traceback (``drop_own_frames``): a user reads their own code first,
and the stored exception does not keep antflow's frames, and through them
the job and its arguments, alive.
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Callable, Generator
from contextvars import Context
from typing import Any

#: ``inspect.CO_ITERABLE_COROUTINE`` (a ``@types.coroutine`` generator), without
#: importing inspect, which costs a tenth of ``import antflow``.
_CO_ITERABLE_COROUTINE = 0x100

#: Our modules, whose frames lead every job's traceback.
_OWN_MODULES = frozenset(
    (
        "antflow._context",
        "antflow._pool",
        "antflow._attempts",
        "antflow._job",
        "antflow._mapping",
        "antflow._per_item",
    )
)


@types.coroutine
def run_in_context(
    context: Context,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
) -> Generator[Any, Any, Any]:
    """Await ``fn(*args, **kwargs)`` with the call and each step of what it
    returns run inside ``context``.

    This is the one trampoline of antflow, awaited by the worker itself: a
    job's attempts, limiters and back-offs (``_attempts``) run through it
    too, so the user's call inside them needs no second one. It costs about
    5.2k of a plain job's 53.5k instructions (callgrind, asyncio, workload
    a; measured by awaiting the call directly instead): the price of
    running each job in its submitter's context.

    Raises:
        TypeError: ``fn`` returned something that is not awaitable; the
            message names ``fn``.
    """
    run = context.run
    try:
        made: Any = run(fn, *args, **kwargs) if kwargs else run(fn, *args)
    except StopIteration as error:
        # Python refuses to raise it out of a generator or coroutine (it
        # would read as a return), so awaiting the future could not raise
        # it: the job fails with a RuntimeError from it, as an asyncio task
        # whose coroutine raised it does.
        raise RuntimeError(f"{_name(fn)} raised StopIteration") from error
    if made.__class__ is not types.CoroutineType:
        # Rare (a future, a @types.coroutine generator, an object with
        # __await__): a coroutine that awaits it is stepped instead.
        made = _awaiting(made, fn)
    # An error thrown in here keeps this frame in its traceback: it must not
    # keep the call (the job itself, for run_attempts) alive through it.
    del fn, args, kwargs
    send = made.send
    try:
        signal = run(send, None)
        while True:
            try:
                sent = yield signal
            except GeneratorExit:
                run(made.close)
                raise
            except BaseException as thrown:  # cancellation, delivered inward
                signal = run(made.throw, thrown)
                continue
            try:
                signal = run(send, sent)
            finally:
                # On trio what the loop sends can be an outcome holding a
                # Cancelled; kept in this frame, it would hold its traceback's
                # frames (and the job's arguments) alive in a cycle.
                del sent
    except StopIteration as finished:
        return finished.value


def awaitable(made: Any, fn: Callable[..., Any]) -> Awaitable[Any]:
    """``made``, what ``fn`` returned, if it can be awaited.

    Raises:
        TypeError: it cannot; the message names ``fn``.
    """
    kind: Any = made.__class__
    if kind is types.CoroutineType or hasattr(kind, "__await__"):
        return made  # type: ignore[no-any-return]
    if kind is types.GeneratorType and made.gi_code.co_flags & _CO_ITERABLE_COROUTINE:
        return made  # type: ignore[no-any-return]  # a @types.coroutine generator
    raise TypeError(
        f"{_name(fn)} returned {kind.__name__}, not an awaitable; "
        "the executor runs async functions"
    )


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


async def _awaiting(made: Any, fn: Callable[..., Any]) -> Any:
    return await awaitable(made, fn)


def drop_own_frames(error: BaseException) -> None:
    """Remove antflow's frames from the front of ``error``'s traceback, and
    of the exceptions it was raised from or while handling."""
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 8:
        tb = current.__traceback__
        while tb is not None and tb.tb_frame.f_globals.get("__name__") in _OWN_MODULES:
            tb = tb.tb_next
        current.__traceback__ = tb
        current = current.__cause__ or current.__context__
        seen += 1
