"""The model test: every option at once, every way a job can end.

A hypothesis ``RuleBasedStateMachine`` drives one or two executors that share
limiters through random sequences of submits, maps and map_iters (ordered or
not, over sync or async inputs) with random combinations of ``semaphore=``
(anyio and native limiters, shared), ``rate_limit=`` on the call and on the
executor, or chosen per map item by a function, ``retries=``,
``task_timeout=``, ``progress=``, ``return_exceptions=`` and the executor's
``max_pending=`` (plain ``submit`` refused at the bound, ``asubmit`` waiting
for room, cancelled while it waits); jobs that return,
raise, fail a few times, hang, raise in their cleanup, set context variables
or crash the executor; and endings: ``cancel()``, a map deadline, an early
exit from map_iter, a cancelled consumer, ``shutdown(wait=..,
cancel_futures=.., grace=..)``, an error in the ``async with`` block and cancellation
of the code around it.

The event loop runs in a thread behind an anyio blocking portal, so each
rule is one call into it. After every rule the loop is let run until every
task is blocked, and then, in one synchronous look, the rules of
docs/semantics.md "Where features meet" must hold:

* **tokens**: every limiter lends exactly as many tokens as there are jobs
  inside an attempt that use it, so no token is held by a job that is queued,
  parked, backing off or done;
* **bounds**: no executor ever ran more attempts at once than
  ``max_workers``, no limiter more than its tokens;
* **context**: every attempt saw its submitter's context variables, never
  another job's;
* **rate**: the starts through each rate limiter keep its rule;
* **backpressure**: a plain ``submit`` is refused exactly when
  ``max_pending`` jobs are pending or ``asubmit`` calls wait for room.

At the end every block is closed and: every future is final exactly once and
its state agrees with what its job did, its done callbacks ran once each in
the order added, every token is back, each map ended as its ending says, the
inputs it stopped reading were closed, an ``asubmit`` that raised (cancelled,
or shut out) submitted nothing, and no task is left.

trio runs under ``MockClock(autojump_threshold=0)`` (between rules, virtual
time runs until only untimed waits are left); asyncio and uvloop run in real
time with millisecond durations, so the invariants must hold whatever the
timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest
from _strategies import (
    CountingContextManager,
    Crash,
    event_problems,
    examples,
    virtual_options,
)
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from antflow import (
    AsyncExecutor,
    AsyncFuture,
    ExecutorFullError,
    ExecutorShutdownError,
    RateLimiter,
)
from antflow._future import job_of

#: What each job's submitter set; every attempt must see its own.
submitter: ContextVar[str] = ContextVar("submitter", default="none")

#: How much the starts seen may exceed a rate limiter's schedule on a real
#: event loop: 2 ms where a timer fires late and the starts it held back catch
#: up (docs/semantics.md, "RateLimiter"), plus the loop's delay between a
#: job's token and its function's first line, which is where a start is seen
#: here. Under load that delay bunches starts that were paced: on a 2-core
#: machine at load 3, five starts of RateLimiter(200, burst=3) within 2 ms.
#: The exact rule is checked in virtual time (trio here; test_rate.py).
REAL_TIME_CATCH_UP = 0.010
#: On a real loop a start is seen when the worker runs the job, up to a loop
#: iteration after the token was taken; two tokens taken an interval apart
#: can so be seen a little closer together: one start of slack in a window.
REAL_TIME_SLACK_STARTS = 1


class Oops(Exception):
    """Raised by an ``async with`` block to end it with an error."""


class Failed(Exception):
    """What a failing job raises."""


class CleanupFailed(Exception):
    """What a job raises from its cleanup when it is cancelled."""


JOB_KINDS = ("return", "raise", "flaky", "hang", "hang_timeout", "cleanup", "context")


@dataclass
class Attempt:
    """What one attempt of a job did."""

    started: float
    ended: str = "running"  # "returned", "raised", "cancelled", "cleanup_raised"
    error: BaseException | None = None
    #: For "cleanup_raised": the cancellation came at or after the attempt's
    #: own ``task_timeout`` deadline, so it may be retried (and then
    #: cancelled while it backs off) rather than ending the job.
    timed_out: bool = False


@dataclass
class Job:
    """One unit of work and the record of what it did."""

    number: int
    kind: str
    executor: int
    limiter: int | None  # index into World.limiters
    rate: int | None  # index into World.rates (the call's rate limit)
    retries: int
    expected_context: str
    task_timeout: float | None = None
    release: anyio.Event | None = None
    attempts: list[Attempt] = field(default_factory=list)
    in_attempt: bool = False
    #: Attempts it had started when a cancel() of it first returned True.
    cancelled_after: int | None = None

    @property
    def value(self) -> str:
        return f"value {self.number}"


@dataclass
class Block:
    """An executor and how its ``async with`` (or manual use) ends."""

    number: int
    executor: AsyncExecutor
    max_workers: int
    rate: int | None  # index into World.rates: the executor-wide rate limit
    manual: bool
    max_pending: int | None = None
    stop: anyio.Event = field(default_factory=anyio.Event)
    ending: str = "normal"
    outer: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    finished: anyio.Event = field(default_factory=anyio.Event)
    outcome: BaseException | None = None
    shutting_down: bool = False
    crashed: bool = False
    crash_job: Job | None = None
    #: What its on_event hook heard (docs/observability.md).
    events: list[Any] = field(default_factory=list)


@dataclass
class MapCall:
    """One map or map_iter call, run by a task of its own."""

    number: int
    block: int
    jobs: list[Job]
    ending: str  # "complete", "deadline", "break", "consumer_cancelled"
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    finished: anyio.Event = field(default_factory=anyio.Event)
    results: list[Any] = field(default_factory=list)
    outcome: BaseException | None = None
    input_closed: bool = False
    #: Read at least once (a generator never started has no finally to run:
    #: a map waiting for room under max_pending may end before reading).
    input_started: bool = False
    async_input: bool = False
    progress: list[int] = field(default_factory=list)
    return_exceptions: bool = False


@dataclass
class Asubmit:
    """One ``await asubmit(...)``, run by a task of its own."""

    job: Job
    block: int
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    finished: anyio.Event = field(default_factory=anyio.Event)
    future: AsyncFuture[Any] | None = None
    outcome: BaseException | None = None
    cancelled: bool = False


class World:
    """Everything that lives on the event loop's side."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        #: trio runs on its mock clock here, asyncio and uvloop in real time.
        self.real_time = backend != "trio"
        self.limiters: list[tuple[str, Any, int]] = []
        self.rates: list[RateLimiter] = []
        self.rate_starts: list[list[float]] = []
        self.blocks: list[Block] = []
        self.jobs: list[Job] = []
        self.futures: list[tuple[Job, AsyncFuture[Any], list[str]]] = []
        self.maps: list[MapCall] = []
        self.asubmits: list[Asubmit] = []
        self.violations: list[str] = []
        self.baseline_tasks = 0
        self.task_group: Any = None

    # -- limiters ---------------------------------------------------------

    def add_limiter(self, kind: str, tokens: int) -> None:
        on_trio = self.backend == "trio"
        if kind == "capacity":
            limiter: Any = anyio.CapacityLimiter(tokens)
        elif kind == "anyio_semaphore":
            limiter = anyio.Semaphore(tokens)
        elif kind == "native":
            if on_trio:
                import trio

                limiter = trio.Semaphore(tokens)
            else:
                limiter = asyncio.Semaphore(tokens)
        elif kind == "native_capacity":
            if on_trio:
                import trio

                limiter = trio.CapacityLimiter(tokens)
            else:
                limiter = asyncio.BoundedSemaphore(tokens)
        else:
            limiter = CountingContextManager(tokens)
        self.limiters.append((kind, limiter, tokens))

    def lent(self, index: int) -> int:
        """Tokens the limiter has lent right now."""
        kind, limiter, tokens = self.limiters[index]
        if kind in ("capacity", "native_capacity") and hasattr(
            limiter, "borrowed_tokens"
        ):
            return int(limiter.borrowed_tokens)
        if kind == "cm":
            return tokens - int(limiter.semaphore.value)
        if isinstance(limiter, asyncio.Semaphore):
            return tokens - limiter._value
        return tokens - int(limiter.value)

    def add_rate(self, rate: float, burst: int) -> None:
        self.rates.append(RateLimiter(rate, burst=burst))
        self.rate_starts.append([])

    # -- jobs ---------------------------------------------------------------

    def job_function(self, job: Job) -> Callable[[], Any]:
        async def run() -> str:
            return await self.attempt(job)

        return run

    def rates_of(self, job: Job) -> list[int]:
        """The rate limiters an attempt of ``job`` passes (one passed both
        to the executor and to the call limits once)."""
        block = self.blocks[job.executor]
        return sorted({r for r in (block.rate, job.rate) if r is not None})

    async def attempt(self, job: Job) -> str:
        now = anyio.current_time()
        record = Attempt(now)
        job.attempts.append(record)
        if submitter.get() != job.expected_context:
            self.violations.append(
                f"job {job.number} saw context {submitter.get()!r}, "
                f"expected {job.expected_context!r}"
            )
        for index in self.rates_of(job):
            self.rate_starts[index].append(now)
        job.in_attempt = True
        self.check_bounds(job)
        try:
            result = await self.body(job)
        except anyio.get_cancelled_exc_class():
            record.ended = "cancelled"
            raise
        except CleanupFailed as error:
            record.ended, record.error = "cleanup_raised", error
            record.timed_out = self.deadline_passed(job, record)
            raise
        except BaseException as error:
            record.ended, record.error = "raised", error
            raise
        finally:
            job.in_attempt = False
        record.ended = "returned"
        return result

    async def body(self, job: Job) -> str:
        kind = job.kind
        await anyio.lowlevel.checkpoint()
        if kind == "return":
            return job.value
        if kind == "raise":
            raise Failed(job.number)
        if kind == "flaky":
            if len(job.attempts) <= 2:
                raise Failed(job.number)
            return job.value
        if kind == "context":
            submitter.set(f"set by job {job.number}")
            await anyio.lowlevel.checkpoint()
            if submitter.get() != f"set by job {job.number}":
                self.violations.append(f"job {job.number} lost its own context")
            return job.value
        if kind == "crash":
            raise Crash(job.number)
        assert job.release is not None
        if kind == "cleanup":
            try:
                await job.release.wait()
            except anyio.get_cancelled_exc_class():
                raise CleanupFailed(job.number) from None
            return job.value
        await job.release.wait()  # "hang", "hang_timeout"
        return job.value

    def deadline_passed(self, job: Job, record: Attempt) -> bool:
        """Whether the attempt's own deadline had come. The deadline is set
        just before the function's first line, where ``started`` is read; on
        a real loop the two are up to a loop delay apart."""
        if job.task_timeout is None:
            return False
        slack = REAL_TIME_CATCH_UP if self.real_time else 0.0
        return anyio.current_time() >= record.started + job.task_timeout - slack

    def check_bounds(self, job: Job) -> None:
        block = self.blocks[job.executor]
        running = sum(
            1 for j in self.jobs if j.in_attempt and j.executor == job.executor
        )
        if running > block.max_workers:
            self.violations.append(
                f"executor {block.number} ran {running} attempts at once, "
                f"max_workers={block.max_workers}"
            )
        if job.limiter is not None:
            users = sum(
                1 for j in self.jobs if j.in_attempt and j.limiter == job.limiter
            )
            tokens = self.limiters[job.limiter][2]
            if users > tokens:
                self.violations.append(
                    f"limiter {job.limiter} had {users} users, tokens={tokens}"
                )

    # -- invariants at a quiet moment ----------------------------------------

    async def settle_and_check(self) -> list[str]:
        await anyio.wait_all_tasks_blocked()
        # One synchronous look: nothing can change until we return.
        problems = list(self.violations)
        for index, (kind, _, _) in enumerate(self.limiters):
            users = sum(1 for j in self.jobs if j.in_attempt and j.limiter == index)
            lent = self.lent(index)
            if kind == "cm":
                # A limiter with no non-blocking path is entered in the
                # worker, and a job holds it while it waits there for its
                # rate limits (docs/semantics.md, "Tokens", last paragraph).
                if lent < users:
                    problems.append(f"limiter {index} (cm): {users} users, {lent} lent")
                continue
            if lent != users:
                problems.append(
                    f"limiter {index} ({kind}) lends {lent} tokens but {users} "
                    "jobs are in an attempt with it"
                )
        return problems


