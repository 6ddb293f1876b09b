"""Property-based invariants of AsyncExecutor, checked over generated inputs.

Each test states one invariant and lets hypothesis draw the inputs: item
lists, task durations, failures, worker counts, limiter mixes and operation
sequences. Durations are either scheduling points (``ticks``: portable, no
clock, so the test also runs on real-time asyncio and uvloop) or virtual
seconds under ``@pytest.mark.virtual_time``, where elapsed times are exact.

1. map / map_iter equal the builtin ``map`` (input order, zip semantics);
   with failures they raise the exception of the lowest failing index and
   leave no task of theirs running.
2. Running tasks never exceed ``max_workers`` per executor nor a limiter's
   tokens, for random mixes of shared limiters, retries included.
3. After the executor exits, every future is in exactly one final state that
   agrees with what its task did, for random operation sequences.
4. ``as_completed`` yields each distinct future once, in completion order;
   ``wait`` returns a partition of the distinct inputs that matches its
   strategy, at the exact virtual time the strategy prescribes.
5. Retry law: calls == min(failures, retries) + 1, success iff
   failures <= retries, and the virtual time spent is the back-off schedule.
6. Backend equivalence: one drawn scenario has the same outcomes and the same
   virtual completion times on asyncio (async_solipsism) and trio (MockClock).

Profiles (tests/conftest.py): ``dev`` 40 examples, ``ci`` 200; expensive
tests take a share of that through ``examples()``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _strategies import (
    EXCEPTION_FACTORIES,
    LIMITER_KINDS,
    Boom,
    Crash,
    Oops,
    aiterate,
    examples,
    exception_kinds,
    hang_guard,
    make_limiter,
    run_virtual,
    task_count,
    ticks,
    us,
    values,
)
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st

from antflow import (
    AsyncExecutor,
    AsyncFuture,
    CancelledError,
    ExecutorShutdownError,
    WaitStrategy,
)

pytestmark = pytest.mark.anyio


# ==========================================================================
# 1. map equals the builtin map
# ==========================================================================


@dataclass
class MapScenario:
    iterables: list[list[int]]
    is_async: list[bool]
    delays: list[int]  # ticks per index
    failures: dict[int, str]  # index -> exception kind
    max_workers: int

    @property
    def length(self) -> int:
        return min(len(it) for it in self.iterables)


@st.composite
def map_scenarios(draw: st.DrawFn, *, allow_failures: bool = True) -> MapScenario:
    count = draw(st.integers(1, 3))
    lengths = [draw(st.integers(0, 14)) for _ in range(count)]
    # iterables[k][i] == 1000 * k + i, so the first argument is the index.
    iterables = [[1000 * k + i for i in range(n)] for k, n in enumerate(lengths)]
    longest = max(lengths)
    delays = draw(st.lists(st.integers(0, 8), min_size=longest, max_size=longest))
    failures: dict[int, str] = {}
    if allow_failures and longest:
        failures = draw(
            st.dictionaries(st.integers(0, longest - 1), exception_kinds, max_size=4)
        )
    return MapScenario(
        iterables=iterables,
        is_async=[draw(st.booleans()) for _ in range(count)],
        delays=delays,
        failures=failures,
        max_workers=draw(st.integers(1, 5)),
    )


def pure(*xs: int) -> int:
    return sum(xs) * 3 + len(xs)


class MapProbe:
    """The mapped function: ``pure(*xs)`` after ``delays[i]`` ticks, or the
    drawn exception; records starts, exits and cancellations per index, and
    how many items the input generators have handed out."""

    def __init__(self, scenario: MapScenario) -> None:
        self.scenario = scenario
        self.started: list[int] = []
        self.exited: list[int] = []
        self.cancelled: list[int] = []
        self.errors: dict[int, Exception] = {}
        self.read = [0] * len(scenario.iterables)

    def inputs(self) -> list[Any]:
        def counted(k: int, items: list[int]) -> Any:
            for item in items:
                self.read[k] += 1
                yield item

        made: list[Any] = []
        for k, (items, is_async) in enumerate(
            zip(self.scenario.iterables, self.scenario.is_async, strict=True)
        ):
            gen = counted(k, items)
            made.append(aiterate(gen) if is_async else gen)
        return made

    async def __call__(self, *xs: int) -> int:
        i = xs[0]
        self.started.append(i)
        try:
            await ticks(self.scenario.delays[i])
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(i)
            raise
        finally:
            self.exited.append(i)
        kind = self.scenario.failures.get(i)
        if kind is not None:
            self.errors[i] = error = EXCEPTION_FACTORIES[kind](i)
            raise error
        return pure(*xs)

    def first_failure(self) -> int | None:
        failing = [i for i in self.scenario.failures if i < self.scenario.length]
        return min(failing) if failing else None


@given(scenario=map_scenarios())
async def test_map_equals_builtin_map(scenario: MapScenario) -> None:
    """map: input order, zip semantics, the lowest failing index's own
    exception object, and none of the map's tasks keeps running
    (docs/semantics.md, "map and map_iter")."""
    probe = MapProbe(scenario)
    first = probe.first_failure()
    before = task_count()
    with anyio.fail_after(hang_guard()):
        async with AsyncExecutor(max_workers=scenario.max_workers) as ex:
            if first is None:
                result = await ex.map(probe, *probe.inputs())
                assert result == list(map(pure, *scenario.iterables))
            else:
                with pytest.raises(BaseException) as caught:
                    await ex.map(probe, *probe.inputs())
                # The very object the lowest failing item raised, not a copy,
                # not a group, not a later item's.
                assert caught.value is probe.errors[first]
            # Whatever happened, no task of the map is still running.
            assert sorted(probe.started) == sorted(probe.exited)
            started_at_return = list(probe.started)
            await ticks(10)
            await anyio.wait_all_tasks_blocked()
        # Nothing of the map started after it returned.
        assert probe.started == started_at_return
    if first is not None:
        # Items after the failure either finished on their own or were
        # cancelled; items before it all succeeded.
        assert all(i >= first for i in probe.cancelled)
        assert all(i not in probe.cancelled for i in range(first))
    stats = ex.statistics()
    assert stats.queued == stats.running == 0
    assert stats.submitted == stats.succeeded + stats.failed + stats.cancelled
    assert task_count() == before


@given(scenario=map_scenarios(), ordered=st.booleans(), use_async_with=st.booleans())
async def test_map_iter_equals_builtin_map_with_bounded_read_ahead(
    scenario: MapScenario, ordered: bool, use_async_with: bool
) -> None:
    """map_iter: the same results as map (as a multiset when unordered), and
    input is read at most 2 * max_workers items ahead of the consumer
    (docs/semantics.md, "map and map_iter")."""
    probe = MapProbe(scenario)
    first = probe.first_failure()
    expected = list(map(pure, *scenario.iterables))
    window = 2 * scenario.max_workers
    got: list[int] = []
    before = task_count()
    with anyio.fail_after(hang_guard()):
        async with AsyncExecutor(max_workers=scenario.max_workers) as ex:
            results = ex.map_iter(probe, *probe.inputs(), ordered=ordered)
            try:
                if use_async_with:
                    async with results:
                        async for value in results:
                            got.append(value)
                            # +1: zip may read one item of the first input
                            # past the end of a shorter one.
                            assert probe.read[0] <= len(got) + window + 1
                else:
                    async for value in results:
                        got.append(value)
                        assert probe.read[0] <= len(got) + window + 1
            except Exception as error:
                assert first is not None
                assert error in probe.errors.values()
                if ordered:
                    assert error is probe.errors[first]
                    assert got == expected[:first]
                # The iterator waited for its cancelled tasks on the way out.
                assert sorted(probe.started) == sorted(probe.exited)
            else:
                if ordered:
                    assert first is None
                    assert got == expected
                else:
                    # Unordered: whatever failed came out as an exception,
                    # so a clean run means no failing item was reached.
                    assert first is None
                    assert Counter(got) == Counter(expected)
    assert sorted(probe.started) == sorted(probe.exited)
    assert task_count() == before


# ==========================================================================
# 2. Concurrency bounds: max_workers and limiter tokens, retries included
# ==========================================================================


@dataclass
class BoundTask:
    executor: int
    limiter: int | None
    duration: int
    failures: int
    retries: int


@dataclass
class BoundScenario:
    max_workers: list[int]
    limiters: list[tuple[str, int]]  # (kind, tokens)
    tasks: list[BoundTask]


@st.composite
def bound_scenarios(draw: st.DrawFn) -> BoundScenario:
    max_workers = draw(st.lists(st.integers(1, 4), min_size=1, max_size=2))
    limiters = draw(
        st.lists(
            st.tuples(st.sampled_from(LIMITER_KINDS), st.integers(1, 3)), max_size=3
        )
    )
    limiter_index = (
        st.one_of(st.none(), st.integers(0, len(limiters) - 1))
        if limiters
        else st.none()
    )
    tasks = draw(
        st.lists(
            st.builds(
                BoundTask,
                executor=st.integers(0, len(max_workers) - 1),
                limiter=limiter_index,
                duration=st.integers(0, 6),
                failures=st.integers(0, 3),
                retries=st.integers(0, 3),
            ),
            min_size=1,
            max_size=24,
        )
    )
    return BoundScenario(max_workers, limiters, tasks)


class BoundProbe:
    def __init__(self, scenario: BoundScenario) -> None:
        self.scenario = scenario
        self.running = [0] * len(scenario.max_workers)
        self.peak = [0] * len(scenario.max_workers)
        self.holding = [0] * len(scenario.limiters)
        self.peak_holding = [0] * len(scenario.limiters)
        self.calls = [0] * len(scenario.tasks)
        self.violations: list[str] = []
        # (executor, limiter) -> task indexes in the order they first started
        self.first_starts: dict[tuple[int, int | None], list[int]] = {}

    async def body(self, index: int, sleep: float | None) -> int:
        task = self.scenario.tasks[index]
        self.calls[index] += 1
        e, lim = task.executor, task.limiter
        if self.calls[index] == 1:
            self.first_starts.setdefault((e, lim), []).append(index)
        self.running[e] += 1
        self.peak[e] = max(self.peak[e], self.running[e])
        if self.running[e] > self.scenario.max_workers[e]:
            self.violations.append(f"executor {e}: {self.running[e]} running")
        if lim is not None:
            self.holding[lim] += 1
            self.peak_holding[lim] = max(self.peak_holding[lim], self.holding[lim])
            if self.holding[lim] > self.scenario.limiters[lim][1]:
                self.violations.append(f"limiter {lim}: {self.holding[lim]} holders")
        try:
            if sleep is None:
                await ticks(task.duration)
            else:
                await anyio.sleep(task.duration * sleep)
        finally:
            self.running[e] -= 1
            if lim is not None:
                self.holding[lim] -= 1
        if self.calls[index] <= task.failures:
            raise Boom(index)
        return index


async def check_bounds(
    scenario: BoundScenario, sleep: float | None, delay: float
) -> None:
    probe = BoundProbe(scenario)
    limiters = [make_limiter(kind, tokens) for kind, tokens in scenario.limiters]
    executors = [AsyncExecutor(max_workers=n) for n in scenario.max_workers]
    before = task_count()
    futures: list[AsyncFuture[int]] = []
    with anyio.fail_after(hang_guard()):
        async with executors[0] as first_ex:
            other = executors[1] if len(executors) > 1 else None
            if other is not None:
                await other.__aenter__()
            try:
                for i, task in enumerate(scenario.tasks):
                    ex = executors[task.executor]
                    futures.append(
                        ex.submit(
                            probe.body,
                            i,
                            sleep,
                            semaphore=None
                            if task.limiter is None
                            else limiters[task.limiter],
                            retries=task.retries,
                            retry_delay=delay,
                        )
                    )
            finally:
                if other is not None:
                    await other.__aexit__(None, None, None)
            assert first_ex is executors[0]
    assert probe.violations == []
    # Tasks start in submission order: among the tasks of one executor that
    # share a limiter (or have none), first attempts never overtake. Not for
    # a plain async context manager: antflow enters it inside the worker, and
    # its own __aenter__ may yield (anyio.Semaphore's does), after which
    # trio may resume the workers in any order.
    for (_, lim), order in probe.first_starts.items():
        if lim is None or scenario.limiters[lim][0] != "cm":
            assert order == sorted(order)
    for i, (task, future) in enumerate(zip(scenario.tasks, futures, strict=True)):
        assert probe.calls[i] == min(task.failures, task.retries) + 1
        if task.failures <= task.retries:
            assert await future == i
        else:
            assert isinstance(future.exception(), Boom)
    for e, ex in enumerate(executors):
        stats = ex.statistics()
        mine = [t for t in scenario.tasks if t.executor == e]
        assert stats.submitted == len(mine)
        assert stats.succeeded == sum(t.failures <= t.retries for t in mine)
        assert stats.failed == len(mine) - stats.succeeded
        assert stats.retries == sum(min(t.failures, t.retries) for t in mine)
        assert stats.queued == stats.running == stats.cancelled == 0
        assert probe.peak[e] <= ex.max_workers
    assert task_count() == before


@given(scenario=bound_scenarios())
async def test_running_tasks_never_exceed_workers_or_tokens(
    scenario: BoundScenario,
) -> None:
    """At most max_workers bodies per executor and at most `tokens` bodies
    per limiter at once, limiters shared across tasks and executors, retries
    (zero back-off) included; tasks start in submission order, per executor
    and limiter (docs/guide.md, "Creating an executor", "Submitting work",
    "Limiting one kind of work")."""
    await check_bounds(scenario, sleep=None, delay=0)


@pytest.mark.virtual_time
class TestBoundsInVirtualTime:
    @given(scenario=bound_scenarios(), delay=st.sampled_from([0.25, 0.5, 1.0]))
    @settings(max_examples=examples(0.5))
    async def test_bounds_hold_with_durations_and_back_off(
        self, scenario: BoundScenario, delay: float
    ) -> None:
        """The same bounds when attempts take virtual time and back-off
        waits release the limiter for others."""
        await check_bounds(scenario, sleep=0.5, delay=delay)


# ==========================================================================
# 3. Random operation sequences: every future ends in one final state
# ==========================================================================

# A task spec: (kind, ticks, value/exception kind, retries, failures)
#   ok      -> returns value after ticks
#   fail    -> raises after ticks (retried `retries` times, failing each time)
#   flaky   -> fails `failures` times, then returns
#   block   -> waits for its gate (Release op or the end), then returns
#   swallow -> waits for its gate; on cancellation returns instead
#   spawn   -> submits an `ok` child to its own executor, returns its index
#   crash   -> raises Crash (a BaseException) after ticks

TASK_KINDS = ("ok", "fail", "flaky", "block", "swallow", "spawn", "crash")


@dataclass(frozen=True)
class Submit:
    kind: str
    ticks: int
    value: Any
    error: str
    retries: int
    failures: int
    callback_raises: bool
    limiter: int | None = None  # one of the script's shared limiters


@dataclass(frozen=True)
class Cancel:
    target: int


@dataclass(frozen=True)
class Result:
    target: int
    timeout: float | None


@dataclass(frozen=True)
class Release:
    target: int


# Every operation that waits is bounded: queued work may sit behind blocked
# tasks forever (that is correct behaviour), so map, map_iter, result, wait
# and as_completed always get a timeout, and their TimeoutError is a valid
# outcome. The bounds are virtual seconds on trio, real ones on asyncio.
OP_TIMEOUTS = (0, 0.002, 0.02)


@dataclass(frozen=True)
class Map:
    count: int
    fail_at: int | None
    timeout: float


@dataclass(frozen=True)
class MapIterBreak:
    count: int
    take: int
    close: bool  # async with (waits for cancelled tasks) or plain break
    ordered: bool
    timeout: float


@dataclass(frozen=True)
class AsCompletedOp:
    targets: tuple[int, ...]
    timeout: float


@dataclass(frozen=True)
class Wait:
    targets: tuple[int, ...]
    strategy: WaitStrategy
    timeout: float | None


@dataclass(frozen=True)
class Shutdown:
    wait: bool
    cancel_futures: bool


@dataclass(frozen=True)
class Tick:
    n: int


@dataclass(frozen=True)
class End:
    how: str  # "exit" (normal), "cancel" (outer scope), "raise" (Oops)


submit_ops = st.builds(
    Submit,
    # A crash ends the whole block: keep it rare.
    kind=st.sampled_from((*TASK_KINDS[:-1],) * 4 + ("crash",)),
    ticks=st.integers(0, 4),
    value=values,
    error=exception_kinds,
    retries=st.integers(0, 2),
    failures=st.integers(0, 3),
    callback_raises=st.booleans(),
    limiter=st.none() | st.integers(0, 1),
)
index = st.integers(0, 30)
small_timeout = st.sampled_from(OP_TIMEOUTS)
operations = st.one_of(
    submit_ops,
    submit_ops,
    st.builds(Cancel, index),
    st.builds(Result, index, st.sampled_from([*OP_TIMEOUTS, None])),
    st.builds(Release, index),
    st.builds(
        Map,
        st.integers(0, 6),
        st.none() | st.integers(0, 6),
        st.sampled_from(OP_TIMEOUTS),
    ),
    st.builds(
        MapIterBreak,
        st.integers(0, 8),
        st.integers(0, 4),
        st.booleans(),
        st.booleans(),
        st.sampled_from(OP_TIMEOUTS),
    ),
    st.builds(AsCompletedOp, st.lists(index, max_size=6).map(tuple), small_timeout),
    st.builds(
        Wait,
        st.lists(index, max_size=6).map(tuple),
        st.sampled_from(list(WaitStrategy)),
        st.sampled_from([*OP_TIMEOUTS, None]),
    ),
    st.builds(Shutdown, st.booleans(), st.booleans()),
    st.builds(Tick, st.integers(1, 5)),
)
scripts = st.tuples(
    st.tuples(
        st.integers(1, 4),
        st.sampled_from(["capacity", "anyio_sem", "native"]),
        st.integers(1, 2),
    ),  # max_workers, limiter kind, tokens
    # A few submissions first, so later operations have futures to act on.
    st.tuples(
        st.lists(submit_ops, min_size=1, max_size=6), st.lists(operations, max_size=14)
    ).map(lambda parts: parts[0] + parts[1]),
    st.sampled_from(["exit", "exit", "cancel", "raise"]).map(End),
)


@dataclass
class Record:
    """What we know about one future from the outside and from its task."""

    spec: Submit
    future: AsyncFuture[Any]
    gate: anyio.Event
    attempts: list[str] = field(default_factory=list)  # "value" | "error" | "cancelled"
    last_value: Any = None
    last_error: BaseException | None = None
    cancel_true: bool = False  # some cancel() on it returned True
    cancel_false_when_pending: bool = False
    callback_calls: int = 0


class Replay:
    """Replays a generated script against one executor and checks, at the
    end, the final state of every future it ever handed out."""

    def __init__(self, max_workers: int, limiters: list[Any]) -> None:
        self.max_workers = max_workers
        self.limiters = limiters
        self.records: list[Record] = []
        self.by_future: dict[AsyncFuture[Any], Record] = {}
        self.ex: AsyncExecutor | None = None
        self.shutdown_begun = False
        self.cancel_all = False  # shutdown(cancel_futures=True) was called
        self.crashed: list[Crash] = []
        self.map_started: list[int] = []  # per map / map_iter operation
        self.map_exited: list[int] = []
        self.rejected = 0
        self.log: list[str] = []

    # -- the task bodies ----------------------------------------------------

    async def body(self, record_index: int) -> Any:
        rec = self.records[record_index]
        spec = rec.spec
        attempt = len(rec.attempts) + 1
        rec.attempts.append("running")
        try:
            await ticks(spec.ticks)
            if spec.kind in ("block", "swallow"):
                if spec.kind == "swallow":
                    try:
                        await rec.gate.wait()
                    except anyio.get_cancelled_exc_class():
                        rec.attempts[-1] = "value"
                        rec.last_value = ("swallowed", record_index)
                        return rec.last_value
                else:
                    await rec.gate.wait()
            if spec.kind == "crash":
                error: BaseException = Crash(record_index)
                self.crashed.append(error)  # type: ignore[arg-type]
                rec.attempts[-1] = "crash"
                raise error
            if spec.kind == "spawn":
                assert self.ex is not None
                child = self.submit(
                    Submit("ok", 1, ("child", record_index), "boom", 0, 0, False)
                )
                value: Any = ("spawned", child)
            else:
                value = spec.value
            failing = spec.kind == "fail" or (
                spec.kind == "flaky" and attempt <= spec.failures
            )
            if failing:
                err = EXCEPTION_FACTORIES[spec.error](record_index)
                rec.attempts[-1] = "error"
                rec.last_error = err
                raise err
        except anyio.get_cancelled_exc_class():
            rec.attempts[-1] = "cancelled"
            raise
        except ExecutorShutdownError as refused:  # spawn after shutdown
            rec.attempts[-1] = "error"
            rec.last_error = refused
            raise
        rec.attempts[-1] = "value"
        rec.last_value = value
        return value

    async def map_body(self, op_id: int, fail_at: int | None, x: int) -> int:
        self.map_started[op_id] += 1
        try:
            await ticks(x % 3)
        finally:
            self.map_exited[op_id] += 1
        if x == fail_at:
            raise Boom(x)
        return x * 2

    def new_map_op(self) -> int:
        self.map_started.append(0)
        self.map_exited.append(0)
        return len(self.map_started) - 1

    # -- operations -----------------------------------------------------------

    def submit(self, spec: Submit) -> int | None:
        assert self.ex is not None
        index_ = len(self.records)
        try:
            future = self.ex.submit(
                self.body,
                index_,
                retries=spec.retries if spec.kind in ("fail", "flaky") else 0,
                retry_delay=0,
                semaphore=None if spec.limiter is None else self.limiters[spec.limiter],
            )
        except ExecutorShutdownError:
            # Refused after shutdown() began, or after a crashing task
            # aborted the executor (the block then ends at its next await).
            assert self.shutdown_begun or self.crashed
            self.rejected += 1
            return None
        assert not self.shutdown_begun, "submit accepted after shutdown began"
        rec = Record(spec, future, anyio.Event())
        self.records.append(rec)
        self.by_future[future] = rec

        def on_done(f: AsyncFuture[Any]) -> None:
            assert f is future
            assert f.done()
            rec.callback_calls += 1
            if spec.callback_raises:
                raise Oops("callback")

        future.add_done_callback(on_done)
        return index_

    def pick(self, target: int) -> Record | None:
        if not self.records:
            return None
        return self.records[target % len(self.records)]

    async def run(self, op: Any) -> None:
        ex = self.ex
        assert ex is not None
        self.log.append(repr(op))
        if isinstance(op, Submit):
            self.submit(op)
        elif isinstance(op, Cancel):
            rec = self.pick(op.target)
            if rec is None:
                return
            was_final = rec.future.done()
            was_cancelled = rec.future.cancelled()
            answer = rec.future.cancel()
            if answer:
                assert not was_final or was_cancelled
                rec.cancel_true = True
            else:
                assert was_final and not was_cancelled
        elif isinstance(op, Result):
            rec = self.pick(op.target)
            if rec is None:
                return
            fut = rec.future
            timeout = op.timeout
            if timeout is None and not fut.done():
                timeout = OP_TIMEOUTS[-1]
            try:
                value = await fut.result(timeout=timeout)
            except TimeoutError:
                # The task may raise TimeoutError only through task_timeout,
                # which no spec uses: this is the wait's own timeout.
                pass
            except CancelledError:
                assert fut.cancelled()
            except Exception as error:
                assert fut.exception() is error
            else:
                assert fut.done() and not fut.cancelled()
                assert fut.exception() is None
                assert value is rec.last_value or value == rec.last_value
        elif isinstance(op, Release):
            rec = self.pick(op.target)
            if rec is not None:
                rec.gate.set()
        elif isinstance(op, Map):
            await self.run_map(op)
        elif isinstance(op, MapIterBreak):
            await self.run_map_iter(op)
        elif isinstance(op, AsCompletedOp):
            targets = [r.future for t in op.targets if (r := self.pick(t))]
            seen: list[AsyncFuture[Any]] = []
            try:
                async for f in ex.as_completed(targets, timeout=op.timeout):
                    assert f.done()
                    seen.append(f)
            except TimeoutError:
                pass
            assert len(seen) == len(set(seen))
            assert set(seen) <= set(targets)
        elif isinstance(op, Wait):
            targets = [r.future for t in op.targets if (r := self.pick(t))]
            try:
                done, pending = await ex.wait(
                    targets,
                    timeout=op.timeout if op.timeout is not None else OP_TIMEOUTS[-1],
                    return_when=op.strategy,
                )
            except TimeoutError:
                assert op.strategy is WaitStrategy.ALL_COMPLETED
                assert not all(f.done() for f in targets)
            else:
                assert done | pending == set(targets)
                assert not done & pending
                assert all(f.done() for f in done)
                assert not any(f.done() for f in pending)
                if op.strategy is WaitStrategy.ALL_COMPLETED:
                    assert not pending
        elif isinstance(op, Shutdown):
            self.shutdown_begun = True
            if op.cancel_futures:
                self.cancel_all = True
            if op.wait and not op.cancel_futures:
                # Blocked tasks may never finish: bound the wait. Being
                # cancelled while waiting must leave shutdown in force.
                with anyio.move_on_after(OP_TIMEOUTS[-1]):
                    await ex.shutdown(wait=True)
            else:
                await ex.shutdown(wait=op.wait, cancel_futures=op.cancel_futures)
            with pytest.raises(ExecutorShutdownError):
                ex.submit(self.body, 0)
        elif isinstance(op, Tick):
            await ticks(op.n)
        else:  # pragma: no cover
            raise AssertionError(op)

    async def run_map(self, op: Map) -> None:
        ex = self.ex
        assert ex is not None
        op_id = self.new_map_op()
        try:
            result = await ex.map(
                self.map_body,
                [op_id] * op.count,
                [op.fail_at] * op.count,
                range(op.count),
                timeout=op.timeout,
            )
        except ExecutorShutdownError:
            assert self.shutdown_begun or self.crashed
            return
        except Boom as error:
            assert op.fail_at is not None and op.fail_at < op.count
            assert error.args == (op.fail_at,)
        except TimeoutError:
            pass
        else:
            assert op.fail_at is None or op.fail_at >= op.count
            assert result == [2 * x for x in range(op.count)]
        # map returns only once its tasks have exited.
        assert self.map_started[op_id] == self.map_exited[op_id]
        assert self.map_started[op_id] <= op.count

    async def run_map_iter(self, op: MapIterBreak) -> None:
        ex = self.ex
        assert ex is not None
        op_id = self.new_map_op()
        try:
            results = ex.map_iter(
                self.map_body,
                [op_id] * op.count,
                [None] * op.count,
                range(op.count),
                ordered=op.ordered,
                timeout=op.timeout,
            )
        except ExecutorShutdownError:
            assert self.shutdown_begun or self.crashed
            return
        got: list[int] = []
        try:
            if op.close:
                async with results:
                    async for value in results:
                        got.append(value)
                        if len(got) >= op.take:
                            break
            else:
                async for value in results:
                    got.append(value)
                    if len(got) >= op.take:
                        break
        except TimeoutError:
            # A timeout closes the iterator, which waits for its tasks.
            assert self.map_started[op_id] == self.map_exited[op_id]
            return
        finally:
            if op.close:
                # aclose() returns once the cancelled tasks have exited.
                assert self.map_started[op_id] == self.map_exited[op_id]
            del results
        expected = min(max(op.take, 1), op.count)
        if op.ordered:
            assert got == [2 * x for x in range(expected)]
        else:
            assert len(got) == expected
            assert set(got) <= {2 * x for x in range(op.count)}

    # -- the end ---------------------------------------------------------------

    def release_all(self) -> None:
        for rec in self.records:
            rec.gate.set()

    async def check_final_states(self, aborted: bool) -> None:
        for i, rec in enumerate(self.records):
            fut = rec.future
            note(f"future {i}: {fut!r} spec={rec.spec} attempts={rec.attempts}")
            assert fut.done(), f"{fut!r} not final after exit"
            assert not fut.running()
            assert rec.callback_calls == 1, "done callback must run exactly once"
            outcomes = [
                fut.cancelled(),
                not fut.cancelled() and fut.exception() is not None,
                not fut.cancelled() and fut.exception() is None,
            ]
            assert sum(outcomes) == 1
            # No attempt is left running.
            assert "running" not in rec.attempts
            if rec.cancel_true:
                # A cancel() that returned True wins, whatever the task did.
                assert fut.cancelled()
            if fut.cancelled():
                with pytest.raises(CancelledError):
                    fut.exception()
                # Someone asked for it: cancel(), shutdown(cancel_futures),
                # an abort of the block, or a crash of a sibling task.
                assert (
                    rec.cancel_true
                    or self.cancel_all
                    or aborted
                    or self.crashed
                    or rec.spec.kind == "crash"
                ), f"{fut!r} cancelled for no reason"
                # A task that never started ends cancelled, and a task whose
                # last attempt ended in its cancellation ends cancelled.
            elif fut.exception() is not None:
                # The exception of the task's last attempt, the same object.
                assert rec.attempts and rec.attempts[-1] == "error"
                assert fut.exception() is rec.last_error
            else:
                assert rec.attempts and rec.attempts[-1] == "value"
                # Final: returns at once, the very object the task returned.
                assert await fut.result(timeout=0) is rec.last_value
            if rec.spec.kind == "crash" and rec.attempts:
                # A BaseException is never stored as the result.
                assert fut.cancelled()
            if rec.attempts and rec.attempts[-1] == "cancelled":
                assert fut.cancelled()
            if not rec.attempts:
                assert fut.cancelled()


def free_tokens(limiter: Any) -> int:
    """Tokens available now, for the limiter kinds make_limiter builds."""
    if isinstance(limiter, anyio.CapacityLimiter):
        return int(limiter.available_tokens)
    if hasattr(limiter, "value"):  # anyio.Semaphore, trio.Semaphore
        return int(limiter.value)
    return int(limiter._value)  # asyncio.Semaphore


def leaf_exceptions(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves += leaf_exceptions(exc)
        else:
            leaves.append(exc)
    return leaves


async def replay(script: tuple[tuple[int, str, int], list[Any], End]) -> Replay:
    (max_workers, limiter_kind, tokens), ops, end = script
    limiters = [make_limiter(limiter_kind, tokens) for _ in range(2)]
    state = Replay(max_workers, limiters)
    before = task_count()
    outer_cancelled = False
    raised: BaseException | None = None
    oops = Oops("block")
    with anyio.fail_after(hang_guard()):
        try:
            with anyio.CancelScope() as outer:
                async with AsyncExecutor(max_workers=max_workers) as ex:
                    state.ex = ex
                    for op in ops:
                        await state.run(op)
                    if end.how == "cancel":
                        outer.cancel()
                        await anyio.lowlevel.checkpoint()
                        raise AssertionError("not cancelled")  # pragma: no cover
                    if end.how == "raise":
                        raise oops
                    state.release_all()
            outer_cancelled = outer.cancelled_caught
        except (Oops, Crash) as error:
            raised = error
        except BaseExceptionGroup as group:
            # Only when several tasks crashed at once: each crash is its own
            # failure, so the group holds them all (and nothing else).
            assert len(state.crashed) > 1
            leaves = leaf_exceptions(group)
            assert len(leaves) > 1
            assert all(leaf in state.crashed or leaf is oops for leaf in leaves)
            raised = leaves[0]
    note(f"log={state.log}")
    event(f"end: {'crash' if state.crashed else end.how}")
    event(f"shutdown: {'cancel_futures' if state.cancel_all else state.shutdown_begun}")
    finals = Counter(
        "cancelled"
        if r.future.cancelled()
        else "failed"
        if r.future.exception() is not None
        else "succeeded"
        for r in state.records
        if r.future.done()
    )
    for kind, n in finals.items():
        event(f"has {kind} futures", n > 0)
    if state.crashed:
        # A BaseException from a task propagates out of the block as itself,
        # not in a group; if the block also raised, either may win.
        assert raised is not None and (raised in state.crashed or raised is oops)
    elif end.how == "raise":
        assert raised is oops
    elif end.how == "cancel":
        assert raised is None and outer_cancelled
    else:
        assert raised is None and not outer_cancelled
    await state.check_final_states(aborted=end.how != "exit")
    assert task_count() == before
    # Every limiter token came back.
    for limiter in limiters:
        assert free_tokens(limiter) == tokens
    assert state.map_started == state.map_exited
    stats = state.ex.statistics() if state.ex else None
    assert stats is not None
    assert stats.queued == stats.running == 0
    assert stats.submitted == stats.succeeded + stats.failed + stats.cancelled
    return state


@given(script=scripts)
@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
async def test_random_operation_sequences_leave_every_future_final(
    script: tuple[tuple[int, str, int], list[Any], End],
) -> None:
    """Whatever sequence of submit / cancel / result(timeout) / map /
    map_iter-break / as_completed / wait / shutdown / outer cancellation /
    raising block / crashing task is played, after the executor exits every
    future is in exactly one final state, consistent with what its task did,
    its done callback ran once, and no task is left (docs/semantics.md,
    "The life of a task", "What happens to every future", "Done callbacks")."""
    await replay(script)


# ==========================================================================
# 4. as_completed and wait
# ==========================================================================


@dataclass
class Job:
    duration: float
    error: str | None
    cancel_at: float | None  # a cancel() at this virtual time, if any

    def end(self) -> float:
        """When the future becomes final, relative to submission."""
        if self.cancel_at is not None and self.cancel_at < self.duration:
            return self.cancel_at
        return self.duration

    def fails(self) -> bool:
        return self.error is not None and self.end() == self.duration


# Job ends lie on a quarter-second grid, cancels a sixteenth off it and
# timeouts an eighth off it, so no two of them ever coincide: a wait timing
# out at the very instant a job ends is a legitimate race, not a property.
jobs = st.lists(
    st.builds(
        Job,
        duration=st.integers(0, 12).map(lambda n: n / 4),
        error=st.none() | exception_kinds,
        cancel_at=st.none() | st.integers(0, 12).map(lambda n: n / 4 + 1 / 16),
    ),
    min_size=1,
    max_size=10,
)


async def job_body(i: int, job: Job) -> int:
    await anyio.sleep(job.duration)
    if job.error is not None:
        raise EXCEPTION_FACTORIES[job.error](i)
    return i


async def cancel_at(future: AsyncFuture[Any], when: float) -> None:
    await anyio.sleep(max(0.0, when - anyio.current_time()))
    future.cancel()


def retrieve(futures: list[AsyncFuture[int]]) -> None:
    """Read every outcome, so none is logged as "never retrieved"."""
    for f in futures:
        if not f.cancelled():
            f.exception()


@pytest.mark.virtual_time
class TestWaitingInVirtualTime:
    @given(
        scenario=jobs,
        picks=st.lists(st.integers(0, 100), min_size=1, max_size=14),
        max_workers=st.integers(1, 6),
        head_start=st.sampled_from([0, 0.5, 1.0]),
    )
    async def test_as_completed_yields_each_distinct_future_once_in_completion_order(
        self, scenario: list[Job], picks: list[int], max_workers: int, head_start: float
    ) -> None:
        """as_completed yields each distinct future exactly once (results,
        failures and cancellations alike), already finished ones first, then
        in completion order: finish times never decrease (docs/guide.md,
        "Processing results as they complete")."""
        completion: dict[AsyncFuture[int], tuple[int, int]] = {}
        with anyio.fail_after(hang_guard()):
            async with AsyncExecutor(max_workers=max_workers) as ex:  # noqa: SIM117 - helpers close first
                async with anyio.create_task_group() as tg:
                    t0 = anyio.current_time()
                    futures = []
                    for i, job in enumerate(scenario):
                        f = ex.submit(job_body, i, job)
                        f.add_done_callback(
                            lambda f: completion.__setitem__(
                                f, (us(anyio.current_time()), len(completion))
                            )
                        )
                        futures.append(f)
                        if job.cancel_at is not None:
                            tg.start_soon(cancel_at, f, t0 + job.cancel_at)
                    # Some futures are final before the iteration starts.
                    await anyio.sleep(head_start)
                    chosen = [futures[p % len(futures)] for p in picks]
                    done_before = {f for f in chosen if f.done()}
                    yielded: list[AsyncFuture[int]] = []
                    async for f in ex.as_completed(chosen):
                        assert f.done()
                        yielded.append(f)
                        # Seen at the instant it completed (or at once, for
                        # one that was final already).
                        if f not in done_before:
                            assert completion[f][0] == us(anyio.current_time())
        assert len(yielded) == len(set(chosen))
        assert set(yielded) == set(chosen)
        k = len(done_before)
        assert set(yielded[:k]) == done_before
        later = [completion[f] for f in yielded[k:]]
        assert later == sorted(later)  # by finish time, then completion order
        retrieve(futures)

    @given(
        scenario=jobs,
        picks=st.lists(st.integers(0, 100), min_size=0, max_size=14),
        strategy=st.sampled_from(
            [*WaitStrategy, "FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED"]
        ),
        timeout=st.none()
        | st.just(0)
        | st.integers(0, 14).map(lambda n: n / 4 + 1 / 8),
        head_start=st.sampled_from([0, 0.5, 1.0]),
    )
    async def test_wait_returns_the_strategy_partition_at_the_exact_time(
        self,
        scenario: list[Job],
        picks: list[int],
        strategy: Any,
        timeout: float | None,
        head_start: float,
    ) -> None:
        """wait: (done, pending) split the distinct futures; it returns at
        the first completion / first exception (a cancellation is not one) or
        all done / all done, or at the timeout, whichever the strategy says
        first; ALL_COMPLETED raises TimeoutError instead (docs/guide.md,
        "Waiting for a set of futures"; docs/semantics.md, "Timeouts")."""
        strat = WaitStrategy(strategy)
        if timeout == 0:
            # timeout=0 expires at the call's own instant: a job ending at
            # that instant (head_start on the grid) is a race, not a property.
            assume(
                all(
                    us(scenario[p % len(scenario)].end()) != us(head_start)
                    for p in picks
                )
            )
        finish: dict[AsyncFuture[int], int] = {}
        with anyio.fail_after(hang_guard()):
            # Enough workers that every job starts at once: finish times are
            # known in advance (submission + end()).
            async with AsyncExecutor(max_workers=len(scenario)) as ex:  # noqa: SIM117 - helpers close first
                async with anyio.create_task_group() as tg:
                    t0 = anyio.current_time()
                    futures = []
                    for i, job in enumerate(scenario):
                        f = ex.submit(job_body, i, job)
                        f.add_done_callback(
                            lambda f: finish.__setitem__(f, us(anyio.current_time()))
                        )
                        futures.append(f)
                        if job.cancel_at is not None:
                            tg.start_soon(cancel_at, f, t0 + job.cancel_at)
                    await anyio.sleep(head_start)
                    chosen = [futures[p % len(futures)] for p in picks]
                    distinct = set(chosen)
                    start = us(anyio.current_time())
                    timed_out = False
                    try:
                        done, pending = await ex.wait(chosen, timeout, strat)
                    except TimeoutError:
                        timed_out = True
                    returned = us(anyio.current_time())
                    states = {f: f.done() for f in distinct}
        job_of = {f: scenario[futures.index(f)] for f in distinct}
        ends = {f: us(t0 + job_of[f].end()) for f in distinct}
        for f in distinct:
            assert finish[f] == ends[f]
            assert f.cancelled() == (job_of[f].end() != job_of[f].duration)
        failing = [ends[f] for f in distinct if job_of[f].fails()]
        all_done = max(ends.values(), default=start)
        if strat is WaitStrategy.FIRST_COMPLETED:
            target = min(ends.values(), default=start)
        elif strat is WaitStrategy.FIRST_EXCEPTION:
            target = min(failing) if failing else all_done
        else:
            target = all_done
        target = max(target, start)
        deadline = math.inf if timeout is None else start + us(timeout)
        assert returned == min(target, deadline)
        retrieve(futures)
        if timed_out:
            assert strat is WaitStrategy.ALL_COMPLETED
            assert deadline < target
            return
        assert strat is not WaitStrategy.ALL_COMPLETED or target <= deadline
        assert done | pending == distinct
        assert not done & pending
        assert done == {f for f in distinct if states[f]}
        # Everything that ended strictly before the return is done; nothing
        # that ended after it is.
        assert {f for f in distinct if ends[f] < returned} <= done
        assert done <= {f for f in distinct if ends[f] <= returned}


# ==========================================================================
# 5. Retry law
# ==========================================================================


@pytest.mark.virtual_time
class TestRetryLawInVirtualTime:
    @given(
        failures=st.integers(0, 6),
        retries=st.integers(0, 6),
        retry_delay=st.sampled_from([0, 0.125, 0.25, 0.5, 1.0]),
        duration=st.sampled_from([0, 0.5, 1.0]),
        error=exception_kinds,
        cap=st.none() | st.sampled_from([0.25, 1.0, 3.0]),
        via_map=st.booleans(),
        limited=st.booleans(),
    )
    async def test_calls_outcome_and_elapsed_time_follow_the_back_off_schedule(
        self,
        failures: int,
        retries: int,
        retry_delay: float,
        duration: float,
        error: str,
        cap: float | None,
        via_map: bool,
        limited: bool,
    ) -> None:
        """Retries: calls == min(failures, retries) + 1; success iff failures
        <= retries; a failure raises the last attempt's own exception; the
        time spent is the attempts plus the waits retry_delay * 2**k (k = 0,
        1, ...), each capped by retry_max_delay (docs/guide.md, "Retries")."""
        calls: list[float] = []
        raised: list[Exception] = []

        async def flaky(x: int) -> int:
            calls.append(anyio.current_time())
            await anyio.sleep(duration)
            if len(calls) <= failures:
                raised.append(EXCEPTION_FACTORIES[error](len(calls)))
                raise raised[-1]
            return x + 1

        limiter = anyio.CapacityLimiter(1) if limited else None
        with anyio.fail_after(hang_guard()):
            async with AsyncExecutor(max_workers=2) as ex:
                start = anyio.current_time()
                options: dict[str, Any] = {
                    "retries": retries,
                    "retry_delay": retry_delay,
                    "retry_max_delay": cap,
                    "semaphore": limiter,
                }
                outcome: Any
                try:
                    if via_map:
                        outcome = await ex.map(flaky, [41], **options)
                    else:
                        outcome = [await ex.submit(flaky, 41, **options)]
                except Exception as exc:
                    outcome = exc
                elapsed = anyio.current_time() - start
                stats = ex.statistics()
        expected_calls = min(failures, retries) + 1
        assert len(calls) == expected_calls
        if failures <= retries:
            assert outcome == [42]
        else:
            assert outcome is raised[-1]  # the original, not a RetryError
        waits = [retry_delay * 2**k for k in range(expected_calls - 1)]
        if cap is not None:
            waits = [min(w, cap) for w in waits]
        assert us(elapsed) == us(expected_calls * duration + sum(waits))
        # Each attempt starts exactly when the previous wait ends.
        for k in range(1, expected_calls):
            assert us(calls[k] - calls[k - 1]) == us(duration + waits[k - 1])
        assert stats.retries == expected_calls - 1


# ==========================================================================
# 6. Backend equivalence
# ==========================================================================


@dataclass(frozen=True)
class EqTask:
    submit_slot: int
    duration: int  # in UNITs
    failures: int
    retries: int
    limiter: int | None
    cancel_at: int | None  # in UNITs after submission


# Times are built in three bands so that two distinct events never fall on
# the same virtual instant (trio shuffles tasks woken at one instant while
# asyncio runs them FIFO, so a tie at a shared limiter could legitimately be
# won by different tasks on the two backends; that is not what we test):
#   * each attempt of task i lasts duration * UNIT + 5**i microseconds: the
#     low band (< 5**8 us, about 0.39 s) spells, in base 5, which attempts
#     (at most 4 per task) a chain of events went through;
#   * task i is submitted at slot r_i * SLOT, r_i distinct, below UNIT;
#   * durations and back-off waits are multiples of UNIT;
#   * a cancel() lands half a SLOT off the grid, above the low band.
# All values are whole microseconds, async_solipsism's resolution.
MICRO = 1e-6
SLOT = 2**20 * MICRO
UNIT = 2**23 * MICRO
MAX_EQ_TASKS = 8


@st.composite
def equivalence_scenarios(
    draw: st.DrawFn,
) -> tuple[int, list[int], list[EqTask], float]:
    max_workers = draw(st.integers(1, 4))
    limiters = draw(st.lists(st.integers(1, 2), max_size=2))
    count = draw(st.integers(1, MAX_EQ_TASKS))
    slots = draw(st.permutations(range(count)))
    limiter_index = (
        st.none() | st.integers(0, len(limiters) - 1) if limiters else st.none()
    )
    tasks = [
        EqTask(
            submit_slot=slots[i],
            duration=draw(st.integers(0, 3)),
            failures=draw(st.integers(0, 3)),
            retries=draw(st.integers(0, 3)),
            limiter=draw(limiter_index),
            cancel_at=draw(st.none() | st.integers(0, 6)),
        )
        for i in range(count)
    ]
    retry_delay = draw(st.sampled_from([UNIT, 2 * UNIT]))
    return max_workers, limiters, tasks, retry_delay


async def play_equivalence(
    scenario: tuple[int, list[int], list[EqTask], float],
) -> list[tuple[Any, ...]]:
    """Play the scenario; return per task (outcome, completion time in us,
    calls), then the executor's counters."""
    max_workers, limiter_tokens, tasks, retry_delay = scenario
    limiters = [anyio.CapacityLimiter(n) for n in limiter_tokens]
    calls = [0] * len(tasks)
    outcome: list[tuple[Any, ...]] = [()] * len(tasks)
    t0 = anyio.current_time()

    async def body(i: int) -> int:
        calls[i] += 1
        await anyio.sleep(tasks[i].duration * UNIT + 5**i * MICRO)
        if calls[i] <= tasks[i].failures:
            raise Boom(i, calls[i])
        return i * 10

    def record(i: int) -> Callable[[AsyncFuture[int]], None]:
        def done(f: AsyncFuture[int]) -> None:
            if f.cancelled():
                what: Any = "cancelled"
            elif f.exception() is not None:
                what = ("error", repr(f.exception()))
            else:
                what = ("value", i * 10)
            outcome[i] = (what, us(anyio.current_time() - t0), calls[i])

        return done

    async def cancel_later(f: AsyncFuture[int], at: float) -> None:
        await anyio.sleep(max(0.0, at - anyio.current_time()))
        f.cancel()

    async with AsyncExecutor(max_workers=max_workers) as ex:  # noqa: SIM117 - helpers close first
        async with anyio.create_task_group() as tg:
            for i in sorted(range(len(tasks)), key=lambda i: tasks[i].submit_slot):
                task = tasks[i]
                submit_at = t0 + task.submit_slot * SLOT
                await anyio.sleep(max(0.0, submit_at - anyio.current_time()))
                f = ex.submit(
                    body,
                    i,
                    retries=task.retries,
                    retry_delay=retry_delay,
                    semaphore=None if task.limiter is None else limiters[task.limiter],
                )
                f.add_done_callback(record(i))
                if task.cancel_at is not None:
                    at = submit_at + task.cancel_at * UNIT + SLOT / 2
                    tg.start_soon(cancel_later, f, at)
    stats = ex.statistics()
    return [
        *outcome,
        ("stats", stats.succeeded, stats.failed, stats.cancelled, stats.retries),
    ]


