"""``.delay()`` on Django's connection: transactions, NOTIFY, arguments, options."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.db.transaction import TransactionManagementError
from django.test import override_settings

import pgq
from pgq import db
from pgq_django import DjangoTask, task
from pgq_django.models import Job
from pgq_django.worker import worker_app
from tests.conftest import wait_until
from tests.django.conftest import run_async
from tests.django.testapp import tasks
from tests.django.testapp.models import Note


def committed_jobs(app: pgq.App) -> int:
    """Jobs visible to another connection, i.e. committed."""
    with psycopg.connect(app.dsn, autocommit=True) as other:
        row = other.execute("SELECT count(*) FROM pgq.jobs").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.django_db
def test_delay_in_atomic_rolled_back__leaves_no_job() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        Note.objects.create(text="hello")
        tasks.add.delay(1, 2)
        raise RuntimeError("the view failed")
    assert Job.objects.count() == 0
    assert Note.objects.count() == 0


@pytest.mark.django_db
def test_delay_in_savepoint_rolled_back__keeps_the_outer_writes() -> None:
    with transaction.atomic():
        kept = tasks.add.delay(1, 1)
        with pytest.raises(RuntimeError), transaction.atomic():
            tasks.add.delay(2, 2)
            raise RuntimeError("inner block failed")
    assert list(Job.objects.values_list("id", flat=True)) == [kept.id]


def test_delay_in_atomic__commits_with_the_orm_writes(committed_db: None, app: pgq.App) -> None:
    with transaction.atomic():
        Note.objects.create(text="hello")
        job = tasks.add.delay(1, 2)
        assert committed_jobs(app) == 0  # not before the transaction commits
    assert committed_jobs(app) == 1
    assert Job.objects.get().id == job.id
    assert job.status is pgq.JobStatus.QUEUED
    assert (job.args, job.kwargs) == ([1, 2], {})


def test_delay_outside_atomic__commits_at_once(committed_db: None, app: pgq.App) -> None:
    tasks.add.delay(1, 2)
    assert committed_jobs(app) == 1


def test_notify__is_sent_when_the_transaction_commits(committed_db: None, app: pgq.App) -> None:
    with psycopg.connect(app.dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgq")
        with transaction.atomic():
            tasks.send_email.delay("a@example.com")
            assert list(listener.notifies(timeout=0.2, stop_after=1)) == []
        received = list(listener.notifies(timeout=10, stop_after=1))
    assert [n.payload for n in received] == ["emails"]


def test_commit__wakes_an_idle_worker(committed_db: None, app: pgq.App) -> None:
    # A poll interval of an hour: only the NOTIFY sent at commit can wake it in time.
    worker = pgq.Worker(worker_app(), poll_interval=3600, heartbeat_interval=1, lease_seconds=5)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: _listening(app))
        with transaction.atomic():
            job = tasks.create_note.delay("from the worker")
        wait_until(lambda: job.refresh().is_finished)
        assert job.status is pgq.JobStatus.SUCCEEDED
        assert Note.objects.get(pk=job.result).text == "from the worker"
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive()


def _listening(app: pgq.App) -> bool:
    with psycopg.connect(app.dsn, autocommit=True) as other:
        row = other.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN pgq%%'"
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.django_db
def test_model_instance_argument__is_refused_with_a_hint_to_pass_the_pk() -> None:
    user = User.objects.create(username="ada")
    with pytest.raises(pgq.SerializationError) as raised:
        tasks.takes_user.delay(user)
    message = str(raised.value)
    assert "positional argument 0 is a auth.User instance" in message
    assert f"pass its primary key ({user.pk})" in message
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_model_instances_inside_containers_and_querysets__are_refused() -> None:
    user = User.objects.create(username="ada")
    with pytest.raises(pgq.SerializationError, match=r"argument 'users' contains a auth.User"):
        tasks.takes_user.delay(users=[user])
    with pytest.raises(pgq.SerializationError, match=r"is a QuerySet of auth.User.*values_list"):
        tasks.takes_user.delay(User.objects.all())
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_decorator__takes_its_defaults_from_the_pgq_setting() -> None:
    with override_settings(PGQ={"DEFAULT_QUEUE": "mail", "MAX_ATTEMPTS": 7}):

        @task
        def greet(name: str) -> str:
            return name

    assert isinstance(greet, DjangoTask)
    assert (greet.queue, greet.max_attempts) == ("mail", 7)
    assert greet.name.endswith(".<locals>.greet")
    assert (tasks.send_email.queue, tasks.send_email.priority) == ("emails", 5)
    assert (tasks.send_email.max_attempts, tasks.send_email.timeout) == (2, 30.0)
    assert tasks.add("a", "b") == "ab"  # calling the task runs it here


@pytest.mark.django_db
def test_apply_async__maps_celery_options() -> None:
    before = datetime.now(timezone.utc)
    job = tasks.send_email.apply_async(
        args=["b@example.com"], kwargs={"subject": "hi"}, countdown=60, priority=9, queue="urgent"
    )
    assert (job.args, job.kwargs) == (["b@example.com"], {"subject": "hi"})
    assert (job.priority, job.queue) == (9, "urgent")
    assert job.run_at >= before + timedelta(seconds=59)
    eta = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert tasks.add.apply_async((1, 2), eta=eta).run_at == eta
    plain = tasks.add.apply_async([1, 2])
    assert (plain.queue, plain.priority, plain.args) == ("default", 0, [1, 2])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"args": "ab"}, "args=...) must be a list or tuple"),
        ({"kwargs": [1]}, "kwargs=...) must be a dict"),
        ({"countdown": 1, "eta": datetime.now(timezone.utc)}, "countdown or eta, not both"),
        ({"countdown": -5}, "must not be negative"),
        ({"expires": 10, "link": None}, "Celery's option(s): expires (cancel the job"),
        ({"queue": "no spaces"}, "invalid queue name"),
    ],
)
def test_apply_async__refuses_bad_options_and_writes_nothing(
    call: dict[str, Any], message: str
) -> None:
    with pytest.raises(pgq.InvalidOptions) as raised:
        tasks.add.apply_async(**call)
    assert message in str(raised.value)
    assert Job.objects.count() == 0


@pytest.mark.django_db
@override_settings(TIME_ZONE="Europe/Paris")
def test_naive_datetimes__are_read_in_djangos_time_zone() -> None:
    job = tasks.add.using(run_after=datetime(2030, 6, 1, 12, 0)).delay(1, 2)
    assert job.run_at == datetime(2030, 6, 1, 10, 0, tzinfo=timezone.utc)
    eta_job = tasks.add.apply_async((1, 2), eta=datetime(2030, 1, 1, 12, 0))
    assert eta_job.run_at == datetime(2030, 1, 1, 11, 0, tzinfo=timezone.utc)


def test_adelay__commits_in_its_own_transaction(committed_db: None, app: pgq.App) -> None:
    async def main() -> pgq.Job:
        return await tasks.add.adelay(20, 22)

    job = run_async(main)
    assert committed_jobs(app) == 1
    assert Job.objects.get().args == [20, 22]
    assert job.task == "tests.django.testapp.tasks.add"


@pytest.mark.django_db
def test_delay__inside_an_async_context_says_to_use_adelay() -> None:
    from django.core.exceptions import SynchronousOnlyOperation

    async def main() -> None:
        tasks.add.delay(1, 2)

    with pytest.raises(SynchronousOnlyOperation):
        run_async(main)


@pytest.mark.django_db
def test_database_error_in_atomic__marks_the_block_for_rollback(app: pgq.App) -> None:
    with transaction.atomic():
        Note.objects.create(text="rolled back")
        with pytest.raises(pgq.DatabaseError):
            app.execute(_failing_statement())
        # Django knows, as after a failed ORM query: a clear error, not a psycopg one.
        with pytest.raises(TransactionManagementError):
            Note.objects.count()
    assert Note.objects.count() == 0


def _failing_statement() -> db.Operation[None]:
    yield db.Query("get_job", {"id": "not a number"})


def test_worker__gives_each_job_a_fresh_connection_like_a_request(
    committed_db: None, run_burst: Any
) -> None:
    # CONN_MAX_AGE is 0: as after a request, the connection closes after each job.
    first, second = tasks.backend_pid.delay(), tasks.backend_pid.delay()
    run_burst(concurrency=1)
    assert first.refresh().status is second.refresh().status is pgq.JobStatus.SUCCEEDED
    assert first.result != second.result


@pytest.mark.django_db
def test_sql_migration__applies_only_to_the_pgq_database() -> None:
    from django.db import connection

    from pgq_django.sql_migrations import apply_sql_migration

    with override_settings(PGQ={"DATABASE": "jobs"}):
        assert apply_sql_migration("0001_initial", connection) is False  # not the pgq database
    assert apply_sql_migration("0001_initial", connection) is False  # already recorded
    with pytest.raises(pgq.ConfigurationError, match=r"9999_missing\.sql is missing"):
        apply_sql_migration("9999_missing", connection)
