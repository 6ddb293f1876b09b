"""The demo behind ``python -m antflow``: simulated requests to a few hosts.

What it shows, on asyncio and on trio with the same code:

* a per-host ``anyio.CapacityLimiter`` passed as ``semaphore=``: a request
  waiting for its host holds no worker, so the other hosts keep every worker
  busy;
* retries with back-off for transient errors (``retry_on`` picks which);
* ``task_timeout``: an attempt that hangs is cut off and retried;
* cancellation: one host is down, and the first refused connection cancels
  every other request to it, queued or running;
* progress from ``AsyncExecutor.statistics()``, and a closing summary.

The scenario is drawn from ``--seed`` before anything runs, so the same seed
gives the same outcome on every backend and every run; only elapsed times
differ. Uses the public API only.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import anyio

from antflow import AsyncExecutor, AsyncFuture, ExecutorStatistics, __version__

HOSTS = ("api-a", "api-b", "api-c", "api-d")
HOST_WEIGHTS = (0.3, 0.3, 0.3, 0.1)
DOWN_HOST = "api-d"  # refuses every connection
PER_HOST = 3  # requests in flight per host at most
# A host that is down is probed one request at a time, so when the probe is
# refused every other request to it is still queued and is cancelled before
# it starts. (Requests already running when the refusal is seen would race
# it: cancelled on one backend, refused on another.)
DOWN_HOST_LIMIT = 1
# Seconds per attempt: far above the longest answer (0.09 s), so that a slow
# or loaded machine still cuts off exactly the attempts planned to hang.
TASK_TIMEOUT = 0.5
RETRIES = 2
RETRY_DELAY = 0.05  # back-off: 0.05 s, then 0.1 s

OK, RESET, HANG, BAD, REFUSED = "ok", "reset", "hang", "bad", "refused"


@dataclass(frozen=True)
class Attempt:
    """What one attempt of a request will do: take ``seconds``, then end as
    ``kind`` (``ok`` returns, the others raise)."""

    kind: str
    seconds: float


@dataclass(frozen=True)
class Request:
    """One simulated request and the fate of each attempt it will make."""

    number: int
    host: str
    attempts: tuple[Attempt, ...]


def make_plan(items: int, seed: int) -> list[Request]:
    """Draw the whole scenario from ``seed``: hosts, durations, failures."""
    rng = random.Random(seed)
    plan: list[Request] = []
    for number in range(items):
        host = rng.choices(HOSTS, HOST_WEIGHTS)[0]
        attempts: list[Attempt] = []
        if host == DOWN_HOST:
            attempts.append(Attempt(REFUSED, 0.01))
        else:
            fate = rng.random()
            for _ in range(RETRIES + 1):
                roll = rng.random()
                if fate < 0.02:  # a broken endpoint: resets every time
                    attempts.append(Attempt(RESET, rng.uniform(0.005, 0.03)))
                    continue
                if fate < 0.035:  # a malformed answer: retrying cannot help
                    attempts.append(Attempt(BAD, rng.uniform(0.01, 0.05)))
                    break
                if roll < 0.07:  # a slow outlier: hangs past the timeout
                    attempts.append(Attempt(HANG, rng.uniform(1.0, 3.0)))
                elif roll < 0.15:  # a transient reset
                    attempts.append(Attempt(RESET, rng.uniform(0.005, 0.03)))
                else:
                    attempts.append(Attempt(OK, rng.uniform(0.02, 0.09)))
                    break
        plan.append(Request(number, host, tuple(attempts)))
    return plan


def sequential_seconds(plan: Sequence[Request]) -> float:
    """How long the same work takes one request at a time, with the same
    timeout, back-off and "stop calling a host that is down" rule."""
    total = 0.0
    down_seen = False
    for request in plan:
        if request.host == DOWN_HOST:
            if down_seen:
                continue
            down_seen = True
        for attempt_number, attempt in enumerate(request.attempts):
            if attempt_number:
                total += RETRY_DELAY * 2 ** (attempt_number - 1)
            total += min(attempt.seconds, TASK_TIMEOUT)
    return total


def is_transient(error: BaseException) -> bool:
    """Retry connection trouble and timeouts; a refused connection means the
    host is down, and a bad answer will not get better."""
    return isinstance(error, OSError) and not isinstance(error, ConnectionRefusedError)


class Service:
    """The simulated hosts: each call plays the next planned attempt."""

    def __init__(self) -> None:
        self.calls: Counter[int] = Counter()
        self.timeouts = 0

    async def fetch(self, request: Request) -> int:
        attempt = request.attempts[self.calls[request.number]]
        self.calls[request.number] += 1
        try:
            await anyio.sleep(attempt.seconds)
        except anyio.get_cancelled_exc_class():
            if attempt.kind == HANG:
                self.timeouts += 1  # task_timeout cut this attempt off
            raise
        if attempt.kind == RESET:
            raise ConnectionResetError(f"{request.host}: connection reset")
        if attempt.kind == HANG:  # pragma: no cover - task_timeout comes first
            raise TimeoutError(f"{request.host}: no answer")
        if attempt.kind == BAD:
            raise ValueError(f"{request.host}: malformed response")
        if attempt.kind == REFUSED:
            raise ConnectionRefusedError(f"{request.host}: connection refused")
        return request.number


class Progress:
    """One status line on stderr: redrawn in place on a terminal, a plain
    line every half second otherwise (logs and CI stay readable)."""

    WIDTH = 24

    def __init__(self, stream: TextIO, total: int) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        #: Seconds between two updates.
        self.interval = 0.1 if self._tty else 0.5
        self._total = total
        self._started = time.perf_counter()
        self._shown = 0  # width of the line on screen, to blank leftovers

    def line(self, stats: ExecutorStatistics) -> str:
        finished = stats.succeeded + stats.failed + stats.cancelled
        filled = self.WIDTH * finished // max(self._total, 1)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        return (
            f"[{bar}] {finished:>{len(str(self._total))}}/{self._total}"
            f"  ok {stats.succeeded}  failed {stats.failed}"
            f"  cancelled {stats.cancelled}  retries {stats.retries}"
            f"  running {stats.running}"
            f"  {time.perf_counter() - self._started:.1f} s"
        )

    def show(self, stats: ExecutorStatistics, final: bool = False) -> None:
        text = self.line(stats)
        if self._tty:
            self._stream.write("\r" + text.ljust(self._shown) + ("\n" if final else ""))
            self._shown = 0 if final else len(text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def say(self, message: str) -> None:
        """A message on a line of its own, above the status line."""
        if self._tty and self._shown:
            self._stream.write("\r" + " " * self._shown + "\r")
            self._shown = 0
        self._stream.write(message + "\n")
        self._stream.flush()


@dataclass(frozen=True)
class Outcome:
    """What one run of the scenario ended with."""

    backend: str
    done: int
    failed: int
    gave_up: int
    bad: int
    refused: int
    retried: int
    timeouts: int
    cancelled: int
    elapsed: float
    sequential: float

    def counts(self) -> tuple[int, ...]:
        return (
            self.done,
            self.failed,
            self.gave_up,
            self.bad,
            self.refused,
            self.retried,
            self.timeouts,
            self.cancelled,
        )


async def run_scenario(
    backend: str, plan: Sequence[Request], workers: int, err: TextIO
) -> Outcome:
    """Submit every request, show progress until all are final, and count."""
    service = Service()
    progress = Progress(err, len(plan))
    limiters = {
        host: anyio.CapacityLimiter(DOWN_HOST_LIMIT if host == DOWN_HOST else PER_HOST)
        for host in HOSTS
    }
    by_host: dict[str, list[AsyncFuture[int]]] = {host: [] for host in HOSTS}
    down: set[str] = set()

    def on_done(host: str) -> Callable[[AsyncFuture[int]], None]:
        def callback(future: AsyncFuture[int]) -> None:
            # A refused connection means the host is down: stop calling it.
            # Queued requests to it never start; running ones are cancelled.
            if host in down or future.cancelled():
                return
            if isinstance(future.exception(), ConnectionRefusedError):
                down.add(host)
                cancelled = sum(f.cancel() for f in by_host[host] if not f.done())
                progress.say(
                    f"{host} refused a connection: cancelled its "
                    f"{cancelled} other requests"
                )

        return callback

    started = time.perf_counter()
    futures: list[AsyncFuture[int]] = []
    executor = AsyncExecutor(max_workers=workers)
    async with executor:
        for request in plan:
            future = executor.submit(
                service.fetch,
                request,
                semaphore=limiters[request.host],
                retries=RETRIES,
                retry_delay=RETRY_DELAY,
                retry_on=is_transient,
                task_timeout=TASK_TIMEOUT,
            )
            future.add_done_callback(on_done(request.host))
            by_host[request.host].append(future)
            futures.append(future)
        while True:
            try:
                await executor.wait(futures, timeout=progress.interval)
                break
            except TimeoutError:  # not all done yet: time to redraw
                progress.show(executor.statistics())
    stats = executor.statistics()
    progress.show(stats, final=True)
    elapsed = time.perf_counter() - started

    reasons: Counter[str] = Counter()
    for future in futures:
        if future.done() and not future.cancelled():
            error = future.exception()
            if isinstance(error, ConnectionRefusedError):
                reasons["refused"] += 1
            elif isinstance(error, ValueError):
                reasons["bad"] += 1
            elif error is not None:
                reasons["gave up"] += 1
    return Outcome(
        backend=backend,
        done=stats.succeeded,
        failed=stats.failed,
        gave_up=reasons["gave up"],
        bad=reasons["bad"],
        refused=reasons["refused"],
        retried=stats.retries,
        timeouts=service.timeouts,
        cancelled=stats.cancelled,
        elapsed=elapsed,
        sequential=sequential_seconds(plan),
    )


def summary(outcome: Outcome) -> str:
    """The closing summary of one run, as printed on stdout."""
    failed_why = (
        f"{outcome.gave_up} gave up after {RETRIES + 1} attempts, "
        f"{outcome.bad} malformed (not retried), {outcome.refused} refused"
    )
    speedup = outcome.sequential / outcome.elapsed if outcome.elapsed else 0.0
    rows = [
        ("done", str(outcome.done), "returned a result"),
        ("failed", str(outcome.failed), failed_why),
        (
            "retried",
            str(outcome.retried),
            f"attempts beyond the first; {outcome.timeouts} attempts timed out",
        ),
        (
            "cancelled",
            str(outcome.cancelled),
            f"requests to {DOWN_HOST}, cancelled once it refused a connection",
        ),
        (
            "elapsed",
            f"{outcome.elapsed:.2f} s",
            f"one at a time: {outcome.sequential:.2f} s ({speedup:.1f}x faster)",
        ),
    ]
    lines = [f"Summary ({outcome.backend})"]
    lines += [f"  {name:<10} {value:>7}  {note}" for name, value, note in rows]
    return "\n".join(lines)


def _available(backend: str) -> bool:
    module = "uvloop" if backend == "uvloop" else backend
    return importlib.util.find_spec(module) is not None


def _run(backend: str, plan: Sequence[Request], workers: int, err: TextIO) -> Outcome:
    options: dict[str, Any] = {}
    name = backend
    if backend == "uvloop":
        name, options = "asyncio", {"use_uvloop": True}
    return anyio.run(
        run_scenario, backend, plan, workers, err, backend=name, backend_options=options
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m antflow",
        description=(
            "Simulated requests to four hosts through one antflow executor: "
            "per-host limits, retries, timeouts, cancellation, progress."
        ),
    )
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio", "uvloop", "both"),
        default="both",
        help="event loop to run on (default: asyncio, then trio)",
    )
    parser.add_argument(
        "--items",
        type=int,
        default=120,
        help="number of requests (default: 120)",
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="scenario seed (default: 1)"
    )
    parser.add_argument(
        "--workers", type=int, default=12, help="max_workers (default: 12)"
    )
    args = parser.parse_args(argv)
    if args.items < 1:
        parser.error("--items must be at least 1")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.backend in ("trio", "uvloop") and not _available(args.backend):
        extra = "trio" if args.backend == "trio" else "uvloop"
        parser.error(
            f"{args.backend} is not installed; install it with "
            f"pip install 'antflow[{extra}]'"
        )
    return args


def main(
    argv: Sequence[str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the demo; return the process exit code."""
    args = parse_args(argv)
    stdout = sys.stdout if out is None else out
    stderr = sys.stderr if err is None else err
    backends = [args.backend]
    if args.backend == "both":
        backends = ["asyncio", "trio"]
        if not _available("trio"):
            print(
                "trio is not installed (pip install 'antflow[trio]'): "
                "running on asyncio only",
                file=stderr,
            )
            backends = ["asyncio"]

    plan = make_plan(args.items, args.seed)
    hosts = Counter(request.host for request in plan)
    counts = ", ".join(f"{host} {hosts[host]}" for host in HOSTS)
    print(
        f"antflow {__version__} demo: {args.items} simulated requests "
        f"to {len(HOSTS)} hosts (seed {args.seed})\n"
        f"  requests per host: {counts}; {DOWN_HOST} is down\n"
        f"  {args.workers} workers; at most {PER_HOST} requests at once per host\n"
        f"  {TASK_TIMEOUT} s timeout per attempt; up to {RETRIES} retries on "
        f"resets and timeouts, back-off {RETRY_DELAY} s doubling",
        file=stdout,
    )
    outcomes: list[Outcome] = []
    for backend in backends:
        print(f"\n== {backend} ==", file=stdout, flush=True)
        try:
            outcome = _run(backend, plan, args.workers, stderr)
        except KeyboardInterrupt:
            # The executor has cancelled its work and exited by now.
            print("\ninterrupted", file=stderr)
            return 130
        outcomes.append(outcome)
        print(summary(outcome), file=stdout, flush=True)

    if len(outcomes) > 1:
        times = ", ".join(f"{o.backend} {o.elapsed:.2f} s" for o in outcomes)
        if len({o.counts() for o in outcomes}) == 1:
            print(f"\nSame outcome on every backend ({times}).", file=stdout)
        else:  # pragma: no cover - would be a bug worth reporting
            print(
                f"\nThe backends disagree ({times}): please report this.", file=stdout
            )
            return 1
    return 0
