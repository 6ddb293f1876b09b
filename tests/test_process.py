"""ProcessPool: jobs in worker processes behind the executor's full API.

Every test runs on asyncio, uvloop and trio. Unlike the rest of the suite,
trio runs here on its real clock: the jobs run in real processes, and under
``MockClock(autojump_threshold=0)`` waiting for a pipe counts as idle, so
every deadline (``task_timeout``, ``fail_after``) would fire at once. Tests
therefore order events through marker files the workers write (see
``_offload_jobs``) and assert durations only one-sidedly and generously.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _offload_jobs as jobs
import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antflow import AsyncExecutor, CancelledError, RateLimiter, _remote
from antflow.process import ProcessPool, RemoteError

# Real processes: trio on its real clock (see the module docstring).
pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]

HAS_CLOUDPICKLE = _remote.has_cloudpickle()


async def wait_for_file(path: Path) -> int:
    """The pid a worker wrote into ``path`` once it started (polls the disk)."""
    while not path.exists():
        await anyio.sleep(0.005)
    return int(path.read_text())


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited but not been reaped yet; it runs nothing.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def free(pool: ProcessPool) -> bool:
    """Every slot and every process of ``pool`` is free again."""
    return pool.slots.borrowed_tokens == 0 and pool._processes.borrowed_tokens == 0


# -- results, errors, what can travel ----------------------------------------------


async def test_results_in_order_with_args_and_kwargs() -> None:
    async with ProcessPool(2) as procs, AsyncExecutor(max_workers=4) as ex:
        assert await ex.map(procs.wrap(jobs.square), range(20)) == [
            x * x for x in range(20)
        ]
        assert await procs.run(jobs.scale, 5, factor=3) == 15
        assert await ex.submit(procs.wrap(jobs.scale), 4, factor=10) == 40
        # The jobs ran elsewhere.
        assert await procs.run(jobs.pid) != os.getpid()
    assert free(procs)


async def test_an_error_keeps_its_type_and_gets_the_remote_traceback() -> None:
    async with ProcessPool(1) as procs, AsyncExecutor(max_workers=2) as ex:
        future = ex.submit(procs.wrap(jobs.fail), "page 3")
        with pytest.raises(jobs.ParseError, match="page 3") as caught:
            await future
        (note,) = caught.value.__notes__
        assert "Remote traceback (process" in note
        assert "_offload_jobs.py" in note and "in fail" in note
        assert "raise ParseError(message)" in note
        # The shim's own frames are left out.
        assert "_remote.py" not in note
        # The pool is as good as new.
        assert await procs.run(jobs.square, 3) == 9


async def test_an_exception_that_will_not_unpickle_comes_back_as_a_stand_in() -> None:
    # StubbornError's __init__ needs two arguments and its args hold one:
    # the standard pickle cannot rebuild it (the worker checks that).
    async with ProcessPool(1) as procs:
        with pytest.raises(RemoteError) as caught:
            await procs.run(jobs.fail_stubbornly)
        error = caught.value
        assert error.type_name == "_offload_jobs.StubbornError"
        assert error.message == "code 7: no"
        assert str(error) == "_offload_jobs.StubbornError: code 7: no"
        assert "fail_stubbornly" in error.remote_traceback
        assert "Remote traceback" in error.__notes__[0]
        # Unlike a stdlib ProcessPoolExecutor, nothing is broken afterwards.
        assert await procs.run(jobs.square, 4) == 16
        with pytest.raises(RemoteError, match="RefusingError: never coming back"):
            await procs.run(jobs.fail_refusingly)
        assert await procs.run(jobs.square, 5) == 25


async def test_a_result_that_will_not_pickle_fails_that_job_only() -> None:
    async with ProcessPool(1) as procs:
        with pytest.raises(TypeError, match="lock") as caught:
            await procs.run(jobs.unpicklable_result)
        assert "while pickling the result" in "".join(caught.value.__notes__)
        assert await procs.run(jobs.square, 5) == 25


async def test_base_exceptions_in_a_job_never_stop_the_driver() -> None:
    async with ProcessPool(1) as procs:
        with pytest.raises(RemoteError, match="SystemExit: 3"):
            await procs.run(jobs.exit_worker)
        assert await procs.run(jobs.square, 6) == 36


async def test_a_worker_that_dies_fails_its_job_with_broken_worker_process() -> None:
    async with ProcessPool(1) as procs:
        with pytest.raises(anyio.BrokenWorkerProcess):
            await procs.run(jobs.crash_worker)
        assert await procs.run(jobs.square, 7) == 49
    assert free(procs)


@pytest.mark.skipif(not HAS_CLOUDPICKLE, reason="closures travel with cloudpickle")
async def test_closures_and_lambdas_travel_with_cloudpickle() -> None:
    offset = 100

    def add_offset(x: int) -> int:
        return x + offset

    async with ProcessPool(2) as procs, AsyncExecutor(max_workers=2) as ex:
        assert await ex.map(procs.wrap(add_offset), range(3)) == [100, 101, 102]
        assert await procs.run(lambda: offset * 2) == 200


async def test_without_cloudpickle_a_lambda_fails_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_remote, "_cloudpickle", None)
    async with ProcessPool(1) as procs:
        with pytest.raises(pickle.PicklingError, match=r"antflow\[process\]"):
            await procs.run(lambda: 1)
        # Module-level functions need no cloudpickle.
        assert await procs.run(jobs.square, 8) == 64
    assert free(procs)


async def test_async_job_functions_run_in_the_worker_on_the_drivers_backend(
    anyio_backend: Any,
) -> None:
    backend = anyio_backend[0]
    async with ProcessPool(2) as procs, AsyncExecutor(max_workers=2) as ex:
        results = await ex.map(procs.wrap(jobs.async_square), range(4))
    assert results == [(x * x, backend) for x in range(4)]


async def test_output_is_forwarded_to_the_driver(
    capfd: pytest.CaptureFixture[str],
) -> None:
    async with ProcessPool(1) as procs:
        assert await procs.run(jobs.talk, "hello") == "hello"
    async with ProcessPool(1, forward_output=False) as quiet:
        assert await quiet.run(jobs.talk, "muted") == "muted"
    out, err = capfd.readouterr()
    assert out == "hello\n"
    assert err == "hello (to stderr)\n"


async def test_the_initializer_runs_once_per_worker_process_and_pool(
    tmp_path: Path,
) -> None:
    log = tmp_path / "init.log"
    async with ProcessPool(
        2, initializer=jobs.initialize, initargs=(str(log), "a")
    ) as a:
        pids = {await a.run(jobs.pid) for _ in range(10)}
        assert (await a.run(jobs.initialized)).count("a") == 1
        async with ProcessPool(
            2, initializer=jobs.initialize, initargs=(str(log), "b")
        ) as b:
            # anyio shares worker processes between pools: each pool's
            # initializer still runs once in each process that runs its jobs.
            assert (await b.run(jobs.initialized))[-1] == "b"
    started = [int(line) for line in log.read_text().split()]
    assert set(started) >= pids
    counts = {pid: started.count(pid) for pid in started}
    assert max(counts.values()) <= 2  # at most once per pool in each process


async def test_a_failing_initializer_fails_the_job_and_is_tried_again() -> None:
    async with ProcessPool(1, initializer=jobs.failing_initializer) as procs:
        for _ in range(2):
            with pytest.raises(jobs.ParseError, match="initializer"):
                await procs.run(jobs.square, 2)


# Each example starts and kills processes: a few examples, whatever the profile.
@settings(max_examples=8, deadline=None)
@given(
    kinds=st.lists(
        st.sampled_from(["ok", "fail", "stubborn", "crash", "cancel"]),
        min_size=1,
        max_size=6,
    ),
    retries=st.integers(0, 1),
    use_slots=st.booleans(),
)
async def test_every_job_ends_as_it_should_and_every_token_comes_back(
    kinds: list[str], retries: int, use_slots: bool
) -> None:
    folder = Path(tempfile.mkdtemp())
    markers: list[Path] = []
    calls = {
        "ok": lambda n: (jobs.square, n),
        "fail": lambda n: (jobs.fail, f"job {n}"),
        "stubborn": lambda n: (jobs.fail_stubbornly,),
        "crash": lambda n: (jobs.crash_worker,),
        "cancel": lambda n: (jobs.block_forever, str(folder / f"started-{n}")),
    }
    try:
        async with ProcessPool(2, prestart=False) as procs, AsyncExecutor(4) as ex:
            futures = []
            for n, kind in enumerate(kinds):
                fn, *args = calls[kind](n)
                futures.append(
                    ex.submit(
                        procs.wrap(fn),
                        *args,
                        retries=retries,
                        retry_delay=0,
                        semaphore=procs.slots if use_slots else None,
                    )
                )
            # Cancel each blocking job once it runs, in order; the others end
            # by themselves meanwhile.
            for n, kind in enumerate(kinds):
                if kind == "cancel":
                    markers.append(folder / f"started-{n}")
                    await wait_for_file(markers[-1])
                    futures[n].cancel()
            for n, (kind, future) in enumerate(zip(kinds, futures, strict=True)):
                if kind == "ok":
                    assert await future == n * n
                elif kind == "cancel":
                    with pytest.raises(CancelledError):
                        await future
                    assert future.cancelled()
                else:
                    expected = {
                        "fail": jobs.ParseError,
                        "stubborn": RemoteError,
                        "crash": anyio.BrokenWorkerProcess,
                    }[kind]
                    with pytest.raises(expected):
                        await future
            assert free(procs)
        assert not any(is_alive(int(m.read_text())) for m in markers)
    finally:
        shutil.rmtree(folder)


# -- cancellation, deadlines, retries --------------------------------------------


async def test_cancelling_a_running_job_kills_its_worker_and_frees_the_slot(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "started"
    async with ProcessPool(1) as procs, AsyncExecutor(max_workers=2) as ex:
        future = ex.submit(procs.wrap(jobs.block_forever), str(marker))
        worker = await wait_for_file(marker)
        assert future.running() and is_alive(worker)
        began = time.monotonic()
        assert future.cancel()
        with pytest.raises(CancelledError):
            await future
        assert not is_alive(worker)
        assert free(procs)
        # The slot is free: the next job runs at once, in a new process.
        assert await procs.run(jobs.pid) != worker
        assert time.monotonic() - began < 5


async def test_cancelling_run_directly_kills_the_worker(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    async with ProcessPool(1) as procs, anyio.create_task_group() as tg:
        tg.start_soon(procs.run, jobs.block_forever, str(marker))
        worker = await wait_for_file(marker)
        tg.cancel_scope.cancel()
    assert not is_alive(worker)
    assert free(procs)


async def test_task_timeout_stops_the_worker_process(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    async with ProcessPool(1) as procs, AsyncExecutor(max_workers=1) as ex:
        future = ex.submit(
            procs.wrap(jobs.block_forever), str(marker), task_timeout=0.5
        )
        with pytest.raises(TimeoutError):
            await future
        assert not is_alive(int(marker.read_text()))
        assert free(procs)


async def test_retries_go_through_the_offloader(tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    async with ProcessPool(2) as procs, AsyncExecutor(max_workers=2) as ex:
        attempts = await ex.submit(
            procs.wrap(jobs.fail_until), str(counter), 2, retries=2, retry_delay=0
        )
        assert attempts == 3
        # One retry too few: the last attempt's own error comes back.
        counter.unlink()
        with pytest.raises(jobs.ParseError, match="attempt 2"):
            await ex.submit(
                procs.wrap(jobs.fail_until), str(counter), 5, retries=1, retry_delay=0
            )
    assert free(procs)


async def test_a_crashed_worker_is_retried_in_a_fresh_process(tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    async with ProcessPool(1) as procs, AsyncExecutor(max_workers=1) as ex:
        attempts = await ex.submit(
            procs.wrap(jobs.crash_until), str(counter), 2, retries=2, retry_delay=0
        )
    assert attempts == 3


async def test_shutdown_cancel_futures_kills_running_workers(tmp_path: Path) -> None:
    markers = [tmp_path / f"started-{n}" for n in range(2)]
    async with ProcessPool(2) as procs:
        async with AsyncExecutor(max_workers=4) as ex:
            futures = [
                ex.submit(procs.wrap(jobs.block_forever), str(m), semaphore=procs.slots)
                for m in markers
            ]
            queued = ex.submit(procs.wrap(jobs.square), 3, semaphore=procs.slots)
            workers = [await wait_for_file(m) for m in markers]
            await ex.shutdown(cancel_futures=True)
        assert all(f.cancelled() for f in [*futures, queued])
        assert not any(is_alive(w) for w in workers)
        assert free(procs)


async def test_an_error_in_the_block_kills_running_workers(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    with pytest.raises(KeyError):
        async with ProcessPool(1) as procs, AsyncExecutor(max_workers=1) as ex:
            ex.submit(procs.wrap(jobs.block_forever), str(marker))
            await wait_for_file(marker)
            raise KeyError("boom")
    assert not is_alive(int(marker.read_text()))
    assert free(procs)


async def test_a_timed_out_attempt_is_killed_and_retried_in_another_process(
    tmp_path: Path,
) -> None:
    # task_timeout covers one attempt: the first hangs and is killed, the
    # retry runs in the pool's other (already started) process.
    counter, marker = tmp_path / "attempts", tmp_path / "started"
    async with ProcessPool(2) as procs, AsyncExecutor(max_workers=2) as ex:
        attempts = await ex.submit(
            procs.wrap(jobs.hang_first_attempt),
            str(counter),
            str(marker),
            task_timeout=1,
            retries=1,
            retry_delay=0,
            semaphore=procs.slots,
        )
        assert attempts == 2
        assert not is_alive(int(marker.read_text()))
    assert free(procs)


async def test_a_map_deadline_kills_running_workers(tmp_path: Path) -> None:
    markers = [tmp_path / f"started-{n}" for n in range(2)]
    async with ProcessPool(2) as procs, AsyncExecutor(max_workers=2) as ex:
        with pytest.raises(TimeoutError):
            await ex.map(procs.wrap(jobs.block_forever), map(str, markers), timeout=1)
        # Both jobs had started in the pool's two processes; both are gone.
        assert not any(is_alive(int(m.read_text())) for m in markers)
        assert free(procs)


async def test_outer_cancellation_kills_running_workers(tmp_path: Path) -> None:
    markers = [tmp_path / f"started-{n}" for n in range(2)]
    workers: list[int] = []
    async with ProcessPool(2) as procs, AsyncExecutor(max_workers=2) as ex:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def cancel_once_both_run() -> None:
                    workers.extend([await wait_for_file(m) for m in markers])
                    scope.cancel()

                tg.start_soon(cancel_once_both_run)
                await ex.map(
                    procs.wrap(jobs.block_forever),
                    map(str, markers),
                    semaphore=procs.slots,
                )
        assert scope.cancelled_caught
        assert not any(is_alive(w) for w in workers)
        assert free(procs)
        assert await procs.run(jobs.square, 2) == 4


async def test_leaving_map_iter_early_kills_running_workers(tmp_path: Path) -> None:
    async with ProcessPool(2) as procs, AsyncExecutor(max_workers=2) as ex:
        results = ex.map_iter(
            procs.wrap(jobs.block_unless_zero), range(3), [str(tmp_path)] * 3
        )
        async for first in results:
            assert first == 0
            break
        # Item 1 runs in a worker (item 2 may have started too).
        running = [await wait_for_file(tmp_path / "started-1")]
        await results.aclose()
        if (tmp_path / "started-2").exists():
            running.append(int((tmp_path / "started-2").read_text()))
        assert not any(is_alive(pid) for pid in running)
        assert free(procs)


async def test_an_argument_that_will_not_pickle_fails_at_the_call() -> None:
    import threading

    async with ProcessPool(1) as procs, AsyncExecutor(max_workers=2) as ex:
        with pytest.raises(pickle.PicklingError, match="cannot send square"):
            await ex.submit(
                procs.wrap(jobs.square), threading.Lock(), semaphore=procs.slots
            )
        assert free(procs)
        assert await procs.run(jobs.square, 3) == 9


# -- limits: slots, rate limits, laziness ------------------------------------------


async def test_jobs_waiting_for_slots_hold_no_worker(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    async with ProcessPool(1) as procs, AsyncExecutor(max_workers=2) as ex:
        blocker = ex.submit(
            procs.wrap(jobs.block_forever), str(marker), semaphore=procs.slots
        )
        await wait_for_file(marker)
        waiting = [
            ex.submit(procs.wrap(jobs.square), n, semaphore=procs.slots)
            for n in range(5)
        ]
        # Five CPU jobs wait for the one process, parked: the executor's
        # second worker is free for an in-process job, at once.
        done = anyio.Event()

        async def io_step() -> None:
            done.set()

        await ex.submit(io_step)
        assert done.is_set()
        assert ex.statistics().running == 1
        assert not any(f.done() for f in waiting)
        blocker.cancel()
        assert [await f for f in waiting] == [0, 1, 4, 9, 16]
    assert free(procs)


async def test_without_slots_jobs_queue_inside_run_holding_workers(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "started"
    async with ProcessPool(1) as procs, AsyncExecutor(max_workers=2) as ex:
        blocker = ex.submit(procs.wrap(jobs.block_forever), str(marker))
        await wait_for_file(marker)
        second = ex.submit(procs.wrap(jobs.square), 3)
        while procs._processes.statistics().tasks_waiting == 0:
            await anyio.sleep(0.005)
        # The second job holds the other worker while it waits for a process.
        assert ex.statistics().running == 2
        blocker.cancel()
        assert await second == 9


async def test_slots_never_admit_more_jobs_than_processes(tmp_path: Path) -> None:
    async with ProcessPool(2) as procs, AsyncExecutor(max_workers=8) as ex:
        peak = 0

        async def watched(x: int) -> int:
            nonlocal peak
            peak = max(peak, procs.slots.borrowed_tokens)
            return await procs.run(jobs.square, x)

        assert await ex.map(watched, range(30), semaphore=procs.slots) == [
            x * x for x in range(30)
        ]
        assert peak == 2
        assert procs._processes.statistics().tasks_waiting == 0


async def test_rate_limits_pace_remote_calls_at_dispatch() -> None:
    # The start of an attempt is decided in the driver: that is where the
    # pacing is exact (a worker sees the call a pipe's latency later).
    dispatched: list[float] = []
    async with ProcessPool(2) as procs, AsyncExecutor(max_workers=4) as ex:

        async def paced(x: int) -> int:
            dispatched.append(anyio.current_time())
            return await procs.run(jobs.square, x)

        results = await ex.map(paced, range(6), rate_limit=RateLimiter(20))
    assert results == [x * x for x in range(6)]
    jobs.assert_paced(dispatched, rate=20)


async def test_map_iter_stays_lazy_over_a_million_items() -> None:
    consumed = 0

    def items() -> Iterator[int]:
        nonlocal consumed
        for n in range(1_000_000):
            consumed += 1
            yield n

    tracemalloc.start()
    try:
        async with ProcessPool(2) as procs, AsyncExecutor(max_workers=4) as ex:
            results = ex.map_iter(
                procs.wrap(jobs.square), items(), semaphore=procs.slots
            )
            seen = 0
            async for value in results:
                assert value == seen * seen
                seen += 1
                assert consumed <= seen + 2 * ex.max_workers + 1
                if seen == 300:
                    break
            await results.aclose()
            stopped_at = consumed
            assert await ex.map(procs.wrap(jobs.square), [3]) == [9]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert consumed == stopped_at  # it stopped reading
    assert consumed <= 300 + 2 * 4 + 1
    assert peak < 5_000_000  # bytes: a window of futures, not a million
    assert free(procs)


# -- misuse --------------------------------------------------------------------------


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="max_workers must be at least 1"):
        ProcessPool(0)
    with pytest.raises(TypeError, match="max_workers must be an int"):
        ProcessPool(2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_workers must be an int"):
        ProcessPool(True)
    with pytest.raises(TypeError, match="initializer must be callable"):
        ProcessPool(1, initializer=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="initargs must be a tuple"):
        ProcessPool(1, initializer=print, initargs=[1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fn must be callable"):
        ProcessPool(1).wrap(3)  # type: ignore[call-overload]
    assert ProcessPool().max_workers == (os.cpu_count() or 1)
    assert repr(ProcessPool(3)) == "<ProcessPool max_workers=3 new>"


async def test_run_needs_an_open_pool() -> None:
    procs = ProcessPool(1, prestart=False)
    with pytest.raises(RuntimeError, match="not open"):
        await procs.run(jobs.square, 2)
    async with procs:
        assert repr(procs) == "<ProcessPool max_workers=1 open>"
        with pytest.raises(RuntimeError, match="only once"):
            async with procs:
                pass
    with pytest.raises(RuntimeError, match="closed"):
        await procs.run(jobs.square, 2)


def test_a_pool_belongs_to_the_event_loop_that_started_it() -> None:
    async def start() -> ProcessPool:
        procs = ProcessPool(1, prestart=False)
        await procs.__aenter__()
        return procs

    async def use(procs: ProcessPool) -> None:
        with pytest.raises(RuntimeError, match="another event loop"):
            await procs.run(jobs.square, 2)

    procs = anyio.run(start)
    anyio.run(use, procs)


async def test_wrap_keeps_the_functions_name_and_batches() -> None:
    async with ProcessPool(1) as procs:
        wrapped = procs.wrap(jobs.square)
        assert wrapped.__name__ == "square"
        assert wrapped.__wrapped__ is jobs.square  # type: ignore[attr-defined]
        batch = procs.wrap_batch(jobs.square)
        assert await batch(range(5)) == [0, 1, 4, 9, 16]
        assert await batch([]) == []


# -- Ctrl-C --------------------------------------------------------------------------

CTRL_C_SCRIPT = """
import os, sys
import anyio
from pathlib import Path

