"""Tasks used by the tests. Worker subprocesses import this module by name
(``--app tests.tasks:app``), so everything a test runs in a worker lives here."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

import pgq

app = pgq.App()

_local = threading.local()

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS test_ledger (
    job_id bigint NOT NULL,
    attempt integer NOT NULL,
    pid integer NOT NULL,
    key text,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


def _ledger_connection() -> psycopg.Connection[Any]:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(app.dsn, autocommit=True)
        _local.conn = conn
    return conn


def write_ledger(key: str | None = None) -> None:
    """Record that this attempt of the current job ran (committed at once)."""
    job = pgq.current_job()
    _ledger_connection().execute(
        "INSERT INTO test_ledger (job_id, attempt, pid, key) VALUES (%s, %s, %s, %s)",
        (job.id, job.attempt, os.getpid(), key),
    )


@app.task(name="add")
def add(a: int, b: int) -> int:
    return a + b


@app.task(name="echo")
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@app.task(name="async_add")
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@app.task(name="record")
def record(key: str | None = None) -> str | None:
    write_ledger(key)
    return key


@app.task(name="fail_always", max_attempts=3, retry_backoff=0)
def fail_always() -> None:
    raise ValueError("this task always fails")


@app.task(name="fail_until", max_attempts=5, retry_backoff=0)
def fail_until(succeed_on: int) -> int:
    attempt = pgq.current_job().attempt
    if attempt < succeed_on:
        raise RuntimeError(f"attempt {attempt} fails on purpose")
    return attempt


@app.task(name="slow_backoff", max_attempts=3, retry_backoff=60)
def slow_backoff() -> None:
    raise ValueError("retried after a long backoff")


@app.task(name="only_retries_connection_errors", max_attempts=3, retry_backoff=0,
          retry_on=(ConnectionError,))
def only_retries_connection_errors(kind: str) -> None:
    if kind == "connection":
        raise ConnectionError("transient")
    raise KeyError("a bug, not worth retrying")


@app.task(name="retry_later", max_attempts=3)
def retry_later(seconds: float) -> None:
    raise pgq.Retry(in_seconds=seconds)


@app.task(name="fail_now", max_attempts=5)
def fail_now() -> None:
    raise pgq.Fail("no point retrying")


@app.task(name="returns_object")
def returns_object() -> object:
    return object()


@app.task(name="sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="sleep_with_timeout", timeout=0.3, max_attempts=1)
def sleep_with_timeout(seconds: float) -> float:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # Python code, so the timeout lands between lines
        time.sleep(0.01)
    return seconds


@app.task(name="async_sleep_with_timeout", timeout=0.3, max_attempts=1)
async def async_sleep_with_timeout(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@app.task(name="wait_for_file")
def wait_for_file(path: str, timeout: float = 60.0) -> str:
    """Record the run, then block until ``path`` exists: a job that is
    observably running for as long as a test needs."""
    write_ledger(path)
    return _wait_for(path, timeout)


@app.task(name="hold")
def hold(path: str, timeout: float = 60.0) -> str:
    """wait_for_file that also records when it ended (key 'ended'), however it
    ended: returned, raised, or stopped by the worker."""
    write_ledger("started")
    try:
        return _wait_for(path, timeout)
    finally:
        write_ledger("ended")


def _wait_for(path: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)
    return path


@app.task(name="wait_for_cancel", max_attempts=1)
def wait_for_cancel(timeout: float = 30.0) -> str:
    write_ledger()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pgq.current_job().raise_if_cancelled()
        time.sleep(0.01)
    return "never cancelled"


@app.task(name="async_wait_for_cancel", max_attempts=1)
async def async_wait_for_cancel(timeout: float = 30.0) -> str:
    await asyncio.to_thread(write_ledger)
    await asyncio.sleep(timeout)
    return "never cancelled"


@app.task(name="unique_echo", unique=True)
def unique_echo(value: Any) -> Any:
    return value


@app.task(name="job_context")
def job_context() -> dict[str, Any]:
    """What pgq.current_job() tells a sync task about its own job."""
    job = pgq.current_job()
    return {"id": job.id, "attempt": job.attempt, "cancel_requested": job.cancel_requested}


@app.task(name="async_job_context")
async def async_job_context() -> dict[str, Any]:
    """What pgq.current_job() tells an async task about its own job."""
    await asyncio.sleep(0)
    job = pgq.current_job()
    return {"id": job.id, "attempt": job.attempt, "cancel_requested": job.cancel_requested}


class UnprintableError(Exception):
    """An exception whose message cannot be built."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


def _broken_backoff(attempt: int) -> float:
    raise RuntimeError(f"retry_backoff raised on attempt {attempt}")


@app.task(name="fails_with_nul", max_attempts=1)
def fails_with_nul() -> None:
    raise ValueError("before\x00after")


@app.task(name="fails_unprintably", max_attempts=1)
def fails_unprintably() -> None:
    raise UnprintableError()


@app.task(name="fails_with_broken_backoff", max_attempts=3, retry_backoff=_broken_backoff)
def fails_with_broken_backoff() -> None:
    raise ValueError("the task's own error")


@app.task(name="returns_nul")
def returns_nul() -> str:
    return "before\x00after"


@app.task(name="sleep_in_c_with_timeout", timeout=0.2, max_attempts=2, retry_backoff=0)
def sleep_in_c_with_timeout(seconds: float) -> float:
    write_ledger()
    time.sleep(seconds)  # one C call: the timeout can only land once it returns
    return seconds


# Progress and queue control.


@app.task(name="progress_then_wait")
def progress_then_wait(path: str, total: int = 10) -> int:
    """Reports in a tight loop (throttled), waits for ``path``, reports the end."""
    job = pgq.current_job()
    for done in range(total // 2 + 1):
        job.report_progress(done, total, "first half")
    _wait_for(path, 60.0)
    for done in range(total // 2 + 1, total + 1):
        job.report_progress(done, total, "done")  # the last one within a second of another
    return total


@app.task(name="async_progress_then_wait")
async def async_progress_then_wait(path: str, total: int = 10) -> int:
    job = pgq.current_job()
    for done in range(total // 2 + 1):
        job.report_progress(done, total, "first half")  # never blocks the loop
    while not os.path.exists(path):
        await asyncio.sleep(0.02)
    for done in range(total // 2 + 1, total):
        job.report_progress(done, total, "done")
    await job.areport_progress(total, total, "done")
    return total


@app.task(name="timed")
def timed(seconds: float) -> None:
    """Records when it starts and ends, for run-interval ledgers."""
    write_ledger("start")
    time.sleep(seconds)
    write_ledger("end")
