"""PgqBackend against the documented behaviour of Django's task framework
(django.tasks on Django 6, the django-tasks backport on Django 5.2)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.test import override_settings

import pgq
from pgq_django import framework, framework_tasks
from pgq_django.backend import PgqBackend
from pgq_django.models import Job
from tests.django.conftest import run_async
from tests.django.testapp import tasks

Status = framework.TaskResultStatus


@pytest.fixture
def signals() -> Iterator[list[tuple[str, Any]]]:
    """The framework's signals received during the test, in order."""
    received: list[tuple[str, Any]] = []
    receivers = {}
    for name in ("task_enqueued", "task_started", "task_finished"):

        def receiver(sender: Any, task_result: Any, _name: str = name, **kwargs: Any) -> None:
            received.append((_name, task_result.status))

        receivers[name] = receiver
        getattr(framework, name).connect(receiver)
    yield received
    for name, receiver in receivers.items():
        getattr(framework, name).disconnect(receiver)


def test_backend__declares_what_it_supports() -> None:
    backend = framework.task_backends["default"]
    assert isinstance(backend, PgqBackend)
    assert backend.supports_defer and backend.supports_async_task
    assert backend.supports_get_result and backend.supports_priority


@pytest.mark.django_db
def test_enqueue__queues_a_job_and_returns_a_ready_result(signals: list[Any]) -> None:
    result = tasks.dj_add.enqueue(2, b=3)
    job = Job.objects.get(pk=int(result.id))
    assert job.task == "tests.django.testapp.tasks.dj_add"
    assert (job.queue, job.priority) == ("default", 0)
    assert (job.args, job.kwargs, job.max_attempts) == ([2], {"b": 3}, 1)
    assert result.status == Status.READY
    assert (result.args, result.kwargs, result.backend) == ([2], {"b": 3}, "default")
    assert result.task is tasks.dj_add
    assert result.enqueued_at == job.created_at
    assert result.errors == [] and result.worker_ids == [] and not result.is_finished
    with pytest.raises(ValueError, match="not finished"):
        result.return_value  # noqa: B018
    assert signals == [("task_enqueued", Status.READY)]


@pytest.mark.django_db
def test_enqueue__joins_the_callers_transaction() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        tasks.dj_add.enqueue(1, 2)
        raise RuntimeError("rolled back")
    assert Job.objects.count() == 0


def test_get_result__successful_with_the_return_value(
    committed_db: None, run_burst: Callable[..., None], signals: list[Any]
) -> None:
    result = tasks.dj_report.enqueue("sales")
    run_burst()
    fetched = tasks.dj_report.get_result(result.id)
    assert fetched.status == Status.SUCCESSFUL and fetched.is_finished
    assert fetched.return_value == {"report": "sales"}
    assert fetched.finished_at is not None and fetched.started_at is not None
    assert fetched.last_attempted_at == fetched.started_at
    assert fetched.attempts == 1 and fetched.worker_ids[0] != ""
    assert (fetched.task.queue_name, fetched.task.priority) == ("reports", 7)
    result.refresh()
    assert result.status == Status.SUCCESSFUL
    assert signals == [
        ("task_enqueued", Status.READY),
        ("task_started", Status.RUNNING),
        ("task_finished", Status.SUCCESSFUL),
    ]


def test_get_result__failed_with_the_exception_path_and_traceback(
    committed_db: None, run_burst: Callable[..., None], signals: list[Any]
) -> None:
    result = tasks.dj_boom.enqueue("it broke")
    run_burst()
    fetched = tasks.dj_boom.get_result(result.id)
    assert fetched.status == Status.FAILED
    [error] = fetched.errors
    assert error.exception_class_path == "tests.django.testapp.tasks.TaskBoom"
    assert error.exception_class is tasks.TaskBoom
    assert error.traceback.startswith("Traceback (most recent call last):")
    assert "tests.django.testapp.tasks.TaskBoom: it broke" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        fetched.return_value  # noqa: B018
    assert signals[-1] == ("task_finished", Status.FAILED)


