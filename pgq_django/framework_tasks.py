"""Django's own tasks (``django.tasks`` ``@task``) as pgq tasks.

The registration rule: a Django Task becomes a pgq task named after its
``module_path`` ("myapp.tasks.send_email") when
  * a ``PgqBackend`` validates it (the framework does so when the ``@task``
    decorator runs, i.e. when its module is imported), or
  * ``manage.py pgq_worker``'s autodiscovery imports the module that defines it
    (every module-level Task found there is registered).
A worker therefore knows exactly the Django tasks of the modules it imported;
nothing is ever imported from a path read from the database, and a job whose
task no worker knows stays queued (``manage.py pgq_status`` shows it).

The pgq task's function runs the Django task (``takes_context`` tasks get a
``TaskContext`` built from the running job) and sends the framework's
``task_started`` / ``task_finished`` signals.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from inspect import iscoroutinefunction
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils import timezone

import pgq
from pgq import Job, JobStatus
from pgq.exceptions import InvalidOptions

from . import framework
from .framework import TaskError, TaskResult, TaskResultStatus, set_frozen
from .registry import app

if TYPE_CHECKING:
    from datetime import datetime

    from pgq.tasks import Task as PgqTask

STATUSES = {
    JobStatus.QUEUED: TaskResultStatus.READY,
    JobStatus.RUNNING: TaskResultStatus.RUNNING,
    JobStatus.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    JobStatus.FAILED: TaskResultStatus.FAILED,
    # The framework has no "cancelled": the task did not succeed and never will.
    JobStatus.CANCELLED: TaskResultStatus.FAILED,
}


@dataclass(frozen=True)
class RunOptions:
    """How a backend's Django tasks run as pgq jobs (the backend's OPTIONS)."""

    max_attempts: int = 1
    timeout: float | None = None
    retry_backoff: float = 2.0


@dataclass(frozen=True)
class Registered:
    task: framework.Task
    pgq_task: PgqTask[Any, Any]
    backend: str


_registered: dict[str, Registered] = {}


def register(task: framework.Task, backend: str, options: RunOptions) -> PgqTask[Any, Any]:
    """The pgq task that runs ``task``, registered in ``pgq_django.app`` on first use."""
    name = task.module_path
    known = _registered.get(name)
    if known is not None and known.task.func is task.func:
        return known.pgq_task
    if known is None and name in app.tasks:
        raise framework.InvalidTask(
            f"{name!r} is already a pgq_django @task; a Django task cannot share its name"
        )
    app.tasks.pop(name, None)  # a re-imported module: its new function replaces the old
    try:
        pgq_task = app.task(
            name=name,
            queue=task.queue_name,
            max_attempts=options.max_attempts,
            timeout=options.timeout,
            retry_backoff=options.retry_backoff,
        )(_runner(name, task.func))
    except InvalidOptions as exc:
        raise framework.InvalidTask(str(exc)) from None
    _registered[name] = Registered(task, pgq_task, backend)
    return pgq_task


def registered(name: str) -> Registered | None:
    return _registered.get(name)


def _runner(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """The function the worker calls for a job of the Django task ``name``
    (looked up at each call: a re-registered task replaces the old one)."""
    if iscoroutinefunction(func):

        async def run_async(*args: Any, **kwargs: Any) -> Any:
            attempt = _Attempt(_registered[name])
            try:
                value = await attempt.entry.task.func(*attempt.context(), *args, **kwargs)
            except BaseException as exc:
                attempt.failed(exc)
                raise
            return attempt.succeeded(value)

        return run_async

    def run(*args: Any, **kwargs: Any) -> Any:
        attempt = _Attempt(_registered[name])
        try:
            value = attempt.entry.task.func(*attempt.context(), *args, **kwargs)
        except BaseException as exc:
            attempt.failed(exc)
            raise
        return attempt.succeeded(value)

    return run


class _Attempt:
    """One run of a Django task in a worker: its TaskResult and signals."""

    def __init__(self, entry: Registered) -> None:
        self.entry = entry
        self.result = result_from_job(pgq.current_job().job, entry.task, entry.backend)
        framework.task_started.send(sender=self._sender(), task_result=self.result)

    def context(self) -> tuple[Any, ...]:
        if not self.entry.task.takes_context:
            return ()
        return (framework.TaskContext(task_result=self.result),)

    def succeeded(self, value: Any) -> Any:
        set_frozen(self.result, "status", TaskResultStatus.SUCCESSFUL)
        set_frozen(self.result, "finished_at", timezone.now())
        set_frozen(self.result, "_return_value", value)
        framework.task_finished.send(sender=self._sender(), task_result=self.result)
        return value

    def failed(self, exc: BaseException) -> None:
        set_frozen(self.result, "status", TaskResultStatus.FAILED)
        set_frozen(self.result, "finished_at", timezone.now())
        error = TaskError(
            exception_class_path=f"{type(exc).__module__}.{type(exc).__qualname__}",
            traceback=_format(exc),
        )
        set_frozen(self.result, "errors", [error])
        framework.task_finished.send(sender=self._sender(), task_result=self.result)

    def _sender(self) -> type[Any]:
        return type(framework.task_backends[self.entry.backend])


def _format(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


# Job -> TaskResult: pure functions.


def result_from_job(job: Job, task: framework.Task, backend: str) -> TaskResult:
    status = STATUSES[job.status]
    result = TaskResult(
        task=task,
        id=str(job.id),
        status=status,
        enqueued_at=_local(job.created_at),
        started_at=_local(job.started_at),
        finished_at=_local(job.finished_at),
        last_attempted_at=_local(job.started_at),
        args=job.args,
        kwargs=job.kwargs,
        backend=backend,
        errors=errors_of(job),
        worker_ids=worker_ids_of(job),
    )
    if status == TaskResultStatus.SUCCESSFUL:
        set_frozen(result, "_return_value", job.result)
    return result


def task_for_job(task: framework.Task, job: Job) -> framework.Task:
    """``task`` with the options this job was queued with."""
    priority = max(framework.TASK_MIN_PRIORITY, min(framework.TASK_MAX_PRIORITY, job.priority))
    run_after = _local(job.run_at) if job.run_at > job.created_at else None
    return task.using(priority=priority, queue_name=job.queue, run_after=run_after)


def _local(value: datetime | None) -> datetime | None:
    """pgq's aware UTC datetimes, as Django shows datetimes (naive without USE_TZ)."""
    if value is None or settings.USE_TZ:
        return value
    return timezone.make_naive(value)


