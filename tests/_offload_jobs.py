"""Job functions that worker processes run in the offloading tests.

They live in a module of their own (not in a test module) so that a worker
process imports only this, and the standard pickle can send them by
reference. Functions that must tell the test "I have started" write a marker
file that the test waits for; that is the one channel a worker process and
the test share without extra machinery.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn


class ParseError(Exception):
    """A plain exception: it pickles and unpickles as it is."""


class StubbornError(Exception):
    """Unpickles with too few arguments, like many exceptions in the wild."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code {code}: {detail}")
        self.code = code


def _refuse(*args: object) -> NoReturn:
    raise TypeError("this exception cannot be rebuilt")


class RefusingError(Exception):
    """Never unpickles, whoever pickles it (Dask installs tblib's exception
    pickling process-wide, which rebuilds a `StubbornError` fine)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse, self.args)


def square(x: int) -> int:
    return x * x


def scale(x: int, *, factor: int = 2) -> int:
    return x * factor


def pid() -> int:
    return os.getpid()


def fail(message: str) -> NoReturn:
    raise ParseError(message)


def fail_stubbornly() -> NoReturn:
    raise StubbornError(7, "no")


def fail_refusingly() -> NoReturn:
    raise RefusingError("never coming back")


def exit_worker() -> NoReturn:
    sys.exit(3)


def crash_worker() -> NoReturn:
    os._exit(9)


def unpicklable_result() -> Any:
    import threading

    return threading.Lock()


def talk(text: str) -> str:
    print(text)
    print(f"{text} (to stderr)", file=sys.stderr)
    return text


async def async_square(x: int) -> tuple[int, str]:
    import anyio
    from anyio.lowlevel import current_token

    await anyio.sleep(0.001)
    module = current_token().backend_class.__module__
    return x * x, "trio" if "trio" in module else "asyncio"


def block_forever(marker: str) -> NoReturn:
    """Say we started (our pid in ``marker``), then never finish."""
    Path(marker + ".tmp").write_text(str(os.getpid()))
    os.replace(marker + ".tmp", marker)
    while True:
        time.sleep(1)


def fail_until(counter: str, failures: int) -> int:
    """Fail ``failures`` times (counted in a file, across processes), then succeed."""
    path = Path(counter)
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts <= failures:
        raise ParseError(f"attempt {attempts}")
    return attempts


def crash_until(counter: str, crashes: int) -> int:
    """Kill our own process ``crashes`` times, then succeed."""
    path = Path(counter)
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts <= crashes:
        os._exit(1)
    return attempts


_initialized: list[str] = []


def initialize(log: str, tag: str) -> None:
    _initialized.append(tag)
    with open(log, "a") as file:
        file.write(f"{os.getpid()}\n")


def initialized() -> list[str]:
    return list(_initialized)


def failing_initializer() -> None:
    raise ParseError("initializer")


def hold(started: str, release: str, finished: str, limit: float = 30.0) -> str:
    """Say we started, wait until ``release`` exists (at most ``limit`` s), say we finished.

    For engines that cannot stop a running task (Dask): the test releases
    the job when it is done with it, so no worker stays busy for long.
    """
    Path(started).touch()
    deadline = time.monotonic() + limit
    while not Path(release).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    Path(finished).touch()
    return "finished"


def nap(seconds: float) -> tuple[float, float]:
    began = time.monotonic()
    time.sleep(seconds)
    return began, time.monotonic()


def assert_paced(starts: list[float], rate: float) -> None:
    """The RateLimiter rule with burst 1: over any interval of t seconds at
    most ``1 + rate * t`` starts (docs/semantics.md, "RateLimiter"). 2 ms of
    slack: uvloop's clock counts milliseconds, and the same section allows 2 ms
    worth of starts on a real event loop."""
    starts = sorted(starts)
    for i, early in enumerate(starts):
        for j in range(i + 1, len(starts)):
            assert starts[j] - early >= (j - i - 1) / rate - 0.002, starts