def test_context_task__gets_the_attempt_and_its_result_id(
    committed_db: None, run_burst: Callable[..., None]
) -> None:
    result = tasks.dj_context.enqueue(value=5)
    run_burst()
    assert tasks.dj_context.get_result(result.id).return_value == {
        "attempt": 1,
        "id": result.id,
        "value": 5,
    }


def test_async_task__runs_in_the_worker(committed_db: None, run_burst: Callable[..., None]) -> None:
    result = tasks.dj_async_double.enqueue(21)
    run_burst()
    assert tasks.dj_async_double.get_result(result.id).return_value == 42


def test_aenqueue_and_aget_result(committed_db: None, run_burst: Callable[..., None]) -> None:
    async def enqueue() -> Any:
        return await tasks.dj_add.aenqueue(40, 2)

    result = run_async(enqueue)
    assert result.status == Status.READY
    run_burst()

    async def fetch() -> Any:
        return await tasks.dj_add.aget_result(result.id)

    assert run_async(fetch).return_value == 42


def test_priority__higher_runs_first_and_maps_unchanged(
    committed_db: None, run_burst: Callable[..., None]
) -> None:
    low = tasks.dj_add.using(priority=-50).enqueue(1, 1)
    high = tasks.dj_add.using(priority=100).enqueue(2, 2)
    assert Job.objects.get(pk=int(high.id)).priority == 100
    run_burst(concurrency=1)
    low_job, high_job = (Job.objects.get(pk=int(r.id)) for r in (low, high))
    assert high_job.started_at is not None and low_job.started_at is not None
    assert high_job.started_at < low_job.started_at
    assert tasks.dj_add.get_result(low.id).task.priority == -50


@pytest.mark.django_db
def test_priority__out_of_the_frameworks_range_is_invalid() -> None:
    with pytest.raises(framework.InvalidTask, match="priority must be a whole number"):
        tasks.dj_add.using(priority=101)


def test_run_after__defers_the_job(committed_db: None, run_burst: Callable[..., None]) -> None:
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    result = tasks.dj_add.using(run_after=later).enqueue(1, 2)
    run_burst()
    fetched = tasks.dj_add.get_result(result.id)
    assert fetched.status == Status.READY
    assert fetched.task.run_after == later
    assert Job.objects.get(pk=int(result.id)).run_at == later
    assert tasks.dj_add.get_result(tasks.dj_add.enqueue(1, 2).id).task.run_after is None


@pytest.mark.django_db
def test_queue__is_the_jobs_queue_and_must_be_allowed() -> None:
    result = tasks.dj_add.using(queue_name="emails").enqueue(1, 2)
    assert Job.objects.get(pk=int(result.id)).queue == "emails"
    with pytest.raises(framework.InvalidTask, match="Queue 'nope' is not valid for backend"):
        tasks.dj_add.using(queue_name="nope")


@pytest.mark.django_db
def test_queue__any_valid_pgq_name_when_queues_is_empty() -> None:
    backends = {"default": {"BACKEND": "pgq_django.backend.PgqBackend", "QUEUES": []}}
    with override_settings(TASKS=backends):
        result = tasks.dj_add.using(queue_name="any.queue-1").enqueue(1, 2)
        assert Job.objects.get(pk=int(result.id)).queue == "any.queue-1"
        with pytest.raises(framework.InvalidTask, match="invalid queue name 'a b'"):
            tasks.dj_add.using(queue_name="a b")


@pytest.mark.django_db
def test_validation__refuses_what_the_framework_refuses() -> None:
    def local_function() -> None: ...

    with pytest.raises(framework.InvalidTask, match="module level"):
        framework.Task(func=local_function)

    with pytest.raises(framework.InvalidTask, match="first argument of 'context'"):
        framework.Task(func=tasks.dj_add.func, takes_context=True)
    with pytest.raises(framework.InvalidTask, match="aware datetime"):
        tasks.dj_add.using(run_after=datetime(2030, 1, 1))


