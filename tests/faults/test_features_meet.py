"""Where features meet: each rule of docs/semantics.md "Where features meet",
as concrete cases on every backend.

Each case is an input that once showed a feature working alone and breaking
in combination with another. The model test (``properties/test_model.py``)
checks the same rules over random combinations; the cases here pin those
inputs so a regression names itself. Each section header below names the rule
of docs/semantics.md it pins, or says where its rule is stated.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from contextvars import ContextVar
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _strategies import Boom, CountingContextManager, hang_guard

from antflow import AsyncExecutor, CancelledError, RateLimiter

pytestmark = pytest.mark.anyio


async def quick(value: Any = None) -> Any:
    await anyio.lowlevel.checkpoint()
    return value


# ---------------------------------------------------------------------------
# Tokens: taken only when a worker is free, held only while an attempt runs
# ---------------------------------------------------------------------------


async def test_a_job_waiting_for_a_rate_slot_holds_no_semaphore_token() -> None:
    limiter = anyio.CapacityLimiter(1)
    rate = RateLimiter(1, per=30)
    async with AsyncExecutor(max_workers=4) as ex:
        await ex.submit(quick, rate_limit=rate)  # uses the only rate slot
        parked = ex.submit(quick, semaphore=limiter, rate_limit=rate)
        await anyio.wait_all_tasks_blocked()
        assert not parked.done()
        assert limiter.borrowed_tokens == 0
        assert parked.cancel()
        assert limiter.borrowed_tokens == 0
        with anyio.fail_after(hang_guard()):
            assert await ex.submit(quick, 7, semaphore=limiter) == 7
    assert limiter.borrowed_tokens == 0


async def test_a_queued_job_takes_no_token_while_every_worker_is_busy() -> None:
    shared = anyio.CapacityLimiter(1)
    release = anyio.Event()
    async with AsyncExecutor(max_workers=1) as ex1, AsyncExecutor(1) as ex2:
        long = ex1.submit(release.wait)
        queued = ex1.submit(quick, 1, semaphore=shared)
        await anyio.wait_all_tasks_blocked()
        assert shared.borrowed_tokens == 0
        assert not queued.done()
        # The other user of the limiter is not held up by a job that cannot run.
        with anyio.fail_after(hang_guard()):
            assert await ex2.submit(quick, 2, semaphore=shared) == 2
        assert not long.done()
        assert queued.cancel()
        assert shared.borrowed_tokens == 0
        release.set()
    assert queued.cancelled()
    assert shared.borrowed_tokens == 0


async def test_a_job_parked_at_its_limiter_holds_nothing_while_workers_are_busy() -> (
    None
):
    """The limiter frees up while the only worker is busy with other work:
    the parked job must not take the token until a worker is free."""
    shared = anyio.CapacityLimiter(1)
    hold, release = anyio.Event(), anyio.Event()

    async def holder() -> None:
        hold.set()
        await release.wait()

    block = anyio.Event()
    async with AsyncExecutor(max_workers=2) as ex, AsyncExecutor(1) as other:
        held = other.submit(holder, semaphore=shared)
        await hold.wait()
        parked = ex.submit(quick, "parked", semaphore=shared)
        busy = [ex.submit(block.wait), ex.submit(block.wait)]
        await anyio.wait_all_tasks_blocked()
        release.set()  # the limiter frees up while ex's workers are busy
        await held
        await anyio.wait_all_tasks_blocked()
        assert shared.borrowed_tokens == 0
        assert not parked.done()
        # Another user can take it meanwhile.
        with anyio.fail_after(hang_guard()):
            assert await other.submit(quick, "other", semaphore=shared) == "other"
        block.set()
        with anyio.fail_after(hang_guard()):
            assert await parked == "parked"
        for future in busy:
            await future
    assert shared.borrowed_tokens == 0


async def test_semaphore_then_rate_limit_holds_no_semaphore_while_rate_limited() -> (
    None
):
    limiter = anyio.CapacityLimiter(2)
    rate = RateLimiter(1, per=30)
    async with AsyncExecutor(max_workers=4) as ex:
        assert await ex.submit(quick, 1, semaphore=limiter, rate_limit=rate) == 1
        second = ex.submit(quick, 2, semaphore=limiter, rate_limit=rate)
        executor_wide = AsyncExecutor(max_workers=2, rate_limit=rate)
        third = executor_wide.submit(quick, 3, semaphore=limiter)
        await anyio.wait_all_tasks_blocked()
        # Both wait about 30 s for a rate slot: neither holds a token meanwhile.
        assert not second.done() and not third.done()
        assert limiter.borrowed_tokens == 0
        assert second.cancel() and third.cancel()
        await executor_wide.shutdown()
    assert limiter.borrowed_tokens == 0


@pytest.mark.parametrize("ending", ["cancel", "shutdown", "block_error", "outer"])
async def test_every_token_comes_back_however_a_parked_job_ends(ending: str) -> None:
    limiter = anyio.CapacityLimiter(1)
    rate = RateLimiter(1, per=30)
    release = anyio.Event()
    with anyio.CancelScope() as outer:
        try:
            async with AsyncExecutor(max_workers=2) as ex:
                running = ex.submit(release.wait, semaphore=limiter, rate_limit=rate)
                parked = [
                    ex.submit(quick, semaphore=limiter, rate_limit=rate),
                    ex.submit(quick, rate_limit=rate),
                    ex.submit(quick, semaphore=limiter),
                ]
                await anyio.wait_all_tasks_blocked()
                assert limiter.borrowed_tokens == 1
                if ending == "cancel":
                    for future in parked:
                        assert future.cancel()
                    assert limiter.borrowed_tokens == 1
                    running.cancel()
                elif ending == "shutdown":
                    await ex.shutdown(cancel_futures=True)
                elif ending == "block_error":
                    raise Boom("in the block")
                else:
                    outer.cancel()
                    await anyio.sleep_forever()
        except Boom:
            assert ending == "block_error"
    assert limiter.borrowed_tokens == 0
    assert running.cancelled()
    assert all(future.cancelled() for future in parked)


@pytest.mark.parametrize("how", ["cancel", "shutdown"])
@pytest.mark.parametrize("timeout", [None, 600.0], ids=["", "task_timeout"])
async def test_no_attempt_starts_when_the_token_comes_with_the_cancellation(
    how: str, timeout: float | None
) -> None:
    # The token is handed over in the same step as the cancellation: the wait
    # for it ends normally, before the cancellation has reached the worker
    # (anyio delivers it at the worker's next checkpoint). The job must not
    # be called then (docs/semantics.md, "Cancellation": no new attempt
    # starts).
    limiter = CountingContextManager(1)  # entered in the worker
    limiter.semaphore.acquire_nowait()  # held by the test
    called: list[int] = []

    async def job() -> None:
        called.append(1)

    async with AsyncExecutor(max_workers=2) as ex:
        future = ex.submit(job, semaphore=limiter, task_timeout=timeout)
        await anyio.wait_all_tasks_blocked()  # waiting in the worker
        limiter.semaphore.release()
        if how == "cancel":
            assert future.cancel()
        else:
            await ex.shutdown(wait=False, cancel_futures=True)
        with anyio.fail_after(hang_guard()):
            with pytest.raises(CancelledError):
                await future
    assert called == []
    assert limiter.semaphore.value == 1


# ---------------------------------------------------------------------------
# Limiter faults fail only the job that used the limiter
# ---------------------------------------------------------------------------


def _semaphore_bound_to_a_finished_loop() -> asyncio.Semaphore:
    async def bind() -> asyncio.Semaphore:
        semaphore = asyncio.Semaphore(1)
        await semaphore.acquire()
        waiter = asyncio.ensure_future(semaphore.acquire())  # binds it to this loop
        await asyncio.sleep(0)
        semaphore.release()
        await waiter
        semaphore.release()
        return semaphore

    return asyncio.run(bind())


async def test_a_limiter_that_raises_fails_only_its_own_job(
    anyio_backend_name: str,
) -> None:
    if anyio_backend_name != "asyncio":
        pytest.skip("asyncio primitive: asyncio backends only")
    semaphore = await anyio.to_thread.run_sync(_semaphore_bound_to_a_finished_loop)
    release = anyio.Event()
    async with AsyncExecutor(max_workers=4) as ex:
        holder = ex.submit(release.wait, semaphore=semaphore)
        await anyio.wait_all_tasks_blocked()
        victim = ex.submit(quick, "victim", semaphore=semaphore)
        bystander = ex.submit(quick, "bystander")
        with anyio.fail_after(hang_guard()):
            with pytest.raises(RuntimeError, match="different event loop"):
                await victim
            assert await bystander == "bystander"
        release.set()
        await holder
        assert await ex.submit(quick, "after") == "after"


class BrokenLimiter:
    """An anyio.Semaphore whose release raises once: a faulty limiter."""

    def __init__(self) -> None:
        self.inner = anyio.Semaphore(1)
        self.broken = True

    async def __aenter__(self) -> None:
        await self.inner.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.inner.release()
        if self.broken:
            self.broken = False
            raise ValueError("limiter broke on release")


async def test_a_context_manager_limiter_that_raises_on_exit_fails_its_job() -> None:
    limiter = BrokenLimiter()
    async with AsyncExecutor(max_workers=2) as ex:
        first = ex.submit(quick, 1, semaphore=limiter)
        other = ex.submit(quick, 2)
        with pytest.raises(ValueError, match="limiter broke"):
            await first
        assert await other == 2
        assert await ex.submit(quick, 3, semaphore=limiter) == 3


# ---------------------------------------------------------------------------
# Context variables
# ---------------------------------------------------------------------------

request_id: ContextVar[str] = ContextVar("request_id", default="unset")


async def read_request_id() -> str:
    await anyio.lowlevel.checkpoint()
    return request_id.get()


async def set_request_id(value: str) -> str:
    request_id.set(value)
    await anyio.lowlevel.checkpoint()
    return request_id.get()


OPTION_SETS: dict[str, dict[str, Any]] = {
    "plain": {},
    "semaphore": {"semaphore": "limiter"},
    "rate_limit": {"rate_limit": "rate"},
    "retries": {"retries": 2, "retry_delay": 0},
    "task_timeout": {"task_timeout": 60},
    "everything": {
        "semaphore": "limiter",
        "rate_limit": "rate",
        "retries": 2,
        "retry_delay": 0,
        "task_timeout": 60,
    },
}


def _options(name: str) -> dict[str, Any]:
    made = {"limiter": anyio.CapacityLimiter(1), "rate": RateLimiter(10**6)}
    return {
        key: made.get(value, value) if isinstance(value, str) else value
        for key, value in OPTION_SETS[name].items()
    }


@pytest.mark.parametrize("options", sorted(OPTION_SETS))
async def test_each_job_runs_in_the_context_of_its_submit(options: str) -> None:
    kwargs = _options(options)
    async with AsyncExecutor(max_workers=1) as ex:
        request_id.set("A")
        first = ex.submit(read_request_id, **kwargs)
        request_id.set("B")
        second = ex.submit(read_request_id, **kwargs)
        setter = ex.submit(set_request_id, "X", **kwargs)
        after = ex.submit(read_request_id, **kwargs)
        assert [await first, await second, await setter, await after] == [
            "A",
            "B",
            "X",
            "B",
        ]
        assert request_id.get() == "B"


@pytest.mark.parametrize("ordered", [True, False])
async def test_map_items_run_in_the_context_of_the_call(ordered: bool) -> None:
    async def tag(i: int) -> str:
        seen = request_id.get()
        request_id.set(f"item {i}")  # seen by no other item
        await anyio.lowlevel.checkpoint()
        return seen

    async with AsyncExecutor(max_workers=2) as ex:
        request_id.set("mapper")
        results = ex.map_iter(tag, range(6), ordered=ordered)
        request_id.set("changed after the call")
        assert [r async for r in results] == ["mapper"] * 6
        request_id.set("map")
        assert await ex.map(tag, range(6)) == ["map"] * 6
        assert request_id.get() == "map"


async def test_manual_use_runs_the_first_job_in_the_callers_context() -> None:
    request_id.set("caller")
    ex = AsyncExecutor(max_workers=2)
    try:
        first = ex.submit(read_request_id)
        assert await first == "caller"
    finally:
        await ex.shutdown()


async def test_a_retried_job_keeps_one_context_across_its_attempts() -> None:
    attempts: list[str] = []

    async def flaky() -> str:
        attempts.append(request_id.get())
        request_id.set(f"attempt {len(attempts)}")
        if len(attempts) < 3:
            raise Boom(len(attempts))
        return request_id.get()

    async with AsyncExecutor(max_workers=1) as ex:
        request_id.set("submitter")
        assert await ex.submit(flaky, retries=3, retry_delay=0) == "attempt 3"
        assert attempts == ["submitter", "attempt 1", "attempt 2"]
        assert request_id.get() == "submitter"


async def test_concurrent_requests_each_see_their_own_id_in_their_jobs() -> None:
    """The FastAPI report: many requests share one executor; each request's
    jobs must see that request's id, never another's."""
    seen: list[tuple[str, str]] = []

    async def job() -> None:
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        seen.append((request_id.get(), expected.get()))

    expected: ContextVar[str] = ContextVar("expected")

    async with AsyncExecutor(max_workers=3) as ex:

        async def request(number: int) -> None:
            request_id.set(f"r{number}")
            expected.set(f"r{number}")
            await ex.submit(job)
            await ex.map(lambda _: job(), range(2))

        async with anyio.create_task_group() as tg:
            for number in range(50):
                tg.start_soon(request, number)
    assert len(seen) == 150
    assert all(got == wanted for got, wanted in seen)


# ---------------------------------------------------------------------------
# Shutdown from inside
# ---------------------------------------------------------------------------


async def test_shutdown_with_wait_from_inside_raises_at_once() -> None:
    async with AsyncExecutor(max_workers=2) as ex:

        async def stop(**kwargs: Any) -> None:
            await ex.shutdown(**kwargs)

        with anyio.fail_after(hang_guard()):
            with pytest.raises(RuntimeError, match="its own tasks"):
                await ex.submit(stop)
            with pytest.raises(RuntimeError, match="its own tasks"):
                await ex.submit(stop, cancel_futures=True)
            # Nothing was shut down by the refused calls.
            assert await ex.submit(quick, 1) == 1


async def test_shutdown_without_wait_from_inside_is_fine() -> None:
    with anyio.fail_after(hang_guard()):
        async with AsyncExecutor(max_workers=2) as ex:

            async def stop() -> str:
                await ex.shutdown(wait=False)
                return "stopped"

            assert await ex.submit(stop) == "stopped"
            with pytest.raises(RuntimeError):
                ex.submit(quick)


async def test_shutdown_from_inside_in_manual_use_raises_too() -> None:
    ex = AsyncExecutor(max_workers=1)

    async def stop() -> None:
        await ex.shutdown()

    with anyio.fail_after(hang_guard()):
        with pytest.raises(RuntimeError, match="its own tasks"):
            await ex.submit(stop)
        await ex.shutdown()


# ---------------------------------------------------------------------------
# Entered in one task, left in another (pytest-asyncio's async fixtures):
# the last rule of "Nothing swallowed", and docs/testing.md, "With pytest-asyncio"
# ---------------------------------------------------------------------------


async def _enter_then_exit_elsewhere(
    body: Any,
) -> tuple[AsyncExecutor, BaseException | None]:
    """Enter the executor in one task and leave it in another, as
    pytest-asyncio does with an async generator fixture: each in a plain
    asyncio task of its own (pytest-asyncio is asyncio's only)."""
    ex = AsyncExecutor(max_workers=2)
    await asyncio.ensure_future(ex.__aenter__())
    await body(ex)
    try:
        with anyio.fail_after(hang_guard()):
            await asyncio.ensure_future(ex.__aexit__(None, None, None))
    except BaseException as error:
        return ex, error
    return ex, None


async def test_leaving_async_with_from_another_task_waits_for_the_work(
    anyio_backend_name: str,
) -> None:
    if anyio_backend_name != "asyncio":
        pytest.skip("pytest-asyncio's way of running fixtures: asyncio only")
    futures: list[Any] = []

    async def body(ex: AsyncExecutor) -> None:
        futures.append(ex.submit(quick, 1))
        futures.append(ex.submit(anyio.sleep, 0.01))

    before = len(anyio.get_running_tasks())
    ex, outcome = await _enter_then_exit_elsewhere(body)
    assert outcome is None
    assert [await f for f in futures] == [1, None]
    assert repr(ex).endswith("closed>")
    assert len(anyio.get_running_tasks()) == before


class Crash(BaseException):
    pass


async def test_a_crash_comes_out_of_an_async_with_left_from_another_task(
    anyio_backend_name: str,
) -> None:
    if anyio_backend_name != "asyncio":
        pytest.skip("pytest-asyncio's way of running fixtures: asyncio only")
    futures: list[Any] = []
    release = anyio.Event()

    async def crash() -> None:
        raise Crash("boom")

    async def body(ex: AsyncExecutor) -> None:
        futures.append(ex.submit(release.wait))
        futures.append(ex.submit(crash))
        futures.append(ex.submit(release.wait))  # queued: must not be waited for
        await anyio.wait_all_tasks_blocked()

    _, outcome = await _enter_then_exit_elsewhere(body)
    assert isinstance(outcome, Crash)
    assert all(f.cancelled() for f in futures)


# ---------------------------------------------------------------------------
# Nothing swallowed
# ---------------------------------------------------------------------------


#: Options a running job's cancellation must not change the outcome of.
WITH_RETRIES_AND_TIMEOUT = [
    pytest.param({}, id="plain"),
    pytest.param({"retries": 3, "retry_delay": 0.001}, id="retries"),
    pytest.param({"task_timeout": 600.0}, id="timeout"),
    pytest.param(
        {"retries": 3, "retry_delay": 0.001, "task_timeout": 600.0},
        id="retries-timeout",
    ),
]


@pytest.mark.parametrize("options", WITH_RETRIES_AND_TIMEOUT)
async def test_a_cancelled_job_whose_cleanup_raises_fails_with_that_error(
    options: dict[str, Any],
) -> None:
    started = anyio.Event()

    async def stubborn() -> None:
        try:
            started.set()
            await anyio.sleep_forever()
        finally:
            raise ValueError("cleanup failed")

    async with AsyncExecutor(max_workers=2) as ex:
        future = ex.submit(stubborn, **options)
        await started.wait()
        assert future.cancel()
        with anyio.fail_after(hang_guard()):
            with pytest.raises(ValueError, match="cleanup failed"):
                await future
        assert not future.cancelled()
        assert isinstance(future.exception(), ValueError)


@pytest.mark.parametrize("options", WITH_RETRIES_AND_TIMEOUT)
@pytest.mark.parametrize("how", ["shutdown", "block_error", "outer"])
async def test_cleanup_errors_are_kept_however_the_job_was_cancelled(
    how: str, options: dict[str, Any]
) -> None:
    started = anyio.Event()

    async def stubborn() -> None:
        try:
            started.set()
            await anyio.sleep_forever()
        finally:
            raise ValueError("cleanup failed")

    with anyio.CancelScope() as outer:
        try:
            async with AsyncExecutor(max_workers=2) as ex:
                future = ex.submit(stubborn, **options)
                await started.wait()
                if how == "shutdown":
                    await ex.shutdown(cancel_futures=True)
                elif how == "block_error":
                    raise Boom("block")
                else:
                    outer.cancel()
                    await anyio.sleep_forever()
        except Boom:
            pass
    assert isinstance(future.exception(), ValueError)


@pytest.mark.virtual_time
class TestCleanupAfterATimeout:
    """An attempt cancelled by its own ``task_timeout`` whose cleanup raises
    has failed with that error: the job is retried if retries remain, and
    fails with it if not. A cancel() that comes during the back-off finds no
    attempt running and ends the job cancelled."""

    @staticmethod
    async def stubborn(attempts: list[float]) -> None:
        attempts.append(anyio.current_time())
        try:
            await anyio.sleep_forever()
        finally:
            raise ValueError("cleanup failed")

    async def test_retried_then_cancelled_while_backing_off(self) -> None:
        attempts: list[float] = []
        async with AsyncExecutor(max_workers=2) as ex:
            future = ex.submit(
                self.stubborn, attempts, task_timeout=1.0, retries=1, retry_delay=10.0
            )
            await anyio.sleep(5.0)  # attempt 1 timed out at 1; back-off to 11
            assert attempts == [0.0]
            assert future.cancel()
            with pytest.raises(CancelledError):
                await future
        assert future.cancelled()
        assert attempts == [0.0]

    async def test_fails_with_the_cleanup_error_when_no_retry_is_left(self) -> None:
        attempts: list[float] = []
        async with AsyncExecutor(max_workers=2) as ex:
            future = ex.submit(
                self.stubborn, attempts, task_timeout=1.0, retries=1, retry_delay=10.0
            )
            with pytest.raises(ValueError, match="cleanup failed"):
                await future
            assert not future.cancel()
        assert attempts == [0.0, 11.0]


def _task_groups(backend: str) -> list[Any]:
    """What makes a task group inside a job: anyio's, and trio's own
    nursery on trio (which raises its tasks' cancellations in a group with
    their errors)."""
    makers: list[Any] = [anyio.create_task_group]
    if backend == "trio":
        import trio

        makers.append(trio.open_nursery)
    return makers


def _job_with_a_task_group(
    task_group: Any, started: anyio.Event, cleanup_error: bool
) -> Any:
    async def job() -> None:
        async def child() -> None:
            try:
                await anyio.sleep_forever()
            finally:
                if cleanup_error:
                    raise ValueError("child cleanup failed")

        async with task_group() as tg:
            tg.start_soon(child)
            started.set()
            await anyio.sleep_forever()

    return job


def _only_value_errors(error: BaseException | None) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return all(_only_value_errors(inner) for inner in error.exceptions)
    return isinstance(error, ValueError)


@pytest.mark.parametrize("cleanup_error", [True, False])
async def test_a_cancelled_job_with_a_task_group_ends_as_its_tasks_did(
    anyio_backend_name: str, cleanup_error: bool
) -> None:
    """The cancellation of the job's own tasks, raised with their errors,
    is the worker's to absorb: the job fails with the errors if their
    clean-up raised, and ends cancelled if not; the executor goes on."""
    for task_group in _task_groups(anyio_backend_name):
        started = anyio.Event()
        job = _job_with_a_task_group(task_group, started, cleanup_error)
        async with AsyncExecutor(max_workers=2) as ex:
            future = ex.submit(job)
            await started.wait()
            assert future.cancel()
            with anyio.fail_after(hang_guard()):
                with pytest.raises(
                    BaseExceptionGroup if cleanup_error else CancelledError
                ):
                    await future
            if cleanup_error:
                assert _only_value_errors(future.exception()), future.exception()
            assert await ex.submit(quick, 1) == 1


@pytest.mark.virtual_time
class TestATimedOutTaskGroup:
    """A ``task_timeout`` that cancels a task group in the job: the job's
    failure is what the group's tasks raised besides the cancellation, or
    the ``TimeoutError`` if they raised nothing else; retried either way if
    retries remain, and the executor goes on."""

    @pytest.mark.parametrize("cleanup_error", [True, False])
    async def test_fails_with_what_is_left_after_retries(
        self, anyio_backend_name: str, cleanup_error: bool
    ) -> None:
        for task_group in _task_groups(anyio_backend_name):
            started = anyio.Event()
            job = _job_with_a_task_group(task_group, started, cleanup_error)
            async with AsyncExecutor(max_workers=2) as ex:
                t0 = anyio.current_time()
                future = ex.submit(job, task_timeout=1.0, retries=1, retry_delay=10.0)
                with pytest.raises(BaseException) as raised:
                    await future
                # Attempts at 0 and 11, each cut short after 1 s.
                assert anyio.current_time() - t0 == pytest.approx(12.0)
                assert await ex.submit(quick, 1) == 1
            if cleanup_error:
                assert _only_value_errors(raised.value), raised.value
            else:
                assert type(raised.value) is TimeoutError


class RemoteLimiter:
    """A limiter whose release awaits (as a lock on a server would): its
    ``__aexit__`` must run to the end for the token to come back."""

    def __init__(self) -> None:
        self.held = 0

    async def __aenter__(self) -> None:
        await anyio.lowlevel.checkpoint()
        self.held += 1

    async def __aexit__(self, *exc: object) -> None:
        await anyio.lowlevel.checkpoint()  # the round trip to the server
        self.held -= 1


@pytest.mark.virtual_time
async def test_a_timed_out_attempt_gives_back_a_limiter_whose_release_awaits() -> None:
    """``task_timeout`` cuts the call short, not the limiter's exit around it."""
    limiter = RemoteLimiter()
    async with AsyncExecutor(max_workers=2) as ex:
        future = ex.submit(anyio.sleep_forever, semaphore=limiter, task_timeout=1.0)
        with pytest.raises(TimeoutError):
            await future
        assert limiter.held == 0
        assert await ex.submit(quick, 1, semaphore=limiter) == 1
    assert limiter.held == 0


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("stop", [StopAsyncIteration, StopIteration])
async def test_a_job_raising_stop_iteration_does_not_end_map_iter(
    ordered: bool, stop: type[Exception]
) -> None:
    def raiser(i: int) -> Any:
        if i == 2:
            # A plain function returning an awaitable can raise it as it is
            # (inside a coroutine, Python would turn StopIteration into a
            # RuntimeError by itself).
            raise stop("item 2")
        return quick(i)

    async with AsyncExecutor(max_workers=2) as ex:
        got: list[int] = []
        with pytest.raises(RuntimeError) as info:
            async for result in ex.map_iter(raiser, range(5), ordered=ordered):
                got.append(result)
        assert isinstance(info.value.__cause__, stop)
        assert 2 not in got
        future = ex.submit(raiser, 2)
        if stop is StopIteration:
            # Python won't raise StopIteration out of a coroutine: like an
            # asyncio task, the future fails with a RuntimeError from it.
            with pytest.raises(RuntimeError, match="raised StopIteration") as raised:
                await future
            assert isinstance(raised.value.__cause__, StopIteration)
        else:
            with pytest.raises(stop):
                await future


async def test_a_progress_callback_that_raises_is_logged_and_changes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def progress(done: int, total: int | None) -> None:
        raise ValueError(f"progress {done}")

    async with AsyncExecutor(max_workers=3) as ex:
        with anyio.fail_after(hang_guard()):
            unordered = [
                r
                async for r in ex.map_iter(
                    quick, range(10), ordered=False, progress=progress
                )
            ]
            ordered = [
                r async for r in ex.map_iter(quick, range(10), progress=progress)
            ]
            mapped = await ex.map(quick, range(10), progress=progress)
    assert sorted(unordered) == ordered == mapped == list(range(10))
    logged = [r for r in caplog.records if r.name == "antflow"]
    assert len(logged) == 30
    assert all("progress" in r.getMessage() for r in logged)


# ---------------------------------------------------------------------------
# Done callbacks: once each, in the order they were added
# ---------------------------------------------------------------------------


async def test_done_callbacks_run_in_the_order_they_were_added() -> None:
    calls: list[str] = []

    def a(_: object) -> None:
        calls.append("a")

    def b(_: object) -> None:
        calls.append("b")

    async with AsyncExecutor(max_workers=1) as ex:
        future = ex.submit(quick)
        future.add_done_callback(a)
        future.add_done_callback(b)
        future.add_done_callback(a)
        await future
        assert calls == ["a", "b", "a"]
        assert future.remove_done_callback(a) == 0  # already ran
        calls.clear()
        future.add_done_callback(b)  # on a final future: at once
        assert calls == ["b"]


async def test_removing_a_callback_removes_every_registration_keeping_the_order() -> (
    None
):
    calls: list[str] = []
    release = anyio.Event()
    async with AsyncExecutor(max_workers=1) as ex:
        future = ex.submit(release.wait)
        for name in "abacb":
            future.add_done_callback(lambda _, name=name: calls.append(name))
        future.add_done_callback(record := lambda _: calls.append("r"))
        future.add_done_callback(lambda _: calls.append("z"))
        future.add_done_callback(record)
        assert future.remove_done_callback(record) == 2
        release.set()
        await future
    assert calls == ["a", "b", "a", "c", "b", "z"]


# ---------------------------------------------------------------------------
# Memory: a failed future dies by reference counting
# ---------------------------------------------------------------------------


class Payload:
    pass


@pytest.mark.parametrize(
    "how", ["raise", "retries", "task_timeout", "map", "map_iter", "unordered"]
)
async def test_a_failed_job_and_what_it_held_die_by_refcount(how: str) -> None:
    """Once the caller drops the future (for ``submit``) or the error it
    caught (for an item's error raised by ``map`` or ``map_iter``), the
    argument and the failing frame's locals die by reference counting: no
    cycle through the traceback."""
    refs: dict[str, weakref.ref[Any]] = {}

    async def fail(payload: Payload) -> None:
        local = Payload()
        refs["local"] = weakref.ref(local)
        if how == "task_timeout":
            await anyio.sleep_forever()
        raise Boom("failed")

    all_options: dict[str, dict[str, Any]] = {
        "retries": {"retries": 2, "retry_delay": 0},
        "task_timeout": {"task_timeout": 0.01},
    }
    options = all_options.get(how, {})
    expected = TimeoutError if how == "task_timeout" else Boom
    async with AsyncExecutor(max_workers=2) as ex:
        gc.collect()
        gc.disable()
        try:
            payload = Payload()
            refs["payload"] = weakref.ref(payload)
            items: Any = [payload]
            future: Any = None
            del payload
            with anyio.fail_after(hang_guard()):
                try:
                    if how == "map":
                        await ex.map(fail, items)
                    elif how in ("map_iter", "unordered"):
                        ordered = how == "map_iter"
                        async for _ in ex.map_iter(fail, items, ordered=ordered):
                            pass
                    else:
                        future = ex.submit(fail, *items, **options)
                        refs["future"] = weakref.ref(future)
                        await future
                except expected as error:
                    if isinstance(error, Boom):  # TimeoutError takes no weakref
                        refs["error"] = weakref.ref(error)
            future = items = None
            assert {name: ref() is None for name, ref in refs.items()} == dict.fromkeys(
                refs, True
            )
        finally:
            gc.enable()


# ---------------------------------------------------------------------------
# Liveness: a ready result is yielded without waiting for more input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
async def test_map_iter_yields_a_ready_result_before_reading_more_input(
    ordered: bool,
) -> None:
    send, receive = anyio.create_memory_object_stream[int](10)
    results: list[int] = []
    async with AsyncExecutor(max_workers=4) as ex, send, receive:
        send.send_nowait(1)
        with anyio.fail_after(hang_guard()):
            async for result in ex.map_iter(quick, receive, ordered=ordered):
                results.append(result)
                if result < 5:
                    await send.send(result + 1)  # the producer waits for us
                else:
                    await send.aclose()
    assert results == [1, 2, 3, 4, 5]


async def test_map_with_a_producer_that_waits_for_results_finishes() -> None:
    send, receive = anyio.create_memory_object_stream[int](0)
    async with AsyncExecutor(max_workers=2) as ex:

        async def produce() -> None:
            async with send:
                for i in range(20):
                    await send.send(i)

        with anyio.fail_after(hang_guard()):
            async with anyio.create_task_group() as tg, receive:
                tg.start_soon(produce)
                assert await ex.map(quick, receive) == list(range(20))


# ---------------------------------------------------------------------------
# Fairness: a shared RateLimiter serves its users in turn
# ---------------------------------------------------------------------------


async def _starts_of_two_users(
    rate: RateLimiter, first_items: Any, second_items: int
) -> list[str]:
    """Two executors map through one rate limiter, starting together; the
    first stops once the second is done. Returns who started, in order."""
    starts: list[str] = []
    second_done = anyio.Event()

    async def start(who: str) -> None:
        starts.append(who)
        await anyio.lowlevel.checkpoint()

    async with AsyncExecutor(max_workers=8) as a, AsyncExecutor(max_workers=8) as b:

        async def run_a() -> None:
            async for _ in a.map_iter(
                lambda _: start("A"), first_items, rate_limit=rate
            ):
                if second_done.is_set():
                    break

        async def run_b() -> None:
            await b.map(lambda _: start("B"), range(second_items), rate_limit=rate)
            second_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_a)
            tg.start_soon(run_b)
    return starts


