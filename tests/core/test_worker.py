"""The in-process worker: claiming, running, recording, cancelling, stopping.

Every assertion reads the job rows back from PostgreSQL. Retries live in
test_worker_retries.py, leases and fencing in test_worker_leases.py.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgq
from pgq import store
from tests import tasks
from tests.conftest import wait_until

# Helpers shared by the test_worker_*.py modules.


@contextmanager
def worker_thread(app: pgq.App, **options: Any) -> Iterator[pgq.Worker]:
    """Run a Worker in a thread for the duration of the block, then stop it and
    wait for it to exit; an exception raised by the worker fails the test."""
    worker = pgq.Worker(app, **options)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, name="pgq-test-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert not thread.is_alive(), "the worker did not stop within 30s"
    if raised:
        raise raised[0]


def worker_ids(conn: psycopg.Connection[Any]) -> set[uuid.UUID]:
    return {row[0] for row in conn.execute("SELECT id FROM pgq.workers")}


def ledger(conn: psycopg.Connection[Any], job_id: int | None = None) -> list[tuple[Any, ...]]:
    """(job_id, attempt, key) rows of the ledger, in the order they were written."""
    if job_id is None:
        return conn.execute("SELECT job_id, attempt, key FROM test_ledger ORDER BY at").fetchall()
    return conn.execute(
        "SELECT job_id, attempt, key FROM test_ledger WHERE job_id = %s ORDER BY at", (job_id,)
    ).fetchall()


def status_of(app: pgq.App, job_id: int) -> pgq.JobStatus:
    return app.get_job(job_id).status


# Claim, run, record.


def test_burst_worker__runs_the_job_and_records_its_result(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    job = tasks.add.delay(2, 3)
    worker = pgq.Worker(app, burst=True)
    worker.run()

    done = app.get_job(job.id)
    assert done.status is pgq.JobStatus.SUCCEEDED
    assert done.result == 5
    assert done.attempts == 1
    assert done.worker_id == worker.id
    assert done.last_error is None
    assert done.started_at is not None and done.finished_at is not None
    assert done.created_at <= done.started_at <= done.finished_at
    assert worker.processed == 1
    assert worker_ids(conn) == set(), "a stopped worker removes its row"


def test_burst_worker__with_nothing_ready_exits_and_leaves_delayed_jobs_queued(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    app.run_worker(burst=True)  # an empty queue: returns at once

    later = tasks.add.using(run_after=timedelta(seconds=60)).delay(1, 1)
    worker = pgq.Worker(app, burst=True)
    worker.run()

    job = app.get_job(later.id)
    assert job.status is pgq.JobStatus.QUEUED
    assert job.attempts == 0
    assert job.started_at is None and job.worker_id is None
    assert worker.processed == 0
    assert worker_ids(conn) == set()


def test_claim_order__higher_priority_first_then_longest_ready_first(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(tasks.LEDGER_DDL)
    tasks.record.using(priority=-5).delay("low")
    tasks.record.delay("first")
    tasks.record.using(priority=10).delay("high")
    tasks.record.delay("second")
    tasks.record.using(priority=5).delay("medium")
    # Enqueued last, but ready an hour ago: it has waited longest in its priority.
    backdated = datetime.now(timezone.utc) - timedelta(hours=1)
    tasks.record.using(run_after=backdated).delay("backdated")

    app.run_worker(burst=True, concurrency=1)

    order = [key for _, _, key in ledger(conn)]
    assert order == ["high", "medium", "backdated", "first", "second", "low"]
    rows = conn.execute("SELECT args->>0 FROM pgq.jobs ORDER BY started_at").fetchall()
    assert [key for (key,) in rows] == order


def test_run_after__an_idle_worker_wakes_when_the_delayed_job_is_due(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    # The poll interval is far longer than the test may take: only the
    # "sleep until the next job is due" rule can run the job in time.
    with worker_thread(app, poll_interval=30) as worker:
        wait_until(lambda: worker.id in worker_ids(conn))
        job = tasks.add.using(run_after=timedelta(seconds=1)).delay(20, 22)
        wait_until(lambda: status_of(app, job.id) is pgq.JobStatus.SUCCEEDED, timeout=10)

    done = app.get_job(job.id)
    assert done.result == 42
    assert done.started_at is not None and done.started_at >= done.run_at


def test_job_with_a_large_poll_interval__is_claimed_at_once_on_notify(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    with worker_thread(app, poll_interval=30) as worker:
        wait_until(lambda: worker.id in worker_ids(conn))
        first = tasks.add.delay(1, 1)
        wait_until(lambda: status_of(app, first.id) is pgq.JobStatus.SUCCEEDED, timeout=10)
        second = tasks.add.delay(2, 2)  # the worker is idle now, asleep for up to 30s
        wait_until(lambda: status_of(app, second.id) is pgq.JobStatus.SUCCEEDED, timeout=10)
    assert app.get_job(second.id).result == 4


def test_sync_and_async_tasks__run_side_by_side(app: pgq.App) -> None:
    sync_ids = tasks.add.delay_many([(i, i) for i in range(5)])
    async_ids = tasks.async_add.delay_many([(i, 100) for i in range(5)])

    app.run_worker(burst=True, concurrency=4)

    for i, job_id in enumerate(sync_ids):
        job = app.get_job(job_id)
        assert (job.status, job.result, job.attempts) == (pgq.JobStatus.SUCCEEDED, 2 * i, 1)
    for i, job_id in enumerate(async_ids):
        job = app.get_job(job_id)
        assert (job.status, job.result, job.attempts) == (pgq.JobStatus.SUCCEEDED, i + 100, 1)


def test_worker_with_queues__runs_only_jobs_of_those_queues(app: pgq.App) -> None:
    mine = tasks.add.using(queue="mine").delay(1, 2)
    other = tasks.add.using(queue="other").delay(3, 4)

    app.run_worker(burst=True, queues="mine")

    assert status_of(app, mine.id) is pgq.JobStatus.SUCCEEDED
    untouched = app.get_job(other.id)
    assert (untouched.status, untouched.attempts) == (pgq.JobStatus.QUEUED, 0)


def test_two_workers__run_each_job_exactly_once(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(tasks.LEDGER_DDL)
    ids = tasks.record.delay_many([(f"job-{i}",) for i in range(40)])
    with worker_thread(app, concurrency=3) as first, worker_thread(app, concurrency=3) as second:
        wait_until(
            lambda: conn.execute(
                "SELECT count(*) FROM pgq.jobs WHERE status = 'succeeded'"
            ).fetchone()
            == (len(ids),),
            timeout=15,
        )
    runs = conn.execute("SELECT job_id, count(*) FROM test_ledger GROUP BY job_id").fetchall()
    assert sorted(runs) == [(job_id, 1) for job_id in ids]
    holders = {row[0] for row in conn.execute("SELECT DISTINCT worker_id FROM pgq.jobs")}
    assert holders <= {first.id, second.id}
    assert first.processed + second.processed == len(ids)


# What a task sees of its job.


def test_current_job__gives_the_id_and_attempt_to_sync_and_async_tasks(app: pgq.App) -> None:
    sync_ids = tasks.job_context.delay_many([() for _ in range(5)])
    async_ids = tasks.async_job_context.delay_many([() for _ in range(5)])

    app.run_worker(burst=True, concurrency=5)  # run together: each sees its own job

    for job_id in [*sync_ids, *async_ids]:
        job = app.get_job(job_id)
        assert job.status is pgq.JobStatus.SUCCEEDED
        assert job.result == {"id": job_id, "attempt": 1, "cancel_requested": False}


def test_current_job__outside_a_job_raises_pgq_error(app: pgq.App) -> None:
    with pytest.raises(pgq.PgqError, match="outside of a job"):
        pgq.current_job()
    tasks.job_context.delay()
    app.run_worker(burst=True)
    with pytest.raises(pgq.PgqError):  # running jobs leaves nothing behind in the caller
        pgq.current_job()


# Results and timeouts.


def test_non_json_result__fails_the_job_without_retrying(app: pgq.App) -> None:
    job = tasks.returns_object.delay()
    assert job.max_attempts == 3

    app.run_worker(burst=True)

    failed = app.get_job(job.id)
    assert failed.status is pgq.JobStatus.FAILED
    assert failed.attempts == 1
    assert failed.result is None
    assert failed.last_error is not None
    assert failed.last_error.startswith("SerializationError")
    assert "object" in failed.last_error


@pytest.mark.parametrize("task", [tasks.sleep_with_timeout, tasks.async_sleep_with_timeout])
def test_timeout__fails_the_job_and_the_worker_goes_on(
    app: pgq.App, task: pgq.Task[[float], float]
) -> None:
    slow = task.delay(30)
    after = tasks.add.delay(1, 2)

    app.run_worker(burst=True, concurrency=1)  # one slot: `after` waits for the timed-out job

    timed_out = app.get_job(slow.id)
    assert timed_out.status is pgq.JobStatus.FAILED
    assert timed_out.attempts == 1
    assert timed_out.last_error is not None
    assert timed_out.last_error.startswith("JobTimeout")
    assert timed_out.finished_at is not None and timed_out.started_at is not None
    assert timed_out.finished_at - timed_out.started_at < timedelta(seconds=30)

    done = app.get_job(after.id)
    assert (done.status, done.result) == (pgq.JobStatus.SUCCEEDED, 3)
    assert done.finished_at is not None
    assert done.finished_at < timed_out.started_at + timedelta(seconds=30)


# Cancellation.


def test_cancel_queued_job__it_never_runs(app: pgq.App, conn: psycopg.Connection[Any]) -> None:
    conn.execute(tasks.LEDGER_DDL)
    job = tasks.record.delay("never")
    assert app.cancel(job.id) == {job.id: "cancelled"}

    app.run_worker(burst=True)

    cancelled = app.get_job(job.id)
    assert cancelled.status is pgq.JobStatus.CANCELLED
    assert cancelled.attempts == 0
    assert cancelled.started_at is None
    assert cancelled.finished_at is not None
    assert ledger(conn) == []


def test_cancel_running_sync_job__the_task_sees_it_through_the_heartbeat(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(tasks.LEDGER_DDL)
    job = tasks.wait_for_cancel.delay(timeout=30)
    with worker_thread(app, heartbeat_interval=0.2, lease_seconds=1):
        wait_until(lambda: ledger(conn, job.id))
        assert app.cancel(job.id) == {job.id: "running"}
        wait_until(lambda: status_of(app, job.id) is pgq.JobStatus.CANCELLED, timeout=10)

    cancelled = app.get_job(job.id)
    assert cancelled.attempts == 1
    assert cancelled.result is None
    assert cancelled.finished_at is not None
    assert cancelled.last_error is not None and cancelled.last_error.startswith("Cancelled")


def test_cancel_running_async_job__its_coroutine_is_cancelled(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(tasks.LEDGER_DDL)
    job = tasks.async_wait_for_cancel.delay(timeout=30)
    with worker_thread(app, heartbeat_interval=0.2, lease_seconds=1):
        wait_until(lambda: ledger(conn, job.id))
        assert app.cancel(job.id) == {job.id: "running"}
        wait_until(lambda: status_of(app, job.id) is pgq.JobStatus.CANCELLED, timeout=10)

    cancelled = app.get_job(job.id)
    assert cancelled.attempts == 1
    assert cancelled.result is None
    assert cancelled.finished_at is not None
    assert cancelled.last_error is not None and "cancelled" in cancelled.last_error


# Jobs of tasks the worker does not know.


def test_unknown_task_row__is_never_claimed_or_run_and_shows_as_orphaned(
    app: pgq.App, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    row = conn.execute(
        "INSERT INTO pgq.jobs (queue, task, args) VALUES ('default', 'os.system', %s::jsonb)"
        " RETURNING id",
        (json.dumps([f"touch {marker}"]),),
    ).fetchone()
    assert row is not None
    foreign_id = row[0]

    with worker_thread(app, poll_interval=0.2) as worker:
        known = tasks.add.delay(1, 2)
        wait_until(lambda: status_of(app, known.id) is pgq.JobStatus.SUCCEEDED, timeout=10)
        assert worker.id in worker_ids(conn)
        orphaned = app.execute(store.orphaned_tasks())
        assert [(r["queue"], r["task"], r["count"]) for r in orphaned] == [
            ("default", "os.system", 1)
        ]

    app.run_worker(burst=True)  # a burst worker ignores it too, and exits
    foreign = app.get_job(foreign_id)
    assert foreign.status is pgq.JobStatus.QUEUED
    assert foreign.attempts == 0
    assert foreign.worker_id is None and foreign.started_at is None
    assert not marker.exists()


# Stopping.


def test_stop__lets_the_running_job_finish_and_removes_the_worker_row(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    job = tasks.sleep.delay(0.5)
    with worker_thread(app) as worker:
        wait_until(lambda: status_of(app, job.id) is pgq.JobStatus.RUNNING)
        worker.stop()  # returns at once; the block's exit waits for the worker
        claimed_by = worker.id

    done = app.get_job(job.id)
    assert (done.status, done.result, done.attempts) == (pgq.JobStatus.SUCCEEDED, 0.5, 1)
    assert done.worker_id == claimed_by
    assert worker_ids(conn) == set()


def test_stop_after_the_grace_period__releases_the_unfinished_job_uncounted(
    app: pgq.App, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    conn.execute(tasks.LEDGER_DDL)
    gate = tmp_path / "gate"
    threads_before = set(threading.enumerate())
    job = tasks.wait_for_file.delay(str(gate))
    try:
        with worker_thread(app, shutdown_grace=0.1):
            wait_until(lambda: ledger(conn, job.id))
    finally:
        gate.touch()  # the abandoned thread ends

    released = app.get_job(job.id)
    assert released.status is pgq.JobStatus.QUEUED
    assert released.attempts == 0
    assert released.finished_at is None
    assert worker_ids(conn) == set()

    # The abandoned call returns once the file exists; nothing is recorded.
    def task_threads_done() -> bool:
        new = set(threading.enumerate()) - threads_before
        return not any(t.name.startswith("pgq-task") for t in new)

    wait_until(task_threads_done, timeout=10)
    assert app.get_job(job.id).status is pgq.JobStatus.QUEUED
    assert app.get_job(job.id).result is None


def test_stop_before_run__the_worker_exits_without_claiming(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    job = tasks.add.delay(1, 2)
    worker = pgq.Worker(app)
    worker.stop()
    worker.run()

    assert app.get_job(job.id).status is pgq.JobStatus.QUEUED
    assert worker.processed == 0
    assert worker_ids(conn) == set()


def test_stop_after_the_worker_exited__is_harmless(app: pgq.App) -> None:
    worker = pgq.Worker(app, burst=True)
    worker.run()
    worker.stop()  # its loop is closed by now
    worker.stop()
