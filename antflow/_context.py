"""Running a job in its submitter's ``contextvars`` context.

asyncio's ``create_task`` and trio's ``start_soon`` run each new task in a
copy of the context of the code that started it, so a request id or a trace
span set by the caller is seen inside the task, and what the task sets is
seen by nobody else. antflow's workers are long-lived tasks that run many
jobs one after another, so a job cannot simply inherit the worker's context.
Instead the worker drives the job's coroutine itself, one step at a time,
each step inside ``context.run``: what asyncio's Task does for every task,
done here for the job's coroutine only. Suspensions (futures on asyncio,
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
    ("antflow._context", "antflow._pool", "antflow._attempts", "antflow._job")
)


@types.coroutine
def run_in_context(context: Context, coroutine: Any) -> Generator[Any, Any, Any]:
    """Await ``coroutine`` with each of its steps run inside ``context``.

    ``coroutine`` is a coroutine or any iterator from ``__await__`` that has
    ``send`` and ``throw``.
    """
    run = context.run
    send = coroutine.send
    try:
        signal = run(send, None)
        while True:
            try:
                sent = yield signal
            except GeneratorExit:
                run(coroutine.close)
                raise
            except BaseException as thrown:  # cancellation, delivered inward
                signal = run(coroutine.throw, thrown)
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


def call_in_context(
    context: Context, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Any
) -> Awaitable[Any]:
    """Call ``fn(*args, **kwargs)`` in ``context``; return what to await.

    Raises:
        TypeError: ``fn`` returned something that is not awaitable; the
            message names ``fn``.
    """
    made: Any = context.run(fn, *args, **kwargs) if kwargs else context.run(fn, *args)
    kind: Any = made.__class__
    if kind is types.CoroutineType:
        return run_in_context(context, made)
    steps: Any
    if kind is types.GeneratorType and made.gi_code.co_flags & _CO_ITERABLE_COROUTINE:
        steps = made  # a @types.coroutine generator
    else:
        await_: Any = getattr(kind, "__await__", None)
        if await_ is None:
            name = getattr(fn, "__qualname__", None) or repr(fn)
            raise TypeError(
                f"{name} returned {kind.__name__}, not an awaitable; "
                "the executor runs async functions"
            )
        steps = context.run(await_, made)
        if not (hasattr(steps, "send") and hasattr(steps, "throw")):
            # An iterator we cannot step through: await it as it is.
            return made  # type: ignore[no-any-return]
    return run_in_context(context, steps)


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
