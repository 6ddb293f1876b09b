"""map and map_iter with failing items: ``return_exceptions``, the notes that
name the input, and tracebacks that start at the user's code.

Rules pinned here (docs/guide.md, "Errors" and "Keeping going with
return_exceptions"; docs/semantics.md, "map and map_iter"):

* ``return_exceptions=True``: a failed item's exception object takes its
  place in the results, after its retries; the other items go on. A map
  deadline, ``cancel()`` of the call's work (a shutdown that cancels it) and
  cancellation of the caller still end the call.
* Every exception of a map item, raised or returned, carries one PEP 678
  note, ``antflow: map item <position>: fn(<args>)``, with long reprs cut
  short; ``submit`` failures carry none.
* The stored exception's traceback starts at the user's frame: antflow's
  own frames are stripped from its front.

Each test runs on asyncio, uvloop and trio; the timing ones in virtual time.
"""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from _strategies import hang_guard, task_count
from hypothesis import given, settings
from hypothesis import strategies as st

from antflow import AsyncExecutor, RateLimiter

pytestmark = pytest.mark.anyio


class Bad(Exception):
    pass


async def check(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    if x < 0:
        raise Bad(f"negative: {x}")
    return x * 10


def antflow_frames(error: BaseException) -> list[str]:
    """The antflow modules in ``error``'s traceback, in order."""
    return [
        frame.f_globals["__name__"]
        for frame, _ in traceback.walk_tb(error.__traceback__)
        if frame.f_globals.get("__name__", "").startswith("antflow")
    ]


def first_frame(error: BaseException) -> str:
    tb = error.__traceback__
    assert tb is not None
    return tb.tb_frame.f_code.co_name


# --------------------------------------------------------------------------
# return_exceptions
# --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["map", "map_iter", "map_iter_unordered"])
async def test_failed_items_take_their_place_and_the_others_go_on(how: str) -> None:
    """Each failed item's own exception object is in its place; every other
    item ran to its result (docs/guide.md, "Keeping going with
    return_exceptions")."""
    items = [1, -2, 3, -4, 5]
    async with AsyncExecutor(max_workers=2) as ex:
        if how == "map":
            results = await ex.map(check, items, return_exceptions=True)
        else:
            results = [
                r
                async for r in ex.map_iter(
                    check, items, return_exceptions=True, ordered=how == "map_iter"
                )
            ]
        stats = ex.statistics()
    if how == "map_iter_unordered":
        values = sorted(r for r in results if isinstance(r, int))
        errors = sorted(str(r) for r in results if isinstance(r, Bad))
        assert values == [10, 30, 50] and errors == ["negative: -2", "negative: -4"]
    else:
        assert [r if isinstance(r, int) else str(r) for r in results] == [
            10,
            "negative: -2",
            30,
            "negative: -4",
            50,
        ]
    assert (stats.succeeded, stats.failed, stats.cancelled) == (3, 2, 0)


async def test_retries_apply_before_an_exception_takes_its_place() -> None:
    """An item that recovers within its retries gives its value; one that
    never does gives the last attempt's exception, after retries + 1
    attempts (docs/guide.md, "Keeping going with return_exceptions")."""
    attempts: dict[int, int] = {}

    async def flaky(x: int) -> int:
        attempts[x] = attempts.get(x, 0) + 1
        await anyio.lowlevel.checkpoint()
        if x == 1 and attempts[x] < 3:
            raise Bad(f"{x} try {attempts[x]}")
        if x == 2:
            raise Bad(f"{x} try {attempts[x]}")
        return x

    async with AsyncExecutor(max_workers=3) as ex:
        results = await ex.map(
            flaky, [0, 1, 2], retries=2, retry_delay=0, return_exceptions=True
        )
    assert results[:2] == [0, 1]
    assert isinstance(results[2], Bad) and str(results[2]) == "2 try 3"
    assert attempts == {0: 1, 1: 3, 2: 3}
    # One note, however many attempts failed.
    assert results[2].__notes__ == [f"antflow: map item 2: {flaky.__qualname__}(2)"]


async def test_return_exceptions_off_raises_the_first_failure_with_its_note() -> None:
    """Without return_exceptions the first failure in input order is raised,
    its note naming it (docs/guide.md, "Errors")."""
    async with AsyncExecutor(max_workers=4) as ex:
        with pytest.raises(Bad, match="negative: -2") as caught:
            await ex.map(check, [1, -2, 3, -4])
    assert caught.value.__notes__ == ["antflow: map item 1: check(-2)"]


async def test_a_cancelled_item_still_ends_the_call() -> None:
    """return_exceptions returns exceptions, not cancellations: an item
    cancelled by shutdown(cancel_futures=True) ends the map with
    antflow.CancelledError (docs/semantics.md, "map and map_iter")."""
    from antflow import CancelledError

    started = anyio.Event()

    async def slow(x: int) -> int:
        started.set()
        await anyio.sleep_forever()
        return x

    async with AsyncExecutor(max_workers=2) as ex:

        async def stop() -> None:
            await started.wait()
            await ex.shutdown(wait=False, cancel_futures=True)

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop)
            with pytest.raises(CancelledError):
                await ex.map(slow, range(4), return_exceptions=True)


