"""Per-item limiters: ``semaphore=`` and ``rate_limit=`` of map and map_iter
given as a function of the item (docs/guide.md, "Limits per item";
docs/semantics.md, "map and map_iter").

Pinned here:

* the function gets the item's arguments and returns the limiter or None;
  it is called once per item (not per attempt), when the item is submitted,
  in the item's context;
* lazily created limiters work; items with no limiter run unlimited;
* anything that goes wrong while choosing fails that item alone, with the
  note naming it; ``fn`` never runs for it;
* a function is told from a limiter by ``__aenter__``; a class is refused;
  submit takes no function;
* the executor's rate limit and a chosen one that is the same object limit
  once.
"""

from __future__ import annotations

import contextvars
from collections import Counter, defaultdict
from typing import Any

import anyio
import pytest
from _strategies import Gauge, hang_guard, make_limiter

from antflow import AsyncExecutor, RateLimiter

pytestmark = pytest.mark.anyio


class Bad(Exception):
    pass


async def test_each_item_runs_under_the_limiter_its_arguments_choose() -> None:
    """Per host, at most its limit at once; hosts do not hold each other up."""
    in_flight: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    release = anyio.Event()

    async def fetch(host: str, n: int) -> str:
        in_flight[host] += 1
        peak[host] = max(peak[host], in_flight[host])
        try:
            await release.wait()
        finally:
            in_flight[host] -= 1
        return f"{host}{n}"

    limits = {"a": anyio.CapacityLimiter(1), "b": anyio.CapacityLimiter(2)}
    hosts = ["a", "b", "c"] * 4
    async with AsyncExecutor(max_workers=10) as ex:

        async def open_later() -> None:
            await anyio.wait_all_tasks_blocked()
            # Every host runs at its limit; "c" (None: no limiter) runs all.
            assert dict(in_flight) == {"a": 1, "b": 2, "c": 4}
            release.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(open_later)
            results = await ex.map(
                fetch,
                hosts,
                range(12),
                semaphore=lambda host, n: limits.get(host),
            )
    assert results == [f"{h}{n}" for h, n in zip(hosts, range(12), strict=True)]
    assert (peak["a"], peak["b"]) == (1, 2)
    assert all(limit.borrowed_tokens == 0 for limit in limits.values())


@pytest.mark.parametrize(
    "kind", ["capacity", "anyio_sem", "native", "native_capacity", "cm"]
)
async def test_every_kind_of_limiter_can_be_chosen_lazily(kind: str) -> None:
    """A defaultdict that makes each host's limiter on first use: one per
    host, never more than its tokens at once."""
    gauges: dict[str, Gauge] = defaultdict(Gauge)
    per_host: defaultdict[str, Any] = defaultdict(lambda: make_limiter(kind, 2))
    release = anyio.Event()

    async def fetch(url: str) -> str:
        return str(await gauges[url[0]].gated(release, 0)) + url

    urls = [f"{host}/{n}" for n in range(6) for host in "xyz"]
    async with AsyncExecutor(max_workers=20) as ex:

        async def open_later() -> None:
            await anyio.wait_all_tasks_blocked()
            release.set()

        with anyio.fail_after(hang_guard()):
            async with anyio.create_task_group() as tg:
                tg.start_soon(open_later)
                results = await ex.map(fetch, urls, semaphore=lambda u: per_host[u[0]])
    assert results == [f"0{u}" for u in urls]
    assert sorted(per_host) == ["x", "y", "z"]
    assert {host: gauge.peak for host, gauge in gauges.items()} == dict.fromkeys(
        "xyz", 2
    )


async def test_the_function_is_called_once_per_item_not_per_attempt() -> None:
    calls: Counter[int] = Counter()
    attempts: Counter[int] = Counter()
    limiter = anyio.CapacityLimiter(1)

    def choose(x: int) -> anyio.CapacityLimiter:
        calls[x] += 1
        return limiter

    async def flaky(x: int) -> int:
        attempts[x] += 1
        await anyio.lowlevel.checkpoint()
        if attempts[x] < 3:
            raise Bad(x)
        return x

    async with AsyncExecutor(max_workers=3) as ex:
        assert await ex.map(
            flaky, range(4), semaphore=choose, retries=2, retry_delay=0
        ) == [0, 1, 2, 3]
    assert calls == dict.fromkeys(range(4), 1)
    assert attempts == dict.fromkeys(range(4), 3)
    assert limiter.borrowed_tokens == 0


