"""An App with hooks, for tests/core/test_hooks.py. Each hook appends one JSON
line to the file named by $PGQ_TEST_HOOK_LOG (job processes inherit it); a
broken hook of each kind raises after it, and must change nothing."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import threading
from typing import Any

import pgq

app = pgq.App()
app.import_spec = "tests.hook_tasks:app"

# Set by before_task: the task and the hooks after it must see it.
marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")


def record(event: str, job: pgq.Job, **fields: Any) -> None:
    line = {
        "event": event,
        "job": job.id,
        "attempt": job.attempts,
        "marker": marker.get(),
        "thread": threading.get_ident(),
        "pid": os.getpid(),
        **fields,
    }
    with open(os.environ["PGQ_TEST_HOOK_LOG"], "a") as log:
        log.write(json.dumps(line) + "\n")


@app.before_task
def before(job: pgq.Job) -> None:
    marker.set(f"job-{job.id}")
    record("before", job)


@app.on_failure
def on_failure(job: pgq.Job, exc: BaseException, status: pgq.JobStatus) -> None:
    record("failure", job, exc=type(exc).__name__, status=status.value)


@app.after_task
def after(job: pgq.Job, status: pgq.JobStatus, exc: BaseException | None) -> None:
    record("after", job, status=status.value, exc=type(exc).__name__ if exc else None)


def broken(*args: Any) -> None:
    raise RuntimeError("a broken hook")


app.before_task(broken)
app.on_failure(broken)
app.after_task(broken)


@app.task(name="seen")
def seen() -> dict[str, Any]:
    return {"marker": marker.get(), "thread": threading.get_ident(), "pid": os.getpid()}


@app.task(name="aseen")
async def aseen() -> dict[str, Any]:
    return {"marker": marker.get(), "pid": os.getpid()}


@app.task(name="flaky", max_attempts=2, retry_backoff=0)
def flaky() -> None:
    raise ValueError("always")


@app.task(name="aflaky", max_attempts=2, retry_backoff=0)
async def aflaky() -> None:
    raise ValueError("always")


@app.task(name="chatty")
def chatty() -> None:
    logging.getLogger("tests.chatty").warning("said inside the task")
