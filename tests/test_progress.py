"""progress= on map and map_iter.

Rules pinned here, from docs/guide.md, "Progress":

* A callable ``progress(done, total)`` is called after each finished item,
  with ``total`` the input length when it is known, else None.
* ``progress=True`` draws a bar on stderr: rich's when ``antflow[progress]``
  is installed, a plain fallback otherwise; nothing garbled when stderr is
  not a terminal.
* Any other ``progress`` value is a ``TypeError`` at the call
  (docs/semantics.md, "Exceptions").
* "Finished" means ended with a result or an exception: cancelled items are
  not counted, so ``done`` never passes ``total``.
* The plain bar writes a whole line at each tenth of the way when stderr is
  not a terminal, and redraws one line with ``\\r`` on a terminal.

A progress callback that raises is in faults/test_features_meet.py
(docs/semantics.md, "Nothing swallowed").
"""

from __future__ import annotations

import importlib.util
import io
import re
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from antflow import AsyncExecutor

pytestmark = pytest.mark.anyio

HANG_GUARD = 100

CALLS = ["map", "map_iter", "map_iter_unordered"]


class Boom(Exception):
    pass


async def double(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * x


async def add(*xs: int) -> int:
    await anyio.lowlevel.checkpoint()
    return sum(xs)


def gen(n: int) -> Iterator[int]:
    yield from range(n)


class AsyncItems:
    def __init__(self, n: int) -> None:
        self._it = iter(range(n))

    def __aiter__(self) -> AsyncItems:
        return self

    async def __anext__(self) -> int:
        await anyio.lowlevel.checkpoint()
        try:
            return next(self._it)
        except StopIteration:
            raise StopAsyncIteration from None


async def run(
    ex: AsyncExecutor, call: str, fn: Any, *iterables: Any, **kw: Any
) -> list[Any]:
    if call == "map":
        return await ex.map(fn, *iterables, **kw)
    async with ex.map_iter(fn, *iterables, ordered=call == "map_iter", **kw) as results:
        return [r async for r in results]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None]] = []

    def __call__(self, done: int, total: int | None) -> None:
        self.calls.append((done, total))


class Probe:
    """Items wait for ``release(x)``, then return ``x`` or raise ``errors[x]``."""

    def __init__(self) -> None:
        self.errors: dict[Any, BaseException] = {}
        self._events: dict[Any, anyio.Event] = {}

    def _event(self, x: Any) -> anyio.Event:
        return self._events.setdefault(x, anyio.Event())

    def release(self, *xs: Any) -> None:
        for x in xs:
            self._event(x).set()

    async def task(self, x: Any) -> Any:
        await self._event(x).wait()
        if x in self.errors:
            raise self.errors[x]
        return x


