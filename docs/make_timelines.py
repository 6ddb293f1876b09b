"""Draw the Observability page's timelines (docs/images/timeline-*.png).

Each picture is a real antflow run, recorded with ``antflow.timeline.
Recorder`` and drawn with ``plot_timeline``. The runs use trio's mock clock,
whose time jumps forward whenever every task waits: the sleeps that stand
in for network calls cost no wall time, and the pictures come out the same
on every run. ``nox -s docs`` runs this before building the site; by hand:
``python docs/make_timelines.py [OUT_DIR]``.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import anyio
from trio.testing import MockClock

from antflow import AsyncExecutor
from antflow.timeline import Recorder, plot_timeline

OUT = Path(__file__).resolve().parent / "images"


def run(main: Any) -> None:
    anyio.run(
        main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)}
    )


def requests(seed: int) -> list[tuple[str, float]]:
    """(host, seconds): six slow requests to host a, then 18 quick ones to b."""
    rng = random.Random(seed)
    return [("a", round(rng.uniform(0.8, 1.2), 2)) for _ in range(6)] + [
        ("b", round(rng.uniform(0.3, 0.7), 2)) for _ in range(18)
    ]


def head_of_line(out: Path) -> None:
    """A limit of one request at a time for host a. Entered inside the task,
    it keeps the workers that picked host a's requests waiting; passed as
    ``semaphore=``, waiting for it holds no worker."""
    work = requests(1)

    for mode in ("inside", "semaphore"):
        recorder = Recorder()

        async def main(mode: str = mode, recorder: Recorder = recorder) -> None:
            limits = {"a": anyio.CapacityLimiter(1), "b": anyio.CapacityLimiter(100)}

            async def fetch_holding(host: str, seconds: float) -> None:
                async with limits[host]:
                    await anyio.sleep(seconds)

            async def fetch(host: str, seconds: float) -> None:
                await anyio.sleep(seconds)

            async with AsyncExecutor(4, on_event=recorder) as executor:
                for host, seconds in work:
                    if mode == "inside":
                        executor.submit(fetch_holding, host, seconds)
                    else:
                        executor.submit(fetch, host, seconds, semaphore=limits[host])

        run(main)
        title = (
            "async with limit: inside the task: workers wait for host a"
            if mode == "inside"
            else "semaphore=limit: jobs wait for host a without a worker"
        )
        save(
            plot_timeline(recorder.events, title=title),
            out / f"timeline-hol-{mode}.png",
        )


def per_host(out: Path) -> None:
    """Three hosts, two requests at a time each, eight workers."""
    recorder = Recorder()
    rng = random.Random(2)
    hosts = {name: anyio.CapacityLimiter(2) for name in ("api", "cdn", "db")}
    labels: dict[object, str] = {limiter: name for name, limiter in hosts.items()}

    async def fetch(seconds: float) -> None:
        await anyio.sleep(seconds)

    async def main() -> None:
        async with AsyncExecutor(8, on_event=recorder) as executor:
            for _ in range(24):
                host = rng.choice(["api", "api", "cdn", "db"])
                seconds = round(rng.uniform(0.3, 1.2), 2)
                executor.submit(fetch, seconds, semaphore=hosts[host])

    run(main)
    figure = plot_timeline(
        recorder.events,
        rows="limiter",
        labels=labels,
        title="semaphore= per host: two requests at a time each",
    )
    save(figure, out / "timeline-per-host.png")


def retries(out: Path) -> None:
    """Flaky calls with retries, back-off and a per-attempt timeout."""
    recorder = Recorder()
    rng = random.Random(3)
    plan = [(rng.random(), rng.random()) for _ in range(12)]

    async def flaky(index: int, attempt: list[int]) -> None:
        attempt[0] += 1
        fails, hangs = plan[index]
        if attempt[0] == 1 and hangs < 0.25:
            await anyio.sleep(10)  # past task_timeout
        await anyio.sleep(0.3 + fails / 2)
        if attempt[0] < 3 and fails < 0.5:
            raise ConnectionError("reset by peer")

    async def main() -> None:
        async with AsyncExecutor(4, on_event=recorder) as executor:
            for index in range(len(plan)):
                executor.submit(
                    flaky, index, [0], retries=3, retry_delay=0.5, task_timeout=2
                )

    run(main)
    title = "retries=3, retry_delay=0.5, task_timeout=2"
    save(plot_timeline(recorder.events, title=title), out / "timeline-retries.png")


def save(figure: Any, path: Path) -> None:
    # No software version in the file: the same run gives the same bytes.
    figure.savefig(path, dpi=110, metadata={"Software": None})
    print(f"wrote {path}")


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else OUT
    out.mkdir(parents=True, exist_ok=True)
    head_of_line(out)
    per_host(out)
    retries(out)


if __name__ == "__main__":
    main(sys.argv[1:])
