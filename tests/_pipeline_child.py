"""A child process for ``faults/test_pipeline_kill.py``: a 3-stage journaled
pipeline.

Usage::

    python _pipeline_child.py JOURNAL LOG BACKEND ITEMS KILL_AT SEED

Every stage call appends ``"<stage> <item> start\\n"`` to LOG as it starts
and ``"<stage> <item> end\\n"`` as it returns, each with one ``write`` (so a
line survives a SIGKILL that follows it), and works for a little while in
between. Each stage checks that its input is what the stage before it
returned for that item; a wrong input fails the call, which sets the item
aside, and the test sees it in the journal. With ``KILL_AT`` > 0 the process
SIGKILLs itself right after logging the start of its ``KILL_AT``-th call,
while other calls are in flight in every stage. Exit status 0 means the
pipeline finished.
"""

from __future__ import annotations

import faulthandler
import os
import random
import signal
import sys
from collections.abc import Awaitable, Callable

import anyio

from antflow.pipeline import Pipeline, Stage

#: (name, workers); the kill test reads these to compute each stage's bound.
STAGES = (("upload", 4), ("poll", 3), ("save", 2))


def main() -> None:
    # Ctrl-C as in a terminal, whatever the test runner's own disposition: a
    # job started in the background by a non-interactive shell ignores
    # SIGINT, and its children inherit that.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # A test that gives up waiting for us asks for our stack (see
    # test_pipeline_kill.finish) before it kills us.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    journal, log, backend, items, kill_at, seed = sys.argv[1:]
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    rng = random.Random(int(seed))
    calls = 0

    def stage(index: int) -> Callable[[object], Awaitable[tuple[int, str]]]:
        name = STAGES[index][0]
        before = STAGES[index - 1][0] if index else None

        async def call(value: object) -> tuple[int, str]:
            nonlocal calls
            if before is None:
                assert isinstance(value, int), value
                item = value
            else:
                assert isinstance(value, tuple), value
                item, made_by = value
                if made_by != before:
                    raise ValueError(f"{name} got {value!r}, not {before}'s output")
            os.write(fd, f"{name} {item} start\n".encode())
            calls += 1
            if calls == int(kill_at):
                os.kill(os.getpid(), signal.SIGKILL)
            await anyio.sleep(rng.uniform(0, 0.003))
            os.write(fd, f"{name} {item} end\n".encode())
            return (item, name)

        call.__name__ = name
        return call

    pipeline = Pipeline(
        *(
            Stage(name, stage(index), workers=workers)
            for index, (name, workers) in enumerate(STAGES)
        ),
        journal=journal,
    )

    async def run() -> None:
        async with pipeline.stream(range(int(items)), ordered=False) as results:
            async for result in results:
                assert result.ok, result

    if backend == "uvloop":
        anyio.run(run, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(run, backend=backend)


if __name__ == "__main__":
    main()