# ---------------------------------------------------------------------------
# The state machine
# ---------------------------------------------------------------------------

options_strategy = st.fixed_dictionaries(
    {
        "limiter": st.one_of(st.none(), st.integers(0, 3)),
        "rate": st.one_of(st.none(), st.integers(0, 1)),
        "retries": st.sampled_from([0, 0, 1, 3]),
        "task_timeout": st.sampled_from([None, None, 0.05, 5.0]),
    }
)


class Model(RuleBasedStateMachine):
    backend: tuple[str, dict[str, Any]] = ("asyncio", {})

    futures = Bundle("futures")
    hanging = Bundle("hanging")

    def __init__(self) -> None:
        super().__init__()
        name, options = self.backend
        if name == "trio":
            options = virtual_options("trio")  # a fresh clock per example
        self._stack = contextlib.ExitStack()
        self.portal = self._stack.enter_context(
            anyio.from_thread.start_blocking_portal(name, options)
        )
        self.world = World(name)
        self.counter = 0
        self.real_time = self.world.real_time

    # -- set-up -------------------------------------------------------------

    @initialize(
        limiters=st.lists(
            st.tuples(
                st.sampled_from(
                    ["capacity", "anyio_semaphore", "native", "native_capacity", "cm"]
                ),
                st.integers(1, 3),
            ),
            min_size=4,
            max_size=4,
        ),
        rates=st.lists(
            st.tuples(st.sampled_from([200.0, 1000.0]), st.integers(1, 3)),
            min_size=2,
            max_size=2,
        ),
        blocks=st.lists(
            st.tuples(
                st.integers(1, 4),
                st.one_of(st.none(), st.just(0), st.just(1)),
                st.booleans(),
                st.sampled_from([None, None, 1, 3]),
            ),
            min_size=1,
            max_size=2,
        ),
    )
    def set_up(
        self,
        limiters: list[tuple[str, int]],
        rates: list[tuple[float, int]],
        blocks: list[tuple[int, int | None, bool, int | None]],
    ) -> None:
        world = self.world

        def build() -> None:
            world.baseline_tasks = len(anyio.get_running_tasks())
            for kind, tokens in limiters:
                world.add_limiter(kind, tokens)
            for rate, burst in rates:
                world.add_rate(rate, burst)

        self.portal.call(build)
        for max_workers, rate, manual, max_pending in blocks:
            self.open_block(max_workers, rate, manual, max_pending)

    def open_block(
        self, max_workers: int, rate: int | None, manual: bool, max_pending: int | None
    ) -> None:
        world = self.world
        number = len(world.blocks)

        def make() -> Block:
            events: list[Any] = []
            executor = AsyncExecutor(
                max_workers,
                rate_limit=None if rate is None else world.rates[rate],
                max_pending=max_pending,
                on_event=events.append,
            )
            block = Block(
                number,
                executor,
                max_workers,
                rate,
                manual,
                max_pending=max_pending,
                events=events,
            )
            world.blocks.append(block)
            return block

        block = self.portal.call(make)
        if not manual:
            self.portal.start_task_soon(self.host, block)
            self.portal.call(anyio.wait_all_tasks_blocked)

    async def host(self, block: Block) -> None:
        try:
            with block.outer:
                async with block.executor:
                    await block.stop.wait()
                    if block.ending == "error":
                        raise Oops(block.number)
        except BaseException as error:
            block.outcome = error
        finally:
            block.finished.set()

    # -- helpers ------------------------------------------------------------

    def open_blocks(self) -> list[int]:
        return [
            b.number
            for b in self.world.blocks
            if not b.shutting_down and not b.stop.is_set() and not b.crashed
        ]

    def new_job(self, kind: str, block: int, options: dict[str, Any]) -> Job:
        self.counter += 1
        job = Job(
            number=self.counter,
            kind=kind,
            executor=block,
            limiter=options["limiter"],
            rate=options["rate"],
            retries=options["retries"],
            expected_context=f"submitter of job {self.counter}",
        )
        if kind in ("hang", "hang_timeout", "cleanup"):
            job.release = self.portal.call(anyio.Event)
        self.world.jobs.append(job)
        return job

    def call_options(self, job: Job, options: dict[str, Any]) -> dict[str, Any]:
        world = self.world
        kwargs: dict[str, Any] = {}
        if job.limiter is not None:
            kwargs["semaphore"] = world.limiters[job.limiter][1]
        if job.rate is not None:
            kwargs["rate_limit"] = world.rates[job.rate]
        if job.retries:
            kwargs["retries"] = job.retries
            kwargs["retry_delay"] = 0.001
        timeout = options["task_timeout"]
        if job.kind == "hang_timeout":
            timeout = 0.01
        if timeout is not None:
            kwargs["task_timeout"] = timeout
        job.task_timeout = timeout
        return kwargs

    # -- rules: submitting --------------------------------------------------

    @precondition(lambda self: bool(self.open_blocks()))
    @rule(
        target=futures,
        choice=st.integers(0, 1),
        kind=st.sampled_from(JOB_KINDS),
        options=options_strategy,
    )
    def submit(self, choice: int, kind: str, options: dict[str, Any]) -> Any:
        blocks = self.open_blocks()
        block = self.world.blocks[blocks[choice % len(blocks)]]
        job = self.new_job(kind, block.number, options)
        kwargs = self.call_options(job, options)
        callbacks: list[str] = []

        # Returned in a tuple: the portal would await an awaitable result.
        def do() -> tuple[AsyncFuture[Any] | None]:
            submitter.set(job.expected_context)
            room = room_of(block)
            full = room is not None and not room.available()
            try:
                future = block.executor.submit(self.world.job_function(job), **kwargs)
            except ExecutorFullError:
                if not full:
                    self.world.violations.append(
                        f"job {job.number}: submit refused with room left"
                    )
                return (None,)
            if full:
                self.world.violations.append(
                    f"job {job.number}: submitted past max_pending={block.max_pending}"
                )
            for name in "aba":
                future.add_done_callback(lambda _, name=name: callbacks.append(name))
            return (future,)

        (future,) = self.portal.call(do)
        if future is None:
            # Refused: the job never runs. It stays in world.jobs and the
            # bundle gets None, so what the rules draw does not depend on
            # timing.
            return None
        self.world.futures.append((job, future, callbacks))
        return future

    @precondition(
        lambda self: any(
            self.world.blocks[b].max_pending is not None for b in self.open_blocks()
        )
    )
    @rule(
        choice=st.integers(0, 1),
        kind=st.sampled_from(JOB_KINDS),
        options=options_strategy,
    )
    def asubmit(self, choice: int, kind: str, options: dict[str, Any]) -> None:
        """``await asubmit(...)`` in a task of its own: it may wait for room."""
        blocks = [
            b
            for b in self.open_blocks()
            if self.world.blocks[b].max_pending is not None
        ]
        block = self.world.blocks[blocks[choice % len(blocks)]]
        job = self.new_job(kind, block.number, options)
        kwargs = self.call_options(job, options)
        record = self.portal.call(lambda: Asubmit(job, block.number))
        self.world.asubmits.append(record)

        async def run() -> None:
            submitter.set(job.expected_context)
            callbacks: list[str] = []
            try:
                with record.scope:
                    future = await block.executor.asubmit(
                        self.world.job_function(job), **kwargs
                    )
                    record.future = future
                    for name in "aba":
                        future.add_done_callback(
                            lambda _, name=name: callbacks.append(name)
                        )
                    self.world.futures.append((job, future, callbacks))
                record.cancelled = record.scope.cancelled_caught
            except BaseException as error:
                record.outcome = error
            finally:
                record.finished.set()

        self.portal.start_task_soon(run)
        self.portal.call(anyio.wait_all_tasks_blocked)

    @precondition(lambda self: bool(self.world.asubmits))
    @rule(data=st.data())
    def cancel_asubmit(self, data: st.DataObject) -> None:
        """A producer is cancelled, while it waits for room or after (then
        it changes nothing: the future is handed out already)."""
        record = data.draw(st.sampled_from(self.world.asubmits))
        self.portal.call(record.scope.cancel)

    @precondition(lambda self: bool(self.open_blocks()))
    @rule(
        choice=st.integers(0, 1),
        kinds=st.lists(st.sampled_from((*JOB_KINDS[:3], "hang_timeout")), max_size=8),
        options=options_strategy,
        call=st.sampled_from(["map", "ordered", "unordered"]),
        ending=st.sampled_from(["complete", "deadline", "break", "consumer_cancelled"]),
        async_input=st.booleans(),
        progress=st.sampled_from([None, "record", "raise"]),
        per_item=st.one_of(
            st.none(),
            st.lists(
                st.tuples(
                    st.one_of(st.none(), st.integers(0, 3)),
                    st.one_of(st.none(), st.integers(0, 1)),
                ),
                min_size=8,
                max_size=8,
            ),
        ),
        return_exceptions=st.booleans(),
    )
    def start_map(
        self,
        choice: int,
        kinds: list[str],
        options: dict[str, Any],
        call: str,
        ending: str,
        async_input: bool,
        progress: str | None,
        per_item: list[tuple[int | None, int | None]] | None,
        return_exceptions: bool,
    ) -> None:
        blocks = self.open_blocks()
        block = self.world.blocks[blocks[choice % len(blocks)]]
        context = f"map call {len(self.world.maps)}"
        jobs = [self.new_job(kind, block.number, options) for kind in kinds]
        for job in jobs:
            job.expected_context = context
        kwargs = self.call_options(jobs[0], options) if jobs else {}
        kwargs.pop("task_timeout", None)
        for job in jobs:
            job.task_timeout = None
        if per_item is not None:
            # Each item chooses its own limiter and rate limit (or none).
            world = self.world
            for job, (limiter, rate) in zip(jobs, per_item, strict=False):
                job.limiter, job.rate = limiter, rate
            kwargs["semaphore"] = lambda job: (
                None if job.limiter is None else world.limiters[job.limiter][1]
            )
            kwargs["rate_limit"] = lambda job: (
                None if job.rate is None else world.rates[job.rate]
            )
        if return_exceptions:
            kwargs["return_exceptions"] = True
        if any(job.kind == "hang_timeout" for job in jobs) or options["task_timeout"]:
            kwargs["task_timeout"] = 0.01 if self.real_time else 0.05
            for job in jobs:
                job.task_timeout = kwargs["task_timeout"]
        if call == "map" and ending == "break":
            ending = "complete"
        # Made on the loop: its event and scope belong there.
        record = self.portal.call(
            lambda: MapCall(len(self.world.maps), block.number, jobs, ending)
        )
        record.async_input = async_input
        record.return_exceptions = return_exceptions
        self.world.maps.append(record)
        self.portal.start_task_soon(
            self.run_map, block, record, call, kwargs, context, progress
        )
        self.portal.call(anyio.wait_all_tasks_blocked)

    async def run_map(
        self,
        block: Block,
        record: MapCall,
        call: str,
        kwargs: dict[str, Any],
        context: str,
        progress: str | None,
    ) -> None:
        submitter.set(context)
        world = self.world

        async def item(job: Job) -> str:
            return await world.attempt(job)

        def report(done: int, total: int | None) -> None:
            record.progress.append(done)
            if progress == "raise":
                raise ValueError("progress callback failed")

        if progress is not None:
            kwargs = {**kwargs, "progress": report}

        async def async_jobs() -> AsyncIterator[Job]:
            record.input_started = True
            try:
                for job in record.jobs:
                    await anyio.lowlevel.checkpoint()
                    yield job
            finally:
                record.input_closed = True

        def sync_jobs() -> Any:
            record.input_started = True
            try:
                yield from record.jobs
            finally:
                record.input_closed = True

        source: Any = async_jobs() if record.async_input else sync_jobs()
        timeout = None
        if record.ending == "deadline":
            timeout = 0.02 if self.real_time else 0.5
        try:
            with record.scope:
                if call == "map":
                    record.results = await block.executor.map(
                        item, source, timeout=timeout, **kwargs
                    )
                else:
                    iterator = block.executor.map_iter(
                        item,
                        source,
                        timeout=timeout,
                        ordered=call == "ordered",
                        **kwargs,
                    )
                    async with iterator:
                        async for result in iterator:
                            record.results.append(result)
                            if record.ending == "break" and len(record.results) >= 1:
                                break
                            if record.ending == "consumer_cancelled":
                                record.scope.cancel()
                                await anyio.lowlevel.checkpoint()
            if record.scope.cancelled_caught:
                record.outcome = anyio.get_cancelled_exc_class()()
        except BaseException as error:
            record.outcome = error
        finally:
            record.finished.set()

    @precondition(lambda self: bool(self.open_blocks()))
    @rule(choice=st.integers(0, 1))
    def crash(self, choice: int) -> None:
        """A job raises a BaseException: the executor stops, everything ends."""
        blocks = self.open_blocks()
        block = self.world.blocks[blocks[choice % len(blocks)]]
        job = self.new_job(
            "crash",
            block.number,
            dict.fromkeys(("limiter", "rate"), None) | {"retries": 0},
        )

        def do() -> tuple[AsyncFuture[Any] | None]:
            submitter.set(job.expected_context)
            try:
                return (block.executor.submit(self.world.job_function(job)),)
            except ExecutorFullError:
                return (None,)  # max_pending reached: no crash this time

        # The block takes no more rules either way (refused or not), so that
        # which rules run never depends on timing.
        block.crashed = True
        (future,) = self.portal.call(do)
        if future is None:
            return
        block.crash_job = job
        self.world.futures.append((job, future, ["a", "b", "a"]))

    # -- rules: endings --------------------------------------------------------

    @rule(future=futures)
    def cancel(self, future: AsyncFuture[Any] | None) -> None:
        if future is None:  # a submit that was refused
            return
        job = next(j for j, f, _ in self.world.futures if f is future)

        def do() -> None:
            if future.cancel() and job.cancelled_after is None:
                job.cancelled_after = len(job.attempts)

        self.portal.call(do)

    def waiting_jobs(self) -> list[Job]:
        return [
            j
            for j in self.world.jobs
            if j.release is not None and not j.release.is_set()
        ]

    @precondition(lambda self: bool(self.waiting_jobs()))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        waiting = [
            j
            for j in self.world.jobs
            if j.release is not None and not j.release.is_set()
        ]
        if waiting:
            job = data.draw(st.sampled_from(waiting))
            assert job.release is not None
            self.portal.call(job.release.set)

    @precondition(lambda self: bool(self.open_blocks()))
    @rule(
        choice=st.integers(0, 1),
        wait=st.booleans(),
        cancel_futures=st.booleans(),
        grace=st.sampled_from([None, None, 0, 0.02]),
    )
    def shutdown(
        self, choice: int, wait: bool, cancel_futures: bool, grace: float | None
    ) -> None:
        blocks = self.open_blocks()
        block = self.world.blocks[blocks[choice % len(blocks)]]
        block.shutting_down = True

        async def do() -> None:
            with contextlib.suppress(Crash):
                await block.executor.shutdown(
                    wait=wait, cancel_futures=cancel_futures, grace=grace
                )

        self.portal.start_task_soon(do)
        self.portal.call(anyio.wait_all_tasks_blocked)

    @precondition(lambda self: any(not b.manual for b in self.world.blocks))
    @rule(choice=st.integers(0, 1), how=st.sampled_from(["normal", "error", "outer"]))
    def end_block(self, choice: int, how: str) -> None:
        hosted = [b for b in self.world.blocks if not b.manual and not b.stop.is_set()]
        if not hosted:
            return
        block = hosted[choice % len(hosted)]
        block.ending = how

        def do() -> None:
            if how == "outer":
                block.outer.cancel()
            block.stop.set()

        self.portal.call(do)

    @rule()
    def let_time_pass(self) -> None:
        """Nothing new: the loop runs until every task is blocked again."""

    # -- invariants -----------------------------------------------------------

    @invariant()
    def rules_hold_at_a_quiet_moment(self) -> None:
        problems = self.portal.call(self.world.settle_and_check)
        assert problems == [], problems

    # -- the end ------------------------------------------------------------

    def teardown(self) -> None:
        try:
            self.finish()
        except BaseException:
            # Whatever was left running must not keep the loop (and the
            # report of what went wrong) waiting.
            with contextlib.suppress(BaseException):
                self.portal.call(self.portal.stop, True)
            raise
        finally:
            self._stack.close()

    def finish(self) -> None:
        world = self.world
        if not world.blocks:
            return

        async def close_everything() -> None:
            try:
                with anyio.fail_after(30 if self.real_time else 10_000):
                    await release_and_wait()
            except TimeoutError:
                # A hang: say what was stuck where, for the report.
                raise AssertionError(
                    "still waiting after every job was released:\n"
                    + "\n".join(describe_stuck(world))
                ) from None

        async def release_and_wait() -> None:
            for job in world.jobs:
                if job.release is not None:
                    job.release.set()
            for block in world.blocks:
                block.stop.set()
                if block.manual:
                    with contextlib.suppress(Crash):
                        await block.executor.shutdown()
            for block in world.blocks:
                if not block.manual:
                    await block.finished.wait()
            for call in world.maps:
                await call.finished.wait()
            for asubmit in world.asubmits:
                await asubmit.finished.wait()
            for _, future, _ in world.futures:
                with contextlib.suppress(BaseException):
                    await job_of(future).wait_final()
            await anyio.wait_all_tasks_blocked()

        self.portal.call(close_everything)
        problems = self.portal.call(self.final_problems)
        assert problems == [], problems

    def final_problems(self) -> list[str]:
        world = self.world
        problems = list(world.violations)
        tasks = len(anyio.get_running_tasks())
        # Both counts include the portal task that takes them.
        if tasks != world.baseline_tasks:
            problems.append(f"{tasks - world.baseline_tasks} tasks left running")
        for index, (kind, _, _) in enumerate(world.limiters):
            if world.lent(index):
                problems.append(f"limiter {index} ({kind}) still lends tokens")
        for job, future, callbacks in world.futures:
            problems += future_problems(job, future, callbacks)
            problems += future_event_problems(job, future, world.blocks[job.executor])
        for block in world.blocks:
            problems += [
                f"block {block.number}: {p}" for p in event_problems(block.events)
            ]
            stats = block.executor.statistics()
            if stats.queued or stats.running:
                problems.append(f"executor {block.number} left {stats}")
            if stats.submitted != stats.succeeded + stats.failed + stats.cancelled:
                problems.append(f"executor {block.number}: {stats} does not add up")
            problems += block_problems(block)
        for call in world.maps:
            problems += map_problems(call, world.blocks[call.block])
        for asubmit in world.asubmits:
            problems += asubmit_problems(asubmit)
        for index, starts in enumerate(world.rate_starts):
            problems += rate_problems(
                world.rates[index],
                sorted(starts),
                REAL_TIME_CATCH_UP if self.real_time else 0.0,
                REAL_TIME_SLACK_STARTS if self.real_time else 0,
            )
        return problems


