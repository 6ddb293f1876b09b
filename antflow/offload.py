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
from typing import Any, ParamSpec, Protocol, Self, TypeVar, overload, runtime_checkable

from . import _compat
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

    async def __aexit__(self, *exc_info: object) -> bool | None: ...


class OffloaderBase:
    """What every offloader shares, on top of a subclass's ``_run_once``:
    ``run``, ``wrap``, ``wrap_batch``, and the life cycle.

    Life cycle: new -> open (on the event loop that entered ``async with``)
    -> closed, one way only. ``run`` on a pool that is not open, or from
    another event loop, raises ``RuntimeError``.
    """

    _NEW, _OPEN, _CLOSED = "new", "open", "closed"

    def __init__(self) -> None:
        self._life = self._NEW
        #: "asyncio" or "trio": the backend of the loop that opened it.
        self._backend = "asyncio"
        self._on_own_loop: Callable[[], bool] = _never

    def _opening(self) -> None:
        """new -> open, on the running event loop."""
        if self._life != self._NEW:
            raise RuntimeError(
                f"a {type(self).__name__} can be started only once; make a new one"
            )
        token = _compat.loop_token()
        self._backend = _compat.backend_name(token)
        self._on_own_loop = _compat.loop_checker(token)
        self._life = self._OPEN

    def _closing(self) -> None:
        self._life = self._CLOSED

    def _check_open(self) -> None:
        name = type(self).__name__
        if self._life == self._NEW:
            raise RuntimeError(
                f"this {name} is not open: use `async with {name}(...) as pool:`"
            )
        if self._life == self._CLOSED:
            raise RuntimeError(f"this {name} is closed")
        if not self._on_own_loop():
            raise RuntimeError(f"this {name} belongs to another event loop")

    @overload
    async def run(
        self,
        fn: Callable[P, Coroutine[Any, Any, T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T: ...
    @overload
    async def run(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T: ...
    async def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run one attempt of ``fn(*args, **kwargs)`` elsewhere; return its value.

        For an ``async def`` function, the value its coroutine returned.
        What it raises depends on the engine: see each offloader's class.
        """
        self._check_open()
        return await self._run_once(fn, args, kwargs)

    async def _run_once(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """One attempt elsewhere: what a subclass writes."""
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


def _never() -> bool:
    return False


def _apply_to_each(fn: Callable[[T], R], items: list[T]) -> list[R]:
    return [fn(item) for item in items]
