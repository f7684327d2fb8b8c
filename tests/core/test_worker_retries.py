"""Retries: what the worker does after a task raises, and the pure rules behind it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import pgq
from pgq.jobs import JobStatus
from pgq.retry import MAX_BACKOFF_SECONDS, Outcome, backoff_delay, judge_failure
from tests import tasks


def raised(exc: BaseException) -> BaseException:
    """``exc`` with a traceback, as a task would have raised it."""
    try:
        raise exc
    except BaseException as caught:
        return caught


# backoff_delay: pure.


@pytest.mark.parametrize(("attempt", "exponential"), [(1, 60.0), (2, 120.0), (3, 240.0)])
def test_backoff_delay__doubles_each_attempt_with_equal_jitter(
    attempt: int, exponential: float
) -> None:
    assert backoff_delay(attempt, 60, rand=lambda: 0.0) == exponential / 2
    assert backoff_delay(attempt, 60, rand=lambda: 0.5) == exponential * 3 / 4
    assert backoff_delay(attempt, 60, rand=lambda: 1.0) == exponential


def test_backoff_delay__random_jitter_stays_within_half_and_full_delay() -> None:
    delays = [backoff_delay(2, 10) for _ in range(200)]
    assert all(10.0 <= d <= 20.0 for d in delays)
    assert len(set(delays)) > 1, "jitter spreads the retries"


def test_backoff_delay__is_capped_at_an_hour() -> None:
    assert MAX_BACKOFF_SECONDS == 3600.0
    for attempt in (13, 50, 1000, 5000):
        assert backoff_delay(attempt, 60, rand=lambda: 1.0) == MAX_BACKOFF_SECONDS
        assert backoff_delay(attempt, 60, rand=lambda: 0.0) == MAX_BACKOFF_SECONDS / 2


def test_backoff_delay__zero_base_retries_at_once() -> None:
    assert backoff_delay(1, 0) == 0.0
    assert backoff_delay(5000, 0) == 0.0


def test_backoff_delay__a_callable_gets_the_attempt_and_is_used_as_is() -> None:
    seen: list[int] = []

    def linear(attempt: int) -> float:
        seen.append(attempt)
        return attempt * 7.0

    assert backoff_delay(3, linear, rand=lambda: 0.0) == 21.0
    assert seen == [3]
    assert backoff_delay(1, lambda attempt: -5.0) == 0.0, "never a negative delay"


# judge_failure: pure.


def judge(exc: BaseException, attempts: int = 1, **options: Any) -> Any:
    values: dict[str, Any] = {
        "max_attempts": 3,
        "retry_on": (Exception,),
        "backoff": 0.0,
        **options,
    }
    return judge_failure(raised(exc), attempts=attempts, **values)


def test_judge_failure__retries_while_attempts_remain_then_fails() -> None:
    first = judge(ValueError("boom"), attempts=1, backoff=lambda attempt: 11.0)
    assert (first.status, first.retry_in) == (JobStatus.QUEUED, 11.0)
    last = judge(ValueError("boom"), attempts=3)
    assert last.status is JobStatus.FAILED


def test_judge_failure__error_is_message_then_traceback() -> None:
    verdict = judge(ValueError("boom"))
    assert verdict.error.startswith("ValueError: boom\n")
    assert "Traceback (most recent call last)" in verdict.error
    assert "in raised" in verdict.error  # the frame that raised


def test_judge_failure__only_retry_on_types_are_retried() -> None:
    retry_on = (ConnectionError,)
    assert judge(ConnectionError("x"), retry_on=retry_on).status is JobStatus.QUEUED
    assert judge(ConnectionResetError("x"), retry_on=retry_on).status is JobStatus.QUEUED
    assert judge(KeyError("x"), retry_on=retry_on).status is JobStatus.FAILED


def test_judge_failure__retry_requests_its_own_delay_whatever_retry_on_says() -> None:
    verdict = judge(pgq.Retry(in_seconds=42), retry_on=(ConnectionError,), backoff=1000.0)
    assert (verdict.status, verdict.retry_in) == (JobStatus.QUEUED, 42.0)
    assert judge(pgq.Retry(in_seconds=42), attempts=3).status is JobStatus.FAILED


def test_judge_failure__fail_fails_at_once() -> None:
    verdict = judge(pgq.Fail("no"), attempts=1, max_attempts=10)
    assert verdict.status is JobStatus.FAILED
    assert verdict.error.startswith("Fail: no")


def test_judge_failure__cancellation_wins_over_retry() -> None:
    assert judge(pgq.Cancelled("stop")).status is JobStatus.CANCELLED
    assert judge(ValueError("x"), cancel_requested=True).status is JobStatus.CANCELLED
    assert judge(pgq.Retry(1.0), cancel_requested=True).status is JobStatus.CANCELLED


def test_judge_failure__base_exceptions_are_not_retried_by_default() -> None:
    assert judge(SystemExit(3)).status is JobStatus.FAILED
    assert judge(KeyboardInterrupt()).status is JobStatus.FAILED


def test_outcome__carries_the_fencing_token() -> None:
    worker_id = uuid.uuid4()
    outcome = Outcome(7, worker_id, 2, JobStatus.SUCCEEDED, result="1")
    assert (outcome.job_id, outcome.worker_id, outcome.attempts) == (7, worker_id, 2)


# Through the worker, against the database.


def test_fail_until__succeeds_on_the_third_attempt(app: pgq.App) -> None:
    job = tasks.fail_until.delay(3)

    app.run_worker(burst=True)

    done = app.get_job(job.id)
    assert done.status is pgq.JobStatus.SUCCEEDED
    assert done.attempts == 3
    assert done.result == 3  # the task returns the attempt number it saw
    assert done.finished_at is not None


def test_fail_always__fails_after_max_attempts_with_the_traceback(app: pgq.App) -> None:
    job = tasks.fail_always.delay()

    app.run_worker(burst=True)

    failed = app.get_job(job.id)
    assert failed.status is pgq.JobStatus.FAILED
    assert failed.attempts == failed.max_attempts == 3
    assert failed.last_error is not None
    assert failed.last_error.startswith("ValueError: this task always fails")
    assert "Traceback (most recent call last)" in failed.last_error
    assert "in fail_always" in failed.last_error
    assert failed.error == failed.last_error
    assert failed.finished_at is not None


def test_backoff__a_failed_attempt_waits_between_half_and_full_base_delay(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    job = tasks.slow_backoff.delay()  # retry_backoff=60

    app.run_worker(burst=True)  # one attempt; the retry is not ready before it exits

    waiting = app.get_job(job.id)
    assert waiting.status is pgq.JobStatus.QUEUED
    assert waiting.attempts == 1
    assert waiting.finished_at is None
    assert waiting.last_error is not None and waiting.last_error.startswith("ValueError")
    row = conn.execute(
        "SELECT EXTRACT(EPOCH FROM run_at - now()) FROM pgq.jobs WHERE id = %s", (job.id,)
    ).fetchone()
    assert row is not None
    assert 20.0 < float(row[0]) <= 60.0
    assert waiting.started_at is not None
    assert timedelta(seconds=30) <= waiting.run_at - waiting.started_at < timedelta(seconds=70)


def test_retry_on__other_errors_fail_at_once_while_listed_ones_are_retried(
    app: pgq.App,
) -> None:
    bug = tasks.only_retries_connection_errors.delay("key")
    transient = tasks.only_retries_connection_errors.delay("connection")

    app.run_worker(burst=True)

    not_retried = app.get_job(bug.id)
    assert (not_retried.status, not_retried.attempts) == (pgq.JobStatus.FAILED, 1)
    assert not_retried.last_error is not None and not_retried.last_error.startswith("KeyError")
    retried = app.get_job(transient.id)
    assert (retried.status, retried.attempts) == (pgq.JobStatus.FAILED, 3)
    assert retried.last_error is not None
    assert retried.last_error.startswith("ConnectionError: transient")


def test_retry_exception__requeues_after_the_requested_delay(app: pgq.App) -> None:
    job = tasks.retry_later.delay(120)

    app.run_worker(burst=True)

    waiting = app.get_job(job.id)
    assert (waiting.status, waiting.attempts) == (pgq.JobStatus.QUEUED, 1)
    assert waiting.started_at is not None
    assert timedelta(seconds=120) <= waiting.run_at - waiting.started_at < timedelta(seconds=130)


def test_retry_exception__on_the_last_attempt_fails(app: pgq.App) -> None:
    job = tasks.retry_later.delay(0)  # due at once each time: three attempts in one burst

    app.run_worker(burst=True)

    failed = app.get_job(job.id)
    assert (failed.status, failed.attempts) == (pgq.JobStatus.FAILED, 3)
    assert failed.last_error is not None and failed.last_error.startswith("Retry")


def test_fail_exception__fails_at_once_with_attempts_left(app: pgq.App) -> None:
    job = tasks.fail_now.delay()

    app.run_worker(burst=True)

    failed = app.get_job(job.id)
    assert failed.status is pgq.JobStatus.FAILED
    assert (failed.attempts, failed.max_attempts) == (1, 5)
    assert failed.last_error is not None
    assert failed.last_error.startswith("Fail: no point retrying")


def test_retry_of_a_failed_job__runs_it_again_with_a_fresh_budget(app: pgq.App) -> None:
    job = tasks.fail_now.delay()
    app.run_worker(burst=True)
    assert app.retry(job.id) == [job.id]
    queued = app.get_job(job.id)
    assert (queued.status, queued.attempts) == (pgq.JobStatus.QUEUED, 0)

    app.run_worker(burst=True)

    again = app.get_job(job.id)
    assert (again.status, again.attempts) == (pgq.JobStatus.FAILED, 1)
