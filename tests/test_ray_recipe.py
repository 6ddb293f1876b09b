"""The Ray recipe of docs/scaling-out.md: it runs, and it does what the page says.

Skipped where Ray is not installed; ``nox -s ray`` installs it and runs this
file alone (Ray is large and starts in seconds, so the main suite does not).
The code under test is the page's own: the two programs (asyncio and trio)
are run as they are, each in a process of its own, and their ``RayPool``
classes are loaded from the page for the checks below.

Ray allows one instance per process, so one `RayPool` started by a module
fixture serves every check here; each test makes an instance of the recipe
for its backend that it does not enter (entering would start a second Ray)
and uses its ``run``, which needs only the running Ray. That the two recipes
start and stop Ray with the same code is checked, and the programs start and
stop it for real.

Every test runs on asyncio, uvloop and trio (trio on its real clock: the jobs
run in real processes). Jobs that must be seen running write their pid into
a marker file (``_offload_jobs.block_forever``).
"""

from __future__ import annotations

import importlib.util
import inspect
import ipaddress
import os
import runpy
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _offload_jobs as jobs
import anyio
import pytest

from antflow import AsyncExecutor, CancelledError

# Nothing here may import ray before the recipe has set its environment.
if importlib.util.find_spec("ray") is None:
    pytest.skip("needs ray (nox -s ray installs it)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "scaling-out.md"
# The recipe's switch to single-machine mode, set by its first lines.
SINGLE_MACHINE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock, pytest.mark.timeout(180)]


