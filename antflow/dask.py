"""DaskPool: run jobs on a Dask cluster, behind the executor's API.

Needs the ``dask`` extra (``pip install 'antflow[dask]'``); dask is imported
only when a pool starts. The scheduler stays in the driver: the cluster only
runs attempts, so antflow's limits, rate limits, retries, ``task_timeout``,
ordering and lazy read-ahead mean what they mean in-process.

How it talks to Dask:

* **asyncio** (and uvloop): Dask's native async client, on the driver's loop.
* **trio**: Dask's client is built on tornado and asyncio, so on trio it runs
  threaded (its own loop in a thread). A submitted task reports back through
  a done callback, which hands the outcome to the trio loop with
  ``TrioToken.run_sync_soon``; the trio loop never blocks on Dask. This costs
  about 2x on unbatched tiny jobs, little for batched or CPU-sized ones.

Each ``run`` is one Dask task with a random key (``pure=False``: Dask would
otherwise merge identical calls) and ``retries=0`` (antflow retries). Dask
cannot stop a task that has started: cancelling ``run`` releases the task, so
a queued one is dropped (as soon as the release reaches the scheduler, within
milliseconds), but a running one goes on to the end on its worker and its
result is dropped. A hard ``task_timeout`` needs `ProcessPool`
or a timeout inside the function.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import uuid
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, final

import anyio

from ._checks import check_int
from ._cluster_semaphore import ClusterSemaphore
from ._remote import (
    Call,
    RemoteError,
    pack_call,
    raise_failure,
    run_call,
    unpack_outcome,
)
from .offload import OffloaderBase

__all__ = ["ClusterSemaphore", "DaskPool", "RemoteError"]

T = TypeVar("T")
P = ParamSpec("P")

#: Seconds between two looks at the cluster's size, to resize `slots`.
SLOTS_REFRESH = 2.0


def _import_distributed() -> Any:
    # Imported by name: dask is an optional extra, untyped, and absent where
    # antflow is type-checked.
    try:
        distributed = importlib.import_module("distributed")
    except ImportError as error:  # pragma: no cover - the dask session has it
        raise ImportError(
            "DaskPool needs Dask distributed: pip install 'antflow[dask]'"
        ) from error
    return distributed


@final
class DaskPool(OffloaderBase):
    """Run functions on a Dask cluster; an `Offloader`.

    ::

        async with DaskPool("tcp://scheduler:8786") as dask, AsyncExecutor(100) as ex:
            scores = await ex.map(dask.wrap(score), items, semaphore=dask.slots)

    Without an address it starts a ``LocalCluster`` on this machine, bound to
    127.0.0.1 with no dashboard (the scheduler's few HTTP routes, health and
    metrics, on a free port of 127.0.0.1), and closes it when the block ends.
    Connecting to a remote scheduler is your choice to make: the cluster runs
    whatever it is sent (calls travel pickled, by value through
    cloudpickle), so its scheduler and workers must be trusted and must not
    be reachable by anyone else.

    Args:
        address: A scheduler address (``"tcp://10.0.0.5:8786"``), or a
            cluster object with a ``scheduler_address`` (a ``LocalCluster``
            you started). ``None`` starts a ``LocalCluster``.
        n_workers: For a started ``LocalCluster``: how many workers (default:
            Dask's, one per core).
        threads_per_worker: For a started ``LocalCluster`` (default 1: CPU
            jobs hold the GIL).
        processes: For a started ``LocalCluster``: workers are processes
            (default True), or threads of the driver's process.
    """

    def __init__(
        self,
        address: Any = None,
        *,
        n_workers: int | None = None,
        threads_per_worker: int = 1,
        processes: bool = True,
    ) -> None:
        super().__init__()
        if address is not None and not isinstance(address, str):
            address = getattr(address, "scheduler_address", None)
            if not isinstance(address, str):
                raise TypeError(
                    "address must be a scheduler address or a cluster with a "
                    "scheduler_address"
                )
        if n_workers is not None and (
            isinstance(n_workers, bool)
            or not isinstance(n_workers, int)
            or n_workers < 1
        ):
            raise ValueError("n_workers must be an int >= 1 or None")
        check_int("threads_per_worker", threads_per_worker, minimum=1)
        self._address: str | None = address
        self._cluster_options: dict[str, Any] = {
            "n_workers": n_workers,
            "threads_per_worker": threads_per_worker,
            "processes": processes,
            # Nothing of ours listens beyond loopback.
            "host": "127.0.0.1",
            "dashboard_address": None,
            # Even without a dashboard the scheduler serves a few HTTP routes
            # (health, metrics), by default on port 8787 and with a warning
            # when that port is taken: a free port on loopback instead.
            "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"},
        }
        self._slots = anyio.CapacityLimiter(1)
        self._client: Any = None
        self._cluster: Any = None
        self._task_group: Any = None

    def __repr__(self) -> str:
        state = self._life
        where = self._address or "LocalCluster"
        return f"<DaskPool {where} {state}>"

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (asynchronous on asyncio, threaded on trio)."""
        if self._client is None:
            raise RuntimeError("this DaskPool is not open: use `async with DaskPool()`")
        return self._client

    @property
    def slots(self) -> anyio.CapacityLimiter:
        """A limiter sized to the cluster's total threads, to pass as ``semaphore=``.

        Checked every 2 seconds while the pool is open, so it follows a
        cluster that scales: when it grows, waiting jobs start; when it
        shrinks, running jobs keep their slots and no new one starts until
        enough have finished. Never below 1, so jobs wait rather than fail
        while a cluster has no worker.
        """
        return self._slots

    # -- life cycle --------------------------------------------------------------

    async def __aenter__(self) -> DaskPool:
        self._opening()
        try:
            await self._connect()
            await self._resize()
            task_group = anyio.create_task_group()
            await task_group.__aenter__()
            self._task_group = task_group
            task_group.start_soon(self._follow_cluster_size)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._disconnect()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        task_group, self._task_group = self._task_group, None
        try:
            if task_group is not None:
                task_group.cancel_scope.cancel()
                await task_group.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                await self._disconnect()

    async def _connect(self) -> None:
        distributed = _import_distributed()
        options = dict(self._cluster_options)
        if options["n_workers"] is None:  # Dask's own default
            del options["n_workers"]
        if not options["processes"]:
            # Dask would pick inproc:// for workers in this process, and its
            # workers' HTTP routes would then listen on every interface:
            # TCP on loopback keeps everything on 127.0.0.1.
            options["protocol"] = "tcp://"
        if self._backend == "asyncio":
            if self._address is None:
                self._cluster = await distributed.LocalCluster(
                    asynchronous=True, **options
                )
            address = self._address or self._cluster
            self._client = await distributed.Client(address, asynchronous=True)
        else:
            if self._address is None:
                self._cluster = await anyio.to_thread.run_sync(
                    functools.partial(distributed.LocalCluster, **options)
                )
            address = self._address or self._cluster
            self._client = await anyio.to_thread.run_sync(distributed.Client, address)

    async def _disconnect(self) -> None:
        self._closing()
        client, self._client = self._client, None
        cluster, self._cluster = self._cluster, None
        if self._backend == "asyncio":
            if client is not None:
                await client.close()
            if cluster is not None:
                await cluster.close()
        else:
            if client is not None:
                await anyio.to_thread.run_sync(client.close)
            if cluster is not None:
                await anyio.to_thread.run_sync(cluster.close)

    async def _total_threads(self) -> int:
        client = self.client
        if self._backend == "asyncio":
            identity = await client.scheduler.identity(n_workers=0)
        else:
            identity = await anyio.to_thread.run_sync(
                functools.partial(client.scheduler_info, n_workers=0)
            )
        return int(identity.get("total_threads", 0))

    async def _resize(self) -> None:
        self._slots.total_tokens = max(1, await self._total_threads())

    async def _follow_cluster_size(self) -> None:
        while True:
            await anyio.sleep(SLOTS_REFRESH)
            # The scheduler may be away for a moment: try again later.
            with contextlib.suppress(OSError):
                await self._resize()

    # -- running jobs ----------------------------------------------------------

    async def _run_once(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` once as a Dask task and return its value.

        Returns:
            What ``fn`` returned (for an ``async def`` function, what its
            coroutine returned under ``anyio.run`` in the worker thread, on
            the driver's backend).

        Raises:
            RuntimeError: the pool is not open, or was started on another
                event loop.
            pickle.PicklingError: ``fn`` or an argument cannot be pickled.
            RemoteError: the job raised an exception that cannot be
                unpickled in the driver, or a ``BaseException`` that is not
                an ``Exception``.
            Exception: whatever ``fn`` raised, with the remote traceback as a
                note; or what Dask raised (``distributed.KilledWorker`` when
                workers running it kept dying).
        """
        payload = pack_call(
            Call(fn, args, kwargs, backend=self._backend), by_value=True
        )
        name = getattr(fn, "__name__", "job")
        future = self._client.submit(
            run_call, payload, key=f"{name}-{uuid.uuid4().hex}", pure=False, retries=0
        )
        try:
            if self._backend == "asyncio":
                data = await future
            else:
                data = await _outcome_on_trio(self._client, future)
        finally:
            # Drop our reference: the scheduler forgets a task that has not
            # started. Dask cannot stop one that is running.
            future.release()
        outcome = unpack_outcome(data, fn)
        if outcome.ok:
            return outcome.value
        return raise_failure(outcome)

    def semaphore(self, max_leases: int, name: str) -> ClusterSemaphore:
        """A ``distributed.Semaphore`` shared by every driver of this cluster.

        Pass it as ``semaphore=`` to bound a resource across several drivers
        (each with its own executor): at most ``max_leases`` jobs hold a lease
        at once, cluster-wide. Drivers that use the same ``name`` share it.
        See `ClusterSemaphore` for its lease timeout.

        Raises:
            ValueError: ``max_leases`` is not an int >= 1.
            TypeError: ``name`` is not a non-empty string.
        """
        check_int("max_leases", max_leases, minimum=1)
        if not isinstance(name, str) or not name:
            raise TypeError("name must be a non-empty string")
        distributed = _import_distributed()
        client = self.client
        native = distributed.Semaphore(
            max_leases=max_leases,
            name=name,
            scheduler_rpc=client.scheduler,
            loop=client.loop,
        )
        return ClusterSemaphore(native, on_trio=self._backend == "trio")


async def _outcome_on_trio(client: Any, future: Any) -> Any:
    """Wait for a threaded client's future from trio, blocking no thread.

    The wait and the fetch of the result run as one coroutine on the client's
    own loop (its thread); when it ends, a callback there wakes the waiting
    trio task through trio's token. Fetching in a done callback instead would
    serialize every fetch in Dask's single callback thread.
    """
    import asyncio

    import trio

    token = trio.lowlevel.current_trio_token()
    done = anyio.Event()

    def wake(_: object) -> None:
        # When trio has finished, nobody is waiting any more.
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(done.set)

    fetch = asyncio.run_coroutine_threadsafe(
        client.gather(future, asynchronous=True), client.loop.asyncio_loop
    )
    fetch.add_done_callback(wake)
    try:
        await done.wait()
    except BaseException:
        fetch.cancel()
        raise
    return fetch.result()
