"""``PgqBackend``: pgq as the backend of Django's task framework.

    TASKS = {
        "default": {
            "BACKEND": "pgq_django.backend.PgqBackend",
            "QUEUES": ["default", "emails"],     # [] allows any valid queue name
            "OPTIONS": {"MAX_ATTEMPTS": 1, "TIMEOUT": None, "RETRY_BACKOFF": 2.0},
        }
    }

Django's ``@task`` / ``.enqueue()`` then queue pgq jobs, on Django's
connection (``PGQ["DATABASE"]``) so inside ``transaction.atomic()`` the job
commits with your writes; ``manage.py pgq_worker`` runs them (see
:mod:`pgq_django.framework_tasks` for how the worker knows them).

Mapping: the result id is the job id (as a string). Priorities are the same
numbers in both (the framework's -100..100 lies inside pgq's range; higher runs
first), so a Django task and a pgq task of equal priority are equal.
``run_after`` is the job's ``run_at``. Statuses: queued -> READY, running ->
RUNNING, succeeded -> SUCCESSFUL, failed and cancelled -> FAILED, with the last
error as a ``TaskError`` (exception class path and traceback).

OPTIONS: ``MAX_ATTEMPTS`` defaults to 1 because the framework has no retry
vocabulary (a task that raised is FAILED); raise it to let pgq retry with
backoff (``RETRY_BACKOFF`` seconds, doubled each attempt). ``TIMEOUT`` bounds
one attempt, in seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from pgq import Job, validation
from pgq.exceptions import InvalidOptions, JobNotFound

from . import framework, framework_tasks
from .framework import BaseTaskBackend, TaskResult
from .framework_tasks import RunOptions
from .registry import app


def _read_options(alias: str, raw: Mapping[str, Any]) -> RunOptions:
    known = {"MAX_ATTEMPTS", "TIMEOUT", "RETRY_BACKOFF"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ImproperlyConfigured(
            f"TASKS[{alias!r}]['OPTIONS'] has unknown key(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )
    try:
        options = RunOptions(
            max_attempts=validation.max_attempts(raw.get("MAX_ATTEMPTS", 1)),
            timeout=validation.timeout(raw.get("TIMEOUT")),
            retry_backoff=raw.get("RETRY_BACKOFF", 2.0),
        )
    except InvalidOptions as exc:
        raise ImproperlyConfigured(f"TASKS[{alias!r}]['OPTIONS']: {exc}") from None
    backoff = options.retry_backoff
    if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or backoff < 0:
        raise ImproperlyConfigured(
            f"TASKS[{alias!r}]['OPTIONS']['RETRY_BACKOFF'] must be seconds >= 0, got {backoff!r}"
        )
    return options


class PgqBackend(BaseTaskBackend):
    """Queues Django tasks as pgq jobs; ``manage.py pgq_worker`` runs them."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.run_options = _read_options(alias, self.options)

    def validate_task(self, task: framework.Task) -> None:
        """The framework's rules, pgq's queue-name rule, then registration: a
        Task this backend accepts is one the worker can run."""
        super().validate_task(task)
        try:
            validation.queue_name(task.queue_name)
        except InvalidOptions as exc:
            raise framework.InvalidTask(str(exc)) from None
        framework_tasks.register(task, self.alias, self.run_options)

    def _pgq_call(self, task: framework.Task) -> Any:
        self.validate_task(task)
        pgq_task = framework_tasks.register(task, self.alias, self.run_options)
        return pgq_task.using(
            queue=task.queue_name,
            priority=task.priority,
            run_after=task.run_after,
            max_attempts=self.run_options.max_attempts,
        )

    def _enqueued(self, task: framework.Task, job: Job) -> TaskResult:
        result = framework_tasks.result_from_job(job, task, self.alias)
        framework.task_enqueued.send(type(self), task_result=result)
        return result

    def enqueue(self, task: framework.Task, args: Any, kwargs: Any) -> TaskResult:
        """Queue the task on Django's connection: inside ``transaction.atomic()``
        the job commits or rolls back with it."""
        job = self._pgq_call(task).delay(*args, **kwargs)
        return self._enqueued(task, job)

    async def aenqueue(self, task: framework.Task, args: Any, kwargs: Any) -> TaskResult:
        """Queue the task on pgq's async pool, in a transaction of its own."""
        job = await self._pgq_call(task).adelay(*args, **kwargs)
        return self._enqueued(task, job)

    def get_result(self, result_id: str) -> TaskResult:
        job_id = _job_id(result_id)
        try:
            job = app.get_job(job_id)
        except JobNotFound:
            raise framework.TaskResultDoesNotExist(result_id) from None
        return self._result(job)

    async def aget_result(self, result_id: str) -> TaskResult:
        job_id = _job_id(result_id)
        try:
            job = await app.aget_job(job_id)
        except JobNotFound:
            raise framework.TaskResultDoesNotExist(result_id) from None
        return self._result(job)

    def _result(self, job: Job) -> TaskResult:
        entry = framework_tasks.registered(job.task)
        if entry is None:
            from .discovery import discover_tasks

            discover_tasks()  # a process that never imported the task's module
            entry = framework_tasks.registered(job.task)
        if entry is None:
            raise framework.TaskResultDoesNotExist(
                f"job {job.id} is of task {job.task!r}, not a Django task known to this project"
            )
        task = framework_tasks.task_for_job(entry.task, job)
        return framework_tasks.result_from_job(job, task, self.alias)

    def check(self, **kwargs: Any) -> Iterable[checks.CheckMessage]:
        yield from super().check(**kwargs)
        for queue in sorted(self.queues):
            try:
                validation.queue_name(queue)
            except InvalidOptions as exc:
                yield checks.Error(f"TASKS[{self.alias!r}]['QUEUES']: {exc}", id="pgq_django.E010")


def _job_id(result_id: str) -> int:
    try:
        job_id = int(result_id)
    except (TypeError, ValueError):
        raise framework.TaskResultDoesNotExist(result_id) from None
    if job_id <= 0:
        raise framework.TaskResultDoesNotExist(result_id)
    return job_id
