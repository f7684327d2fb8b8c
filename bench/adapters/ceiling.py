"""The ceiling: the least work a SKIP LOCKED queue can do, hand-written with
psycopg on pgq's own table (same columns, indexes and constraints).

It does what any such queue must (one INSERT per enqueue, COPY for bulk,
claim in one statement and complete in another, each its own transaction)
and nothing else: no argument checks, no NOTIFY, no fencing, no heartbeats,
no results. pgq's numbers are reported as a ratio of these. It has no
long-running worker, so it sits out the latency and memory scenarios.

``python -m bench.adapters.ceiling DSN BATCH`` runs the drain loop once (the
drain with several processes starts that many).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from subprocess import Popen
from typing import Any

import psycopg

from .. import tasks
from ..config import BenchConfig
from ..queries import QUERIES
from . import DrainMode, DrainTiming, processes
from .tables import Tables, database_now

TASK = tasks.noop.name


class CeilingAdapter:
    name = "ceiling"
    tables = Tables()
    history_key = "pgq.jobs"

    def __init__(self, config: BenchConfig):
        self.batches = config.ceiling_batches

    def drain_modes(self, processes: int) -> Sequence[DrainMode]:
        if processes > 1:
            return [
                DrainMode(
                    f"{processes} x loop, batch={max(self.batches)}",
                    max(self.batches),
                    processes=processes,
                )
            ]
        return [DrainMode(f"loop, batch={b}", b) for b in self.batches]

    def serve_mode(self) -> None:
        return None

    def install(self, dsn: str) -> None:
        from pgq.migrate import migrate

        migrate(dsn)

    def enqueue_one(self, dsn: str, count: int) -> float:
        with psycopg.connect(dsn, autocommit=True) as conn:
            start = time.perf_counter()
            for i in range(count):
                conn.execute(QUERIES["ceiling_insert_job"], {"task": TASK, "args": f"[{i}]"})
            return time.perf_counter() - start

    def enqueue_bulk(self, dsn: str, count: int, batch: int) -> float:
        with psycopg.connect(dsn) as conn:
            start = time.perf_counter()
            for first in range(0, count, batch):
                with (
                    conn.transaction(),
                    conn.cursor() as cursor,
                    cursor.copy(QUERIES["ceiling_copy_jobs"]) as copy,
                ):
                    for i in range(first, min(first + batch, count)):
                        copy.write_row(("default", TASK, f"[{i}]"))
            return time.perf_counter() - start

    def fill(self, dsn: str, count: int, batch: int, mode: DrainMode) -> None:
        self.enqueue_bulk(dsn, count, batch)

    def drain(self, dsn: str, count: int, mode: DrainMode) -> DrainTiming:
        since = database_now(dsn)
        if mode.processes == 1:
            cpu_before = time.process_time()
            start = time.perf_counter()
            drain_loop(dsn, mode.value)
            wall = time.perf_counter() - start
            cpu = time.process_time() - cpu_before
        else:
            command = [sys.executable, "-m", "bench.adapters.ceiling", dsn, str(mode.value)]
            wall, cpu = processes.run_all(
                [command] * mode.processes, processes.environment(), timeout=max(120.0, count / 20)
            )
        finished, db_seconds = self.tables.drain_timing(dsn, since)
        return DrainTiming(wall, db_seconds, finished, cpu_seconds=cpu)

    def serve(
        self, dsn: str, mode: DrainMode, env: dict[str, str]
    ) -> AbstractContextManager[Popen[bytes]]:
        raise NotImplementedError("the ceiling has no long-running worker")

    def enqueue_paced(self, dsn: str, first: int, count: int, pause: float) -> list[float]:
        raise NotImplementedError("the ceiling has no long-running worker")


def drain_loop(dsn: str, batch: int) -> None:
    """Claim ``batch`` jobs, run them, mark them done; until none is left."""
    worker_id = uuid.uuid4()
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            rows = conn.execute(
                QUERIES["ceiling_claim_jobs"], {"limit": batch, "worker_id": worker_id}
            ).fetchall()
            if not rows:
                break
            for _, args, kwargs in rows:
                _run(args, kwargs)
            conn.execute(QUERIES["ceiling_complete_jobs"], {"ids": [row[0] for row in rows]})


def _run(args: list[Any], kwargs: dict[str, Any]) -> None:
    tasks.noop.func(*args, **kwargs)


if __name__ == "__main__":
    drain_loop(sys.argv[1], int(sys.argv[2]))