def future_problems(
    job: Job, future: AsyncFuture[Any], callbacks: list[str]
) -> list[str]:
    where = f"job {job.number} ({job.kind}, {len(job.attempts)} attempts)"
    problems = []
    if not future.done():
        return [f"{where}: future not final: {future!r}"]
    if callbacks != ["a", "b", "a"]:
        problems.append(f"{where}: callbacks ran as {callbacks}")
    last = job.attempts[-1] if job.attempts else None
    if job.cancelled_after is not None and len(job.attempts) > job.cancelled_after:
        problems.append(f"{where}: an attempt started after cancel() returned True")
    if future.cancelled():
        # A last attempt that returned is fine: cancel() came while it ran
        # and it finished before noticing; the future ends cancelled "even if
        # the task [...] managed to return a value" (docs/semantics.md,
        # "Cancellation").
        # A cleanup error ends the job FAILED (docs/semantics.md, "Nothing
        # swallowed"), unless the attempt's own deadline cancelled it and a
        # retry was due: then a cancel() during the back-off wins.
        if (
            last is not None
            and last.ended == "cleanup_raised"
            and (not last.timed_out or len(job.attempts) > job.retries)
        ):
            problems.append(f"{where}: cancelled, but its last attempt {last.ended}")
        # Cancelled while backing off before a retry is fine; a final
        # failure must not turn into "cancelled".
        if (
            last is not None
            and last.ended == "raised"
            and isinstance(last.error, Exception)
            and len(job.attempts) > job.retries
        ):
            problems.append(f"{where}: cancelled, but it failed for good")
        return problems
    error = future.exception()
    if error is None:
        if last is None or last.ended != "returned":
            problems.append(f"{where}: succeeded, but its last attempt did not return")
        elif job_of(future).value != job.value:
            problems.append(f"{where}: wrong value {job_of(future).value!r}")
        return problems
    if last is None:
        problems.append(f"{where}: failed with {error!r} without an attempt")
    elif isinstance(error, TimeoutError):
        if last.ended not in ("cancelled",):
            problems.append(f"{where}: timed out, but its last attempt {last.ended}")
    elif error is not last.error:
        problems.append(f"{where}: failed with {error!r}, last attempt {last}")
    return problems


