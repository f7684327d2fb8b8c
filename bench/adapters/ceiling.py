"""The ceiling: the least work a SKIP LOCKED queue can do, hand-written with
psycopg on pgq's own table (same columns, indexes and constraints).

It does what any such queue must (one INSERT per enqueue, COPY for bulk,
claim in one statement and complete in another, each its own transaction)
and nothing else: no argument checks, no NOTIFY, no fencing, no heartbeats,
no results. pgq's numbers are reported as a ratio of these.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg

from .. import tasks
from ..config import BenchConfig
from ..queries import QUERIES
from . import DrainMode, DrainTiming, jobs_table

TASK = tasks.noop.name


class CeilingAdapter:
    name = "ceiling"

    def __init__(self, config: BenchConfig):
        self.batches = config.ceiling_batches

    def drain_modes(self) -> Sequence[DrainMode]:
        return [DrainMode(f"loop, batch={b}", b) for b in self.batches]

    def install(self, dsn: str) -> None:
        jobs_table.install(dsn)

    def count_jobs(self, dsn: str) -> int:
        return jobs_table.count_jobs(dsn)

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
        worker_id = uuid.uuid4()
        with psycopg.connect(dsn, autocommit=True) as conn:
            cpu_before = time.process_time()
            start = time.perf_counter()
            while True:
                rows = conn.execute(
                    QUERIES["ceiling_claim_jobs"], {"limit": mode.value, "worker_id": worker_id}
                ).fetchall()
                if not rows:
                    break
                for _, args, kwargs in rows:
                    _run(args, kwargs)
                conn.execute(QUERIES["ceiling_complete_jobs"], {"ids": [row[0] for row in rows]})
            wall = time.perf_counter() - start
            cpu = time.process_time() - cpu_before
        finished, db_seconds = jobs_table.drain_timing(dsn)
        return DrainTiming(wall, db_seconds, finished, cpu_seconds=cpu)


def _run(args: list[Any], kwargs: dict[str, Any]) -> None:
    tasks.noop.func(*args, **kwargs)
