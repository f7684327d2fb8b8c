"""Running one claimed job: sync tasks in threads, async tasks on the event loop.

Timeouts: an async task is cancelled at its timeout. A sync task cannot be
killed from outside its thread, so at its timeout ``pgq.JobTimeout`` is raised
inside the thread the next time it runs Python code; the worker records the
timeout (and may retry the job) only once the function has really returned, so
one job never runs twice at once. Code stuck in a C call that never returns
keeps its job and slot until the worker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from .context import JobContext, set_current
from .exceptions import Cancelled, JobTimeout, SerializationError, UnknownTask
from .hooks import StatusOf, status_of
from .jobs import Job, JobStatus
from .retry import Outcome, format_error, judge_failure
from .serialization import encode_result
from .tasks import Task

logger = logging.getLogger("pgq.worker")


@dataclass(eq=False)
class RunningJob:
    """A job this worker holds, from claim until its outcome is recorded."""

    job: Job
    worker_id: uuid.UUID  # the identity it was claimed under
    context: JobContext
    runner: asyncio.Task[None] | None = None
    # Set when a timed-out sync task's thread is still running.
    lingering: asyncio.Future[Any] | None = None
    released: bool = False
    thread_id: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def claimed(cls, job: Job, worker_id: uuid.UUID) -> RunningJob:
        return cls(job=job, worker_id=worker_id, context=JobContext(job))

    def outcome(self, status: JobStatus, **values: Any) -> Outcome:
        return Outcome(self.job.id, self.worker_id, self.job.attempts, status, **values)


class JobStopped(BaseException):
    """Raised inside a sync task's thread when the worker stops the job (its lease
    was lost): a BaseException, so that ``except Exception`` in a task lets it pass."""


def _raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type)
    )


def _hook_status(task: Task[Any, Any], running: RunningJob) -> StatusOf:
    judge = status_of(task, running.job, lambda: running.context.cancel_requested)
    # A job the worker stopped (lease lost, shutdown) is handed back to the queue.
    return lambda exc: JobStatus.QUEUED if running.released else judge(exc)


class JobExecutor(Protocol):
    """What the worker needs of an executor: this one (threads) or
    :class:`pgq.isolation.ProcessExecutor` (a child process per job)."""

    async def run(self, running: RunningJob) -> Outcome: ...

    def abort(self, running: RunningJob, reason: str) -> None: ...

    def shutdown(self) -> None: ...


class Executor:
    """Runs jobs for one worker; ``run()`` returns the outcome to record.

    ``job_timeout`` bounds the jobs of tasks that set no ``timeout`` of their own.
    """

    def __init__(
        self, tasks: dict[str, Task[Any, Any]], concurrency: int, job_timeout: float | None = None
    ):
        self.tasks = tasks
        self.job_timeout = job_timeout
        self._threads = ThreadPoolExecutor(concurrency, thread_name_prefix="pgq-task")

    def _timeout(self, task: Task[Any, Any]) -> float | None:
        return task.timeout if task.timeout is not None else self.job_timeout

    async def run(self, running: RunningJob) -> Outcome:
        job = running.job
        task = self.tasks.get(job.task)
        try:
            if task is None:  # the claim filters on known tasks; this is a safety net
                raise UnknownTask(f"no task {job.task!r} is registered in this worker")
            if task.is_async and task.app.hooks:  # hooks run in this asyncio task
                value = await task.app.hooks.acall(
                    job, partial(self._run_async, task, running), _hook_status(task, running)
                )
            else:
                call = self._run_async if task.is_async else self._run_sync
                value = await call(task, running)
        except asyncio.CancelledError:
            if running.context.cancel_requested and not running.released:
                return running.outcome(JobStatus.CANCELLED, error="cancelled while running")
            raise
        except BaseException as exc:  # a task may raise anything, SystemExit included
            verdict = judge_failure(
                exc,
                attempts=job.attempts,
                max_attempts=job.max_attempts,
                retry_on=task.retry_on if task else (),
                backoff=task.retry_backoff if task else 0.0,
                cancel_requested=running.context.cancel_requested,
            )
            return running.outcome(verdict.status, error=verdict.error, retry_in=verdict.retry_in)
        try:
            return running.outcome(JobStatus.SUCCEEDED, result=encode_result(value))
        except SerializationError as exc:  # retrying would return the same value
            return running.outcome(JobStatus.FAILED, error=format_error(exc))

    async def _run_async(self, task: Task[Any, Any], running: RunningJob) -> Any:
        set_current(running.context)  # this asyncio task has its own context copy
        job = running.job
        timeout = self._timeout(task)
        try:
            if timeout is None:  # no timer to race: run it in this asyncio task
                return await task.func(*job.args, **job.kwargs)
            inner = asyncio.ensure_future(task.func(*job.args, **job.kwargs))
            try:
                done, _ = await asyncio.wait({inner}, timeout=timeout)
                if not done:
                    raise JobTimeout(f"{task.name} ran longer than its timeout of {timeout}s")
                return inner.result()
            finally:
                if not inner.done():
                    inner.cancel()
                    with contextlib.suppress(BaseException):
                        await inner
        finally:
            if running.context.reported_progress:
                await running.context.aflush_progress()

    async def _run_sync(self, task: Task[Any, Any], running: RunningJob) -> Any:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        future = loop.run_in_executor(self._threads, context.run, self._call, task, running)
        timeout = self._timeout(task)
        if timeout is None:
            return await future
        done, _ = await asyncio.wait({future}, timeout=timeout)
        if done:
            return future.result()
        self.interrupt(running, JobTimeout)
        running.lingering = future
        raise JobTimeout(f"{task.name} ran longer than its timeout of {timeout}s")

    @staticmethod
    def _call(task: Task[Any, Any], running: RunningJob) -> Any:
        with running.lock:
            running.thread_id = threading.get_ident()
        try:
            set_current(running.context)
            job = running.job
            if task.app.hooks:  # hooks run in this thread
                call = partial(task.func, *job.args, **job.kwargs)
                return task.app.hooks.call(job, call, _hook_status(task, running))
            return task.func(*job.args, **job.kwargs)
        finally:
            if running.context.reported_progress:
                running.context.flush_progress()
            with running.lock:
                running.thread_id = None

    @staticmethod
    def interrupt(running: RunningJob, exc_type: type[BaseException]) -> None:
        """Raise ``exc_type`` in the thread running this job, if one still is."""
        with running.lock:
            if running.thread_id is not None:
                _raise_in_thread(running.thread_id, exc_type)

    def abort(self, running: RunningJob, reason: str) -> None:
        """Stop a job, as far as threads allow: an async task is cancelled with its
        runner; a sync task's thread gets ``pgq.Cancelled`` if the job's
        cancellation was requested, else JobStopped (its outcome will not be
        recorded), the next time it runs Python code: code stuck in C runs on
        until it returns."""
        task = self.tasks.get(running.job.task)
        if task is not None and task.is_async:
            if running.runner is not None:
                running.runner.cancel()
            return
        self.interrupt(running, Cancelled if running.context.cancel_requested else JobStopped)

    def shutdown(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
