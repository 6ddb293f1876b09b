"""RateLimiter: a token bucket for task starts, fair to all who share it.

The bucket is written as GCRA (the "generic cell rate algorithm"): instead
of a token count refilled by a timer, it keeps one number, the theoretical
time at which the bucket is next empty. That needs no task and no timer, and
"when may the next start happen?" is one subtraction.

**Fairness.** Whoever must wait takes a `Turn` in one first-come,
first-served line, and only the first in line sleeps on the clock. An
executor's waiting line keeps its turn while it has jobs and goes to the
back after each start, so executors sharing a limiter take starts in turn.

**Late timers.** A real event loop wakes a sleeper up to about a millisecond
late (epoll waits in whole milliseconds). A plain token bucket would lose the
starts that fell due meanwhile, and deliver less than its rate whenever the
interval is near or below a millisecond. Here a start taken by someone who
was already waiting, or right after other starts, counts at the time it
fell due, as long as that is at most `catch_up` ago, so those starts happen
at once, late but not lost. In
virtual time (trio's ``MockClock``, async_solipsism) timers are exact and
nothing needs catching up.

**Clock.** The event loop's clock, read at full resolution (see
``_compat.clock``), so the limiter follows virtual clocks. A limiter belongs
to the event loop that first uses it; share it between executors and calls
on that loop.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, final

import anyio

from . import _compat
from ._job import FINISHED
from ._limits import Gate, WaitingLine

if TYPE_CHECKING:
    from ._job import Job
    from ._pool import Pool


@final
class RateLimiter:
    """Allow at most ``rate`` task starts per ``per`` seconds, with bursts.

    The rule: over any interval of ``t`` seconds at most
    ``burst + rate * t / per`` attempts start, and after a quiet spell up to
    ``burst`` may start at once. Every attempt takes a token, retries
    included; waiting for one holds no worker slot. Those who wait are served
    first come, first served, so executors that share a limiter take turns.

    On a real event loop a timer may fire up to about a millisecond late;
    starts that fell due meanwhile then happen together as soon as it fires,
    so over a short interval the count may exceed the rule by up to ``rate *
    0.002 / per`` (2 ms worth of starts), while over any longer time the rate
    is what you asked for. In virtual time the rule holds exactly.

    Args:
        rate: Starts allowed per period (a number > 0).
        per: The period in seconds (> 0).
        burst: How many starts may happen at once after a quiet spell
            (an int >= 1). With the default 1, starts are spaced evenly,
            ``per / rate`` seconds apart.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: ``rate`` or ``per`` not a finite number > 0, ``burst`` < 1.

    Example:
        ``AsyncExecutor(max_workers=50, rate_limit=RateLimiter(10))`` starts
        at most ten tasks a second.
    """

    __slots__ = ("_pacer", "burst", "per", "rate")

    def __init__(self, rate: float, per: float = 1.0, *, burst: int = 1) -> None:
        from ._checks import check_int, check_positive

        check_positive("rate", rate)
        check_positive("per", per)
        check_int("burst", burst, minimum=1)
        self.rate = rate
        self.per = per
        self.burst = burst
        self._pacer = Pacer(per / rate, burst)

    def try_acquire(self) -> bool:
        """Take a token if one is available now and nobody is waiting;
        never blocks."""
        return self._pacer.try_take()

    async def acquire(self) -> None:
        """Wait for your turn and a token, then take it."""
        await self._pacer.acquire()

    async def wait_available(self) -> None:
        """Wait until you could take a token, without taking it.

        You wait your turn like anyone else; when this returns, the token
        is left to the next in line, so ``try_acquire()`` right after may
        still find someone ahead.
        """
        pacer = self._pacer
        turn = pacer.join()
        try:
            await pacer.wait(turn)
        finally:
            pacer.leave(turn)

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate}, per={self.per}, burst={self.burst})"


def pacer_of(limiter: RateLimiter) -> Pacer:
    """The schedule behind ``limiter``, for the executor's gates."""
    # The one reader of a RateLimiter's internals from outside the class:
    # jobs keep the pacer itself, so their starts don't go through the
    # public wrapper.
    return limiter._pacer  # pyright: ignore[reportPrivateUsage]