def no_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import rich.progress`` fail, as if antflow[progress] were not
    installed."""
    monkeypatch.setitem(sys.modules, "rich", None)
    monkeypatch.setitem(sys.modules, "rich.progress", None)


# --------------------------------------------------------------------------
# a callable
# --------------------------------------------------------------------------


@pytest.mark.parametrize("call", CALLS)
async def test_callable_gets_done_and_the_known_length(call: str) -> None:
    progress = Recorder()
    async with AsyncExecutor(max_workers=3) as ex:
        got = await run(ex, call, double, [1, 2, 3, 4, 5, 6, 7], progress=progress)
    assert sorted(got) == [2, 4, 6, 8, 10, 12, 14]
    assert progress.calls == [(i, 7) for i in range(1, 8)]


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("kind", ["generator", "async", "range", "tuple"])
async def test_total_is_the_length_when_known_else_none(call: str, kind: str) -> None:
    progress = Recorder()
    inputs: Any = {
        "generator": gen(4),
        "async": AsyncItems(4),
        "range": range(4),
        "tuple": (0, 1, 2, 3),
    }[kind]
    total = None if kind in ("generator", "async") else 4
    async with AsyncExecutor(max_workers=2) as ex:
        got = await run(ex, call, double, inputs, progress=progress)
    assert sorted(got) == [0, 2, 4, 6]
    assert progress.calls == [(i, total) for i in range(1, 5)]


@pytest.mark.parametrize(
    ("make", "total", "n"),
    [
        (lambda: ([1] * 5, range(3)), 3, 3),
        (lambda: (range(6), [1] * 6, (1, 1, 1, 1)), 4, 4),
        (lambda: ("ab", gen(5)), None, 2),
        (lambda: (gen(3), [1] * 9), None, 3),
    ],
    ids=["list+range", "three-sized", "sized+generator", "generator+list"],
)
async def test_total_for_several_iterables_is_the_zipped_length(
    make: Any, total: int | None, n: int
) -> None:
    progress = Recorder()
    iterables = make()

    async def pair(*xs: Any) -> int:
        await anyio.lowlevel.checkpoint()
        return len(xs)

    async with AsyncExecutor(max_workers=2) as ex:
        got = await ex.map(pair, *iterables, progress=progress)
    assert len(got) == n
    assert progress.calls == [(i, total) for i in range(1, n + 1)]


async def test_called_when_an_item_finishes_not_when_it_is_yielded() -> None:
    """Ordered map_iter: item 2 finishes while item 0 still runs; progress
    hears of it at once, though nothing can be yielded yet."""
    probe = Probe()
    progress = Recorder()
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=3) as ex:
            got: list[int] = []
            async with anyio.create_task_group() as tg:

                async def consume() -> None:
                    async for r in ex.map_iter(
                        probe.task, [0, 1, 2], progress=progress
                    ):
                        got.append(r)

                tg.start_soon(consume)
                await anyio.wait_all_tasks_blocked()
                assert progress.calls == []
                probe.release(2)
                await anyio.wait_all_tasks_blocked()
                assert (progress.calls, got) == ([(1, 3)], [])
                probe.release(1)
                await anyio.wait_all_tasks_blocked()
                assert (progress.calls, got) == ([(1, 3), (2, 3)], [])
                probe.release(0)
            assert got == [0, 1, 2]
    assert progress.calls == [(1, 3), (2, 3), (3, 3)]


async def test_a_failed_item_counts_as_finished_and_cancelled_ones_do_not() -> None:
    """Item 1 fails while 0 runs: (1, 3). Item 0 then succeeds: (2, 3). The
    map raises item 1's error and cancels item 2, which is never counted."""
    probe = Probe()
    probe.errors[1] = Boom("one")
    progress = Recorder()
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=3) as ex:
            async with anyio.create_task_group() as tg:

                async def run_map() -> None:
                    with pytest.raises(Boom, match="one"):
                        await ex.map(probe.task, [0, 1, 2], progress=progress)

                tg.start_soon(run_map)
                await anyio.wait_all_tasks_blocked()
                probe.release(1)
                await anyio.wait_all_tasks_blocked()
                assert progress.calls == [(1, 3)]
                probe.release(0)
            s = ex.statistics()
            assert (s.succeeded, s.failed, s.cancelled) == (1, 1, 1)
    assert progress.calls == [(1, 3), (2, 3)]


async def test_a_retried_item_is_counted_once() -> None:
    tries: dict[int, int] = {}

    async def flaky(x: int) -> int:
        tries[x] = tries.get(x, 0) + 1
        await anyio.lowlevel.checkpoint()
        if tries[x] < 3:
            raise Boom(x)
        return x

    progress = Recorder()
    async with AsyncExecutor(max_workers=2) as ex:
        got = await ex.map(flaky, [0, 1], retries=2, retry_delay=0, progress=progress)
    assert got == [0, 1]
    assert progress.calls == [(1, 2), (2, 2)]


@pytest.mark.parametrize("ordered", [True, False])
async def test_early_exit_stops_the_reports(ordered: bool) -> None:
    probe = Probe()
    progress = Recorder()
    with anyio.fail_after(HANG_GUARD):
        async with AsyncExecutor(max_workers=2) as ex:
            async with ex.map_iter(
                probe.task, range(10), ordered=ordered, progress=progress
            ) as results:
                probe.release(0)
                assert await results.__anext__() == 0
            assert progress.calls == [(1, 10)]
            await anyio.wait_all_tasks_blocked()
            probe.release(*range(10))
            await anyio.wait_all_tasks_blocked()
    assert progress.calls == [(1, 10)]


