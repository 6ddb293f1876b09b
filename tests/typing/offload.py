"""Type-checked, never run: offloaders as a user's code sees them.

See ``api.py`` for how the ``type: ignore`` lines prove misuse is rejected.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import assert_type

import anyio

from antflow import AsyncExecutor, AsyncFuture
from antflow.dask import ClusterSemaphore, DaskPool
from antflow.offload import Offloader, RemoteError
from antflow.process import ProcessPool


def parse(page: bytes, *, strict: bool = False) -> dict[str, int]:
    return {"length": len(page)}


async def fetch(url: str) -> bytes:
    return url.encode()


def score(word: str) -> int:
    return len(word)


async def offload() -> None:
    async with ProcessPool(4) as procs, AsyncExecutor(max_workers=8) as ex:
        # Both pools are Offloaders.
        offloaders: list[Offloader] = [procs, DaskPool()]
        assert len(offloaders) == 2

        parse_remote = procs.wrap(parse)
        assert_type(await parse_remote(b"x", strict=True), dict[str, int])
        future = ex.submit(parse_remote, b"x", semaphore=procs.slots, task_timeout=30)
        assert_type(future, AsyncFuture[dict[str, int]])
        docs = await ex.map(procs.wrap(parse), [b"a", b"b"], semaphore=procs.slots)
        assert_type(docs, list[dict[str, int]])

        # An async job: the wrapper returns what its coroutine returns.
        assert_type(await procs.wrap(fetch)("u"), bytes)
        assert_type(await procs.run(parse, b"x"), dict[str, int])
        assert_type(await procs.run(fetch, "u"), bytes)

        batch = procs.wrap_batch(score)
        assert_type(batch, Callable[[Iterable[str]], Awaitable[list[int]]])
        assert_type(await batch(["a", "bb"]), list[int])
        assert_type(procs.slots, anyio.CapacityLimiter)

        # Misuse is a type error.
        await parse_remote("not bytes")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        await procs.wrap(parse)(b"x", strict="yes")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        await procs.run(parse, "not bytes")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]

    async with DaskPool("tcp://127.0.0.1:8786") as dask:
        assert_type(await dask.wrap(parse)(b"x"), dict[str, int])
        assert_type(dask.semaphore(2, "api"), ClusterSemaphore)

    error = RemoteError("mod.Error", "message", "traceback")
    assert_type(error.type_name, str)
