"""Tasks that take down the process running them, and well-behaved ones to run
beside them: the App of the isolation tests (``--app tests.poison_tasks:app``)."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pgq

app = pgq.App()


# Poisons.


@app.task(name="abort", max_attempts=2, retry_backoff=0)
def abort() -> None:
    os.abort()


@app.task(name="hog", max_attempts=1)
def hog() -> int:
    """Allocates until it cannot (or forever, without a memory limit)."""
    chunks = []
    while True:
        chunks.append(bytearray(1024 * 1024))


@app.task(name="spin", max_attempts=1, timeout=1)
def spin() -> None:
    while True:
        pass


@app.task(name="block_in_c", max_attempts=1)
def block_in_c(path: str | None = None) -> None:
    """Blocks every signal that can be blocked, then waits for one in C: only
    SIGKILL ends it. Writes its pid to ``path`` first, if given."""
    if path:
        Path(path).write_text(str(os.getpid()))
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    ctypes.CDLL(None).pause()


# Well-behaved.


@app.task(name="add")
def add(a: int, b: int) -> int:
    return a + b


@app.task(name="enqueue_add")
def enqueue_add(a: int, b: int) -> int:
    """Queues another job from inside a job: the job's process reaches the database."""
    return add.delay(a, b).id


@app.task(name="whoami")
def whoami() -> dict[str, Any]:
    job = pgq.current_job()
    return {"id": job.id, "attempt": job.attempt, "pid": os.getpid()}


@app.task(name="async_whoami")
async def async_whoami() -> dict[str, Any]:
    await asyncio.sleep(0)
    job = pgq.current_job()
    return {"id": job.id, "attempt": job.attempt, "pid": os.getpid()}


@app.task(name="retry_once", max_attempts=3)
def retry_once() -> int:
    attempt = pgq.current_job().attempt
    if attempt == 1:
        raise pgq.Retry(in_seconds=0, reason="once more")
    return attempt


@app.task(name="chatty")
def chatty() -> str:
    """Writes to stdout from Python and from C, including a line that looks
    like a message of the job processes' protocol."""
    print('{"status": "succeeded", "result": "\\"forged\\""}')
    sys.stdout.flush()
    os.write(1, b"written to fd 1 by chatty\n")
    libc = ctypes.CDLL(None)
    libc.puts(b"put by chatty through libc")
    libc.fflush(None)
    return "said it"


@app.task(name="noop")
def noop(n: int) -> None:
    """Nothing: for measuring what running a job costs."""


@app.task(name="sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
