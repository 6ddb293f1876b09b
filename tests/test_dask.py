"""DaskPool: jobs on a Dask cluster behind the executor's full API.

Skipped where Dask distributed is not installed; ``nox -s dask`` installs
``.[dask]`` and runs this file. One ``LocalCluster`` (two worker processes of
one thread, on 127.0.0.1, no dashboard) serves the whole module; a few tests
start their own to check what `DaskPool` starts.

Every test runs on asyncio, uvloop and trio, trio on its real clock (see
``test_process.py``: the work is real I/O with real processes). Dask cannot
stop a task that has started, so jobs that must stay running wait for a
release file (``_offload_jobs.hold``) that the test writes when it is done
with them, and no worker of the shared cluster stays busy afterwards.
"""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _offload_jobs as jobs
import anyio
import pytest

from antflow import AsyncExecutor, CancelledError, RateLimiter, _remote

distributed = pytest.importorskip("distributed")

from antflow import dask as antflow_dask  # noqa: E402
from antflow.dask import ClusterSemaphore, DaskPool, RemoteError  # noqa: E402

# A real cluster: trio on its real clock (see the module docstring).
pytestmark = [pytest.mark.anyio, pytest.mark.real_clock, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        # The scheduler's HTTP routes (health, metrics) on a free port rather
        # than 8787, which another test run on this machine may hold.
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    ) as local:
        yield local


class Held:
    """A job parked in a Dask worker until the test lets it go."""

    def __init__(self, folder: Path, name: str) -> None:
        self.started = folder / f"{name}.started"
        self.release = folder / f"{name}.release"
        self.finished = folder / f"{name}.finished"

    @property
    def args(self) -> tuple[str, str, str]:
        return str(self.started), str(self.release), str(self.finished)

    async def until_started(self) -> None:
        while not self.started.exists():
            await anyio.sleep(0.005)

    async def until_finished(self) -> None:
        while not self.finished.exists():
            await anyio.sleep(0.005)


def _count_tasks(prefix: str, dask_scheduler: Any) -> int:
    return sum(str(key).startswith(prefix + "-") for key in dask_scheduler.tasks)


async def tasks_named(pool: DaskPool, name: str) -> int:
    """How many tasks of ``name`` the scheduler knows (DaskPool names keys so)."""
    client = pool.client
    count = functools.partial(_count_tasks, name)
    if client.asynchronous:
        return int(await client.run_on_scheduler(count))
    return int(await anyio.to_thread.run_sync(client.run_on_scheduler, count))


def free(pool: DaskPool) -> bool:
    return pool.slots.borrowed_tokens == 0


# -- results, errors, what can travel ----------------------------------------------


async def test_results_in_order_with_args_and_kwargs(cluster: Any) -> None:
    async with DaskPool(cluster) as dask, AsyncExecutor(max_workers=8) as ex:
        assert dask.slots.total_tokens == 2  # the cluster's threads
        results = await ex.map(dask.wrap(jobs.square), range(20), semaphore=dask.slots)
        assert results == [x * x for x in range(20)]
        assert await dask.run(jobs.scale, 5, factor=3) == 15
        assert await dask.run(jobs.pid) != os.getpid()
        assert free(dask)


async def test_errors_keep_their_type_and_get_the_remote_traceback(
    cluster: Any,
) -> None:
    async with DaskPool(cluster.scheduler_address) as dask:
        with pytest.raises(jobs.ParseError, match="page 9") as caught:
            await dask.run(jobs.fail, "page 9")
        (note,) = caught.value.__notes__
        assert "Remote traceback" in note and "in fail" in note
        with pytest.raises(RemoteError) as stand_in:
            await dask.run(jobs.fail_refusingly)
        assert stand_in.value.type_name == "_offload_jobs.RefusingError"
        with pytest.raises(RemoteError, match="SystemExit"):
            await dask.run(jobs.exit_worker)
        assert await dask.run(jobs.square, 3) == 9