async def test_the_function_runs_in_the_items_context_as_the_item_does() -> None:
    """It sees the context of the map call, and what it sets is seen by its
    item alone (docs/semantics.md, "Context variables")."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="-")
    seen: list[str] = []

    def choose(x: int) -> None:
        seen.append(var.get())
        var.set(f"chosen {x}")

    async def item(x: int) -> str:
        await anyio.lowlevel.checkpoint()
        return var.get()

    async with AsyncExecutor(max_workers=2) as ex:
        var.set("call")
        results = ex.map_iter(item, range(3), semaphore=choose)
        var.set("changed after the call")
        got = [r async for r in results]
    assert seen == ["call"] * 3
    assert got == ["chosen 0", "chosen 1", "chosen 2"]
    assert var.get() == "changed after the call"


@pytest.mark.parametrize("option", ["semaphore", "rate_limit"])
@pytest.mark.parametrize(
    "fault", ["raises", "wrong type", "coroutine", "other backend"]
)
async def test_a_bad_choice_fails_that_item_alone_with_its_note(
    option: str, fault: str, anyio_backend_name: str
) -> None:
    """The function raising, or returning an awaitable or what is not a
    limiter, fails its item (never calling fn) and the map goes on
    (docs/semantics.md, "map and map_iter")."""
    ran: list[int] = []
    good: Any = (
        anyio.CapacityLimiter(2) if option == "semaphore" else RateLimiter(10**6)
    )

    async def later() -> None:
        pass

    def choose(x: int) -> Any:
        if x != 1:
            return good
        if fault == "raises":
            raise Bad("no limiter for 1")
        if fault == "coroutine":
            return later()
        if fault == "other backend":
            if option == "rate_limit":
                return anyio.CapacityLimiter(1)
            if anyio_backend_name == "trio":
                import asyncio

                return asyncio.Semaphore(1)
            import trio

            return trio.Semaphore(1)
        return 42

    async def item(x: int) -> int:
        ran.append(x)
        await anyio.lowlevel.checkpoint()
        return x

    async with AsyncExecutor(max_workers=2) as ex:
        results = await ex.map(
            item, range(3), return_exceptions=True, **{option: choose}
        )
        with pytest.raises(Exception) as raised:
            await ex.map(item, range(3), **{option: choose})
        stats = ex.statistics()
    assert results[0] == 0 and results[2] == 2
    error = results[1]
    expected = Bad if fault == "raises" else TypeError
    assert type(error) is expected
    assert type(raised.value) is expected
    if fault != "raises":
        assert f"{option}=" in str(error), str(error)
    assert error.__notes__ == [f"antflow: map item 1: {item.__qualname__}(1)"]
    assert 1 not in ran
    assert stats.failed == 2


async def test_the_traceback_of_a_raising_function_starts_at_it() -> None:
    def choose(x: int) -> None:
        raise Bad(x)

    async def item(x: int) -> int:
        return x

    async with AsyncExecutor() as ex:
        (error,) = await ex.map(item, [1], semaphore=choose, return_exceptions=True)
    assert error.__traceback__ is not None
    assert error.__traceback__.tb_frame.f_code.co_name == "choose"


async def test_a_class_is_refused_at_the_call() -> None:
    async with AsyncExecutor() as ex:
        with pytest.raises(
            TypeError, match=r"semaphore: got the class CapacityLimiter.*\(\.\.\.\)"
        ):
            ex.map_iter(anyio.sleep, [0], semaphore=anyio.CapacityLimiter)
        with pytest.raises(TypeError, match=r"rate_limit: got the class RateLimiter"):
            await ex.map(anyio.sleep, [0], rate_limit=RateLimiter)


async def test_submit_takes_no_function() -> None:
    async with AsyncExecutor() as ex:
        with pytest.raises(TypeError, match="map and map_iter only"):
            ex.submit(anyio.sleep, 0, semaphore=lambda: None)
        with pytest.raises(TypeError, match="map and map_iter only"):
            ex.submit(anyio.sleep, 0, rate_limit=lambda: None)


async def test_the_other_options_are_still_checked_at_the_call() -> None:
    async with AsyncExecutor() as ex:
        with pytest.raises(ValueError, match="retries"):
            ex.map_iter(anyio.sleep, [0], semaphore=lambda x: None, retries=-1)


async def test_a_limiter_with_a_call_method_is_a_limiter() -> None:
    """What has ``__aenter__`` is a limiter, even if it is also callable."""

    class CallableLimiter:
        def __init__(self) -> None:
            self.entered = 0

        def __call__(self, *args: Any) -> None:
            raise AssertionError("called as a function")

        async def __aenter__(self) -> None:
            self.entered += 1

        async def __aexit__(self, *exc: object) -> None:
            pass

    limiter = CallableLimiter()
    async with AsyncExecutor() as ex:
        assert await ex.map(anyio.sleep, [0, 0], semaphore=limiter) == [None, None]
    assert limiter.entered == 2


@pytest.mark.virtual_time
class TestRatesVirtualTime:
    async def test_each_item_is_paced_by_the_rate_limit_it_chooses(self) -> None:
        """Two hosts at 10 starts a second each run side by side; a host
        without a rate limit is not paced."""
        rates = {"a": RateLimiter(10), "b": RateLimiter(10)}
        starts: dict[str, list[float]] = defaultdict(list)

        async def fetch(host: str) -> None:
            starts[host].append(anyio.current_time())

        async with AsyncExecutor(max_workers=10) as ex:
            begin = anyio.current_time()
            await ex.map(fetch, ["a", "b", "c"] * 5, rate_limit=lambda h: rates.get(h))
        for host in "ab":
            assert [round(t - begin, 6) for t in starts[host]] == [
                0,
                0.1,
                0.2,
                0.3,
                0.4,
            ]
        assert [t - begin for t in starts["c"]] == [0] * 5

    async def test_the_executors_rate_limit_chosen_again_limits_once(self) -> None:
        """A chosen rate limit that is the executor's own counts once, as when
        it is passed to map directly."""
        rate = RateLimiter(10)
        starts: list[float] = []

        async def item(x: int) -> None:
            starts.append(anyio.current_time())

        async with AsyncExecutor(max_workers=4, rate_limit=rate) as ex:
            begin = anyio.current_time()
            await ex.map(item, range(4), rate_limit=lambda x: rate)
        assert [round(t - begin, 6) for t in starts] == [0, 0.1, 0.2, 0.3]

    async def test_a_chosen_semaphore_with_task_timeout_and_retries(self) -> None:
        """Per attempt: the chosen limiter is held only while an attempt
        runs, not during the back-off (docs/semantics.md, "Tokens")."""
        limiter = anyio.CapacityLimiter(1)
        attempts: Counter[int] = Counter()
        holding: list[tuple[int, float]] = []

        async def item(x: int) -> int:
            attempts[x] += 1
            holding.append((x, anyio.current_time()))
            await anyio.sleep(1 if attempts[x] == 1 else 0.5)
            return x

        async with AsyncExecutor(max_workers=2) as ex:
            results = await ex.map(
                item,
                [0, 1],
                semaphore=lambda x: limiter,
                task_timeout=0.75,
                retries=1,
                retry_delay=1,
                return_exceptions=True,
            )
        assert results == [0, 1]
        # 0 times out at 0.75 and backs off; 1 takes the token meanwhile.
        assert holding == [(0, 0), (1, 0.75), (0, 1.75), (1, 2.5)]
        assert limiter.borrowed_tokens == 0


@pytest.mark.parametrize("where", ["executor", "call"])
async def test_events_of_items_that_choose_their_limiters(where: str) -> None:
    """Each item's events name the limiter it chose; an item whose choice
    failed is Queued, then Failed with that error, like one whose limiter
    failed at once (docs/observability.md)."""
    from antflow.events import Failed, Queued, Succeeded

    heard: list[Any] = []
    limits = {1: anyio.CapacityLimiter(1), 2: anyio.CapacityLimiter(2)}

    def choose(x: int) -> Any:
        if x == 0:
            raise Bad("no limiter for 0")
        return limits[x]

    executor_hook = {"on_event": heard.append} if where == "executor" else {}
    call_hook = {"on_event": heard.append} if where == "call" else {}
    async with AsyncExecutor(max_workers=2, **executor_hook) as ex:
        results = await ex.map(
            check_item, [0, 1, 2], semaphore=choose, return_exceptions=True, **call_hook
        )
    assert isinstance(results[0], Bad) and results[1:] == [1, 2]
    by_position: dict[int, list[Any]] = defaultdict(list)
    for event in heard:
        by_position[event.position].append(event)
    assert [type(e) for e in by_position[0]] == [Queued, Failed]
    assert by_position[0][-1].error is results[0]
    for x in (1, 2):
        events = by_position[x]
        assert type(events[0]) is Queued and type(events[-1]) is Succeeded
        assert limits[x] in events[0].limiters


async def check_item(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return x