def future_event_problems(
    job: Job, future: AsyncFuture[Any], block: Block
) -> list[str]:
    """The job's final event says what its future says; each attempt the
    model saw start had its Started event first."""
    from antflow.events import Cancelled, Failed, Started, Succeeded

    number = job_of(future).number
    mine = [e for e in block.events if e.job == number]
    where = f"job {job.number} ({job.kind}): {[type(e).__name__ for e in mine]}"
    if not mine:
        return [f"{where}: no events"]
    final = mine[-1]
    if future.cancelled():
        ok = isinstance(final, Cancelled)
    elif future.exception() is not None:
        ok = isinstance(final, Failed) and final.error is future.exception()
    else:
        ok = isinstance(final, Succeeded)
    problems = [] if ok else [f"{where}: final event disagrees with {future!r}"]
    if sum(isinstance(e, Started) for e in mine) < len(job.attempts):
        problems.append(f"{where}: fewer Started events than attempts")
    return problems


def block_problems(block: Block) -> list[str]:
    outcome = block.outcome
    if block.manual:
        return []
    crash_job = block.crash_job
    # It crashed if an attempt raised: one that started is cancelled at its
    # first checkpoint instead when the block is ending at that moment.
    if crash_job is not None and any(a.ended == "raised" for a in crash_job.attempts):
        if not isinstance(outcome, Crash):
            return [f"block {block.number} crashed, yet ended with {outcome!r}"]
        return []
    if block.crashed and isinstance(outcome, Crash):
        return [f"block {block.number} ended with {outcome!r}, yet nothing crashed"]
    expected: Any = {
        "normal": type(None),
        "error": Oops,
        "outer": type(None),  # the cancel scope around the block absorbs it
    }[block.ending]
    if not isinstance(outcome, expected):
        return [f"block {block.number} ({block.ending}) ended with {outcome!r}"]
    return []