async def test_a_shared_rate_limiter_serves_two_executors_in_turn() -> None:
    rate = RateLimiter(1000)
    with anyio.fail_after(hang_guard()):
        starts = await _starts_of_two_users(rate, range(25), 25)
    first_b, last_a = starts.index("B"), len(starts) - 1 - starts[::-1].index("A")
    # B's first item goes among A's first few: which task starts first is
    # the loop's choice, but neither waits for the other to finish.
    assert first_b <= 5, starts
    # While both wait, they take turns: neither gets two starts in a row
    # (the first start of each may go at once, before anyone waits).
    both = "".join(starts[first_b : last_a + 1])
    assert "AAA" not in both and "BBB" not in both, starts


async def test_an_endless_stream_does_not_starve_a_small_map() -> None:
    rate = RateLimiter(1000)

    def endless() -> Any:
        i = 0
        while True:
            yield i
            i += 1

    with anyio.fail_after(hang_guard()):
        starts = await _starts_of_two_users(rate, endless(), 5)
    last_b = len(starts) - 1 - starts[::-1].index("B")
    assert last_b <= 15, starts


async def test_a_busy_executor_holds_no_place_at_a_shared_rate_limiter() -> None:
    """An executor whose workers are all busy keeps jobs parked at a shared
    rate limiter: it must not hold a place in the limiter's line meanwhile,
    or the other executor's jobs would wait for its workers."""
    rate = RateLimiter(100)
    release = anyio.Event()
    async with AsyncExecutor(max_workers=1) as busy, AsyncExecutor(2) as other:
        blocker = busy.submit(release.wait)
        parked = [busy.submit(quick, i, rate_limit=rate) for i in range(3)]
        await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(hang_guard()):
            assert await other.map(quick, range(5), rate_limit=rate) == list(range(5))
        assert not any(future.done() for future in parked)
        release.set()
        await blocker
        assert [await future for future in parked] == [0, 1, 2]


