"""antflow.otel: OpenTelemetry spans and metrics from task events.

Rules pinned here, from docs/observability.md, "OpenTelemetry", checked
with the real SDK's in-memory span exporter and metric reader:

* A span per job, child of the span current at ``submit``/``map``; a span per
  attempt under it, current while the attempt runs (spans the task opens
  are its children); attributes function, attempt, outcome, limiter wait.
* Metrics: jobs queued and running, wait time, run time, retries, failures.
* A task sees its submitter's current span without any hook: it runs in a
  copy of the submitter's context (docs/semantics.md, "Context variables").

Skipped where opentelemetry-sdk is not installed (``antflow[otel]`` is
optional, and the SDK is a test dependency only).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _strategies import Boom, us

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

from antflow import AsyncExecutor
from antflow.otel import OpenTelemetryHook

pytestmark = pytest.mark.anyio


class Telemetry:
    """An SDK tracer and meter provider with in-memory exporters."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer = self.tracer_provider.get_tracer("test")
        self.hook = OpenTelemetryHook(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == name]

    def metrics(self) -> dict[str, list[Any]]:
        """Metric name -> its data points, now."""
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = list(metric.data.data_points)
        return found

    def value(self, name: str) -> float:
        points = self.metrics().get(name, [])
        return sum(p.value for p in points)

    def count(self, name: str) -> int:
        return sum(p.count for p in self.metrics().get(name, []))


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    t.tracer_provider.shutdown()
    t.meter_provider.shutdown()


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    context = span.context
    assert context is not None
    return context.span_id


async def test_job_and_attempt_spans_nest_under_the_submitter(
    telemetry: Telemetry,
) -> None:
    calls = 0

    async def fetch(x: int) -> int:
        nonlocal calls
        calls += 1
        with telemetry.tracer.start_as_current_span("inside"):
            await anyio.lowlevel.checkpoint()
        if calls == 1:
            raise Boom(x)
        return x

    async with AsyncExecutor(2, on_event=telemetry.hook) as ex:
        with telemetry.tracer.start_as_current_span("request"):
            assert await ex.submit(fetch, 5, retries=1, retry_delay=0) == 5
    (request,) = telemetry.named("request")
    (job,) = telemetry.named(
        "test_job_and_attempt_spans_nest_under_the_submitter.<locals>.fetch"
    )
    first, second = sorted(telemetry.named("attempt"), key=lambda s: s.start_time or 0)
    inside = telemetry.named("inside")
    assert parent_of(job) == span_id(request)
    assert parent_of(first) == parent_of(second) == span_id(job)
    assert sorted(parent_of(s) for s in inside) == sorted(  # type: ignore[type-var]
        [span_id(first), span_id(second)]
    )
    assert job.context is not None and request.context is not None
    assert job.context.trace_id == request.context.trace_id
    assert first.attributes is not None and second.attributes is not None
    assert dict(first.attributes) == {
        "antflow.function": job.name,
        "antflow.attempt": 1,
        "antflow.limiter_wait": 0.0,
        "antflow.outcome": "retried",
    }
    assert first.status.status_code == StatusCode.ERROR
    assert [e.name for e in first.events] == ["exception"]
    assert second.attributes["antflow.outcome"] == "succeeded"
    assert second.attributes["antflow.attempt"] == 2
    assert second.status.status_code == StatusCode.UNSET
    assert job.attributes is not None
    assert job.attributes["antflow.outcome"] == "succeeded"
    assert job.attributes["antflow.attempts"] == 2
    assert job.attributes["antflow.job"] == 1