def map_problems(call: MapCall, block: Block) -> list[str]:
    where = f"map {call.number} ({call.ending}, {len(call.jobs)} items)"
    problems = []
    outcome = call.outcome
    if call.progress != sorted(call.progress):
        problems.append(f"{where}: progress went backwards: {call.progress}")
    if call.return_exceptions:
        for result in call.results:
            notes = getattr(result, "__notes__", None)
            if isinstance(result, BaseException) and (
                not notes or not notes[-1].startswith("antflow: map item ")
            ):
                problems.append(f"{where}: {result!r} returned without its note")
    if outcome is None and call.return_exceptions:
        values = {job.value for job in call.jobs}
        got = [r for r in call.results if not isinstance(r, BaseException)]
        expected = 1 if call.ending == "break" and call.jobs else len(call.jobs)
        if len(call.results) != expected or not set(got) <= values:
            problems.append(f"{where}: results {call.results} for {sorted(values)}")
    elif outcome is None:
        values = [job.value for job in call.jobs]
        if call.ending == "break" and call.jobs:
            if len(call.results) != 1 or call.results[0] not in values:
                problems.append(f"{where}: broke out with {call.results}")
        elif sorted(call.results) != sorted(values):
            problems.append(f"{where}: results {call.results} for {values}")
    if (
        (outcome is not None or call.ending == "break")
        and not call.input_closed
        and call.input_started
        and call.jobs
    ):
        problems.append(f"{where}: stopped early ({outcome!r}) without closing input")
    for job in call.jobs:
        if job.in_attempt:
            problems.append(f"{where}: job {job.number} still in an attempt")
    return problems


