"""A job process of a worker run with ``--isolation process``.

The worker (:mod:`pgq.isolation`) starts it as ``python -m pgq.isolated_child``,
a fresh interpreter, and keeps it to run one job at a time. They speak JSON,
one object per line, never pickle:

    worker -> child   {"spec": "module:app", "dsn": ..., "path": [...],
                       "memory_limit_mb": 64 or null, "log_level": 20, "parent": pid}
    child -> worker   {"ready": pid}
    worker -> child   {"job": {the job's fields, see pgq.isolation.job_message}}
    child -> worker   {"status": "succeeded", "result": "<JSON text>"}
                   or {"status": "queued"/"failed"/"cancelled", "error": ..., "retry_in": s}
                      either with "replace": true when the child must not serve again
    ... more jobs; the worker closes the child's stdin: it exits.

Messages travel on the stdin and a duplicate of the stdout it was started
with; fd 1 itself then points at stderr and fd 0 at /dev/null, so whatever a
task prints or reads, from Python or from C, cannot corrupt the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import faulthandler
import json
import logging
import os
import resource
import signal
import sys
import traceback
import uuid
from datetime import datetime
from functools import partial
from typing import IO, Any

from .app import App
from .context import JobContext, set_current
from .exceptions import PgqError, SerializationError, UnknownTask
from .hooks import status_of
from .jobs import Job, JobStatus
from .loading import load_app
from .retry import format_error, judge_failure
from .serialization import encode_result
from .tasks import Task

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def read_job(fields: dict[str, Any], app: App) -> Job:
    started_at, worker_id = fields["started_at"], fields["worker_id"]
    return Job(
        id=fields["id"],
        queue=fields["queue"],
        task=fields["task"],
        args=fields["args"],
        kwargs=fields["kwargs"],
        priority=fields["priority"],
        status=JobStatus.RUNNING,
        attempts=fields["attempts"],
        max_attempts=fields["max_attempts"],
        run_at=datetime.fromisoformat(fields["run_at"]),
        created_at=datetime.fromisoformat(fields["created_at"]),
        started_at=None if started_at is None else datetime.fromisoformat(started_at),
        worker_id=None if worker_id is None else uuid.UUID(worker_id),
        unique_key=fields["unique_key"],
        app=app,
    )


class Allowance:
    """``memory_limit_mb``: how much address space each job may add to the process.

    Before each job the soft RLIMIT_AS is set to the current size plus the
    allowance, so every job gets all of it, whatever the app's imports or
    earlier jobs took. A process that kept a whole allowance after its jobs
    (a leak, or a fragmented heap) is replaced.
    """

    def __init__(self, megabytes: int) -> None:
        self.megabytes = megabytes
        self.bytes = megabytes * 1024 * 1024
        self.baseline = address_space()

    def grant(self) -> None:
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        soft = address_space() + self.bytes
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))

    def used_up(self) -> bool:
        return address_space() > self.baseline + self.bytes


def address_space() -> int:
    """This process's virtual memory size in bytes (VmSize: what RLIMIT_AS counts)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def call_task(task: Task[Any, Any], job: Job) -> Any:
    value = task.func(*job.args, **job.kwargs)
    return asyncio.run(value) if task.is_async else value


def run_job(app: App, job: Job, allowance: Allowance | None) -> dict[str, Any]:
    """Run one job here and now; the reply to send."""
    task = app.tasks.get(job.task)
    context = JobContext(job)
    set_current(context)  # asyncio.run copies it into the task's context
    if allowance is not None:
        allowance.grant()
    try:
        if task is None:
            raise UnknownTask(f"no task {job.task!r} is registered in this worker")
        if app.hooks:  # here, in the job's process (see pgq.hooks)
            value = app.hooks.call(job, partial(call_task, task, job), status_of(task, job))
        else:
            value = call_task(task, job)
    except BaseException as exc:  # a task may raise anything, SystemExit included
        replace = isinstance(exc, MemoryError)
        if replace:
            # Its frames hold whatever filled memory: release it to judge and reply.
            traceback.clear_frames(exc.__traceback__)
            if allowance is not None and not exc.args:
                exc.args = (f"exceeded the memory limit of {allowance.megabytes} MB",)
        try:
            verdict = judge_failure(
                exc,
                attempts=job.attempts,
                max_attempts=job.max_attempts,
                retry_on=task.retry_on if task else (),
                backoff=task.retry_backoff if task else 0.0,
            )
        except Exception as judging:  # a retry_backoff function that raised, say
            return {"status": "failed", "error": format_error(judging), "replace": replace}
        return {
            "status": verdict.status.value,
            "error": verdict.error,
            "retry_in": verdict.retry_in,
            "replace": replace,
        }
    finally:
        # The last progress held back by the throttle (the database is reached
        # directly: this process has the DSN). asyncio.run waited for writes in flight.
        if context.reported_progress:
            context.flush_progress()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a task may have closed or replaced it
                stream.flush()
    try:
        return {"status": "succeeded", "result": encode_result(value)}
    except SerializationError as exc:  # retrying would return the same value
        return {"status": "failed", "error": format_error(exc)}


def take_protocol_streams() -> tuple[IO[bytes], IO[bytes]]:
    """The protocol's own copies of fds 0 and 1; then fd 1 is stderr, fd 0 /dev/null."""
    inbox = os.fdopen(os.dup(0), "rb")
    outbox = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return inbox, outbox


def receive(inbox: IO[bytes]) -> dict[str, Any] | None:
    line = inbox.readline()
    return json.loads(line) if line else None


def send(outbox: IO[bytes], message: dict[str, Any]) -> None:
    outbox.write(json.dumps(message).encode() + b"\n")
    outbox.flush()


def leave_signals_to_the_worker() -> None:
    """A terminal's Ctrl-C, or a service manager's SIGTERM to the whole process
    group, is the worker's to handle: it lets running jobs finish within its
    grace period, then stops its children itself. A Python handler (unlike
    SIG_IGN) is not inherited by programs a task runs."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: None)


def die_with(parent: int) -> None:
    """Be SIGKILLed when the worker dies, even by SIGKILL (Linux only): a job
    stuck in C code must not outlive it."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before that
        raise SystemExit(0)


def main() -> int:
    inbox, outbox = take_protocol_streams()
    leave_signals_to_the_worker()
    faulthandler.enable()  # a crash prints the Python stack to the worker's error output
    hello = receive(inbox)
    if hello is None:
        return 0
    die_with(hello["parent"])
    sys.path[:] = hello["path"]
    try:
        app = load_app(hello["spec"])
    except PgqError as exc:
        print(f"pgq job process: error: {exc}", file=sys.stderr)
        return 1
    if hello["dsn"]:
        app.configure(dsn=hello["dsn"], listen_dsn=hello["listen_dsn"])
    from .cli import LOG_FORMAT  # not at the top: pgq.cli imports the worker, which imports this

    logging.basicConfig(level=hello["log_level"], format=LOG_FORMAT)  # unless the app set it up
    megabytes = hello["memory_limit_mb"]
    allowance = Allowance(megabytes) if megabytes else None
    send(outbox, {"ready": os.getpid()})
    while (message := receive(inbox)) is not None:
        reply = run_job(app, read_job(message["job"], app), allowance)
        if allowance is not None and allowance.used_up():
            reply["replace"] = True
        send(outbox, reply)
    app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