@pytest.mark.django_db
def test_validation__non_json_and_model_arguments_write_nothing() -> None:
    with pytest.raises(TypeError, match="not JSON-serializable"):
        tasks.dj_add.enqueue(object(), 1)
    with pytest.raises(pgq.SerializationError, match="pass its primary key"):
        tasks.dj_add.enqueue(User.objects.create(username="ada"), 1)
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_get_result__unknown_ids_and_foreign_jobs() -> None:
    backend = framework.task_backends["default"]
    for result_id in ("999999", "abc", "-1", ""):
        with pytest.raises(framework.TaskResultDoesNotExist):
            backend.get_result(result_id)
    plain = tasks.add.delay(1, 2)  # a pgq_django @task, not a Django task
    with pytest.raises(framework.TaskResultDoesNotExist, match="not a Django task"):
        backend.get_result(str(plain.id))
    other = tasks.dj_report.enqueue("x")
    with pytest.raises(Exception, match="Task does not match") as raised:
        tasks.dj_add.get_result(other.id)
    assert type(raised.value).__name__ == "TaskResultMismatch"


@pytest.mark.django_db
def test_cancelled_job__is_a_failed_result_with_a_cancelled_error(app: pgq.App) -> None:
    result = tasks.dj_add.enqueue(1, 2)
    app.cancel(int(result.id))
    fetched = tasks.dj_add.get_result(result.id)
    assert fetched.status == Status.FAILED
    assert [e.exception_class_path for e in fetched.errors] == ["pgq.exceptions.Cancelled"]


@pytest.mark.django_db
def test_options__max_attempts_and_timeout_reach_pgq() -> None:
    backends = {
        "default": {
            "BACKEND": "pgq_django.backend.PgqBackend",
            "OPTIONS": {"MAX_ATTEMPTS": 4, "TIMEOUT": 9},
        }
    }
    with override_settings(TASKS=backends):
        result = tasks.dj_add.enqueue(1, 2)
    assert Job.objects.get(pk=int(result.id)).max_attempts == 4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"MAX_ATTEMPT": 3}, "unknown key(s) MAX_ATTEMPT"),
        ({"MAX_ATTEMPTS": 0}, "max_attempts must be an integer >= 1"),
        ({"TIMEOUT": -1}, "timeout must be a positive number"),
        ({"RETRY_BACKOFF": "x"}, "RETRY_BACKOFF'] must be seconds >= 0"),
    ],
)
def test_options__bad_values_are_named(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as raised:
        PgqBackend("jobs", {"OPTIONS": options})
    assert message in str(raised.value)
    assert "TASKS['jobs']['OPTIONS']" in str(raised.value)


def test_django_tasks__are_registered_as_pgq_tasks(app: pgq.App) -> None:
    names = {"dj_add", "dj_report", "dj_boom", "dj_context", "dj_async_double"}
    for name in names:
        pgq_task = app.get_task(f"tests.django.testapp.tasks.{name}")
        assert framework_tasks.registered(pgq_task.name) is not None
    assert app.get_task("tests.django.testapp.tasks.dj_async_double").is_async


@pytest.mark.parametrize(
    ("message", "trace", "expected"),
    [
        ("ValueError: x", "Traceback ...\nValueError: x\n", "builtins.ValueError"),
        ("Boom: x", "Traceback ...\n  File ...\nmy.mod.Boom: x\n", "my.mod.Boom"),
        ("Outer.Inner", "Traceback ...\npkg.Outer.Inner\n", "pkg.Outer.Inner"),
        ("worker 1f stopped sending heartbeats while it held attempt 1", "", None),
        ("cancelled while running", "", None),
    ],
)
def test_exception_class_path__read_from_pgqs_error_text(
    message: str, trace: str, expected: str | None
) -> None:
    assert framework_tasks.exception_class_path(message, trace) == expected
