"""A child process for ``test_pipeline_kill.py``: a 3-stage journaled pipeline.

Usage::

    python _pipeline_child.py JOURNAL LOG BACKEND ITEMS KILL_AT SEED

Every stage call first appends ``"<stage> <item>\\n"`` to LOG with one
``write`` (so the line survives a SIGKILL that follows), then works for a
little while. With ``KILL_AT`` > 0 the process SIGKILLs itself right after
logging its ``KILL_AT``-th call, while other calls are in flight in every
stage. Exit status 0 means the pipeline finished.
"""

from __future__ import annotations

import os
import random
import signal
import sys

import anyio

from antflow.pipeline import Pipeline, Stage

#: (name, workers); the kill test reads these to compute each stage's bound.
STAGES = (("upload", 4), ("poll", 3), ("save", 2))


def main() -> None:
    journal, log, backend, items, kill_at, seed = sys.argv[1:]
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    rng = random.Random(int(seed))
    calls = 0

    def stage(name: str) -> object:
        async def call(value: object) -> object:
            nonlocal calls
            item = value if isinstance(value, int) else value[0]  # type: ignore[index]
            os.write(fd, f"{name} {item}\n".encode())
            calls += 1
            if calls == int(kill_at):
                os.kill(os.getpid(), signal.SIGKILL)
            await anyio.sleep(rng.uniform(0, 0.003))
            return (item, name)

        call.__name__ = name
        return call

    pipeline = Pipeline(
        *(Stage(name, stage(name), workers=workers) for name, workers in STAGES),  # type: ignore[arg-type]
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