async def test_a_result_that_will_not_pickle_fails_that_job_only(cluster: Any) -> None:
    async with DaskPool(cluster) as dask:
        with pytest.raises(TypeError, match="lock") as caught:
            await dask.run(jobs.unpicklable_result)
        assert "while pickling the result" in "".join(caught.value.__notes__)
        assert await dask.run(jobs.square, 5) == 25


@pytest.mark.skipif(not _remote.has_cloudpickle(), reason="dask brings cloudpickle")
async def test_closures_lambdas_and_async_jobs(
    cluster: Any, anyio_backend: Any
) -> None:
    offset = 10
    async with DaskPool(cluster) as dask, AsyncExecutor(max_workers=4) as ex:
        assert await ex.map(dask.wrap(lambda x: x + offset), range(3)) == [10, 11, 12]
        # An async job runs under anyio.run in the worker, on our backend.
        assert await dask.run(jobs.async_square, 4) == (16, anyio_backend[0])


async def test_batches_are_one_task_each(cluster: Any) -> None:
    async with DaskPool(cluster) as dask, AsyncExecutor(max_workers=4) as ex:
        chunks = [range(n, n + 10) for n in range(0, 100, 10)]
        batches = await ex.map(dask.wrap_batch(jobs.square), chunks)
    assert [x for batch in batches for x in batch] == [x * x for x in range(100)]


# -- cancellation, deadlines, retries --------------------------------------------


async def test_cancelling_a_running_job_frees_the_driver_but_not_the_worker(
    cluster: Any, tmp_path: Path
) -> None:
    held = Held(tmp_path, "running")
    async with DaskPool(cluster) as dask, AsyncExecutor(max_workers=2) as ex:
        future = ex.submit(dask.wrap(jobs.hold), *held.args, semaphore=dask.slots)
        await held.until_started()
        assert future.cancel()
        with pytest.raises(CancelledError):
            await future
        assert free(dask)
        # Dask cannot stop a running task: it goes on until it ends by itself.
        assert not held.finished.exists()
        held.release.touch()
        await held.until_finished()


async def test_a_cancelled_queued_job_never_starts(
    cluster: Any, tmp_path: Path
) -> None:
    blockers = [Held(tmp_path, f"blocker-{n}") for n in range(2)]
    queued = Held(tmp_path, "queued")
    async with DaskPool(cluster) as dask, AsyncExecutor(max_workers=4) as ex:
        running = [ex.submit(dask.wrap(jobs.hold), *b.args) for b in blockers]
        for blocker in blockers:
            await blocker.until_started()
        # Both threads are busy: without slots, this job queues in Dask.
        waiting = ex.submit(dask.wrap(jobs.hold), *queued.args)
        while await tasks_named(dask, "hold") != 3:
            await anyio.sleep(0.01)
        assert waiting.cancel()
        # The release reaches the scheduler a moment later; until it has,
        # Dask could still start the job on the next free thread.
        while await tasks_named(dask, "hold") != 2:
            await anyio.sleep(0.01)
        for blocker in blockers:
            blocker.release.touch()
        assert [await f for f in running] == ["finished", "finished"]
        # The threads were free for it from here on; it never ran.
        assert await dask.run(jobs.square, 2) == 4
        assert not queued.started.exists()


async def test_task_timeout_ends_the_wait_in_the_driver(
    cluster: Any, tmp_path: Path
) -> None:
    held = Held(tmp_path, "slow")
    async with DaskPool(cluster) as dask, AsyncExecutor(max_workers=1) as ex:
        future = ex.submit(dask.wrap(jobs.hold), *held.args, task_timeout=0.5)
        with pytest.raises(TimeoutError):
            await future
        assert free(dask)
        held.release.touch()
        await held.until_finished()