# ---------------------------------------------------------------------------
# RateLimiter: the rule docs/semantics.md states, in virtual time
# ---------------------------------------------------------------------------


@pytest.mark.virtual_time
class TestRateLimiterRule:
    @pytest.mark.parametrize(("rate", "per", "burst"), [(5, 1, 1), (3, 2, 10)])
    async def test_burst_then_steady_pace(
        self, rate: float, per: float, burst: int
    ) -> None:
        limiter = RateLimiter(rate, per, burst=burst)
        times: list[float] = []

        async def start() -> None:
            times.append(anyio.current_time())

        start_time = anyio.current_time()
        async with AsyncExecutor(max_workers=50) as ex:
            await ex.map(lambda _: start(), range(40), rate_limit=limiter)
        offsets = [round(t - start_time, 9) for t in times]
        interval = per / rate
        assert offsets[:burst] == [0.0] * burst
        expected = [round((i - burst + 1) * interval, 9) for i in range(burst, 40)]
        assert offsets[burst:] == pytest.approx(expected, abs=1e-6)
        # The documented rule: over any interval of t seconds at most
        # burst + rate * t / per starts.
        for i, begin in enumerate(offsets):
            for j in range(i, len(offsets)):
                span = offsets[j] - begin
                assert j - i + 1 <= burst + rate * span / per + 1e-6