sys.path.insert(0, {tests!r})
import _offload_jobs as jobs
from antflow import AsyncExecutor
from antflow.process import ProcessPool

async def main():
    # Three processes: two busy, one idle since it was started.
    async with ProcessPool(3) as procs, AsyncExecutor(max_workers=4) as ex:
        ex.submit(procs.wrap(jobs.block_forever), {marker!r} + "-0")
        ex.submit(procs.wrap(jobs.block_forever), {marker!r} + "-1")
        await anyio.sleep_forever()

if __name__ == "__main__":
    # As in a terminal, whatever the test runner's own disposition: a job
    # started in the background by a non-interactive shell ignores SIGINT,
    # and its children inherit that.
    import signal
    signal.signal(signal.SIGINT, signal.default_int_handler)
    anyio.run(main, backend={backend!r}, backend_options={options!r})
"""


def children_of(parent: int) -> set[int]:
    """The pids whose parent is ``parent`` (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == parent:
            found.add(int(stat.parent.name))
    return found


def anyio_workers() -> set[int]:
    """This process's anyio worker processes."""
    return {
        pid
        for pid in children_of(os.getpid())
        if b"anyio.to_process" in Path(f"/proc/{pid}/cmdline").read_bytes()
    }


@pytest.fixture
def sigint_as_in_a_terminal() -> Iterator[None]:
    """This process takes SIGINT as a terminal gives it, and so do the
    processes it starts meanwhile. A test run started in the background by a
    non-interactive shell ignores SIGINT, and workers would inherit that."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.mark.usefixtures("sigint_as_in_a_terminal")
async def test_workers_ignore_ctrl_c_even_before_their_first_job() -> None:
    # A terminal's Ctrl-C reaches every process of the group. An idle worker
    # that took it as KeyboardInterrupt would answer on the result pipe, and
    # the next job would read that stray answer.
    async with ProcessPool(2) as procs:
        started = anyio_workers()
        assert len(started) >= 2
        for pid in started:
            os.kill(pid, signal.SIGINT)
        assert [await procs.run(jobs.square, n) for n in range(4)] == [0, 1, 4, 9]
        assert anyio_workers() >= started


@pytest.mark.parametrize("target", ["process", "group"])
def test_ctrl_c_stops_promptly_and_leaves_no_worker(
    anyio_backend: Any, target: str, tmp_path: Path
) -> None:
    backend, options = anyio_backend
    marker = str(tmp_path / "started")
    script = tmp_path / "ctrl_c.py"
    script.write_text(
        textwrap.dedent(
            CTRL_C_SCRIPT.format(
                tests=str(Path(__file__).parent),
                marker=marker,
                backend=backend,
                options=options,
            )
        )
    )
    child = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives
    )
    try:
        workers = []
        deadline = time.monotonic() + 30
        for n in range(2):
            path = Path(f"{marker}-{n}")
            while not path.exists():
                assert child.poll() is None, child.communicate()
                assert time.monotonic() < deadline, "the jobs never started"
                time.sleep(0.01)
            workers.append(int(path.read_text()))
        children = children_of(child.pid)
        assert set(workers) < children and len(children) == 3, (workers, children)
        # Ctrl-C in a terminal signals the whole group; `kill -INT` one pid.
        if target == "group":
            os.killpg(child.pid, signal.SIGINT)
        else:
            os.kill(child.pid, signal.SIGINT)
        began = time.monotonic()
        _, stderr = child.communicate(timeout=20)
        assert time.monotonic() - began < 5
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode != 0
    assert "KeyboardInterrupt" in stderr
    assert not any(is_alive(pid) for pid in children), children