@pytest.mark.virtual_time
async def test_timeouts_failures_and_limiter_wait(telemetry: Telemetry) -> None:
    async def stuck(x: int) -> None:
        await anyio.sleep(10 if x == 0 else 1)

    limiter = anyio.CapacityLimiter(1)
    async with AsyncExecutor(2, on_event=telemetry.hook) as ex:
        slow = ex.submit(stuck, 0, semaphore=limiter, task_timeout=3)
        waits = ex.submit(stuck, 1, semaphore=limiter)
        with pytest.raises(TimeoutError):
            await slow
        await waits
    attempts = {
        s.attributes["antflow.attempt"] if s.attributes else 0: s
        for s in telemetry.named("attempt")
    }
    outcomes = sorted(
        (s.attributes or {}).get("antflow.outcome", "")
        for s in telemetry.named("attempt")
    )
    assert outcomes == ["succeeded", "timed_out"]
    waited = [
        us(float((s.attributes or {})["antflow.limiter_wait"]))
        for s in telemetry.named("attempt")
    ]
    assert sorted(waited) == [0, 3_000_000]
    assert len(attempts) == 1  # both were first attempts
    jobs = [s for s in telemetry.spans() if s.name.endswith("stuck")]
    failed = [s for s in jobs if s.status.status_code == StatusCode.ERROR]
    assert (
        len(failed) == 1 and (failed[0].attributes or {})["antflow.outcome"] == "failed"
    )
    assert telemetry.value("antflow.job.failures") == 1
    assert telemetry.count("antflow.job.wait_time") == 2
    assert telemetry.count("antflow.job.run_time") == 2
    run_time = sum(p.sum for p in telemetry.metrics()["antflow.job.run_time"])
    wait_time = sum(p.sum for p in telemetry.metrics()["antflow.job.wait_time"])
    assert (us(run_time), us(wait_time)) == (4_000_000, 3_000_000)


async def test_queued_and_running_follow_the_jobs(telemetry: Telemetry) -> None:
    async with AsyncExecutor(2, on_event=telemetry.hook) as ex:
        futures = [ex.submit(anyio.sleep_forever) for _ in range(5)]
        await anyio.wait_all_tasks_blocked()
        assert telemetry.value("antflow.jobs.running") == 2
        assert telemetry.value("antflow.jobs.queued") == 3
        futures[4].cancel()  # queued: never runs
        futures[0].cancel()  # running: the next queued job starts
        await anyio.wait_all_tasks_blocked()
        assert telemetry.value("antflow.jobs.running") == 2
        assert telemetry.value("antflow.jobs.queued") == 1
        await ex.shutdown(cancel_futures=True)
    assert telemetry.value("antflow.jobs.running") == 0
    assert telemetry.value("antflow.jobs.queued") == 0
    outcomes = [(s.attributes or {}).get("antflow.outcome") for s in telemetry.spans()]
    assert outcomes.count("cancelled") == 5 + 3  # five jobs, three attempts


async def test_retries_are_counted_and_map_items_have_positions(
    telemetry: Telemetry,
) -> None:
    tries: dict[int, int] = {}

    async def flaky(x: int) -> int:
        tries[x] = tries.get(x, 0) + 1
        await anyio.lowlevel.checkpoint()
        if tries[x] <= x:
            raise Boom(x)
        return x

    async with AsyncExecutor(3, on_event=telemetry.hook) as ex:
        assert await ex.map(flaky, range(4), retries=3, retry_delay=0) == [0, 1, 2, 3]
    assert telemetry.value("antflow.job.retries") == 0 + 1 + 2 + 3
    jobs = [s for s in telemetry.spans() if s.name.endswith("flaky")]
    assert sorted((s.attributes or {})["antflow.position"] for s in jobs) == [
        0,
        1,
        2,
        3,
    ]  # type: ignore[type-var]
    points = telemetry.metrics()["antflow.job.retries"]
    assert [dict(p.attributes) for p in points] == [{"antflow.function": jobs[0].name}]


async def test_a_task_sees_its_submitters_span_without_any_hook(
    telemetry: Telemetry,
) -> None:
    seen: dict[str, Any] = {}

    async def task(label: str) -> None:
        await anyio.lowlevel.checkpoint()
        seen[label] = trace.get_current_span()

    async with AsyncExecutor(2) as ex:
        with telemetry.tracer.start_as_current_span("a") as a:
            first = ex.submit(task, "submit")
        with telemetry.tracer.start_as_current_span("b") as b:
            await ex.map(task, ["map"])
        await first
    assert seen == {"submit": a, "map": b}
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_the_hook_on_one_call_only(telemetry: Telemetry) -> None:
    async def quick() -> None:
        await anyio.lowlevel.checkpoint()

    async with AsyncExecutor(2) as ex:
        await ex.submit(quick)
        await ex.submit(quick, on_event=telemetry.hook)
    jobs = [s for s in telemetry.spans() if s.name.endswith("quick")]
    assert len(jobs) == 1 and (jobs[0].attributes or {})["antflow.job"] == 2