def worker_ids_of(job: Job) -> list[str]:
    """One entry per attempt, as the framework counts attempts. pgq keeps only
    the latest worker, so earlier attempts show an empty id."""
    if job.attempts == 0:
        return []
    latest = str(job.worker_id) if job.worker_id else ""
    return [""] * (job.attempts - 1) + [latest]


_QUALNAME = re.compile(r"[A-Za-z_][\w.]*")
_CANCELLED = "pgq.exceptions.Cancelled"


def errors_of(job: Job) -> list[TaskError]:
    """The job's last error as the framework's TaskError (pgq keeps only the last)."""
    if job.last_error is None:
        if job.status is JobStatus.CANCELLED:  # cancelled before it ran
            cancelled = f"job {job.id} was cancelled before it ran"
            return [TaskError(exception_class_path=_CANCELLED, traceback=cancelled)]
        return []
    message, _, trace = job.last_error.partition("\n\n")
    path = exception_class_path(message, trace)
    if path is None:  # not an exception: a lease recovery, or a cancellation
        path = _CANCELLED if job.status is JobStatus.CANCELLED else "pgq.exceptions.PgqError"
        return [TaskError(exception_class_path=path, traceback=job.last_error)]
    return [TaskError(exception_class_path=path, traceback=trace or message)]


def exception_class_path(message: str, trace: str) -> str | None:
    """``module.QualName`` of the exception pgq recorded.

    ``last_error`` starts with "QualName: message"; the traceback below it ends
    with the exception line, where Python prefixes the module (except for
    builtins). None when the error was not an exception (e.g. lease recovery).
    """
    qualname = message.split(":", 1)[0].strip()
    if not _QUALNAME.fullmatch(qualname):
        return None
    line = re.compile(rf"^((?:[A-Za-z_]\w*\.)*){re.escape(qualname)}(?::|$)", re.MULTILINE)
    matches = list(line.finditer(trace))
    if not matches:
        return None
    prefix = matches[-1].group(1)
    return f"{prefix}{qualname}" if prefix else f"builtins.{qualname}"
