"""ProcessPool: CPU-heavy steps in worker processes, on ``anyio.to_process``.

anyio already runs functions in worker processes natively on asyncio and
trio, and kills the worker when the call is cancelled, which is what antflow
needs for ``fut.cancel()``, ``task_timeout`` and shutdown to mean what they
mean in-process. (A ``concurrent.futures.ProcessPoolExecutor`` cannot stop a
running call, and a single exception that fails to unpickle breaks it for
good.) What ``to_process`` does not do, and what this module does about it:

* **One pool per event loop, shared** by every caller on that loop, with a
  default limit of one process per CPU. A `ProcessPool` passes its own
  limiter, so its size is its own; idle processes are reused across pools and
  end with the event loop (anyio kills them then, or after five idle
  minutes). Two pools of 4 on one loop can run 8 processes.
* **No initializer.** ``initializer(*initargs)`` runs in each worker process
  before its first job of this pool (the processes are shared, so it is keyed
  by pool, not by process).
* **Children's output is discarded** (their stdout is the result pipe). What a
  job prints is captured and written to the driver's ``sys.stdout`` and
  ``sys.stderr`` when the job ends (``forward_output=False`` drops it).
* **Plain pickle, by reference.** Calls travel through `antflow._remote`,
  with cloudpickle when it is installed (lambdas, closures), the remote
  traceback as a note, and a `RemoteError` stand-in for an exception that
  would not unpickle.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast, final

import anyio
from anyio import to_process

from ._checks import check_int
from ._remote import (
    Call,
    RemoteError,
    Setup,
    pack_call,
    raise_failure,
    run_call,
    unpack_outcome,
)
from .offload import OffloaderBase

__all__ = ["ProcessPool", "RemoteError"]

T = TypeVar("T")
P = ParamSpec("P")


@final
class ProcessPool(OffloaderBase):
    """Run functions in worker processes; an `Offloader` for ``anyio.to_process``.

    ::

        async with ProcessPool(4) as procs, AsyncExecutor(max_workers=8) as ex:
            docs = await ex.map(procs.wrap(parse), pages, semaphore=procs.slots)

    Each ``run`` is one call in one worker process. Cancelling it (directly,
    by ``fut.cancel()``, a ``task_timeout``, a ``map`` deadline or shutdown)
    kills that worker (SIGKILL) and frees its slot at once; the next call
    starts a fresh process. An ``async def`` function runs under
    ``anyio.run`` in the worker, on the driver's backend.

    Functions and arguments are pickled: module-level functions always
    work; lambdas, closures and nested functions need cloudpickle
    (``pip install 'antflow[process]'``). A worker runs whatever it is sent.
    On platforms that spawn (all, for ``to_process``), the worker imports the
    driver's ``__main__`` as ``__mp_main__``, so guard a script's entry point
    with ``if __name__ == "__main__":``.

    Args:
        max_workers: How many processes this pool runs at once (an int >= 1);
            ``None`` means ``os.cpu_count()``.
        initializer: Called as ``initializer(*initargs)`` in each worker
            process before its first job of this pool. If it raises, that job
            fails with its exception and the next job tries it again.
        initargs: Arguments for ``initializer``.
        forward_output: Write what a job printed to the driver's stdout and
            stderr when the job ends (default True). Output of a job that is
            cancelled or kills its worker is lost.
        prestart: Start all ``max_workers`` processes when the ``async with``
            block is entered (default True), so that process start-up never
            counts against a job's ``task_timeout``.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        forward_output: bool = True,
        prestart: bool = True,
    ) -> None:
        super().__init__()
        if max_workers is None:
            max_workers = os.cpu_count() or 1
        check_int("max_workers", max_workers, minimum=1)
        if initializer is not None and not callable(initializer):
            raise TypeError(
                f"initializer must be callable, got {type(initializer).__name__}"
            )
        if not isinstance(initargs, tuple):
            raise TypeError(f"initargs must be a tuple, got {type(initargs).__name__}")
        self._max_workers = max_workers
        self._setup = (
            Setup(uuid.uuid4().hex, initializer, initargs) if initializer else None
        )
        self._forward_output = bool(forward_output)
        self._prestart = bool(prestart)
        # Two limiters of one size: `slots` is for the executor to admit jobs
        # with (`semaphore=`), `_processes` bounds the processes `run` uses.
        # With one limiter, a job holding a slot would wait for a second
        # token of the same limiter inside `run`.
        self._slots = anyio.CapacityLimiter(max_workers)
        self._processes = anyio.CapacityLimiter(max_workers)

    def __repr__(self) -> str:
        state = self._life
        return f"<ProcessPool max_workers={self._max_workers} {state}>"

    @property
    def max_workers(self) -> int:
        """How many processes this pool runs at once."""
        return self._max_workers

    @property
    def slots(self) -> anyio.CapacityLimiter:
        """A limiter of ``max_workers`` tokens, to pass as ``semaphore=``.

        With it, a job runs only when a process is free for it; until then it
        waits in the executor, holding no worker and with no ``task_timeout``
        running. Without it, the job waits inside `run`, holding a worker,
        and its ``task_timeout`` counts the wait.
        """
        return self._slots

    async def __aenter__(self) -> ProcessPool:
        self._opening()
        if self._prestart:
            try:
                async with anyio.create_task_group() as tg:
                    for _ in range(self._max_workers):
                        tg.start_soon(self._start_one)
            except BaseExceptionGroup as group:
                self._closing()
                # One process that would not start says it all.
                raise _first(group) from None
            except BaseException:
                self._closing()
                raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing()

    async def _start_one(self) -> None:
        await to_process.run_sync(
            run_call,
            pack_call(Call(_nothing, (), {}, own_process=True)),
            cancellable=True,
            limiter=self._processes,
        )

    async def _run_once(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` once in a worker process and return its value.

        Returns:
            What ``fn`` returned (for an ``async def`` function, what its
            coroutine returned), unpickled in the driver.

        Raises:
            RuntimeError: the pool is not open (use ``async with``), or was
                started on another event loop.
            pickle.PicklingError: ``fn`` or an argument cannot be pickled.
            RemoteError: the job raised an exception that cannot be
                unpickled in the driver, or a ``BaseException`` that is not
                an ``Exception``.
            anyio.BrokenWorkerProcess: the worker process died during the
                call (killed, crashed, ``os._exit``).
            Exception: whatever ``fn`` raised, with the remote traceback
                attached as a note.
        """
        payload = pack_call(
            Call(
                fn,
                args,
                kwargs,
                backend=self._backend,
                capture_output=self._forward_output,
                own_process=True,
                setup=self._setup,
            )
        )
        data = await to_process.run_sync(
            run_call, payload, cancellable=True, limiter=self._processes
        )
        outcome = unpack_outcome(data, fn)
        if outcome.stdout:
            sys.stdout.write(outcome.stdout)
        if outcome.stderr:
            sys.stderr.write(outcome.stderr)
        if outcome.ok:
            return outcome.value
        return raise_failure(outcome)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    if isinstance(first, BaseExceptionGroup):
        return _first(cast("BaseExceptionGroup[BaseException]", first))
    return first


def _nothing() -> None:
    """Starts a worker process: its first call runs this."""