async def test_shutdown_cancel_futures_frees_the_driver_and_drops_queued_jobs(
    cluster: Any, tmp_path: Path
) -> None:
    held = [Held(tmp_path, f"running-{n}") for n in range(2)]
    queued = Held(tmp_path, "queued")
    async with DaskPool(cluster) as dask:
        async with AsyncExecutor(max_workers=4) as ex:
            running = [
                ex.submit(dask.wrap(jobs.hold), *h.args, semaphore=dask.slots)
                for h in held
            ]
            waiting = ex.submit(
                dask.wrap(jobs.hold), *queued.args, semaphore=dask.slots
            )
            for h in held:
                await h.until_started()
            await ex.shutdown(cancel_futures=True)
        assert all(f.cancelled() for f in [*running, waiting])
        assert free(dask)
        # Dask lets the running two finish; the queued one never reached it.
        for h in held:
            h.release.touch()
        for h in held:
            await h.until_finished()
        while await tasks_named(dask, "hold"):  # the scheduler forgets them
            await anyio.sleep(0.01)
        assert not queued.started.exists()


async def test_outer_cancellation_frees_the_driver(
    cluster: Any, tmp_path: Path
) -> None:
    held = [Held(tmp_path, f"running-{n}") for n in range(2)]
    async with DaskPool(cluster) as dask, AsyncExecutor(max_workers=2) as ex:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def cancel_once_both_run() -> None:
                    for h in held:
                        await h.until_started()
                    scope.cancel()

                tg.start_soon(cancel_once_both_run)
                await ex.map(
                    dask.wrap(jobs.hold),
                    *zip(*(h.args for h in held), strict=True),
                    semaphore=dask.slots,
                )
        assert scope.cancelled_caught
        assert free(dask)
        for h in held:
            h.release.touch()
        for h in held:
            await h.until_finished()
        assert await dask.run(jobs.square, 3) == 9


