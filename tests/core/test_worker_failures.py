"""Failures that are awkward to record must still end the job and never stall
the worker: every job gets an outcome, and the next job runs."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import psycopg

import pgq
from pgq.retry import MAX_RETRY_IN_SECONDS
from tests import tasks


def run_burst(app: pgq.App, timeout: float = 20.0, **options: Any) -> None:
    """Run a burst worker in a thread; fail (instead of hanging) if it never exits."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            app.run_worker(burst=True, **options)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, name="pgq-test-burst", daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"the burst worker did not exit within {timeout}s"
    if raised:
        raise raised[0]


def assert_next_job_ran(app: pgq.App, job: pgq.Job) -> None:
    done = app.get_job(job.id)
    assert (done.status, done.result) == (pgq.JobStatus.SUCCEEDED, 3)


def test_error_message_with_a_nul_character__is_recorded_escaped(app: pgq.App) -> None:
    job = tasks.fails_with_nul.delay()
    after = tasks.add.delay(1, 2)

    run_burst(app, concurrency=1)

    failed = app.get_job(job.id)
    assert (failed.status, failed.attempts) == (pgq.JobStatus.FAILED, 1)
    assert failed.last_error is not None
    assert failed.last_error.startswith("ValueError: before\\x00after")
    assert_next_job_ran(app, after)


def test_exception_whose_str_fails__is_recorded_with_its_traceback(app: pgq.App) -> None:
    job = tasks.fails_unprintably.delay()
    after = tasks.add.delay(1, 2)

    run_burst(app, concurrency=1)

    failed = app.get_job(job.id)
    assert (failed.status, failed.attempts) == (pgq.JobStatus.FAILED, 1)
    assert failed.last_error is not None
    assert failed.last_error.startswith("UnprintableError: <exception str() failed>")
    assert "in fails_unprintably" in failed.last_error
    assert_next_job_ran(app, after)


def test_retry_backoff_callable_that_raises__fails_the_job_with_both_errors(
    app: pgq.App,
) -> None:
    job = tasks.fails_with_broken_backoff.delay()
    after = tasks.add.delay(1, 2)

    run_burst(app, concurrency=1)

    failed = app.get_job(job.id)
    assert (failed.status, failed.attempts) == (pgq.JobStatus.FAILED, 1)
    assert failed.last_error is not None
    assert failed.last_error.startswith("RuntimeError: retry_backoff raised on attempt 1")
    assert "ValueError: the task's own error" in failed.last_error  # the chained cause
    assert_next_job_ran(app, after)


def test_result_with_a_nul_character__fails_with_serialization_error(app: pgq.App) -> None:
    job = tasks.returns_nul.delay()
    after = tasks.add.delay(1, 2)

    run_burst(app, concurrency=1)

    failed = app.get_job(job.id)
    assert (failed.status, failed.attempts) == (pgq.JobStatus.FAILED, 1)
    assert failed.last_error is not None and failed.last_error.startswith("SerializationError")
    assert_next_job_ran(app, after)


def test_retry_in_an_absurd_delay__is_cut_to_the_maximum(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    job = tasks.retry_later.delay(1e300)
    after = tasks.add.delay(1, 2)

    run_burst(app, concurrency=1)

    waiting = app.get_job(job.id)
    assert (waiting.status, waiting.attempts) == (pgq.JobStatus.QUEUED, 1)
    assert waiting.started_at is not None
    delay = waiting.run_at - waiting.started_at
    assert timedelta(seconds=MAX_RETRY_IN_SECONDS) <= delay
    assert delay < timedelta(seconds=MAX_RETRY_IN_SECONDS + 60)
    assert_next_job_ran(app, after)


def test_retry_exception__refuses_infinite_and_nan_delays() -> None:
    for bad in (float("inf"), float("nan"), -1.0):
        try:
            pgq.Retry(in_seconds=bad)
        except pgq.InvalidOptions as exc:
            assert "in_seconds" in str(exc)
        else:
            raise AssertionError(f"Retry(in_seconds={bad}) was accepted")


def test_job_past_a_thousand_attempts__is_still_retried_then_failed(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    job = tasks.fail_always.using(max_attempts=2000).delay()  # retry_backoff=0
    conn.execute("UPDATE pgq.jobs SET attempts = 1998 WHERE id = %s", (job.id,))

    run_burst(app, concurrency=1)

    failed = app.get_job(job.id)
    assert (failed.status, failed.attempts) == (pgq.JobStatus.FAILED, 2000)
    assert failed.last_error is not None and failed.last_error.startswith("ValueError")


REFUSE_ECHO_SUCCESS = """
CREATE FUNCTION refuse_poisoned_success() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'succeeded' AND NEW.kwargs ->> 'poison' = 'yes' THEN
        RAISE EXCEPTION 'this outcome is refused';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poisoned_success BEFORE UPDATE ON pgq.jobs
    FOR EACH ROW EXECUTE FUNCTION refuse_poisoned_success();
"""


def test_outcome_the_database_refuses__fails_that_job_and_records_the_others(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(REFUSE_ECHO_SUCCESS)
    jobs = [tasks.echo.delay(poison="no"), tasks.echo.delay(poison="yes"), tasks.echo.delay()]

    run_burst(app, concurrency=3)

    healthy, poisoned, plain = (app.get_job(job.id) for job in jobs)
    assert healthy.status is pgq.JobStatus.SUCCEEDED
    assert plain.status is pgq.JobStatus.SUCCEEDED
    assert poisoned.status is pgq.JobStatus.FAILED
    assert poisoned.last_error is not None
    assert "could not record this job's outcome (succeeded)" in poisoned.last_error
    assert "this outcome is refused" in poisoned.last_error


def test_timed_out_sync_task__is_not_retried_while_its_thread_still_runs(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(tasks.LEDGER_DDL)
    job = tasks.sleep_in_c_with_timeout.delay(1.0)

    run_burst(app, concurrency=2)

    done = app.get_job(job.id)
    assert (done.status, done.attempts) == (pgq.JobStatus.FAILED, 2)
    assert done.last_error is not None and "JobTimeout" in done.last_error
    first, second = conn.execute(
        "SELECT at FROM test_ledger WHERE job_id = %s ORDER BY attempt", (job.id,)
    ).fetchall()
    # The second attempt began only after the first thread left its 1 s C call.
    assert (second[0] - first[0]).total_seconds() >= 1.0



DEADLOCK_ONCE = """
CREATE SEQUENCE deadlock_tries;  -- nextval survives the rollback of the failed write
CREATE FUNCTION deadlock_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'succeeded' AND nextval('deadlock_tries') = 1 THEN
        RAISE EXCEPTION 'simulated deadlock' USING ERRCODE = '40P01';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER deadlock_once BEFORE UPDATE ON pgq.jobs
    FOR EACH ROW EXECUTE FUNCTION deadlock_once();
"""


def test_outcome_write_hit_by_a_deadlock__is_tried_again_not_turned_into_a_failure(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(DEADLOCK_ONCE)
    job = tasks.add.delay(1, 2)

    run_burst(app, concurrency=1)

    done = app.get_job(job.id)
    assert (done.status, done.result, done.attempts) == (pgq.JobStatus.SUCCEEDED, 3, 1)
    assert conn.execute("SELECT last_value FROM deadlock_tries").fetchone() == (2,)
