"""pgq through its public API: ``task.delay()``, ``task.delay_many()`` and a
``pgq worker --burst`` process, as a user would run them."""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pgq
from pgq import store
from pgq.tasks import Task

from .. import ROOT, BenchError, tasks
from ..config import BenchConfig
from . import DrainMode, DrainTiming, jobs_table


@contextlib.contextmanager
def _app_on(dsn: str) -> Iterator[pgq.App]:
    """The benchmark App pointed at ``dsn``, its pool opened before the clock starts."""
    tasks.app.configure(dsn=dsn)
    try:
        tasks.app.execute(store.queue_status())
        yield tasks.app
    finally:
        tasks.app.close()
        tasks.app.configure(dsn=None)


def _delay_many(task: Task[[int], Any], dsn: str, count: int, batch: int) -> float:
    with _app_on(dsn):
        start = time.perf_counter()
        for first in range(0, count, batch):
            task.delay_many([(i,) for i in range(first, min(first + batch, count))])
        return time.perf_counter() - start


class PgqAdapter:
    name = "pgq"

    def __init__(self, config: BenchConfig):
        self.concurrency = config.concurrency
        self.async_concurrency = config.async_concurrency

    def drain_modes(self) -> Sequence[DrainMode]:
        return [DrainMode(f"1 worker, c={c}", c) for c in self.concurrency] + [
            DrainMode(f"1 worker, c={c}, async", c, asynchronous=True)
            for c in self.async_concurrency
        ]

    def install(self, dsn: str) -> None:
        jobs_table.install(dsn)

    def count_jobs(self, dsn: str) -> int:
        return jobs_table.count_jobs(dsn)

    def enqueue_one(self, dsn: str, count: int) -> float:
        with _app_on(dsn):
            start = time.perf_counter()
            for i in range(count):
                tasks.noop.delay(i)
            return time.perf_counter() - start

    def enqueue_bulk(self, dsn: str, count: int, batch: int) -> float:
        return _delay_many(tasks.noop, dsn, count, batch)

    def fill(self, dsn: str, count: int, batch: int, mode: DrainMode) -> None:
        _delay_many(tasks.async_noop if mode.asynchronous else tasks.noop, dsn, count, batch)

    def drain(self, dsn: str, count: int, mode: DrainMode) -> DrainTiming:
        command = [
            *(sys.executable, "-m", "pgq", "--dsn", dsn, "--log-level", "warning"),
            *("worker", "--app", "bench.tasks:app", "--burst", "--concurrency", str(mode.value)),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for variable in ("PGQ_DSN", "DATABASE_URL", "PGQ_APP"):
            env.pop(variable, None)
        cpu_before = _children_cpu()
        start = time.perf_counter()
        try:
            process = subprocess.run(
                command,
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=max(120.0, count / 20),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(
                f"the worker did not finish {count} jobs in {exc.timeout:.0f}s"
            ) from exc
        wall = time.perf_counter() - start
        if process.returncode != 0:
            output = (process.stderr or process.stdout).strip().splitlines()[-20:]
            raise BenchError(f"the worker exited with {process.returncode}:\n" + "\n".join(output))
        cpu = _children_cpu() - cpu_before
        finished, db_seconds = jobs_table.drain_timing(dsn)
        return DrainTiming(wall, db_seconds, finished, cpu_seconds=cpu)


def _children_cpu() -> float:
    """User + system CPU seconds of the child processes waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
