"""pgq.otel.instrument: one span per attempt, run by a real worker; the task's
own spans are its children."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import pgq
from pgq.otel import instrument

trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
export = pytest.importorskip("opentelemetry.sdk.trace.export")


@pytest.fixture
def traced(dsn: str) -> Iterator[tuple[pgq.App, object]]:
    exporter = in_memory.InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    app = pgq.App(dsn, retention=None)
    inner_tracer = provider.get_tracer("tests")

    @app.task(name="traced_ok")
    def traced_ok() -> None:
        with inner_tracer.start_as_current_span("inside"):
            pass

    @app.task(name="traced_async")
    async def traced_async() -> None:
        with inner_tracer.start_as_current_span("inside"):
            pass

    @app.task(name="traced_fail", max_attempts=2, retry_backoff=0)
    def traced_fail() -> None:
        raise ValueError("no")

    instrument(app, tracer_provider=provider)
    yield app, exporter
    app.close()


def test_one_span_per_attempt_with_the_tasks_spans_inside(
    traced: tuple[pgq.App, in_memory.InMemorySpanExporter],
) -> None:
    app, exporter = traced
    ok = app.get_task("traced_ok").delay()
    aok = app.get_task("traced_async").delay()
    failing = app.get_task("traced_fail").delay()

    app.run_worker(burst=True)

    spans = exporter.get_finished_spans()
    jobs = [s for s in spans if s.name.startswith("pgq ")]
    by_job = {}
    for span in jobs:
        by_job.setdefault(span.attributes["messaging.message.id"], []).append(span)
    [ok_span] = by_job[str(ok.id)]
    [aok_span] = by_job[str(aok.id)]
    assert ok_span.name == "pgq traced_ok"
    assert ok_span.kind is trace.SpanKind.CONSUMER
    assert ok_span.attributes["pgq.status"] == "succeeded"
    assert ok_span.attributes["messaging.destination.name"] == "default"
    inside = [s for s in spans if s.name == "inside"]
    assert {s.parent.span_id for s in inside} == {
        ok_span.context.span_id,
        aok_span.context.span_id,
    }
    attempts = sorted(by_job[str(failing.id)], key=lambda s: s.attributes["pgq.attempt"])
    assert [s.attributes["pgq.status"] for s in attempts] == ["queued", "failed"]
    assert all(s.status.status_code is trace.StatusCode.ERROR for s in attempts)
    assert all(s.events[0].name == "exception" for s in attempts)
    assert failing.refresh().status is pgq.JobStatus.FAILED
