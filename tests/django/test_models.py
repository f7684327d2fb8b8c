"""The read-only models over pgq.jobs and pgq.workers."""

from __future__ import annotations

import uuid

import pytest

import pgq
from pgq import store
from pgq.retry import Outcome
from pgq_django.models import Job, Worker
from tests.django.testapp import tasks


def _finish(app: pgq.App, job: pgq.Job, status: str, **values: object) -> None:
    """Put a job in a final state the way a worker would (claim, then record)."""
    worker_id = uuid.uuid4()
    app.execute(store.register_worker(worker_id, "test", 1, None, [job.task], 1, 60))
    app.execute(store.claim_jobs(worker_id, None, [job.task], 100))
    outcome = Outcome(job.id, worker_id, 1, pgq.JobStatus(status), **values)  # type: ignore[arg-type]
    assert app.execute(store.finish_jobs([outcome])) == {job.id}


@pytest.mark.django_db
def test_filter_by_status__works_on_the_enum_column(app: pgq.App) -> None:
    queued = tasks.add.delay(1, 2)
    failed = tasks.fail.delay("boom")
    _finish(app, failed, "failed", error="ValueError: boom\n\nTraceback ...")
    assert list(Job.objects.filter(status="failed").values_list("id", flat=True)) == [failed.id]
    assert list(Job.objects.failed().values_list("id", flat=True)) == [failed.id]
    assert Job.objects.filter(status=Job.Status.QUEUED).get().id == queued.id
    assert Job.objects.filter(status__in=["queued", "failed"]).count() == 2
    assert Job.objects.exclude(status="succeeded").count() == 2


@pytest.mark.django_db
def test_ordering_and_display__of_the_enum_column(app: pgq.App) -> None:
    first = tasks.add.delay(1, 2)
    second = tasks.fail.delay("boom")
    _finish(app, second, "failed", error="ValueError: boom")
    # The SQL enum orders by declaration: queued < running < succeeded < failed < cancelled.
    assert [j.id for j in Job.objects.order_by("status")] == [first.id, second.id]
    assert [j.id for j in Job.objects.all()] == [second.id, first.id]  # newest first
    job = Job.objects.get(pk=second.id)
    assert job.status == "failed"
    assert job.get_status_display() == "Failed"
    assert str(job) == f"job {second.id} tests.django.testapp.tasks.fail (failed)"
    assert job.error_message == "ValueError: boom"


@pytest.mark.django_db
def test_fields__decode_json_uuid_and_times(app: pgq.App) -> None:
    job = tasks.send_email.delay("a@example.com", subject="hi")
    _finish(app, job, "succeeded", result='{"ok": [1, 2]}')
    row = Job.objects.get(pk=job.id)
    assert (row.args, row.kwargs) == (["a@example.com"], {"subject": "hi"})
    assert row.result == {"ok": [1, 2]}
    assert isinstance(row.worker_id, uuid.UUID)
    assert row.created_at.tzinfo is not None
    assert row.finished_at is not None and row.finished_at >= row.created_at
    assert (row.queue, row.priority, row.attempts, row.max_attempts) == ("emails", 5, 1, 2)
    assert row.is_finished
    assert Job.objects.filter(args__0="a@example.com", kwargs__subject="hi").count() == 1


@pytest.mark.django_db
def test_worker_rows__are_readable(app: pgq.App) -> None:
    worker_id = uuid.uuid4()
    app.execute(store.register_worker(worker_id, "host-1", 4242, ["emails"], ["t"], 3, 30))
    worker = Worker.objects.get()
    assert (worker.id, worker.hostname, worker.pid) == (worker_id, "host-1", 4242)
    assert (worker.queues, worker.tasks, worker.concurrency) == (["emails"], ["t"], 3)
    assert worker.expires_at > worker.heartbeat_at


@pytest.mark.django_db
def test_writes_through_the_orm__are_refused() -> None:
    tasks.add.delay(1, 2)
    job = Job.objects.get()
    with pytest.raises(TypeError, match="read-only"):
        job.save()
    with pytest.raises(TypeError, match="read-only"):
        Job.objects.update(status="queued")
    with pytest.raises(TypeError, match="read-only"):
        Job.objects.create(queue="q", task="t")


@pytest.mark.django_db
def test_retry_and_cancel__go_through_pgq(app: pgq.App) -> None:
    failed = tasks.fail.delay("boom")
    _finish(app, failed, "failed", error="ValueError: boom")
    queued = tasks.add.delay(1, 2)
    assert Job.objects.get(pk=failed.id).retry() is True
    assert failed.refresh().status is pgq.JobStatus.QUEUED
    assert Job.objects.get(pk=failed.id).retry() is False  # queued: nothing to retry
    assert Job.objects.get(pk=queued.id).cancel() == "cancelled"
    assert Job.objects.filter(pk=queued.id).retry() == [queued.id]
    assert Job.objects.all().cancel() == {failed.id: "cancelled", queued.id: "cancelled"}


@pytest.mark.django_db
def test_delete__removes_jobs() -> None:
    tasks.add.delay(1, 2)
    Job.objects.all().delete()
    assert Job.objects.count() == 0
