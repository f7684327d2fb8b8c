"""pgq through its public API: ``task.delay()``, ``task.delay_many()`` and
``pgq worker`` processes, as a user would run them."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pgq
from pgq import store
from pgq.tasks import Task

from .. import tasks
from ..config import BenchConfig
from . import DrainMode, DrainTiming, processes
from .tables import Tables, database_now


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


def _label(mode_value: int, asynchronous: bool, processes: int) -> str:
    label = f"c={mode_value}{', async' if asynchronous else ''}"
    return label if processes == 1 else f"{processes} x {label}"


class PgqAdapter:
    name = "pgq"
    tables = Tables()
    history_key = "pgq.jobs"

    def __init__(self, config: BenchConfig):
        self.concurrency = config.concurrency
        self.async_concurrency = config.async_concurrency

    def drain_modes(self, processes: int) -> Sequence[DrainMode]:
        if processes > 1:  # the best of each kind at one process, times N
            settings = [(max(self.concurrency), False)]
            settings += [(max(self.async_concurrency), True)] if self.async_concurrency else []
        else:
            settings = [(c, False) for c in self.concurrency]
            settings += [(c, True) for c in self.async_concurrency]
        return [DrainMode(_label(c, a, processes), c, a, processes) for c, a in settings]

    def serve_mode(self) -> DrainMode:
        return DrainMode(_label(10, False, 1), 10)  # the worker's defaults

    def install(self, dsn: str) -> None:
        pgq.App(dsn).migrate()

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

    def _command(self, dsn: str, mode: DrainMode, *, burst: bool) -> list[str]:
        return [
            *(sys.executable, "-m", "pgq", "--dsn", dsn, "--log-level", "warning"),
            *("worker", "--app", "bench.tasks:app", "--concurrency", str(mode.value)),
            *("--processes", str(mode.processes)),
            *(["--burst"] if burst else []),
        ]

    def drain(self, dsn: str, count: int, mode: DrainMode) -> DrainTiming:
        since = database_now(dsn)
        wall, cpu = processes.run_all(
            [self._command(dsn, mode, burst=True)],
            processes.environment(),
            timeout=max(120.0, count / 20),
        )
        finished, db_seconds = self.tables.drain_timing(dsn, since)
        return DrainTiming(wall, db_seconds, finished, cpu_seconds=cpu)

    def serve(
        self, dsn: str, mode: DrainMode, env: dict[str, str]
    ) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
        return processes.serving(self._command(dsn, mode, burst=False), processes.environment(env))

    def enqueue_paced(self, dsn: str, first: int, count: int, pause: float) -> list[float]:
        commits = []
        with _app_on(dsn):
            for n in range(first, first + count):
                time.sleep(pause)
                tasks.record.delay(n)  # autocommit: returns once committed
                commits.append(time.time())
        return commits