class Turn:
    """A place in a `Pacer`'s line."""

    __slots__ = ("event", "since")

    def __init__(self, since: float) -> None:
        #: When its owner started waiting: no start counts from earlier.
        self.since = since
        self.event: anyio.Event | None = None


class Pacer:
    """The schedule of one `RateLimiter`: the bucket and the line."""

    __slots__ = ("_catch_up", "_clock", "empty_at", "interval", "slack", "turns")

    def __init__(self, interval: float, burst: int) -> None:
        self.interval = interval
        # Slack the bucket allows ahead of the steady pace.
        self.slack = (burst - 1) * interval
        #: The theoretical time at which the bucket is next empty.
        self.empty_at = -math.inf
        self.turns: deque[Turn] = deque()
        # Both known once the limiter is first used, on its event loop.
        self._clock: Callable[[], float] | None = None
        self._catch_up = 0.0

    def now(self) -> float:
        """The event loop's time (``_compat.clock``)."""
        clock = self._clock
        if clock is None:
            clock = self._bind()
        return clock()

    def _bind(self) -> Callable[[], float]:
        """First use: take the clock and timers of the running loop, whose
        limiter this is from now on. (Finding the loop's clock on every
        reading cost 7 % of a rate-limited job: workload a with
        ``RateLimiter(10**9)``, 72.2k -> 67.3k instructions per item on
        asyncio, 101.9k -> 93.3k on trio; callgrind.)"""
        late, tick = _compat.timer_resolution()
        self._catch_up = 2 * late + tick
        clock = self._clock = _compat.clock()
        return clock

    def catch_up(self) -> float:
        """How long ago a start may count from (see the module docstring):
        two late timers and a clock tick; zero in virtual time."""
        if self._clock is None:
            self._bind()
        return self._catch_up

    def due_in(self, now: float) -> float:
        """Seconds until a token is available (<= 0: available now)."""
        wait = self.empty_at - self.slack - now
        # Float sums of the interval drift by ulps; don't let that cost a
        # token of the burst.
        return 0.0 if wait <= self.interval * 1e-9 else wait

    def ready(self) -> bool:
        """Is a token there now, with nobody waiting for it?"""
        return not self.turns and self.due_in(self.now()) <= 0

    def try_take(self) -> bool:
        if self.turns:
            return False
        now = self.now()
        if self.due_in(now) > 0:
            return False
        # A start right after others counts from when it fell due, as a
        # waiting one does: jobs that come one by one (a map's read-ahead)
        # catch up the starts a late timer held back too (100,000/s on
        # whole-millisecond timers: 0.91 -> 1.00 of the rate, virtual time).
        # After a quiet spell it counts from now.
        empty_at = self.empty_at
        if empty_at < now - self._catch_up:  # known: now() bound the clock
            empty_at = now
        self.empty_at = empty_at + self.interval
        return True

    async def acquire(self) -> None:
        """Wait for a turn and a token, then take it."""
        if self.try_take():
            # A start slot cannot be given back: don't let a cancellation
            # at this checkpoint waste it.
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return
        turn = self.join()
        try:
            await self.wait(turn)
            self.take(turn)
        finally:
            self.leave(turn)

    def join(self, since: float | None = None) -> Turn:
        turn = Turn(self.now() if since is None else since)
        self.turns.append(turn)
        return turn

    async def wait(self, turn: Turn) -> None:
        """Return once ``turn`` is first in line and a token is there."""
        turns = self.turns
        while turns[0] is not turn:
            turn.event = event = anyio.Event()
            await event.wait()
        turn.event = None
        late, tick = _compat.timer_resolution()
        # Within half a tick of the clock counts as now: it can't tell.
        # Nothing to wait for but the clock: time itself refills the bucket.
        while (wait := self.due_in(self.now())) > tick / 2:  # noqa: ASYNC110
            # A timer can't fire sooner than the loop's resolution; asking
            # for less only makes the loop spin.
            await anyio.sleep(max(wait, late, tick))

    def take(self, turn: Turn) -> None:
        """Take the token ``turn`` waited for, counted at the time it fell
        due if that was at most `catch_up` ago (see the module
        docstring), and send the turn to the back of the line."""
        now = self.now()
        due = self.empty_at - self.slack
        start = max(due, turn.since, now - self.catch_up())
        self.empty_at = max(self.empty_at, start) + self.interval
        turns = self.turns
        if len(turns) > 1 and turns[0] is turn:
            turns.rotate(-1)
            self._wake_first()

    def leave(self, turn: Turn) -> None:
        turns = self.turns
        if turns and turns[0] is turn:
            turns.popleft()
            self._wake_first()
        elif turn in turns:
            turns.remove(turn)

    def _wake_first(self) -> None:
        if self.turns:
            event = self.turns[0].event
            if event is not None:
                event.set()


