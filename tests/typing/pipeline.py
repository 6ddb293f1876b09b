"""Type-checked, never run: antflow.pipeline as a user's code sees it.

Lines marked ``type: ignore[...]`` must be errors (see ``api.py``).
"""

from __future__ import annotations

from typing import assert_type

import anyio

from antflow import RateLimiter
from antflow.events import Retrying
from antflow.pipeline import (
    Completed,
    Failed,
    Journal,
    JournalSummary,
    Pipeline,
    PipelineRun,
    PipelineStatistics,
    Stage,
    StageEvent,
    StageStatistics,
    StageTaskEvent,
)


async def fetch(url: str) -> bytes:
    return url.encode()


async def size(body: bytes) -> int:
    return len(body)


async def pipeline_api() -> None:
    stage = Stage(
        "fetch",
        fetch,
        size,
        workers=4,
        buffer=8,
        retries=2,
        retry_delay=0.5,
        task_timeout=10.0,
        semaphore=anyio.CapacityLimiter(2),
        rate_limit=RateLimiter(10),
    )
    assert_type(stage.capacity, int)
    Stage("batch", fetch, batch_size=10, batch_wait=0.5)
    Stage("split", fetch, fan_out=True)

    pipeline = Pipeline(stage, journal=Journal("run.journal"), key=lambda url: url)
    Pipeline(stage, journal="run.journal")

    results = await pipeline.run(["a", "b"], ordered=False)
    assert_type(results, list[Completed | Failed])

    def on_event(event: StageEvent) -> None:
        if event.kind == "set_aside":
            assert_type(event.error, BaseException | None)

    def on_task_event(tagged: StageTaskEvent) -> None:
        assert_type(tagged.stage, str)
        assert_type(tagged.function_index, int)
        if isinstance(tagged.event, Retrying):
            assert_type(tagged.event.delay, float)

    async def publish(tagged: StageTaskEvent) -> None:
        await anyio.sleep(0)

    await pipeline.run(["a"], on_task_event=[on_task_event, publish])
    pipeline.stream(["a"], on_task_event=(publish,))

    run = pipeline.stream(["a"], on_event=on_event, progress=True)
    assert_type(run, PipelineRun)
    async with run:
        async for result in run:
            if isinstance(result, Failed):
                assert_type(result.stage, str)
                assert_type(result.error, BaseException)
            else:
                assert_type(result, Completed)
    stats = run.statistics()
    assert_type(stats, PipelineStatistics)
    assert_type(stats.stages[0], StageStatistics)
    assert_type(Journal("run.journal").summary(), JournalSummary)

    # Misuse is a type error.
    Stage("s", fetch, workers="4")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Pipeline(fetch)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    pipeline.stream(["a"], on_task_event=3)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    pipeline.stream(["a"], ordered="yes")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
