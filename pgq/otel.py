"""One OpenTelemetry span per job attempt: ``pgq.otel.instrument(app)``
(needs the ``otel`` extra, i.e. opentelemetry-api; an SDK and exporter are the
application's to set up, as with any instrumented library).

The span starts before the task and ends after it (see pgq.hooks), in the
task's own context, so spans the task opens are its children. It is named
``pgq <task>``, of kind CONSUMER, with the job's id, queue, attempt and
resulting status as attributes; an attempt that raised records the exception
and an error status.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from .app import App
    from .jobs import Job, JobStatus

INSTALL_HINT = "pip install 'pgq-jobs[otel]'"


def instrument(app: App, tracer_provider: Any = None) -> None:
    """Trace every job ``app``'s workers run (from the global tracer provider,
    or the one given)."""
    try:
        from opentelemetry import context, trace
    except ImportError:
        raise ConfigurationError(
            f"pgq.otel needs the opentelemetry-api package: {INSTALL_HINT}"
        ) from None
    tracer = trace.get_tracer("pgq", tracer_provider=tracer_provider)
    # Set in the task's context by start(), read by end() in the same context.
    current: ContextVar[tuple[Any, object] | None] = ContextVar("pgq_otel_span", default=None)

    def start(job: Job) -> None:
        span = tracer.start_span(
            f"pgq {job.task}",
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "pgq",
                "messaging.destination.name": job.queue,
                "messaging.message.id": str(job.id),
                "pgq.task": job.task,
                "pgq.attempt": job.attempts,
            },
        )
        current.set((span, context.attach(trace.set_span_in_context(span))))

    def end(job: Job, status: JobStatus, exc: BaseException | None) -> None:
        started = current.get()
        if started is None:
            return
        current.set(None)
        span, token = started
        span.set_attribute("pgq.status", status.value)
        if exc is not None:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
        span.end()
        context.detach(token)  # type: ignore[arg-type]

    app.before_task(start)
    app.after_task(end)