@given(scenario=equivalence_scenarios())
def test_same_scenario_same_outcomes_and_times_on_asyncio_and_trio(
    scenario: tuple[int, list[int], list[EqTask], float],
) -> None:
    """The same code runs the same way on asyncio and trio
    (docs/getting-started.md, "The same code on every backend"): identical
    outcomes, call counts and virtual completion times."""
    on_asyncio = run_virtual("asyncio", play_equivalence, scenario)
    on_trio = run_virtual("trio", play_equivalence, scenario)
    note(f"asyncio: {on_asyncio}")
    note(f"trio:    {on_trio}")
    # Outcomes, call counts and the executor's counters are identical.
    assert _without_times(on_asyncio) == _without_times(on_trio)
    # Times agree up to the clocks' rounding: async_solipsism keeps whole
    # microseconds and rounds each sleep to them, trio's MockClock keeps an
    # exact float sum, and a completion time adds up to ~8 sleeps.
    times_a, times_t = _times(on_asyncio), _times(on_trio)
    assert all(
        abs(a - t) <= CLOCK_ROUNDING_US for a, t in zip(times_a, times_t, strict=True)
    )
    # ...and tasks that finished clearly apart did so in the same order.
    for i, a_i in enumerate(times_a):
        for j, a_j in enumerate(times_a):
            if a_i + 2 * CLOCK_ROUNDING_US < a_j:
                assert times_t[i] < times_t[j]


#: How far the two virtual clocks may drift apart over one scenario, in us.
CLOCK_ROUNDING_US = 8


def _without_times(outcomes: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [(o[0], *o[2:]) if len(o) == 3 else o for o in outcomes]


def _times(outcomes: list[tuple[Any, ...]]) -> list[int]:
    return [o[1] for o in outcomes if len(o) == 3]