# ---------------------------------------------------------------------------
# Saying what happened: use from another loop or thread is a RuntimeError
# (docs/semantics.md, "Shutdown", "One executor, one loop, one use")
# ---------------------------------------------------------------------------


def test_use_after_its_event_loop_ended_says_so(anyio_backend_name: str) -> None:
    backend = anyio_backend_name
    ex = AsyncExecutor(max_workers=1)

    async def first() -> None:
        assert await ex.submit(quick, 1) == 1  # manual use; never shut down

    async def second() -> None:
        with pytest.raises(RuntimeError, match="event loop has ended"):
            ex.submit(quick, 2)

    anyio.run(first, backend=backend)
    anyio.run(second, backend=backend)


def test_use_from_a_thread_without_an_event_loop_says_so() -> None:
    ex = AsyncExecutor(max_workers=1)
    with pytest.raises(RuntimeError, match="no running event loop"):
        ex.submit(quick, 1)


async def test_use_from_a_thread_while_its_loop_runs_says_so() -> None:
    async with AsyncExecutor(max_workers=1) as ex:

        def from_thread() -> None:
            with pytest.raises(RuntimeError, match="no running event loop"):
                ex.submit(quick, 1)

        await anyio.to_thread.run_sync(from_thread)


# ---------------------------------------------------------------------------
# The logger says nothing it should not: only what "Exceptions" says it logs
# ---------------------------------------------------------------------------


async def test_nothing_is_logged_for_work_that_went_well(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="antflow")
    async with AsyncExecutor(max_workers=2) as ex:
        await ex.map(quick, range(10), semaphore=anyio.CapacityLimiter(1))
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
