"""``--isolation process``: every job runs in a child process of the worker.

A crash (``os.abort()``, a segfault in C code), a memory blow-up or a task stuck
where no signal reaches it then costs one child, never the worker and the
other jobs it runs. Each concurrency slot is served by a long-lived child that
runs one job at a time and is reused across jobs; it is replaced when it dies,
uses up its memory allowance or is killed at a timeout or by :meth:`abort`.

Children are fresh interpreters (``python -m pgq.isolated_child``), never forks
of the worker, whose event loop, threads and database sockets must not be
shared. They import the App from its ``import_spec`` and speak JSON lines with
the worker (see :mod:`pgq.isolated_child`): no pickle, so nothing a child sends
can make the worker run code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from .exceptions import Cancelled, ConfigurationError, JobCrashed, JobTimeout, UnknownTask
from .executor import JobStopped, RunningJob
from .jobs import Job, JobStatus
from .retry import Outcome, format_error, judge_failure
from .tasks import Task

if TYPE_CHECKING:
    from .app import App

logger = logging.getLogger("pgq.worker")

CHILD_MODULE = "pgq.isolated_child"
# Importing a large app (Django) can take a while; a child not ready by then is stuck.
START_TIMEOUT = 120.0
# At shutdown an idle child gets this long to exit on its own before it is killed.
STOP_TIMEOUT = 5.0
# The longest message line (a job's arguments, a result, a traceback).
MAX_MESSAGE = 1 << 30

NO_SPEC = (
    "isolation='process' imports the App anew in each job process, but this App does "
    "not say where it comes from: run `pgq worker --app module:attr`, or set "
    "app.import_spec = 'module:attr'"
)


class ChildStartError(Exception):
    """A job process exited or hung before it was ready."""


class ProtocolError(Exception):
    """A job process sent something that is not a message of the protocol."""


def describe_exit(returncode: int) -> str:
    """How a process ended, as in "the job's process was killed by signal 6 (SIGABRT)"."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    number = -returncode
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = "unknown signal"
    text = f"was killed by signal {number} ({name})"
    if number == signal.SIGKILL:
        text += ", from outside the worker (the kernel's out-of-memory killer?)"
    return text


def job_message(job: Job) -> dict[str, Any]:
    """What a child is told of a job (read back by ``pgq.isolated_child.read_job``)."""
    return {
        "job": {
            "id": job.id,
            "queue": job.queue,
            "task": job.task,
            "args": job.args,
            "kwargs": job.kwargs,
            "priority": job.priority,
            "attempts": job.attempts,
            "max_attempts": job.max_attempts,
            "run_at": job.run_at.isoformat(),
            "created_at": job.created_at.isoformat(),
            "started_at": None if job.started_at is None else job.started_at.isoformat(),
            "worker_id": None if job.worker_id is None else str(job.worker_id),
            "unique_key": job.unique_key,
        }
    }


