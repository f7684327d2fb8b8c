"""Functions an App runs around each job: ``app.before_task``, ``app.after_task``
and ``app.on_failure`` (for exception reporters such as Sentry).

They run where the task runs: a sync task's hooks in its worker thread, an
async task's in its asyncio task, with ``--isolation process`` in the job's
child process. So a hook that sets a context variable (a tracing span, an
error reporter's scope) before the task is seen by the task and by the hooks
after it. A hook that raises is logged and ignored: it never fails the job,
nor loses its outcome.

    before_task(job)                 before the task function is called
    on_failure(job, exc, status)     the attempt raised ``exc``; ``status`` is the
                                     verdict: QUEUED (it will be retried), FAILED
                                     (final) or CANCELLED
    after_task(job, status, exc)     after every attempt; ``exc`` is None on success

A job whose result is not JSON-serializable is reported SUCCEEDED to the
hooks (the function did return) and recorded failed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .exceptions import InvalidOptions
from .jobs import JobStatus
from .retry import judge_failure

if TYPE_CHECKING:
    from .jobs import Job
    from .tasks import Task

logger = logging.getLogger("pgq.hooks")

BeforeTask = Callable[["Job"], object]
AfterTask = Callable[["Job", JobStatus, "BaseException | None"], object]
OnFailure = Callable[["Job", BaseException, JobStatus], object]
# The verdict on an exception (what judge_failure decides), for the hooks.
StatusOf = Callable[[BaseException], JobStatus]

F = TypeVar("F", bound=Callable[..., Any])


class Hooks:
    """The hooks of one App. Empty (false) costs a job one truth test."""

    def __init__(self) -> None:
        self.before: list[BeforeTask] = []
        self.after: list[AfterTask] = []
        self.failure: list[OnFailure] = []

    def __bool__(self) -> bool:
        return bool(self.before or self.after or self.failure)

    def call(self, job: Job, function: Callable[[], Any], status_of: StatusOf) -> Any:
        """``function()`` between the hooks; its value, or its exception raised again."""
        self._run(self.before, job)
        try:
            value = function()
        except BaseException as exc:
            self._failed(job, exc, status_of)
            raise
        self._run(self.after, job, JobStatus.SUCCEEDED, None)
        return value

    async def acall(
        self, job: Job, function: Callable[[], Awaitable[Any]], status_of: StatusOf
    ) -> Any:
        self._run(self.before, job)
        try:
            value = await function()
        except BaseException as exc:
            self._failed(job, exc, status_of)
            raise
        self._run(self.after, job, JobStatus.SUCCEEDED, None)
        return value

    def _failed(self, job: Job, exc: BaseException, status_of: StatusOf) -> None:
        try:
            status = status_of(exc)
        except Exception:  # a retry_backoff function that raised: the worker fails the job
            status = JobStatus.FAILED
        self._run(self.failure, job, exc, status)
        self._run(self.after, job, status, exc)

    @staticmethod
    def _run(hooks: list[Any], job: Job, *args: Any) -> None:
        for hook in hooks:
            try:
                hook(job, *args)
            except Exception:
                logger.exception(
                    "hook %s failed for job=%d task=%s (ignored)",
                    getattr(hook, "__qualname__", hook),
                    job.id,
                    job.task,
                )


def status_of(
    task: Task[Any, Any], job: Job, cancel_requested: Callable[[], bool] = lambda: False
) -> StatusOf:
    """The verdict the worker will reach on an exception of this attempt."""

    def judge(exc: BaseException) -> JobStatus:
        return judge_failure(
            exc,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            retry_on=task.retry_on,
            backoff=task.retry_backoff,
            cancel_requested=cancel_requested(),
        ).status

    return judge


def checked(function: F) -> F:
    if not callable(function):
        raise InvalidOptions(f"a hook must be callable, got {function!r}")
    return function