def _docs_harness() -> Any:
    """tests/docs/test_docs.py, for its parser of the pages' code blocks."""
    spec = importlib.util.spec_from_file_location(
        "_doc_blocks", ROOT / "tests" / "docs" / "test_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


RECIPES = {
    block.backend: block
    for block in _docs_harness().parse(PAGE)
    if block.lang == "python" and "class RayPool" in block.code
}


def test_the_page_has_a_recipe_per_backend_and_says_what_they_print() -> None:
    assert set(RECIPES) == {"asyncio", "trio"}
    for block in RECIPES.values():
        assert block.skip and "test_ray_recipe.py" in block.skip
        assert block.output == "[0, 1, 4, 9, 16]\ntimed out; Ray killed its worker\n"


@pytest.mark.parametrize("backend", sorted(RECIPES))
def test_the_programs_run_and_print_what_the_page_shows(
    backend: str, tmp_path: Path
) -> None:
    block = RECIPES[backend]
    script = tmp_path / f"ray_recipe_{backend}.py"
    script.write_text(block.code, encoding="utf-8")
    # The program must keep Ray on loopback by itself.
    environ = {k: v for k, v in os.environ.items() if k != SINGLE_MACHINE}
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=environ,
        cwd=tmp_path,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == block.output, done.stderr[-3000:]


# -- the checks, on the recipe's RayPool loaded from the page -----------------------


def _load(backend: str, folder: Path) -> dict[str, Any]:
    """The recipe's module globals (its main() is not run)."""
    script = folder / f"ray_recipe_{backend}.py"
    script.write_text(RECIPES[backend].code, encoding="utf-8")
    return runpy.run_path(str(script), run_name=f"ray_recipe_{backend}")


@pytest.fixture(scope="module")
def recipes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Both recipes' globals, with Ray started by the asyncio recipe's RayPool."""
    folder = tmp_path_factory.mktemp("ray-recipes")
    with pytest.MonkeyPatch.context() as patch:
        # Ray's workers import the job functions from tests/, as pytest does.
        path = os.environ.get("PYTHONPATH")
        patch.setenv(
            "PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT / "tests"), path]))
        )
        patch.delenv(SINGLE_MACHINE, raising=False)
        loaded = {backend: _load(backend, folder) for backend in RECIPES}
        assert os.environ[SINGLE_MACHINE] == "0"  # set by the recipe itself
        owner = loaded["asyncio"]["RayPool"](num_cpus=2)
        # Children from before (multiprocessing's resource tracker, started
        # by an earlier module, lives as long as this process) are not Ray's.
        before = _descendants()
        anyio.run(owner.__aenter__)
        started = _descendants() - before
        try:
            yield loaded
        finally:
            anyio.run(owner.__aexit__, None, None, None)
    assert not owner._owner.is_alive()
    # Leaving the pool stops every process Ray started (the workers of jobs
    # that were killed too); ray.shutdown() reaps them within moments.
    deadline = time.monotonic() + 30
    while (
        left := [pid for pid in (started | _descendants()) - before if _is_alive(pid)]
    ) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, [_name(pid) for pid in left]


@pytest.fixture
def pool(recipes: dict[str, Any], anyio_backend: Any) -> Any:
    """The recipe for this test's backend, not entered: Ray is already up."""
    backend = "trio" if anyio_backend[0] == "trio" else "asyncio"
    return recipes[backend]["RayPool"](num_cpus=2)


def test_both_recipes_start_and_stop_ray_the_same_way(
    recipes: dict[str, Any],
) -> None:
    asyncio_pool, trio_pool = recipes["asyncio"]["RayPool"], recipes["trio"]["RayPool"]
    for name in ("__init__", "_own_ray", "__aenter__", "__aexit__"):
        assert inspect.getsource(getattr(asyncio_pool, name)) == inspect.getsource(
            getattr(trio_pool, name)
        )
    assert inspect.getsource(recipes["asyncio"]["remote"]) == inspect.getsource(
        recipes["trio"]["remote"]
    )


def _descendants() -> set[int]:
    import psutil

    return {child.pid for child in psutil.Process().children(recursive=True)}


def _name(pid: int) -> str:
    import psutil

    try:
        return " ".join(psutil.Process(pid).cmdline())[:100]
    except psutil.NoSuchProcess:
        return f"{pid} (gone)"


def _is_alive(pid: int) -> bool:
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


async def _until_dead(pid: int) -> None:
    # Ray's raylet kills the worker: a moment after the driver asked it to.
    while _is_alive(pid):
        await anyio.sleep(0.02)


async def _started(marker: Path) -> int:
    while not marker.exists():
        await anyio.sleep(0.02)
    return int(marker.read_text())


async def test_results_come_back_in_order_through_slots(pool: Any) -> None:
    async with AsyncExecutor(max_workers=8) as ex:
        results = await ex.map(pool.wrap(jobs.square), range(20), semaphore=pool.slots)
        assert results == [x * x for x in range(20)]
        assert await ex.submit(pool.wrap(jobs.scale), 4, factor=10) == 40
        assert await pool.run(jobs.pid) != os.getpid()
    assert pool.slots.borrowed_tokens == 0


def test_ray_listens_on_loopback_only(recipes: dict[str, Any]) -> None:
    import psutil

    me = psutil.Process()
    ours = {me.pid, *(child.pid for child in me.children(recursive=True))}
    names = {p: psutil.Process(p).name() for p in ours if _is_alive(p)}
    assert any("raylet" in name for name in names.values()), names
    listening = {
        (conn.laddr.ip, names.get(conn.pid, "?"))
        for conn in psutil.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.pid in ours
    }
    assert listening  # Ray's servers: the GCS, the raylet, the workers

    def loopback(address: str) -> bool:
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return ip.is_loopback

    assert all(loopback(address) for address, _ in listening), listening


async def test_errors_keep_their_type_and_the_remote_traceback(pool: Any) -> None:
    import ray

    with pytest.raises(jobs.ParseError, match="page 3") as caught:
        await pool.run(jobs.fail, "page 3")
    assert isinstance(caught.value, ray.exceptions.RayTaskError)
    assert "raise ParseError(message)" in str(caught.value)
    # Exceptions that will not unpickle, arguments and results that will not
    # pickle: each fails its own job only.
    with pytest.raises(ray.exceptions.UnserializableException):
        await pool.run(jobs.fail_refusingly)
    with pytest.raises(TypeError, match="serialize"):
        await pool.run(jobs.square, threading.Lock())
    with pytest.raises(ray.exceptions.RayTaskError) as result:
        await pool.run(jobs.unpicklable_result)
    assert isinstance(result.value, TypeError)
    assert await pool.run(jobs.square, 5) == 25


async def test_async_functions_are_refused_at_the_call(pool: Any) -> None:
    with pytest.raises(ValueError, match="async def"):
        await pool.run(jobs.async_square, 2)


async def test_antflow_retries_and_ray_does_not(pool: Any, tmp_path: Path) -> None:
    import ray

    async with AsyncExecutor(max_workers=2) as ex:
        counter = tmp_path / "failures"
        run = pool.wrap(jobs.fail_until)
        assert await ex.submit(run, str(counter), 2, retries=2, retry_delay=0) == 3
        # A worker that dies: Ray does not run the task again by itself...
        crashes = tmp_path / "crashes"
        with pytest.raises(ray.exceptions.WorkerCrashedError):
            await ex.submit(pool.wrap(jobs.crash_until), str(crashes), 1)
        assert crashes.read_text() == "1"
        # ... antflow's retries do, in a fresh worker.
        crashes.unlink()
        retried = pool.wrap(jobs.crash_until)
        assert await ex.submit(retried, str(crashes), 1, retries=1, retry_delay=0) == 2


async def test_task_timeout_kills_the_worker_and_frees_the_slot(
    pool: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    async with AsyncExecutor(max_workers=2) as ex:
        stuck = ex.submit(
            pool.wrap(jobs.block_forever),
            str(marker),
            task_timeout=3,
            semaphore=pool.slots,
        )
        with pytest.raises(TimeoutError):
            await stuck
        await _until_dead(await _started(marker))
        assert pool.slots.borrowed_tokens == 0
        assert await ex.submit(pool.wrap(jobs.square), 6, semaphore=pool.slots) == 36


async def test_cancel_kills_the_worker(pool: Any, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    async with AsyncExecutor(max_workers=2) as ex:
        running = ex.submit(pool.wrap(jobs.block_forever), str(marker))
        worker = await _started(marker)
        assert running.cancel()
        with pytest.raises(CancelledError):
            await running
        await _until_dead(worker)


async def test_shutdown_cancel_futures_kills_running_workers(
    pool: Any, tmp_path: Path
) -> None:
    markers = [tmp_path / f"started-{n}" for n in range(2)]
    async with AsyncExecutor(max_workers=4) as ex:
        running = [
            ex.submit(pool.wrap(jobs.block_forever), str(m), semaphore=pool.slots)
            for m in markers
        ]
        queued = ex.submit(pool.wrap(jobs.square), 3, semaphore=pool.slots)
        workers = [await _started(m) for m in markers]
        await ex.shutdown(cancel_futures=True)
    assert all(future.cancelled() for future in [*running, queued])
    for worker in workers:
        await _until_dead(worker)
    assert pool.slots.borrowed_tokens == 0


async def test_outer_cancellation_kills_running_workers(
    pool: Any, tmp_path: Path
) -> None:
    markers = [tmp_path / f"started-{n}" for n in range(2)]
    workers: list[int] = []
    async with AsyncExecutor(max_workers=2) as ex:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def cancel_once_both_run() -> None:
                    workers.extend([await _started(m) for m in markers])
                    scope.cancel()

                tg.start_soon(cancel_once_both_run)
                await ex.map(pool.wrap(jobs.block_forever), map(str, markers))
        assert scope.cancelled_caught
    for worker in workers:
        await _until_dead(worker)
