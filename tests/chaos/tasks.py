"""The chaos test's task: each run records itself in a ledger, then works a while.

The ledger insert is retried through connection losses (the database restarts
under it), and (job, attempt) is unique, so a run is recorded exactly once
however often the insert had to be sent.
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any

import psycopg

import pgq

app = pgq.App()
_local = threading.local()

LEDGER_DDL = """
CREATE TABLE chaos_ledger (
    job_id bigint NOT NULL,
    attempt integer NOT NULL,
    pid integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (job_id, attempt)
)
"""


def _record_run(job_id: int, attempt: int) -> None:
    deadline = time.monotonic() + 120
    while True:
        conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
        try:
            if conn is None or conn.closed or conn.broken:
                conn = _local.conn = psycopg.connect(app.dsn, autocommit=True, connect_timeout=5)
            conn.execute(
                "INSERT INTO chaos_ledger (job_id, attempt, pid) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (job_id, attempt, os.getpid()),
            )
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@app.task(name="chaos_step", max_attempts=100, retry_backoff=0.1)
def chaos_step(n: int) -> int:
    job = pgq.current_job()
    _record_run(job.id, job.attempt)
    time.sleep(random.uniform(0.05, 0.15))
    return n