@pytest.mark.parametrize("progress", [None, False])
async def test_no_progress_draws_nothing(
    progress: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    async with AsyncExecutor(max_workers=2) as ex:
        assert await ex.map(double, range(20), progress=progress) == [
            2 * x for x in range(20)
        ]
        assert [r async for r in ex.map_iter(double, range(3), progress=progress)] == [
            0,
            2,
            4,
        ]
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("call", ["map", "map_iter"])
@pytest.mark.parametrize("bad", ["yes", 1, 0, 1.5, object(), [print]], ids=repr)
async def test_bad_progress_is_typeerror_at_the_call(call: str, bad: Any) -> None:
    async with AsyncExecutor(max_workers=2) as ex:
        with pytest.raises(TypeError, match="progress"):
            if call == "map":
                await ex.map(double, range(3), progress=bad)
            else:
                ex.map_iter(double, range(3), progress=bad)
        assert ex.statistics().submitted == 0
        assert await ex.map(double, range(3)) == [0, 2, 4]


# --------------------------------------------------------------------------
# progress=True: the plain fallback
# --------------------------------------------------------------------------


@pytest.mark.parametrize("call", CALLS)
async def test_plain_bar_when_rich_is_missing_writes_whole_lines(
    call: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """stderr is not a terminal (captured): a line for the first item, then
    one per tenth of the way; no carriage returns, no escape codes, nothing
    on stdout."""
    no_rich(monkeypatch)
    async with AsyncExecutor(max_workers=4) as ex:
        got = await run(ex, call, double, list(range(100)), progress=True)
    assert sorted(got) == [2 * x for x in range(100)]
    out, err = capsys.readouterr()
    assert out == ""
    assert "\r" not in err and "\x1b" not in err
    assert err.endswith("\n")
    counts = [line.rsplit(" ", 1)[-1] for line in err.splitlines()]
    assert counts == ["1/100"] + [f"{10 * k}/100" for k in range(1, 11)]


async def test_plain_bar_with_few_items_writes_each(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_rich(monkeypatch)
    async with AsyncExecutor(max_workers=2) as ex:
        assert await ex.map(double, [1, 2, 3], progress=True) == [2, 4, 6]
    out, err = capsys.readouterr()
    assert out == ""
    assert [line.rsplit(" ", 1)[-1] for line in err.splitlines()] == [
        "1/3",
        "2/3",
        "3/3",
    ]
    assert "\r" not in err


@pytest.mark.parametrize("n", [5, 1500])
async def test_plain_bar_with_unknown_total_ends_with_the_final_count(
    n: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_rich(monkeypatch)
    async with AsyncExecutor(max_workers=4) as ex:
        got = await ex.map(double, gen(n), progress=True)
    assert len(got) == n
    out, err = capsys.readouterr()
    assert out == ""
    assert "\r" not in err and err.endswith("\n")
    assert re.search(rf"\b{n}\b", err.splitlines()[-1]), err


async def test_plain_bar_with_unknown_total_writes_plain_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever the last line says, the log is whole lines and short."""
    no_rich(monkeypatch)
    async with AsyncExecutor(max_workers=4) as ex:
        got = [
            r async for r in ex.map_iter(double, gen(50), ordered=False, progress=True)
        ]
    assert len(got) == 50
    out, err = capsys.readouterr()
    assert out == ""
    assert "\r" not in err and "\x1b" not in err and err.endswith("\n")
    assert 1 <= len(err.splitlines()) <= 2


async def test_plain_bar_after_a_failure_leaves_whole_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_rich(monkeypatch)

    async def fail_at_5(x: int) -> int:
        await anyio.lowlevel.checkpoint()
        if x == 5:
            raise Boom(x)
        return x

    async with AsyncExecutor(max_workers=1) as ex:
        with pytest.raises(Boom):
            await ex.map(fail_at_5, range(10), progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "\r" not in err and err.endswith("\n")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_plain_bar_on_a_terminal_redraws_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    no_rich(monkeypatch)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    async with AsyncExecutor(max_workers=2) as ex:
        assert await ex.map(double, range(5), progress=True) == [0, 2, 4, 6, 8]
    text = terminal.getvalue()
    assert text.startswith("\r") and text.endswith("\n")
    assert text.count("\n") == 1
    frames = text.rstrip("\n").split("\r")[1:]
    assert frames[-1].endswith(" 5/5")
    assert [f.rsplit(" ", 1)[-1] for f in frames[:5]] == [f"{k}/5" for k in range(1, 6)]


# --------------------------------------------------------------------------
# progress=True with rich
# --------------------------------------------------------------------------

needs_rich = pytest.mark.skipif(
    importlib.util.find_spec("rich") is None, reason="rich is not installed"
)


@needs_rich
@pytest.mark.parametrize("call", CALLS)
async def test_rich_bar_runs_and_writes_no_control_codes_off_a_terminal(
    call: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with AsyncExecutor(max_workers=3) as ex:
        got = await run(ex, call, double, list(range(30)), progress=True)
    assert sorted(got) == [2 * x for x in range(30)]
    out, err = capsys.readouterr()
    both = out + err
    assert "100%" in both
    assert "\r" not in both and "\x1b" not in both


@needs_rich
async def test_rich_bar_draws_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    async with AsyncExecutor(max_workers=3) as ex:
        assert await ex.map(double, range(10), progress=True) == [
            2 * x for x in range(10)
        ]
    out, err = capsys.readouterr()
    assert out == ""
    assert "100%" in err