def asubmit_problems(record: Asubmit) -> list[str]:
    """An asubmit either handed out its future or, cancelled or shut out,
    submitted nothing: its job never ran."""
    where = f"asubmit of job {record.job.number}"
    if record.future is not None:
        return []
    outcome = record.outcome
    if not (record.cancelled or isinstance(outcome, ExecutorShutdownError)):
        return [f"{where} ended with {outcome!r}"]
    if record.job.attempts:
        return [f"{where} ended ({outcome!r}), yet its job ran"]
    return []


def room_of(block: Block) -> Any:
    """The executor's max_pending bookkeeping (None: no bound, or not
    started): the model's view of what a plain submit must find."""
    pool = block.executor._life.pool  # pyright: ignore[reportPrivateUsage]
    return None if pool is None else pool.room


def rate_problems(
    limiter: RateLimiter, starts: list[float], catch_up: float, slack: int
) -> list[str]:
    """Over any window of t seconds at most burst + rate * (t + catch_up) / per
    attempts start (plus ``slack`` starts seen late, in real time)."""
    problems = []
    rate, per, burst = limiter.rate, limiter.per, limiter.burst
    for i, begin in enumerate(starts):
        for j in range(i, len(starts)):
            span = starts[j] - begin
            allowed = burst + slack + rate * (span + catch_up) / per + 1e-6
            if j - i + 1 > allowed:
                problems.append(
                    f"{limiter!r}: {j - i + 1} starts within {span:.6f} s "
                    f"(allowed {math.floor(allowed)})"
                )
                return problems
    return problems