async def test_cancelling_the_caller_ends_the_call_and_its_items() -> None:
    """Cancellation of the code around the map ends it, return_exceptions or
    not, and its items have exited by then (docs/semantics.md, "map and
    map_iter")."""
    exited: list[int] = []

    async def slow(x: int) -> int:
        try:
            await anyio.sleep_forever()
        finally:
            exited.append(x)
        return x

    before = task_count()
    async with AsyncExecutor(max_workers=3) as ex:
        with anyio.CancelScope() as scope:

            async def cancel_soon() -> None:
                await anyio.wait_all_tasks_blocked()
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_soon)
                await ex.map(slow, range(3), return_exceptions=True)
        assert scope.cancelled_caught
        assert sorted(exited) == [0, 1, 2]
        assert ex.statistics().cancelled == 3
    assert task_count() == before


async def test_leaving_map_iter_early_cancels_the_rest() -> None:
    """break out of a return_exceptions map_iter: the items in flight are
    cancelled and have exited once aclose() returns."""
    started: list[int] = []
    exited: list[int] = []

    async def item(x: int) -> int:
        started.append(x)
        try:
            if x == 0:
                raise Bad("zero")
            await anyio.sleep_forever()
        finally:
            exited.append(x)
        return x

    async with AsyncExecutor(max_workers=3) as ex:
        async with ex.map_iter(item, range(10), return_exceptions=True) as results:
            async for first in results:
                assert isinstance(first, Bad)
                break
        assert sorted(exited) == sorted(started)
        stats = ex.statistics()
        assert stats.failed == 1 and stats.cancelled == stats.submitted - 1


@pytest.mark.virtual_time
class TestVirtualTime:
    async def test_the_deadline_still_ends_the_call(self) -> None:
        """A map deadline raises TimeoutError at its time, return_exceptions
        or not; the items not done are cancelled (docs/semantics.md,
        "Timeouts")."""

        async def item(x: int) -> int:
            await anyio.sleep(x)
            if x == 1:
                raise Bad("one")
            return x

        async with AsyncExecutor(max_workers=4) as ex:
            start = anyio.current_time()
            with pytest.raises(TimeoutError):
                await ex.map(item, [1, 2, 10, 20], timeout=5, return_exceptions=True)
            assert anyio.current_time() - start == pytest.approx(5)
            stats = ex.statistics()
        assert (stats.succeeded, stats.failed, stats.cancelled) == (1, 1, 2)

    async def test_task_timeout_gives_a_timeout_error_in_place(self) -> None:
        """An attempt past task_timeout fails with TimeoutError, retried, and
        then returned in place with the note (docs/guide.md, "Timing out one
        attempt")."""

        async with AsyncExecutor(max_workers=2) as ex:
            start = anyio.current_time()
            results = await ex.map(
                anyio.sleep,
                [0.5, 10],
                task_timeout=1,
                retries=1,
                retry_delay=0.25,
                return_exceptions=True,
            )
            # 1 s, 0.25 s back-off, 1 s: the slow item gives up at 2.25 s.
            assert anyio.current_time() - start == pytest.approx(2.25)
        assert results[0] is None
        error = results[1]
        assert isinstance(error, TimeoutError)
        assert error.__notes__ == ["antflow: map item 1: sleep(10)"]

    async def test_every_option_at_once(self) -> None:
        """Semaphore, rate limits (call and executor), retries, task_timeout
        and progress together: failures in place, every token back, the
        rate kept (docs/semantics.md, "Where features meet")."""
        limiter = anyio.CapacityLimiter(2)
        done: list[int] = []

        async def item(x: int) -> int:
            await anyio.sleep(0.1)
            if x % 3 == 0:
                raise Bad(str(x))
            return x

        async with AsyncExecutor(max_workers=4, rate_limit=RateLimiter(100)) as ex:
            results = await ex.map(
                item,
                range(9),
                semaphore=limiter,
                rate_limit=RateLimiter(50),
                retries=1,
                retry_delay=0.1,
                task_timeout=5,
                progress=lambda d, t: done.append(d),
                return_exceptions=True,
            )
        assert [r if isinstance(r, int) else f"bad {r}" for r in results] == [
            "bad 0", 1, 2, "bad 3", 4, 5, "bad 6", 7, 8,
        ]  # fmt: skip
        assert done == list(range(1, 10))
        assert limiter.borrowed_tokens == 0


