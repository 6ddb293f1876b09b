"""The offloader protocol as a third party writes it: docs/scaling-out.md's ThreadPool.

The page's "Writing your own offloader" example is loaded from the page (its
``ThreadPool`` class, on each backend's tab) and held to what the protocol
promises (`antflow.offload.Offloader`): one attempt per ``run``, ``wrap`` and
``wrap_batch`` from `OffloaderBase`, ``slots`` that park jobs in the
executor, and every executor option keeping its meaning through it.

trio runs on its real clock here: the jobs run in real threads, and under
MockClock a task waiting for a thread counts as idle, so every deadline would
fire at once.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from antflow import AsyncExecutor
from antflow.offload import Offloader, OffloaderBase

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "scaling-out.md"


def _examples() -> dict[str, str]:
    """backend -> the code of the page's ThreadPool example."""
    spec = importlib.util.spec_from_file_location(
        "_doc_blocks_offload", ROOT / "tests" / "docs" / "test_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return {
        block.backend: block.code
        for block in module.parse(PAGE)
        if block.lang == "python" and "class ThreadPool(OffloaderBase)" in block.code
    }


EXAMPLES = _examples()


@pytest.fixture
def thread_pool(anyio_backend: Any, tmp_path: Path) -> type[Any]:
    """The page's ThreadPool class, from the tab of this backend."""
    backend = "trio" if anyio_backend[0] == "trio" else "asyncio"
    script = tmp_path / f"thread_pool_{backend}.py"
    script.write_text(EXAMPLES[backend], encoding="utf-8")
    cls: type[Any] = runpy.run_path(str(script), run_name="thread_pool")["ThreadPool"]
    return cls


def test_the_page_has_the_example_on_both_backends() -> None:
    assert set(EXAMPLES) == {"asyncio", "trio"}


async def test_it_is_an_offloader_and_gets_wrap_and_wrap_batch(
    thread_pool: type[Any],
) -> None:
    async with thread_pool(2) as pool, AsyncExecutor(max_workers=4) as ex:
        assert isinstance(pool, Offloader) and isinstance(pool, OffloaderBase)
        wrapped = pool.wrap(divmod)
        assert wrapped.__name__ == "divmod"
        assert await ex.map(wrapped, [7, 9], [2, 4], semaphore=pool.slots) == [
            (3, 1),
            (2, 1),
        ]
        assert await pool.wrap_batch(abs)([-1, 2, -3]) == [1, 2, 3]
        # A thread of the pool ran it, not the event loop's.
        assert await pool.run(threading.get_ident) != threading.get_ident()


async def test_jobs_waiting_for_slots_hold_no_worker(thread_pool: type[Any]) -> None:
    release = threading.Event()
    started = threading.Event()

    def blocker() -> str:
        started.set()
        release.wait(30)
        return "released"

    async with thread_pool(1) as pool, AsyncExecutor(max_workers=2) as ex:
        first = ex.submit(pool.wrap(blocker), semaphore=pool.slots)
        await anyio.to_thread.run_sync(started.wait, 30)
        parked = [ex.submit(pool.wrap(abs), -n, semaphore=pool.slots) for n in range(3)]
        # The three wait for the pool's one thread in the executor: its second
        # worker is free for an in-process step at once.
        assert await ex.submit(anyio.sleep, 0) is None
        assert ex.statistics().running == 1
        assert not any(f.done() for f in parked)
        release.set()
        assert await first == "released"
        assert [await f for f in parked] == [0, 1, 2]


async def test_retries_rerun_through_run_and_task_timeout_abandons_it(
    thread_pool: type[Any],
) -> None:
    attempts: list[int] = []

    def flaky() -> int:
        attempts.append(len(attempts) + 1)
        if len(attempts) < 3:
            raise OSError("try again")
        return len(attempts)

    never = threading.Event()
    async with thread_pool(1) as pool, AsyncExecutor(max_workers=2) as ex:
        assert await ex.submit(pool.wrap(flaky), retries=2, retry_delay=0) == 3
        assert attempts == [1, 2, 3]
        # A thread cannot be stopped: the attempt is abandoned, its slot back.
        stuck = ex.submit(
            pool.wrap(never.wait), 30, task_timeout=0.2, semaphore=pool.slots
        )
        with pytest.raises(TimeoutError):
            await stuck
        assert pool.slots.borrowed_tokens == 0
        never.set()  # lets the abandoned thread end
