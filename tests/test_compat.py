"""What depends on the event loop (``antflow/_compat.py``): antflow tells
asyncio from trio by who runs the code, not by which loop is running, so
trio in guest mode on an asyncio loop is trio throughout."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from antflow import AsyncExecutor, RateLimiter


def test_trio_in_guest_mode_on_an_asyncio_loop() -> None:
    trio = pytest.importorskip("trio")

    async def trio_main() -> dict[str, Any]:
        release = trio.Event()
        out: dict[str, Any] = {}

        async def time_left() -> float:
            return trio.current_effective_deadline() - trio.current_time()

        with trio.fail_after(600):
            async with AsyncExecutor(max_workers=2) as ex:
                blocker = ex.submit(release.wait)  # keeps the pool busy
                out["first"] = await ex.submit(trio.sleep, 0)
                await trio.testing.wait_all_tasks_blocked()
                # The other worker is idle now, parked: this wakes it.
                out["woken"] = await ex.submit(trio.sleep, 0)
                out["left"] = await ex.submit(time_left, task_timeout=60.0)
                try:
                    await ex.submit(trio.sleep_forever, task_timeout=0.01)
                except TimeoutError:
                    out["timed_out"] = True
                # The rate limiter reads trio's clock.
                rate = RateLimiter(1000)
                out["rated"] = await ex.map(trio.sleep, [0] * 5, rate_limit=rate)
                release.set()
                await blocker
        return out

    async def host() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        trio.lowlevel.start_guest_run(
            trio_main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
            host_uses_signal_set_wakeup_fd=True,
        )
        return (await done).unwrap()  # type: ignore[no-any-return]

    out = asyncio.run(host())
    assert out["first"] is None and out["woken"] is None
    assert 59.0 < out["left"] <= 60.0
    assert out["timed_out"]
    assert out["rated"] == [None] * 5


def test_an_idle_worker_parks_and_wakes_protected_from_ctrl_c() -> None:
    """On trio, Ctrl-C raises KeyboardInterrupt wherever unprotected code
    runs. Parking and waking an idle worker is protected, as trio's own
    primitives are: one landing between a wake's flag and its reschedule
    would leave the worker parked for ever, and the run could not end."""
    trio = pytest.importorskip("trio")
    seen: list[bool] = []
    reschedule = trio.lowlevel.reschedule
    park = trio.lowlevel.wait_task_rescheduled

    def spy_reschedule(*args: Any, **kwargs: Any) -> None:
        seen.append(trio.lowlevel.currently_ki_protected())
        reschedule(*args, **kwargs)

    async def spy_park(*args: Any, **kwargs: Any) -> Any:
        seen.append(trio.lowlevel.currently_ki_protected())
        return await park(*args, **kwargs)

    async def main() -> None:
        release = trio.Event()
        async with AsyncExecutor(max_workers=2) as ex:
            blocker = ex.submit(release.wait)  # keeps the pool busy
            await ex.submit(trio.sleep, 0)
            await trio.testing.wait_all_tasks_blocked()
            seen.clear()
            # A worker is parked now: this wakes it.
            await ex.submit(trio.sleep, 0)
            release.set()
            await blocker

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trio.lowlevel, "reschedule", spy_reschedule)
        patch.setattr(trio.lowlevel, "wait_task_rescheduled", spy_park)
        trio.run(main)
    assert seen and all(seen), seen
