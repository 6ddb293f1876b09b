"""Offloaders: run a plain function elsewhere, behind an async function.

An executor schedules; an offloader only says *where* one attempt runs. So
every option of ``submit``/``map`` (``max_workers``, ``semaphore=``,
``rate_limit=``, ``retries=``, ``task_timeout=``, cancellation, ordering,
lazy read-ahead) keeps its meaning when the job is a wrapped function: the
driver's scheduler decides when an attempt starts and when it is abandoned,
and the offloader carries that attempt to a process or a cluster and back.

The protocol is small on purpose, so a third party can write one for another
engine (see docs/scaling-out.md): `Offloader` below. `OffloaderBase` gives
``wrap`` and ``wrap_batch`` for free to a class that writes ``run``, and
`RemoteError` is what a job's exception becomes when it cannot travel back.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, ParamSpec, Protocol, Self, TypeVar, overload, runtime_checkable

from ._remote import RemoteError

__all__ = ["Offloader", "OffloaderBase", "RemoteError"]

RemoteError.__module__ = __name__  # where users import it from

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")


@runtime_checkable
class Offloader(Protocol):
    """What antflow expects of an object that runs jobs elsewhere.

    * ``await run(fn, *args, **kwargs)`` runs **one attempt** of
      ``fn(*args, **kwargs)`` elsewhere and returns its value or raises its
      exception. It does not retry (the executor does) and it obeys
      cancellation: when the awaiting task is cancelled (``fut.cancel()``,
      ``task_timeout``, shutdown), ``run`` stops waiting at once and stops
      the remote work if the engine can.
    * ``wrap(fn)`` returns an async function with ``fn``'s signature that
      calls ``run(fn, ...)``; it is what you hand to ``submit``/``map``.
    * ``slots`` is a limiter sized to the engine's capacity, to pass as
      ``semaphore=``. Jobs over capacity then wait parked in the executor,
      holding no worker and with no ``task_timeout`` running, instead of
      queueing inside the engine.
    * ``async with`` starts and stops whatever the offloader owns.
    """

    # Loosely typed on purpose, so that any implementation fits; ProcessPool
    # and DaskPool type their own `run` and `wrap` precisely.

    @property
    def slots(self) -> Any: ...

    async def run(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Any: ...

    def wrap(self, fn: Callable[P, Any], /) -> Callable[P, Awaitable[Any]]: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...


class OffloaderBase:
    """``wrap`` and ``wrap_batch`` on top of a subclass's ``run``."""

    async def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run one attempt of ``fn(*args, **kwargs)`` elsewhere: subclasses write it."""
        raise NotImplementedError

    @overload
    def wrap(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /
    ) -> Callable[P, Awaitable[T]]: ...
    @overload
    def wrap(self, fn: Callable[P, T], /) -> Callable[P, Awaitable[T]]: ...
    def wrap(self, fn: Callable[P, Any], /) -> Callable[P, Awaitable[Any]]:
        """An async function that runs ``fn`` elsewhere, one attempt per call.

        The result keeps ``fn``'s name, docstring and signature (for
        ``async def fn``, the type of what it returns), so
        ``executor.map(pool.wrap(parse), pages)`` type-checks like
        ``map(parse, pages)``.

        Raises:
            TypeError: ``fn`` is not callable.
        """
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        run = self.run

        @functools.wraps(fn)
        async def offloaded(*args: P.args, **kwargs: P.kwargs) -> Any:
            return await run(fn, *args, **kwargs)

        return offloaded

    def wrap_batch(
        self, fn: Callable[[T], R], /
    ) -> Callable[[Iterable[T]], Awaitable[list[R]]]:
        """An async function that runs ``fn`` over a whole batch in one remote job.

        Each remote job costs a round trip (a fraction of a millisecond on a
        `ProcessPool`, milliseconds on Dask), so tiny functions go faster in
        batches: split the input into chunks, map the wrapped function over
        the chunks and flatten. A batch is one attempt: retries and
        ``task_timeout`` apply to the batch as a whole.

        Raises:
            TypeError: ``fn`` is not callable.
        """
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        run = self.run
        batch = functools.partial(_apply_to_each, fn)

        @functools.wraps(fn)
        async def offloaded(items: Iterable[T]) -> list[R]:
            results: list[R] = await run(batch, list(items))
            return results

        return offloaded


def _apply_to_each(fn: Callable[[T], R], items: list[T]) -> list[R]:
    return [fn(item) for item in items]