class Child:
    """A job process, seen from the worker."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.stopped_by: str | None = None  # why abort() killed it
        # Signals go through a pidfd where there is one (Linux 5.3+): it names this
        # process even once reaped, when its pid may already be another's.
        self._pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):
            self._pidfd = os.pidfd_open(process.pid)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    @classmethod
    async def start(cls, hello: dict[str, Any]) -> Child:
        started = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                CHILD_MODULE,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,  # the protocol; the child's fd 1 becomes stderr
                limit=MAX_MESSAGE,
            )
        except OSError as exc:  # out of processes, memory or file descriptors
            raise ChildStartError(f"could not start a job process: {exc}") from exc
        child = cls(process)
        try:
            ready = None
            if await child.send(hello):
                ready = await asyncio.wait_for(child.receive("ready"), START_TIMEOUT)
        except ProtocolError as exc:
            await child.kill()
            raise ChildStartError(str(exc)) from None
        except asyncio.TimeoutError:
            await child.kill()
            raise ChildStartError(
                f"a job process was not ready within {START_TIMEOUT:.0f}s of its start"
            ) from None
        except BaseException:
            await child.kill()
            raise
        if ready is None:
            returncode = await child.kill()
            raise ChildStartError(
                f"a job process {describe_exit(returncode)} before it was ready "
                "(see the worker's error output)"
            )
        logger.info(
            "job process pid=%d ready in %.0f ms", child.pid, (time.monotonic() - started) * 1000
        )
        return child

    async def send(self, message: dict[str, Any]) -> bool:
        """False if the child is gone."""
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps(message).encode() + b"\n")
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    async def receive(self, expected: str) -> dict[str, Any] | None:
        """The next message, which must have the key ``expected``; None once the
        child is gone. ProtocolError if it sent anything else."""
        stdout = self.process.stdout
        assert stdout is not None
        line = await stdout.readline()
        if not line.endswith(b"\n"):
            return None  # end of file: it died, possibly in the middle of a line
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict) or expected not in message:
            raise ProtocolError(f"the job's process sent an unreadable message: {line[:200]!r}")
        return message

    def close_input(self) -> None:
        """End of file on its stdin: an idle child exits on its own."""
        if self.process.stdin is not None:
            self.process.stdin.close()

    def kill_now(self) -> None:
        # Not process.kill(): Popen.send_signal polls first, and reaping the child
        # there robs asyncio's child watcher of its exit status.
        with contextlib.suppress(ProcessLookupError):
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            elif self.alive:
                os.kill(self.pid, signal.SIGKILL)

    async def kill(self) -> int:
        """SIGKILL (nothing a task does can block it) and wait until the process is
        reaped: only then may its job run elsewhere. Cancelling the caller does not
        interrupt the wait, which is short; the cancellation is raised after it."""
        self.kill_now()
        cancelled = False
        while True:
            try:
                returncode = await self.process.wait()
                break
            except asyncio.CancelledError:
                cancelled = True
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if cancelled:
            raise asyncio.CancelledError
        return returncode

    async def stop(self, deadline: float) -> None:
        """Let it exit on its own until ``deadline`` (monotonic), then kill it.
        Runs to the end when cancelled: no child may outlive the worker."""
        self.close_input()
        while self.alive and time.monotonic() < deadline:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self.process.wait(), deadline - time.monotonic())
        with contextlib.suppress(asyncio.CancelledError):
            await self.kill()


class ProcessExecutor:
    """Runs each job in a child process; the interface of :class:`pgq.executor.Executor`."""

    def __init__(
        self, app: App, *, memory_limit_mb: int | None = None, job_timeout: float | None = None
    ) -> None:
        if app.import_spec is None:
            raise ConfigurationError(NO_SPEC)
        self.spec = app.import_spec
        self.dsn = app._dsn  # a DSN given in code or by --dsn: the children use it too
        self.listen_dsn = app._listen_dsn  # and so the children know the DSN is pooled
        self.tasks = app.tasks
        self.memory_limit_mb = memory_limit_mb
        self.job_timeout = job_timeout
        self._children: set[Child] = set()  # every live child, idle or busy
        self._idle: list[Child] = []
        self._busy: dict[RunningJob, Child] = {}
        self._stopped: dict[RunningJob, str] = {}  # abort()ed before a child got them
        self._closing: list[asyncio.Future[None]] = []  # held: the loop keeps weak references

    def _timeout(self, task: Task[Any, Any]) -> float | None:
        return task.timeout if task.timeout is not None else self.job_timeout

    async def run(self, running: RunningJob) -> Outcome:
        task = self.tasks.get(running.job.task)
        if task is None:  # the claim filters on known tasks; this is a safety net
            error = UnknownTask(f"no task {running.job.task!r} is registered in this worker")
            return running.outcome(JobStatus.FAILED, error=format_error(error))
        try:
            return await self._run(running, task)
        finally:
            self._stopped.pop(running, None)

    async def _run(self, running: RunningJob, task: Task[Any, Any]) -> Outcome:
        job = running.job
        if running in self._stopped:
            return self._failure(running, task, self._stop_error(running))
        try:
            child = await self._checkout()
        except ChildStartError as exc:
            logger.error("job=%d: %s", job.id, exc)
            return self._failure(running, task, JobCrashed(str(exc)))
        if running in self._stopped:  # abort() came while a child was being found
            self._idle.append(child)
            return self._failure(running, task, self._stop_error(running))
        timeout = self._timeout(task)
        self._busy[running] = child
        reply: dict[str, Any] | None = None
        error: BaseException | None = None
        try:
            if await child.send(job_message(job)):
                reply = await asyncio.wait_for(child.receive("status"), timeout)
        except asyncio.TimeoutError:
            error = JobTimeout(f"{task.name} timed out after {timeout:g}s; its process was killed")
        except ProtocolError as exc:
            error = JobCrashed(f"{exc}; it was killed")
        except BaseException:  # cancelled: the job was released, its process must not go on
            await self._discard(child)
            raise
        finally:
            del self._busy[running]
        if reply is not None and not reply.get("replace") and child.stopped_by is None:
            self._idle.append(child)
            return self._from_reply(running, reply)
        returncode = await self._discard(child)
        if reply is not None:  # it finished, even if abort() came right after
            return self._from_reply(running, reply)
        if child.stopped_by is not None:
            return self._failure(running, task, self._stop_error(running))
        if error is None:
            error = JobCrashed(f"the job's process {describe_exit(returncode)}")
        logger.warning("job=%d process pid=%d: %s", job.id, child.pid, error)
        return self._failure(running, task, error)

    def abort(self, running: RunningJob, reason: str) -> None:
        """Stop a job now: its child is SIGKILLed (and replaced). ``run()`` then
        returns ``cancelled`` if the job's cancellation was requested, else ``failed``."""
        child = self._busy.get(running)
        if child is None:
            self._stopped[running] = reason
            return
        child.stopped_by = reason
        self._stopped[running] = reason
        child.kill_now()

    def shutdown(self) -> None:
        """Stop every child: an idle one exits at the end of its input (or is killed
        after STOP_TIMEOUT); one still busy is killed, its job having been released.
        They are reaped by tasks that the worker's event loop runs to the end
        before it closes (``asyncio.run`` waits for every task)."""
        children, self._children = list(self._children), set()
        busy = set(self._busy.values())
        self._idle.clear()
        for child in children:
            if child in busy:
                child.kill_now()
            else:
                child.close_input()
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop to reap them with: the system will
            for child in children:
                child.kill_now()
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        self._closing = [asyncio.ensure_future(child.stop(deadline)) for child in children]

    # Children.

    def _hello(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "dsn": self.dsn,
            "listen_dsn": self.listen_dsn,
            "path": sys.path,
            "memory_limit_mb": self.memory_limit_mb,
            "log_level": logging.getLogger().getEffectiveLevel(),
            "parent": os.getpid(),
        }

    async def _checkout(self) -> Child:
        """An idle child, or a new one."""
        while self._idle:
            child = self._idle.pop()
            if child.alive:
                return child
            returncode = await self._discard(child)
            logger.warning("idle job process pid=%d %s", child.pid, describe_exit(returncode))
        child = await Child.start(self._hello())
        self._children.add(child)
        return child

    async def _discard(self, child: Child) -> int:
        self._children.discard(child)
        return await child.kill()

    # Outcomes.

    def _stop_error(self, running: RunningJob) -> BaseException:
        reason = f"{self._stopped.get(running, 'stopped')}; its process was killed"
        return Cancelled(reason) if running.context.cancel_requested else JobStopped(reason)

    @staticmethod
    def _failure(running: RunningJob, task: Task[Any, Any], exc: BaseException) -> Outcome:
        job = running.job
        verdict = judge_failure(
            exc,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            retry_on=task.retry_on,
            backoff=task.retry_backoff,
            cancel_requested=running.context.cancel_requested,
        )
        return running.outcome(verdict.status, error=verdict.error, retry_in=verdict.retry_in)

    @staticmethod
    def _from_reply(running: RunningJob, reply: dict[str, Any]) -> Outcome:
        status = JobStatus(reply["status"])
        if status is JobStatus.SUCCEEDED:
            return running.outcome(status, result=reply["result"])
        if running.context.cancel_requested:  # as judge_failure decides in the child's place
            status = JobStatus.CANCELLED
        return running.outcome(
            status, error=reply.get("error"), retry_in=float(reply.get("retry_in", 0.0))
        )
