"""OpenTelemetry traces and metrics from task events (``antflow[otel]``).

`OpenTelemetryHook` is an ``on_event`` hook. Only ``opentelemetry-api`` is
needed: without an SDK configured, its tracer and meter do nothing. Pass it
to an executor (``AsyncExecutor(on_event=OpenTelemetryHook())``) or to one
call; one hook may serve many executors.

Traces: a span per job, from `Queued` to its final event, whose parent is
the span current where ``submit`` (or ``map``) was called; and under it a
span per attempt, from `Started` to its end. The attempt span is made
current in the job's own context while the attempt runs (`Started` is
emitted there), so spans the task opens are its children. A failed job's
span, and each failed attempt's, has status ERROR and the exception
recorded.

Attributes: ``antflow.function``, ``antflow.job``, ``antflow.position`` (map
items), ``antflow.attempt`` and ``antflow.limiter_wait`` (seconds) on
attempts, ``antflow.outcome`` on both (``succeeded``, ``failed``,
``timed_out``, ``cancelled``; ``retried`` for an attempt that failed and
was retried), ``antflow.attempts`` on the job.

Metrics, each with the ``antflow.function`` attribute:

==============================  ==============  =====================================
name                            kind            what
==============================  ==============  =====================================
``antflow.jobs.queued``         up-down counter jobs made and not yet started
``antflow.jobs.running``        up-down counter jobs started and not yet final
``antflow.job.wait_time``       histogram (s)   from `Queued` to the first `Started`
``antflow.job.run_time``        histogram (s)   from the first `Started` to the end
``antflow.job.retries``         counter         `Retrying` events
``antflow.job.failures``        counter         jobs that ended `Failed`
==============================  ==============  =====================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode

from ._version import __version__
from .events import (
    Cancelled,
    Failed,
    FinalEvent,
    Queued,
    Retrying,
    Started,
    Succeeded,
    TaskEvent,
    TimedOut,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["OpenTelemetryHook"]


class _Job:
    """The spans of one job in flight."""

    __slots__ = ("attempt", "attempt_outcome", "span", "started")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.attempt: Span | None = None
        self.attempt_outcome = "failed"
        self.started = False


class OpenTelemetryHook:
    """An ``on_event`` hook that makes OpenTelemetry spans and metrics.

    Args:
        tracer_provider: Where spans go; default: the global provider
            (``opentelemetry.trace.set_tracer_provider``).
        meter_provider: Where metrics go; default: the global provider.

    It is a sync hook and must stay one: spans start and end at the moment
    each event happens. Not thread-safe, like the executors it serves.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(
            "antflow", __version__, tracer_provider=tracer_provider
        )
        meter = metrics.get_meter("antflow", __version__, meter_provider=meter_provider)
        self._queued = meter.create_up_down_counter(
            "antflow.jobs.queued", unit="{job}", description="Jobs not yet started"
        )
        self._running = meter.create_up_down_counter(
            "antflow.jobs.running", unit="{job}", description="Jobs started, not final"
        )
        self._wait_time = meter.create_histogram(
            "antflow.job.wait_time",
            unit="s",
            description="From queued to the first attempt's start",
        )
        self._run_time = meter.create_histogram(
            "antflow.job.run_time",
            unit="s",
            description="From the first attempt's start to the job's end",
        )
        self._retries = meter.create_counter(
            "antflow.job.retries", unit="{retry}", description="Attempts retried"
        )
        self._failures = meter.create_counter(
            "antflow.job.failures", unit="{job}", description="Jobs that failed"
        )
        self._jobs: dict[tuple[int, int], _Job] = {}

    def __call__(self, event: TaskEvent) -> None:
        key = (event.executor, event.job)
        labels = {"antflow.function": event.function}
        if isinstance(event, Queued):
            self._on_queued(key, event, labels)
            return
        job = self._jobs.get(key)
        if job is None:
            return  # queued before this hook was set up
        if isinstance(event, Started):
            self._on_started(job, event, labels)
        elif isinstance(event, TimedOut):
            job.attempt_outcome = "timed_out"
        elif isinstance(event, Retrying):
            self._retries.add(1, labels)
            if job.attempt is not None:
                outcome = (
                    "timed_out" if job.attempt_outcome == "timed_out" else "retried"
                )
                _end(job.attempt, outcome, event.error)
                job.attempt = None
        elif isinstance(event, FinalEvent):
            del self._jobs[key]
            self._on_final(job, event, labels)

    def _on_queued(
        self, key: tuple[int, int], event: Queued, labels: dict[str, Any]
    ) -> None:
        # Queued is emitted in the submitter's context: its current span is
        # the parent.
        attributes: dict[str, Any] = {**labels, "antflow.job": event.job}
        if event.position is not None:
            attributes["antflow.position"] = event.position
        span = self._tracer.start_span(event.function, attributes=attributes)
        self._jobs[key] = _Job(span)
        self._queued.add(1, labels)

    def _on_started(self, job: _Job, event: Started, labels: dict[str, Any]) -> None:
        if not job.started:
            job.started = True
            self._queued.add(-1, labels)
            self._running.add(1, labels)
            self._wait_time.record(event.waited, labels)
        attempt = self._tracer.start_span(
            "attempt",
            context=trace.set_span_in_context(job.span),
            attributes={
                **labels,
                "antflow.attempt": event.attempt,
                "antflow.limiter_wait": event.limiter_wait,
            },
        )
        job.attempt = attempt
        job.attempt_outcome = "failed"
        # Started is emitted in the job's own context: the attempt runs
        # with its span current. The context dies with the job, so the
        # token is never needed to detach.
        otel_context.attach(trace.set_span_in_context(attempt))

    def _on_final(self, job: _Job, event: FinalEvent, labels: dict[str, Any]) -> None:
        error: BaseException | None = None
        if isinstance(event, Succeeded):
            outcome = "succeeded"
        elif isinstance(event, Failed):
            outcome = "failed"
            error = event.error
            self._failures.add(1, labels)
        else:
            assert isinstance(event, Cancelled)
            outcome = "cancelled"
        if job.attempt is not None:
            attempt_outcome = outcome
            if outcome == "failed" and job.attempt_outcome == "timed_out":
                attempt_outcome = "timed_out"
            _end(job.attempt, attempt_outcome, error)
        if job.started:
            self._running.add(-1, labels)
            self._run_time.record(event.run_time, labels)
        else:
            self._queued.add(-1, labels)
        job.span.set_attribute("antflow.attempts", event.attempts)
        _end(job.span, outcome, error)


def _end(span: Span, outcome: str, error: BaseException | None) -> None:
    span.set_attribute("antflow.outcome", outcome)
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.end()