# --------------------------------------------------------------------------
# Notes
# --------------------------------------------------------------------------


async def test_raised_and_returned_exceptions_both_carry_the_note() -> None:
    """(docs/guide.md, "Errors")."""
    async with AsyncExecutor(max_workers=2) as ex:
        returned = await ex.map(check, [5, -7], return_exceptions=True)
        with pytest.raises(Bad) as raised:
            await ex.map(check, [5, -7])
        unordered = [
            r
            async for r in ex.map_iter(
                check, [-1, 2, -3], ordered=False, return_exceptions=True
            )
            if isinstance(r, Bad)
        ]
    assert returned[1].__notes__ == ["antflow: map item 1: check(-7)"]
    assert raised.value.__notes__ == ["antflow: map item 1: check(-7)"]
    assert sorted(e.__notes__[0] for e in unordered) == [
        "antflow: map item 0: check(-1)",
        "antflow: map item 2: check(-3)",
    ]


async def test_the_note_names_every_argument_of_a_zipped_map() -> None:
    async def divide(a: int, b: int) -> float:
        await anyio.lowlevel.checkpoint()
        return a / b

    async with AsyncExecutor() as ex:
        results = await ex.map(divide, [1, 2], [1, 0], return_exceptions=True)
    assert isinstance(results[1], ZeroDivisionError)
    assert results[1].__notes__ == [f"antflow: map item 1: {divide.__qualname__}(2, 0)"]


