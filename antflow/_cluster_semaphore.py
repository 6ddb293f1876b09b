"""ClusterSemaphore: Dask's cluster-wide semaphore as an antflow ``semaphore=``.

A ``distributed.Semaphore`` is counted by the Dask scheduler, so every driver
connected to one cluster shares its leases. On asyncio it is an async context
manager already; on trio its methods would run asyncio code on the trio
loop, so this wrapper calls them in threads. `antflow.dask.DaskPool.semaphore`
makes one.
"""

from __future__ import annotations

from typing import Any, final

import anyio

#: Seconds a trio driver's lease request waits in Dask before it checks
#: whether it was cancelled meanwhile.
_POLL = 0.2


@final
class ClusterSemaphore:
    """A ``distributed.Semaphore`` usable as ``semaphore=`` on asyncio and trio.

    Made by `DaskPool.semaphore`. It is an async context manager, so the
    executor enters it inside the worker: a job waiting for a lease holds
    its worker. (On asyncio, a plain ``distributed.Semaphore`` works as
    ``semaphore=`` too; on trio it cannot, because it would run asyncio code
    on the trio loop.)

    Leases expire: a lease whose holder's client stops refreshing it for
    ``distributed.scheduler.locks.lease-timeout`` (30 s by default) is
    given back by the scheduler, so a driver that hangs cannot starve the
    others. On asyncio the refresh runs on the driver's event loop: code that
    blocks that loop for longer than the lease timeout loses its leases and
    lets other drivers overshoot the limit. On trio the refresh runs in the
    client's own thread.
    """

    def __init__(self, native: Any, *, on_trio: bool) -> None:
        self._native = native
        self._on_trio = on_trio

    @property
    def native(self) -> Any:
        """The underlying ``distributed.Semaphore``."""
        return self._native

    @property
    def name(self) -> str:
        return str(self._native.name)

    async def __aenter__(self) -> ClusterSemaphore:
        if not self._on_trio:
            await self._native
            await self._native.acquire()
            return self
        await anyio.to_thread.run_sync(self._native.register)
        granted = False
        while True:
            # A thread waiting inside Dask cannot be cancelled, so wait in
            # short turns, shielded (a lease granted must not be dropped),
            # and look at our cancellation in between.
            with anyio.CancelScope(shield=True):
                granted = await anyio.to_thread.run_sync(self._native.acquire, _POLL)
            if granted:
                return self
            await anyio.lowlevel.checkpoint()

    async def __aexit__(self, *exc_info: object) -> None:
        with anyio.CancelScope(shield=True):
            if self._on_trio:
                await anyio.to_thread.run_sync(self._native.release)
            else:
                await self._native.release()