def describe_stuck(world: World) -> list[str]:
    """What each executor still holds and each unfinished job waits for
    (private state on purpose: this is a hang report)."""
    lines = []
    for block in world.blocks:
        pool = block.executor._life.pool
        lines.append(f"executor {block.number}: {block.executor.statistics()}")
        if pool is None:
            continue
        lines.append(
            f"  running={[j.number for j in pool._running]} "
            f"ready={[j.number for j in pool._ready]} "
            f"backlog={[j.number for j in pool._backlog]} "
            f"workers={pool.workers} tasks={pool.tasks} idle={len(pool._idle)} "
            f"outstanding={pool.outstanding} accepting={pool.accepting}"
        )
        if pool.room is not None:
            room = pool.room
            lines.append(
                f"  room: max_pending={room.max_pending} pending={room.pending()} "
                f"promised={room._promised} waiters={len(room._waiters)} "
                f"shut={room.shut}"
            )
        for line in pool._lines.values():
            lines.append(
                f"  line {type(line).__name__} at {line.limiter!r}: "
                f"jobs={[(j.number, j.state) for j in line.jobs]} "
                f"wants_slot={line in pool._want_slot}"
            )
    for call in world.maps:
        if not call.finished.is_set():
            lines.append(
                f"map {call.number} on executor {call.block} not finished: "
                f"{len(call.jobs)} items, async input {call.async_input}, "
                f"started {call.input_started}, closed {call.input_closed}, "
                f"{len(call.results)} results"
            )
    for asubmit in world.asubmits:
        if not asubmit.finished.is_set():
            lines.append(f"asubmit of job {asubmit.job.number} not finished")
    for job in world.jobs:
        if job.attempts and job.attempts[-1].ended == "running":
            lines.append(f"job {job.number} ({job.kind}) still in an attempt")
    for name, limiter, size in world.limiters:
        borrowed = getattr(limiter, "borrowed_tokens", "?")
        lines.append(f"limiter {name} of {size}: {borrowed} borrowed, {limiter!r}")
    return lines


@pytest.mark.timeout(600)
def test_where_features_meet(anyio_backend: Any) -> None:
    """Random programs over every option keep every rule of "Where features
    meet" on this backend."""
    backend = anyio_backend if isinstance(anyio_backend, tuple) else (anyio_backend, {})
    machine = type("ModelOn" + backend[0].title(), (Model,), {"backend": backend})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples(0.25, minimum=10),
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.filter_too_much,
                HealthCheck.function_scoped_fixture,
            ],
        ),
    )