class _RateGate(Gate):
    """A rate limit: a token is a start slot; nothing to give back."""

    releasable = False

    def try_take(self, limiter: Any, job: Job) -> bool:
        return bool(limiter.try_take())

    def ready(self, limiter: Any) -> bool:
        return bool(limiter.ready())

    def give_back(self, limiter: Any, job: Job) -> None:
        pass

    def new_line(self, limiter: Any, pool: Pool) -> WaitingLine:
        return RateLine(limiter, self, pool)


_RATE_GATE = _RateGate()


def rate_gate() -> Gate:
    return _RATE_GATE


async def acquire_all(pacers: tuple[Pacer, ...]) -> None:
    """Take one token of each of ``pacers`` at the same moment.

    Each is waited for holding a place in its line, never a token: a token
    taken while the next limiter is waited for would be spent then but used
    later, together with starts that came after it, which breaks the rule
    (the model test found two starts at one instant under
    ``RateLimiter(1000)``). While this waits first in a line, nobody else
    takes that line's tokens, so those it has waited for stay ready.
    """
    if len(pacers) == 1:
        await pacers[0].acquire()
        return
    turns = [pacer.join() for pacer in pacers]
    try:
        for pacer, turn in zip(pacers, turns, strict=True):
            await pacer.wait(turn)
        for pacer, turn in zip(pacers, turns, strict=True):
            pacer.take(turn)
        # As acquire(): a start slot cannot be given back, so a
        # cancellation here must not waste it.
        await anyio.lowlevel.cancel_shielded_checkpoint()
    finally:
        for pacer, turn in zip(pacers, turns, strict=True):
            pacer.leave(turn)


class RateLine(WaitingLine):
    """An executor's line at a rate limit: it keeps one turn in the
    limiter's line while it has jobs, and takes a start for its oldest job
    when the turn comes and a worker slot is free."""

    def __init__(self, limiter: Any, gate: Gate, pool: Pool) -> None:
        super().__init__(limiter, gate, pool)
        self.pacer: Pacer = limiter
        self.turn: Turn | None = None

    async def wait_for_token(self, job: Job) -> bool:
        if self.turn is None:
            self.turn = self.pacer.join()
        await self.pacer.wait(self.turn)
        if job.state >= FINISHED or not self.pool.has_free_slot():
            # Step aside rather than make everyone behind us wait.
            self.close()
            return False
        return True

    def claim(self, job: Job) -> None:
        assert self.turn is not None
        self.pacer.take(self.turn)

    def decline(self, job: Job) -> None:
        self.close()

    def close(self) -> None:
        if self.turn is not None:
            self.pacer.leave(self.turn)
            self.turn = None