async def test_antflow_retries_and_dask_does_not(cluster: Any, tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    async with DaskPool(cluster) as dask, AsyncExecutor(max_workers=2) as ex:
        assert (
            await ex.submit(
                dask.wrap(jobs.fail_until), str(counter), 2, retries=2, retry_delay=0
            )
            == 3
        )
        counter.unlink()
        with pytest.raises(jobs.ParseError, match="attempt 2"):
            await ex.submit(
                dask.wrap(jobs.fail_until), str(counter), 9, retries=1, retry_delay=0
            )
        # Exactly the attempts antflow made: Dask retried none of them.
        assert counter.read_text() == "2"


# -- limits ----------------------------------------------------------------------


async def test_slots_bound_the_jobs_in_the_cluster(cluster: Any) -> None:
    async with DaskPool(cluster) as dask, AsyncExecutor(max_workers=8) as ex:
        peak = 0

        async def watched(x: int) -> int:
            nonlocal peak
            peak = max(peak, dask.slots.borrowed_tokens)
            return await dask.run(jobs.square, x)

        assert await ex.map(watched, range(30), semaphore=dask.slots) == [
            x * x for x in range(30)
        ]
    assert peak == 2


async def test_a_cluster_semaphore_bounds_two_drivers_together(cluster: Any) -> None:
    in_flight = peak = 0

    async def guarded(dask: DaskPool, x: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await dask.run(jobs.nap, 0.05)
        finally:
            in_flight -= 1
        return x

    async def driver(name: str) -> list[int]:
        async with DaskPool(cluster) as dask, AsyncExecutor(max_workers=4) as ex:
            api = dask.semaphore(2, "test-api")
            assert isinstance(api, ClusterSemaphore) and api.name == "test-api"
            return await ex.map(lambda x: guarded(dask, x), range(8), semaphore=api)

    results: dict[str, list[int]] = {}

    async def collect(name: str) -> None:
        results[name] = await driver(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(collect, "a")
        tg.start_soon(collect, "b")
    assert results == {"a": list(range(8)), "b": list(range(8))}
    assert peak == 2


async def test_a_plain_distributed_semaphore_works_on_asyncio(
    cluster: Any, anyio_backend: Any
) -> None:
    if anyio_backend[0] == "trio":
        pytest.skip("asyncio only: on trio, use DaskPool.semaphore (documented)")
    in_flight = peak = 0

    async def guarded(x: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await anyio.sleep(0.02)
        finally:
            in_flight -= 1
        return x

    async with DaskPool(cluster), AsyncExecutor(max_workers=6) as ex:
        plain = distributed.Semaphore(max_leases=2, name="test-plain")
        assert await ex.map(guarded, range(10), semaphore=plain) == list(range(10))
    assert peak == 2


async def test_rate_limits_pace_remote_calls_at_dispatch(cluster: Any) -> None:
    # Exact where the start is decided, in the driver; Dask's scheduling
    # then adds its own jitter before a worker runs the task.
    dispatched: list[float] = []
    async with DaskPool(cluster) as dask, AsyncExecutor(max_workers=4) as ex:

        async def paced(x: int) -> int:
            dispatched.append(anyio.current_time())
            return await dask.run(jobs.square, x)

        results = await ex.map(paced, range(6), rate_limit=RateLimiter(20))
    assert results == [x * x for x in range(6)]
    jobs.assert_paced(dispatched, rate=20)


async def test_map_iter_stays_lazy_over_a_million_items(cluster: Any) -> None:
    consumed = 0

    def items() -> Iterator[int]:
        nonlocal consumed
        for n in range(1_000_000):
            consumed += 1
            yield n

    async with DaskPool(cluster) as dask, AsyncExecutor(max_workers=4) as ex:
        results = ex.map_iter(dask.wrap(jobs.square), items(), semaphore=dask.slots)
        seen = 0
        async for value in results:
            assert value == seen * seen
            seen += 1
            assert consumed <= seen + 2 * ex.max_workers + 1
            if seen == 100:
                break
        await results.aclose()
    assert consumed <= 100 + 2 * 4 + 1


# -- what DaskPool starts ----------------------------------------------------------


def test_the_shared_cluster_listens_on_loopback_only(cluster: Any) -> None:
    # The fixture's scheduler runs in this process, its nannies and workers
    # in children of it.
    assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
    assert len(cluster.workers) == 2
    assert listening_addresses() == {"127.0.0.1"}


async def test_a_local_cluster_it_starts_listens_on_loopback_only(
    monkeypatch: pytest.MonkeyPatch, anyio_backend: Any
) -> None:
    monkeypatch.setattr(antflow_dask, "SLOTS_REFRESH", 0.05)
    async with DaskPool(n_workers=1) as dask:
        client = dask.client
        if anyio_backend[0] == "trio":  # the threaded client
            info = await anyio.to_thread.run_sync(client.scheduler_info)
        else:
            info = await client.scheduler.identity()
        assert info["address"].startswith("tcp://127.0.0.1:")
        assert all(w.startswith("tcp://127.0.0.1:") for w in info["workers"])
        assert "dashboard" not in info["services"] or no_dashboard(info)
        assert listening_addresses() <= {"127.0.0.1"}
        assert dask.slots.total_tokens == 1
        assert await dask.run(jobs.square, 12) == 144
        # The cluster grows; slots follow.
        dask._cluster.scale(2)
        while dask.slots.total_tokens != 2:
            await anyio.sleep(0.05)
    assert repr(dask) == "<DaskPool LocalCluster closed>"


async def test_a_local_cluster_of_threads_listens_on_loopback_only() -> None:
    async with DaskPool(n_workers=1, processes=False) as dask:
        assert dask.client.scheduler.address.startswith("tcp://127.0.0.1:")
        assert await dask.run(jobs.square, 5) == 25
        assert await dask.run(jobs.pid) == os.getpid()
        assert listening_addresses() <= {"127.0.0.1"}


def no_dashboard(info: dict[str, Any]) -> bool:
    """The scheduler's HTTP server runs without the dashboard's pages."""
    import urllib.request

    host = info["address"].split("//")[1].rsplit(":", 1)[0]
    url = f"http://{host}:{info['services']['dashboard']}/status"
    try:
        with urllib.request.urlopen(url, timeout=5):
            return False
    except OSError:  # 404: no dashboard page
        return True


def listening_addresses() -> set[str]:
    """Addresses that this process and its children listen on."""
    psutil = pytest.importorskip("psutil")
    me = psutil.Process()
    pids = {me.pid, *(child.pid for child in me.children(recursive=True))}
    return {
        conn.laddr.ip
        for conn in psutil.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids
    }


# -- misuse ------------------------------------------------------------------------


def test_bad_arguments_are_named() -> None:
    with pytest.raises(TypeError, match="address"):
        DaskPool(3)
    with pytest.raises(ValueError, match="n_workers"):
        DaskPool(n_workers=0)
    with pytest.raises(ValueError, match="threads_per_worker"):
        DaskPool(threads_per_worker=0)
    with pytest.raises(TypeError, match="threads_per_worker"):
        DaskPool(threads_per_worker=1.5)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="not open"):
        DaskPool().client  # noqa: B018


async def test_run_and_semaphore_need_an_open_pool(cluster: Any) -> None:
    dask = DaskPool(cluster)
    with pytest.raises(RuntimeError, match="not open"):
        await dask.run(jobs.square, 2)
    async with dask:
        with pytest.raises(ValueError, match="max_leases"):
            dask.semaphore(0, "x")
        with pytest.raises(TypeError, match="name"):
            dask.semaphore(1, "")
        with pytest.raises(RuntimeError, match="only once"):
            async with dask:
                pass
    with pytest.raises(RuntimeError, match="closed"):
        await dask.run(jobs.square, 2)


async def test_unpicklable_arguments_fail_at_the_call(cluster: Any) -> None:
    import threading

    async with DaskPool(cluster) as dask:
        with pytest.raises(pickle.PicklingError, match="cannot send square"):
            await dask.run(jobs.square, threading.Lock())


# -- Ctrl-C ----------------------------------------------------------------------

CTRL_C_SCRIPT = """
import sys
import anyio

sys.path.insert(0, {tests!r})
import _offload_jobs as jobs
from antflow import AsyncExecutor
from antflow.dask import DaskPool

async def main():
    async with DaskPool(n_workers=1) as dask, AsyncExecutor(max_workers=2) as ex:
        ex.submit(dask.wrap(jobs.hold), *{held_args!r})
        await anyio.sleep_forever()

if __name__ == "__main__":
    # As in a terminal, whatever the test runner's own disposition: a job
    # started in the background by a non-interactive shell ignores SIGINT,
    # and its children inherit that.
    import signal
    signal.signal(signal.SIGINT, signal.default_int_handler)
    anyio.run(main, backend={backend!r}, backend_options={options!r})
"""


def descendants_of(parent: int) -> set[int]:
    psutil = pytest.importorskip("psutil")
    return {child.pid for child in psutil.Process(parent).children(recursive=True)}


@pytest.mark.parametrize("target", ["process", "group"])
def test_ctrl_c_closes_the_cluster_it_started(
    anyio_backend: Any, target: str, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys
    import time

    psutil = pytest.importorskip("psutil")
    backend, options = anyio_backend
    held = Held(tmp_path, "job")
    script = tmp_path / "ctrl_c.py"
    script.write_text(
        CTRL_C_SCRIPT.format(
            tests=str(Path(__file__).parent),
            held_args=held.args,
            backend=backend,
            options=options,
        )
    )
    child = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not held.started.exists():
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.01)
        cluster = descendants_of(child.pid)
        names = {pid: " ".join(psutil.Process(pid).cmdline())[-120:] for pid in cluster}
        assert cluster  # the nanny and its worker
        held.release.touch()  # Dask cannot stop it; let it end
        # Ctrl-C in a terminal signals the whole group; `kill -INT` one pid,
        # and then only DaskPool's exit can stop the cluster's processes.
        if target == "group":
            os.killpg(child.pid, signal.SIGINT)
        else:
            os.kill(child.pid, signal.SIGINT)
        began = time.monotonic()
        _, stderr = child.communicate(timeout=30)
        assert time.monotonic() - began < 15
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode != 0
    assert "KeyboardInterrupt" in stderr
    # multiprocessing's resource tracker outlives its parent by a moment:
    # it exits when it reads the end of its pipe.
    deadline = time.monotonic() + 10
    while (left := [pid for pid in cluster if running(psutil, pid)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert not left, [names[pid] for pid in left]


def running(psutil: Any, pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