async def test_the_note_is_short_whatever_the_arguments() -> None:
    """Long strings, big containers and objects whose repr raises are cut
    short or named by type: the note stays one short line."""

    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    async def fail(*args: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise Bad("always")

    huge = "x" * 10_000
    many = list(range(1_000))
    nested = {"a": [[[[1]]]], "b": {"c": {"d": {}}}}
    async with AsyncExecutor() as ex:
        results = await ex.map(
            fail, [huge], [many], [nested], [Unprintable()], return_exceptions=True
        )
    (note,) = results[0].__notes__
    assert note.startswith("antflow: map item 0: ")
    assert len(note) < 250, note
    assert "..." in note and "Unprintable" in note
    assert "\n" not in note


async def test_submit_failures_carry_no_note() -> None:
    """A submitted task's failure is the task's own; there is no position to
    name."""
    async with AsyncExecutor() as ex:
        future = ex.submit(check, -1)
        with pytest.raises(Bad) as caught:
            await future
    assert getattr(caught.value, "__notes__", []) == []


async def test_an_item_whose_limiter_fails_at_once_carries_the_note(
    anyio_backend_name: str,
) -> None:
    """A limiter that raises as the item is submitted fails that item, with
    its note (docs/semantics.md, "Limiter faults"). asyncio only: anyio's and
    trio's limiters cannot be subclassed into faulty ones."""
    if anyio_backend_name != "asyncio":
        pytest.skip("a faulty asyncio.Semaphore: asyncio backends only")
    import asyncio

    class Broken(asyncio.Semaphore):
        def locked(self) -> bool:
            raise Bad("limiter broke")

    async with AsyncExecutor(max_workers=2) as ex:
        results = await ex.map(
            check, [1, 2], semaphore=Broken(1), return_exceptions=True
        )
    assert [str(r) for r in results] == ["limiter broke", "limiter broke"]
    assert [r.__notes__ for r in results] == [
        ["antflow: map item 0: check(1)"],
        ["antflow: map item 1: check(2)"],
    ]


async def test_stop_async_iteration_from_an_item_becomes_a_runtime_error_with_the_note() -> (
    None
):
    """(docs/semantics.md, "Nothing swallowed")."""

    async def stop(x: int) -> None:
        await anyio.lowlevel.checkpoint()
        raise StopAsyncIteration

    async with AsyncExecutor() as ex:
        with pytest.raises(RuntimeError, match="map item 0") as caught:
            await ex.map(stop, [1])
    assert caught.value.__notes__ == [f"antflow: map item 0: {stop.__qualname__}(1)"]
    assert isinstance(caught.value.__cause__, StopAsyncIteration)


# --------------------------------------------------------------------------
# Tracebacks
# --------------------------------------------------------------------------


async def deep(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return await deeper(x)


async def deeper(x: int) -> int:
    raise Bad(f"deep {x}")


async def test_a_returned_exception_starts_at_the_users_frame() -> None:
    """No antflow frame before or after the user's: the stored traceback is
    the user's code alone (docs/semantics.md, "Memory")."""
    async with AsyncExecutor() as ex:
        (error,) = await ex.map(
            deep, [1], retries=1, retry_delay=0, return_exceptions=True
        )
        timed = await ex.map(deep, [2], task_timeout=5, return_exceptions=True)
        future = ex.submit(deep, 3)
        await ex.wait([future])
    assert first_frame(error) == "deep"
    assert antflow_frames(error) == []
    assert first_frame(timed[0]) == "deep"
    assert antflow_frames(timed[0]) == []
    stored = future.exception()
    assert stored is not None and first_frame(stored) == "deep"
    assert antflow_frames(stored) == []


async def test_a_raised_exception_shows_the_users_frames_after_the_call() -> None:
    """Raised from map: the caller's frame, the map call, then the user's
    task frames; no antflow frame between the task's frames."""
    async with AsyncExecutor() as ex:
        with pytest.raises(Bad) as caught:
            await ex.map(deep, [1])
    names = [
        frame.f_code.co_name
        for frame, _ in traceback.walk_tb(caught.value.__traceback__)
    ]
    assert names[-2:] == ["deep", "deeper"]
    # antflow's frames (the map call's) all come before the user's task frames.
    modules = [
        frame.f_globals.get("__name__", "")
        for frame, _ in traceback.walk_tb(caught.value.__traceback__)
    ]
    last_antflow = max(i for i, m in enumerate(modules) if m.startswith("antflow"))
    assert last_antflow < names.index("deep")


# --------------------------------------------------------------------------
# A property: any options, any failures
# --------------------------------------------------------------------------


async def _aiter(items: list[int]) -> AsyncIterator[int]:
    for item in items:
        await anyio.lowlevel.checkpoint()
        yield item


@given(
    failing=st.sets(st.integers(0, 11)),
    workers=st.integers(1, 4),
    use_semaphore=st.booleans(),
    retries=st.integers(0, 2),
    async_input=st.booleans(),
    ordered=st.booleans(),
)
@settings(max_examples=20)
async def test_every_item_is_its_value_or_its_exception_with_its_note(
    failing: set[int],
    workers: int,
    use_semaphore: bool,
    retries: int,
    async_input: bool,
    ordered: bool,
) -> None:
    """With return_exceptions every item comes back exactly once, as its
    value or as its own exception noted with its position, whatever the
    options; no limiter token or task is left behind."""
    limiter = anyio.CapacityLimiter(2)
    items = list(range(12))

    async def item(x: int) -> int:
        await anyio.lowlevel.checkpoint()
        if x in failing:
            raise Bad(str(x))
        return x

    options: dict[str, Any] = {"retries": retries, "retry_delay": 0}
    if use_semaphore:
        options["semaphore"] = limiter
    before = task_count()
    with anyio.fail_after(hang_guard()):
        async with AsyncExecutor(max_workers=workers) as ex:
            source: Any = _aiter(items) if async_input else items
            results = [
                r
                async for r in ex.map_iter(
                    item, source, ordered=ordered, return_exceptions=True, **options
                )
            ]
    by_item: dict[int, Any] = {}
    for r in results:
        x = int(str(r)) if isinstance(r, Bad) else r
        assert x not in by_item
        by_item[x] = r
    assert sorted(by_item) == items
    for x, r in by_item.items():
        if x in failing:
            assert isinstance(r, Bad)
            assert r.__notes__ == [f"antflow: map item {x}: {item.__qualname__}({x})"]
        else:
            assert r == x
    if ordered:
        assert [int(str(r)) if isinstance(r, Bad) else r for r in results] == items
    assert limiter.borrowed_tokens == 0
    assert task_count() == before


# --------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------


class Arg:
    pass


async def test_returned_exceptions_and_their_arguments_die_with_the_results() -> None:
    """No cycle through a returned exception's traceback: dropping the
    results frees it, its frames and the item's arguments by reference
    counting alone (docs/semantics.md, "Memory")."""
    import gc
    import weakref

    async def fail(arg: Arg) -> None:
        await anyio.lowlevel.checkpoint()
        raise Bad("with its argument in a frame")

    arg = Arg()
    arg_ref = weakref.ref(arg)
    gc.collect()
    gc.disable()
    try:
        async with AsyncExecutor(max_workers=2) as ex:
            results = await ex.map(
                fail, [arg], semaphore=lambda a: None, return_exceptions=True
            )
        del arg
        error_ref = weakref.ref(results[0])
        assert arg_ref() is not None  # the failing frame still holds it
        del results
        assert error_ref() is None
        assert arg_ref() is None
    finally:
        gc.enable()
